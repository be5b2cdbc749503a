"""Pool life cycle under stress and misuse, for both drivers where both apply: big bursts,
a closed event loop, close(timeout)/abort(), interpreter exit and garbage collection."""

from __future__ import annotations

import asyncio
import time

import rawsmtp
import rawsmtp.aio
from rawsmtp.testing import SMTPTestServer

MESSAGE = b"From: <s@x.test>\r\nTo: <r@x.test>\r\nSubject: life\r\n\r\nhello\r\n"


def test_a_burst_queued_at_once_is_not_failed_by_the_connect_deadline() -> None:
    # The connect deadline starts when the connect does, not when the connection was decided
    # (the loop may be busy taking the burst for longer than connection_timeout).
    count = 20_000

    async def main(port: int) -> list[rawsmtp.SendResult | BaseException]:
        async with rawsmtp.aio.SMTPPool(
            host="127.0.0.1", port=port, ignore_tls=True, connection_timeout=1
        ) as pool:
            sends = [pool.send(MESSAGE) for _ in range(count)]
            return await asyncio.wait_for(
                asyncio.gather(*sends, return_exceptions=True), timeout=90
            )

    with SMTPTestServer() as server:
        started = time.monotonic()
        results = asyncio.run(main(server.port))
        failures = [r for r in results if isinstance(r, BaseException)]
        assert failures == [] and len(server.messages) == count
        assert time.monotonic() - started < 90
