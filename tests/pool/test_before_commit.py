"""send(before_commit=): the message's end of data waits for the hook, which runs off the loop.

Against SMTPTestServer, with both drivers, over DATA and over (pipelined) CHUNKING. The hook
looks at the server from inside: while it runs, the server has no message and no
``BDAT ... LAST``.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers.waiting import wait_until

import rawsmtp
from rawsmtp.testing import SMTPTestServer

MESSAGE = b"From: <s@x.test>\r\nTo: <r@x.test>\r\nSubject: commit\r\n\r\nhello\r\n"
SERVERS = {
    "data": ["PIPELINING", "8BITMIME"],
    "chunking": ["PIPELINING", "CHUNKING", "8BITMIME"],
}
LOOP_THREADS = {"rawsmtp-pool", "aio-test-loop"}  # the selectors loop, the asyncio test loop


@pytest.fixture(autouse=True)
def _guard() -> Iterator[None]:
    signal.alarm(60)  # a hang (a close() waiting for a hook that never returns) fails fast
    yield
    signal.alarm(0)


@pytest.fixture(params=list(SERVERS))
def server(request: pytest.FixtureRequest) -> Iterator[SMTPTestServer]:
    with SMTPTestServer(capabilities=SERVERS[request.param]) as server:
        yield server


def _ends(server: SMTPTestServer) -> list[str]:
    return [c.line for c in server.commands if c.line.upper().endswith(" LAST")]


def _commands(server: SMTPTestServer) -> list[str]:
    return [c.line.split(" ", 1)[0].upper() for c in server.commands]


def _blocking_hook() -> tuple[Callable[[], None], threading.Event, threading.Event]:
    """A hook that says it was entered, then waits (at most 10 s) to be released."""
    entered, release = threading.Event(), threading.Event()

    def hook() -> None:
        entered.set()
        release.wait(10)

    return hook, entered, release


def test_the_hook_runs_off_the_loop_before_the_end_of_data(
    pool_factory: Callable[..., Any], server: SMTPTestServer
) -> None:
    seen: list[tuple[str, int, list[str], list[str]]] = []

    def hook() -> None:
        threading.Event().wait(0.3)  # time for bytes written too early to arrive
        thread = threading.current_thread().name
        seen.append((thread, len(server.messages), _ends(server), _commands(server)))

    with pool_factory(host="127.0.0.1", port=server.port, ignore_tls=True) as pool:
        result = pool.send(MESSAGE, before_commit=hook).result(timeout=10)
    assert result.accepted == ("r@x.test",)
    [(thread, messages, ends, commands)] = seen
    assert thread not in LOOP_THREADS
    assert messages == 0 and ends == []
    assert commands[:2] == ["EHLO", "MAIL"]  # the envelope went before the hold
    assert len(server.messages) == 1 and server.messages[0].data.endswith(b"hello\r\n")


def test_a_raising_hook_fails_the_message_undelivered_and_the_pool_goes_on(
    pool_factory: Callable[..., Any], server: SMTPTestServer
) -> None:
    cause = RuntimeError("the record store is down")

    def hook() -> None:
        raise cause

    with pool_factory(host="127.0.0.1", port=server.port, ignore_tls=True) as pool:
        failed = pool.send(MESSAGE, before_commit=hook)
        error = failed.exception(timeout=10)
        assert type(error) is rawsmtp.SMTPCommitError
        assert error.__cause__ is cause and "the record store is down" in str(error)
        assert server.messages == [] and _ends(server) == []
        assert pool.send(MESSAGE).result(timeout=10).accepted == ("r@x.test",)
    assert len(server.messages) == 1
    if "BDAT" in _commands(server):
        # The chunks before LAST are cleared by an RSET; the connection carries the next one.
        assert "RSET" in _commands(server) and server.connections == 1
    else:
        # Inside DATA only a close before the dot aborts the message: a new connection follows.
        assert "RSET" not in _commands(server) and server.connections == 2


def test_a_slow_hook_holds_neither_the_loop_nor_other_connections(
    pool_factory: Callable[..., Any], server: SMTPTestServer
) -> None:
    hook, entered, release = _blocking_hook()
    # One message per connection: the second message needs a connection of its own.
    with pool_factory(
        host="127.0.0.1", port=server.port, ignore_tls=True, max_connections=2, max_messages=1
    ) as pool:
        held = pool.send(MESSAGE, before_commit=hook)
        assert entered.wait(10)
        if isinstance(pool, rawsmtp.SMTPPool):  # (the asyncio helper's future is a wrapper)
            assert not held.cancel()  # past the point of no return
        assert pool.send(MESSAGE).result(timeout=10).accepted == ("r@x.test",)
        assert pool.verify()  # the loop still opens and ends sessions
        assert len(server.messages) == 1 and not held.done()
        release.set()
        assert held.result(timeout=10).accepted == ("r@x.test",)
    assert len(server.messages) == 2


def test_aborting_while_the_hook_runs_leaves_the_message_undelivered(
    pool_factory: Callable[..., Any], server: SMTPTestServer
) -> None:
    hook, entered, release = _blocking_hook()
    pool = pool_factory(host="127.0.0.1", port=server.port, ignore_tls=True)
    try:
        held = pool.send(MESSAGE, before_commit=hook)
        assert entered.wait(10)
        pool.abort()
        assert type(held.exception(timeout=10)) is rawsmtp.SMTPPoolClosedError
    finally:
        release.set()
        pool.close()
    assert wait_until(lambda: server.active_connections == 0)
    assert server.messages == [] and _ends(server) == []


def test_a_hook_that_is_not_callable_is_refused_at_send(pool_factory: Callable[..., Any]) -> None:
    refused = pytest.raises(rawsmtp.LocalProtocolError, match="before_commit must be callable")
    with pool_factory(host="127.0.0.1", port=9, ignore_tls=True) as pool, refused:
        pool.send(MESSAGE, before_commit="not a function").result(timeout=5)


def test_messages_behind_a_hook_closed_data_connection_are_not_charged(
    pool_factory: Callable[..., Any],
) -> None:
    # max_retries=0: a message charged for the close would fail instead of going again.
    entered = threading.Event()

    def hook() -> None:
        entered.set()
        threading.Event().wait(0.2)  # the message behind is on this connection by now
        raise RuntimeError("no commit")

    with (
        SMTPTestServer(capabilities=SERVERS["data"]) as server,
        pool_factory(
            host="127.0.0.1", port=server.port, ignore_tls=True, max_connections=1, max_retries=0
        ) as pool,
    ):
        held = pool.send(MESSAGE, before_commit=hook)
        assert entered.wait(10)
        behind = pool.send(MESSAGE)
        assert type(held.exception(timeout=10)) is rawsmtp.SMTPCommitError
        assert behind.result(timeout=10).accepted == ("r@x.test",)
    assert len(server.messages) == 1 and server.connections == 2
