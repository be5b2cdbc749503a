"""Pool life-cycle behaviour, against the test server, for both drivers (selectors, asyncio):
recycling after max_messages, polite idle QUIT, connection age, queue bounds, idle callbacks."""

from __future__ import annotations

import dataclasses
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from helpers.waiting import wait_until

import rawsmtp
from rawsmtp.testing import Fault, SMTPTestServer

MESSAGE = b"From: <s@x.test>\r\nTo: <r@x.test>\r\nSubject: life\r\n\r\nhello\r\n"


def options(server: SMTPTestServer, **extra: Any) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": server.port, "ignore_tls": True, **extra}


def quits(server: SMTPTestServer) -> int:
    return sum(1 for record in server.commands if record.line.upper() == "QUIT")


def test_connections_are_recycled_after_max_messages(pool_factory: Callable[..., Any]) -> None:
    with SMTPTestServer() as server:
        with pool_factory(**options(server, max_connections=1, max_messages=2)) as pool:
            for future in [pool.send(MESSAGE) for _ in range(5)]:
                future.result(timeout=10)
        assert len(server.messages) == 5
        per_connection = [m.connection for m in server.messages]
        assert max(per_connection.count(c) for c in set(per_connection)) == 2
        assert server.connections == 3 and quits(server) == 3  # each one said QUIT


def test_idle_connections_are_closed_politely(pool_factory: Callable[..., Any]) -> None:
    with SMTPTestServer() as server:
        with pool_factory(**options(server, idle_timeout=0.3)) as pool:
            pool.send(MESSAGE).result(timeout=10)
            assert wait_until(lambda: quits(server) == 1)  # before close(): the idle timeout
            assert wait_until(lambda: server.active_connections == 0)
            pool.send(MESSAGE).result(timeout=10)  # a fresh connection takes over
        assert server.connections == 2 and len(server.messages) == 2


def test_max_connection_age_retires_between_messages(pool_factory: Callable[..., Any]) -> None:
    with SMTPTestServer() as server:
        with pool_factory(**options(server, max_connection_age=0.2)) as pool:
            pool.send(MESSAGE).result(timeout=10)
            time.sleep(0.4)
            pool.send(MESSAGE).result(timeout=10)
        assert server.connections == 2


def test_on_idle_fires_when_the_queue_drains(pool_factory: Callable[..., Any]) -> None:
    with SMTPTestServer() as server:
        idle = threading.Event()
        with pool_factory(**options(server, max_connections=2)) as pool:
            pool.on_idle(idle.set)
            futures = [pool.send(MESSAGE) for _ in range(10)]
            for future in futures:
                future.result(timeout=10)
            assert idle.wait(5) and pool.is_idle() and pool.pending == 0


def test_max_queue_blocks_or_fails_fast() -> None:
    with SMTPTestServer() as server:
        with rawsmtp.SMTPPool(
            **options(server, max_connections=1, max_queue=2, rate_limit=1, rate_delta=60.0)
        ) as pool:
            first = pool.send(MESSAGE)
            first.result(timeout=10)
            queued = [pool.send(MESSAGE), pool.send(MESSAGE)]
            assert pool.pending == 2
            with pytest.raises(rawsmtp.SMTPQueueFullError):
                pool.send(MESSAGE, block=False)
            started = time.monotonic()
            with pytest.raises(rawsmtp.SMTPQueueFullError):
                pool.send(MESSAGE, timeout=0.2)
            assert time.monotonic() - started >= 0.2
            assert queued[0].cancel()
            pool.send(MESSAGE, timeout=5)  # waits until the cancel has made room
        assert len(server.messages) == 1


def test_send_after_close_fails_at_once(pool_factory: Callable[..., Any]) -> None:
    with SMTPTestServer() as server:
        pool = pool_factory(**options(server))
        pool.send(MESSAGE).result(timeout=10)
        pool.close()
        with pytest.raises(rawsmtp.SMTPPoolClosedError):
            pool.send(MESSAGE).result(timeout=5)


@pytest.mark.parametrize(
    ("message", "envelope", "needs"),
    [
        ("From: a@x.test\r\nTo: r@x.test\r\n\r\nGrüße\r\n", None, "8BITMIME"),
        (b"Subject: x\r\n\r\nx\r\n", {"from": "jörg@x.test", "to": ["r@x.test"]}, "SMTPUTF8"),
        (b"x" * 2000, {"from": "a@x.test", "to": ["r@x.test"]}, "SIZE"),
    ],
)
def test_what_the_server_lacks_fails_before_a_byte_and_the_pool_goes_on(
    pool_factory: Callable[..., Any], message: Any, envelope: Any, needs: str
) -> None:
    with SMTPTestServer(capabilities=["PIPELINING", "SIZE 1000"]) as server:
        with pool_factory(**options(server)) as pool:
            with pytest.raises(rawsmtp.SMTPCapabilityError, match=needs):
                pool.send(message, envelope).result(timeout=10)
            pool.send(MESSAGE).result(timeout=10)
        assert len(server.messages) == 1
        # Only the good message's MAIL reached the server: the refused one wrote nothing.
        assert sum(1 for r in server.commands if r.line.upper().startswith("MAIL")) == 1


def test_local_address_binds_outgoing_connections(pool_factory: Callable[..., Any]) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    peers: list[str] = []

    def serve() -> None:
        conn, peer = listener.accept()
        peers.append(peer[0])
        conn.sendall(b"554 5.7.1 no service for you\r\n")
        conn.close()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        port = listener.getsockname()[1]
        with (
            pool_factory(host="127.0.0.1", port=port, local_address="127.0.0.2") as pool,
            pytest.raises(rawsmtp.SMTPResponseError) as info,
        ):
            pool.verify()
        assert info.value.code == 554 and peers == ["127.0.0.2"]
    finally:
        thread.join(5)
        listener.close()


def test_required_tls_is_never_downgraded(pool_factory: Callable[..., Any]) -> None:
    """smtplib-style STARTTLS stripping: a server (or attacker) hiding STARTTLS gets no mail."""
    with SMTPTestServer() as server:  # offers no STARTTLS
        with (
            pool_factory(**options(server, ignore_tls=False, require_tls=True)) as pool,
            pytest.raises(rawsmtp.SMTPTLSError),
        ):
            pool.send(MESSAGE).result(timeout=10)
        assert server.messages == []
        assert not any(r.line.upper().startswith(("MAIL", "AUTH")) for r in server.commands)


def test_logger_true_prints_the_redacted_protocol_to_stderr(
    capfd: pytest.CaptureFixture[str],
) -> None:
    logger = logging.getLogger("rawsmtp")
    handlers, level = list(logger.handlers), logger.level
    try:
        with SMTPTestServer(users={"ann": "s3cret-pw"}) as server:
            pool = rawsmtp.SMTPPool(
                **options(server, logger=True, debug=True, auth=("ann", "s3cret-pw"))
            )
            with pool:
                pool.send(MESSAGE).result(timeout=10)
    finally:
        logger.handlers[:], logger.level = handlers, level
    err = capfd.readouterr().err
    assert "C: MAIL FROM:<s@x.test>" in err and "S: 250" in err
    assert "s3cret-pw" not in err and "AUTH PLAIN <redacted>" in err


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_close_while_a_worker_prepares_authentication(pool_factory: Callable[..., Any]) -> None:
    """close() lands between the connection's set-up and a slow token provider's answer."""
    asked = threading.Event()

    def slow_provider(renew: bool) -> str:
        asked.set()
        time.sleep(0.3)
        return "token"

    slow_quit = [Fault(on="QUIT", delay=1.0)]  # the provider answers while QUIT is unanswered
    with SMTPTestServer(tokens={"ann@x.test": "token"}, faults=slow_quit) as server:
        auth = {"user": "ann@x.test", "token_provider": slow_provider}
        pool = pool_factory(**options(server, auth=auth))
        future = pool.send(MESSAGE)
        assert asked.wait(5)
        pool.close()
        with pytest.raises(rawsmtp.SMTPPoolClosedError):
            future.result(timeout=5)
        assert server.messages == []


def test_repr_shows_the_queue_and_the_connections(pool_factory: Callable[..., Any]) -> None:
    with SMTPTestServer() as server:
        pool = pool_factory(**options(server, max_connections=1))
        assert repr(pool) == "<SMTPPool queued=0 | 0 ready, 0 opening>"
        pool.send(MESSAGE).result(timeout=10)
        assert repr(pool) == "<SMTPPool queued=0 | 1 ready, 0 opening>"
        pool.close()
        assert repr(pool) == "<SMTPPool queued=0 | 0 ready, 0 opening, closed>"


def test_a_delivered_result_is_a_complete_frozen_send_result(
    pool_factory: Callable[..., Any],
) -> None:
    """The engine fills a SendResult field by field (protocol._frozen): none may be missing."""
    with SMTPTestServer() as server, pool_factory(**options(server)) as pool:
        result = pool.send(MESSAGE).result(timeout=10)
    assert type(result) is rawsmtp.SendResult
    assert dataclasses.replace(result) == result  # reads every field, built by __init__
    assert result.accepted and result.unconfirmed == () and result.response.startswith("250")
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.accepted = ()  # type: ignore[misc]
