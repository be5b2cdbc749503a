"""``rawsmtp.aio.SMTPPool``: the pool on the running asyncio loop, same options as ``rawsmtp.SMTPPool``.

async with rawsmtp.aio.SMTPPool(host="smtp.example.com", auth=("u", "p")) as pool:
    result = await pool.send(message)
"""

from .pool._asyncio import SMTPPool

__all__ = ["SMTPPool"]
