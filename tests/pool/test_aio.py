"""What only the asyncio pool has: awaitables, task cancellation, ``async with``/``aclose``."""

from __future__ import annotations

import asyncio

import pytest

import rawsmtp
import rawsmtp.aio
from rawsmtp.testing import SMTPTestServer

MESSAGE = b"From: <s@x.test>\r\nTo: <r@x.test>\r\nSubject: aio\r\n\r\nhello\r\n"


def test_send_verify_and_close() -> None:
    async def main(port: int) -> None:
        async with rawsmtp.aio.SMTPPool(host="127.0.0.1", port=port, ignore_tls=True) as pool:
            assert await pool.verify() is True
            results = await asyncio.gather(*(pool.send(MESSAGE) for _ in range(30)))
            assert all(result.accepted == ("r@x.test",) for result in results)
            assert pool.is_idle()
        with pytest.raises(rawsmtp.SMTPPoolClosedError):
            await pool.send(MESSAGE)

    with SMTPTestServer() as server:
        asyncio.run(main(server.port))
        assert len(server.messages) == 30


def test_the_pools_show_only_the_user_api() -> None:
    # The engine's hooks (run_blocking, withdraw, watch, forget, flush_soon) live on a private
    # driver object, not on the pool a user holds.
    def public(pool: object) -> set[str]:
        return {name for name in dir(pool) if not name.startswith("_")}

    shared = {"abort", "is_idle", "on_idle", "options", "pending", "send", "stats", "verify"}
    sync_pool = rawsmtp.SMTPPool(host="127.0.0.1", port=9, ignore_tls=True)
    aio_pool = rawsmtp.aio.SMTPPool(host="127.0.0.1", port=9, ignore_tls=True)
    try:
        assert public(sync_pool) == shared | {"close"}
        assert public(aio_pool) == shared | {"aclose"}
    finally:
        sync_pool.close()
        asyncio.run(aio_pool.aclose())


def test_cancelling_a_queued_send_withdraws_it() -> None:
    async def main(port: int) -> None:
        async with rawsmtp.aio.SMTPPool(
            host="127.0.0.1", port=port, ignore_tls=True, rate_limit=1, rate_delta=60.0
        ) as pool:
            await pool.send(MESSAGE)
            queued = asyncio.ensure_future(pool.send(MESSAGE))
            await asyncio.sleep(0.05)
            assert pool.pending == 1
            queued.cancel()
            with pytest.raises(asyncio.CancelledError):
                await queued
            assert pool.pending == 0

    with SMTPTestServer() as server:
        asyncio.run(main(server.port))
        assert len(server.messages) == 1


def test_invalid_input_raises_at_once() -> None:
    async def main() -> None:
        async with rawsmtp.aio.SMTPPool(host="127.0.0.1", port=9, ignore_tls=True) as pool:
            with pytest.raises(ValueError):
                await pool.send(MESSAGE, {"from": "a@x.test", "to": ["b@x.test>\r\nDATA"]})

    asyncio.run(main())
