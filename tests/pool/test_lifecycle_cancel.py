"""cancel() of a message on the wire: abandoned before its final dot, too late after it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from helpers.waiting import wait_until

import rawsmtp
import rawsmtp.aio
from rawsmtp.testing import Fault, SMTPTestServer

DATA_ONLY = ["PIPELINING", "8BITMIME"]  # no CHUNKING: the message goes with DATA
MESSAGE = b"From: <s@x.test>\r\nTo: <r@x.test>\r\nSubject: cancel\r\n\r\nhello\r\n"


def _commands(server: SMTPTestServer) -> list[str]:
    return [c.line.split(" ", 1)[0].upper() for c in server.commands]


def test_cancel_while_the_354_is_awaited_abandons_the_message() -> None:
    with SMTPTestServer(
        capabilities=DATA_ONLY, faults=[Fault(on="DATA", delay=1.0, nth=1)]
    ) as server:
        with rawsmtp.SMTPPool(host="127.0.0.1", port=server.port, ignore_tls=True) as pool:
            future = pool.send(MESSAGE)
            assert wait_until(lambda: "DATA" in _commands(server))
            assert future.cancel() and future.cancelled()
            with pytest.raises(concurrent.futures.CancelledError):
                future.result(timeout=1)
            # The 354 comes, then the connection closes without a body: nothing delivered,
            # and the pool goes on with a new connection.
            assert wait_until(lambda: server.connections == 1 and server.active_connections == 0)
            assert server.messages == []
            assert pool.send(MESSAGE).result(timeout=10).accepted == ("r@x.test",)
        assert len(server.messages) == 1 and server.connections == 2


def test_cancel_after_the_dot_returns_false_and_the_message_arrives() -> None:
    with SMTPTestServer(capabilities=DATA_ONLY, faults=[Fault(on="DATA_END", delay=1.0)]) as server:
        with rawsmtp.SMTPPool(host="127.0.0.1", port=server.port, ignore_tls=True) as pool:
            future = pool.send(MESSAGE)
            assert wait_until(lambda: server.active_connections == 1)
            assert wait_until(lambda: "DATA" in _commands(server))
            # The dot follows the 354 at once; allow it to be handed out.
            assert wait_until(lambda: future.running() and future._committed, timeout=5)
            assert not future.cancel()
            assert future.result(timeout=10).accepted == ("r@x.test",)
        assert len(server.messages) == 1


def test_cancelling_an_asyncio_send_on_the_wire_abandons_it() -> None:
    async def main(server: SMTPTestServer) -> None:
        async with rawsmtp.aio.SMTPPool(
            host="127.0.0.1", port=server.port, ignore_tls=True
        ) as pool:
            sending = asyncio.ensure_future(pool.send(MESSAGE))
            for _ in range(250):
                if "DATA" in _commands(server):
                    break
                await asyncio.sleep(0.02)
            sending.cancel()
            with pytest.raises(asyncio.CancelledError):
                await sending
            result = await asyncio.wait_for(pool.send(MESSAGE), 10)
            assert result.accepted == ("r@x.test",)

    with SMTPTestServer(
        capabilities=DATA_ONLY, faults=[Fault(on="DATA", delay=1.0, nth=1)]
    ) as server:
        asyncio.run(asyncio.wait_for(main(server), 30))
        assert len(server.messages) == 1


def test_a_closing_pool_waits_for_an_unanswered_quit_without_spinning(
    pool_factory: Callable[..., Any],
) -> None:
    # Found by fuzz/fuzz_pool.py: closing, an idle connection's scheduler deadline came round
    # at once, forever (a busy loop), while its QUIT went unanswered past idle_timeout.
    with SMTPTestServer(faults=[Fault(on="QUIT", action="silent")]) as server:
        pool = pool_factory(
            host="127.0.0.1",
            port=server.port,
            ignore_tls=True,
            idle_timeout=0.2,
            socket_timeout=1.5,
        )
        assert pool.send(MESSAGE).result(timeout=10).accepted == ("r@x.test",)
        cpu = time.process_time()
        closer = threading.Thread(target=pool.close, daemon=True)
        closer.start()
        closer.join(10)
        assert not closer.is_alive()
        assert time.process_time() - cpu < 0.2  # spinning burnt 0.5 s of it on a loaded machine
