"""Pool life cycle under stress and misuse, for both drivers where both apply: big bursts,
a closed event loop, close(timeout)/abort(), interpreter exit and garbage collection."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from helpers.waiting import wait_until

import rawsmtp
import rawsmtp.aio
from rawsmtp.testing import Fault, SMTPTestServer

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


def test_an_asyncio_pool_used_from_a_second_asyncio_run_fails_clearly() -> None:
    with SMTPTestServer() as server:
        pool = rawsmtp.aio.SMTPPool(host="127.0.0.1", port=server.port, ignore_tls=True)

        async def send() -> rawsmtp.SendResult:
            return await pool.send(MESSAGE)

        async def verify() -> bool:
            return await pool.verify()

        assert asyncio.run(send()).accepted == ("r@x.test",)  # no aclose(): the loop ends
        for again in (send, verify):
            with pytest.raises(rawsmtp.LocalProtocolError, match="closed event loop"):
                asyncio.run(again())
        asyncio.run(pool.aclose())  # nothing to wait for: returns at once
        with pytest.raises(rawsmtp.SMTPPoolClosedError):
            asyncio.run(send())
        assert len(server.messages) == 1


def test_close_with_a_timeout_aborts_a_message_whose_final_reply_never_comes(
    pool_factory: Callable[..., Any],
) -> None:
    with SMTPTestServer(faults=[Fault(on="DATA_END", action="silent")]) as server:
        pool = pool_factory(host="127.0.0.1", port=server.port, ignore_tls=True)
        future = pool.send(MESSAGE)
        assert wait_until(lambda: server.active_connections == 1)
        time.sleep(0.3)  # the dot is out, its reply never comes
        closer = threading.Thread(target=pool.close, kwargs={"timeout": 1}, daemon=True)
        started = time.monotonic()
        closer.start()
        closer.join(10)
        assert not closer.is_alive() and 0.9 < time.monotonic() - started < 5
        assert isinstance(future.exception(timeout=1), rawsmtp.SMTPDeliveryUnknownError)


def test_abort_fails_queued_and_in_flight_messages_at_once(
    pool_factory: Callable[..., Any],
) -> None:
    # DATA, not CHUNKING: the messages behind the first wait for a 354 that never comes (with
    # pipelined BDAT all three would be out, and all three unknown).
    capabilities = ["PIPELINING", "8BITMIME"]
    with SMTPTestServer(
        capabilities=capabilities, faults=[Fault(on="DATA_END", action="silent")]
    ) as server:
        pool = pool_factory(host="127.0.0.1", port=server.port, ignore_tls=True, max_connections=1)
        futures = [pool.send(MESSAGE) for _ in range(3)]
        assert wait_until(lambda: server.active_connections == 1)
        time.sleep(0.3)
        aborter = threading.Thread(target=pool.abort, daemon=True)
        aborter.start()
        aborter.join(10)
        assert not aborter.is_alive()
        errors = [type(f.exception(timeout=1)) for f in futures]
        assert errors[0] is rawsmtp.SMTPDeliveryUnknownError
        assert errors[1:] == [rawsmtp.SMTPPoolClosedError] * 2
