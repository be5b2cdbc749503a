"""The failure policy end to end: both drivers against SMTPTestServer faults, over loopback.

Every wait is bounded (``wait_all``, ``Future.result(timeout=)``), so a hang fails fast.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, wait
from typing import Any

import rawsmtp
from rawsmtp.testing import Fault, FaultContext, SMTPTestServer

USERS = {"user": "secret"}


def message(number: int) -> bytes:
    return (
        f"From: s@x.test\r\nTo: r@x.test\r\nMessage-ID: <{number}@x.test>\r\n"
        f"Subject: {number}\r\n\r\nbody {number}\r\n"
    ).encode()


def wait_all(futures: list[Future[Any]], timeout: float) -> None:
    _, pending = wait(futures, timeout=timeout)
    assert not pending, f"{len(pending)} futures still pending after {timeout} s"


def options(server: SMTPTestServer, **more: Any) -> dict[str, Any]:
    return {"host": server.host, "port": server.port, "ignore_tls": True, **more}


def engine(pool: Any) -> Any:
    return getattr(pool, "engine", None) or pool._engine


def test_drops_before_the_greeting_lose_nothing(pool_factory: Callable[..., Any]) -> None:
    faults = [Fault(on="CONNECT", action="drop", connection=n) for n in (2, 4, 6, 8)]
    with SMTPTestServer(faults=faults) as server:
        with pool_factory(**options(server, max_connections=4, max_messages=50)) as pool:
            futures = [pool.send(message(n)) for n in range(1000)]
            wait_all(futures, 60)
        assert all(f.result().accepted == ("r@x.test",) for f in futures)
        assert len(server.messages) == 1000


def test_a_destination_that_comes_back_is_found_within_the_cap(
    pool_factory: Callable[..., Any],
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = SMTPTestServer(port=port)
    pool = pool_factory(host="127.0.0.1", port=port, ignore_tls=True, max_retry_delay=2)
    try:
        future = pool.send(message(1))
        time.sleep(5)
        server.start()
        listening = time.monotonic()
        server.wait_for_messages(1, timeout=10)
        recovery = time.monotonic() - listening
        assert future.result(timeout=5).accepted == ("r@x.test",)
        print(f"\noutage recovery: first delivery {recovery:.2f} s after the port listened")
        assert recovery <= 2.5 + 0.5  # max_retry_delay, and loopback slack
    finally:
        pool.close()
        server.stop()


def test_a_temporary_auth_failure_is_retried(pool_factory: Callable[..., Any]) -> None:
    faults = [
        Fault(on="AUTH", reply="454 4.7.0 Temporary authentication failure", connection=n)
        for n in (1, 2, 3)
    ]
    with SMTPTestServer(users=USERS, faults=faults) as server:
        settings = options(server, auth=("user", "secret"), max_connections=2, max_retries=0)
        with pool_factory(**settings, max_retry_delay=1) as pool:
            futures = [pool.send(message(n)) for n in range(20)]
            wait_all(futures, 30)
        assert all(f.result() for f in futures) and len(server.messages) == 20


def test_bad_credentials_fail_the_queue_within_a_second(pool_factory: Callable[..., Any]) -> None:
    with SMTPTestServer(users=USERS) as server:
        with pool_factory(**options(server, auth=("user", "wrong"))) as pool:
            started = time.monotonic()
            futures = [pool.send(message(n)) for n in range(200)]
            wait_all(futures, 5)
            elapsed = time.monotonic() - started
        errors = [f.exception() for f in futures]
        assert all(isinstance(e, rawsmtp.SMTPAuthenticationError) and e.code == 535 for e in errors)
        assert elapsed < 1.0 and server.messages == []


def test_throttling_closes_lower_concurrency_and_lose_nothing(
    pool_factory: Callable[..., Any],
) -> None:
    def every_tenth_mail(context: FaultContext) -> Fault | None:
        if context.point == "MAIL" and context.message % 10 == 0:
            return Fault(on="MAIL", action="close", reply="421 4.7.0 Too many messages, slow down")
        return None

    with SMTPTestServer(faults=every_tenth_mail) as server:
        with pool_factory(**options(server, max_connections=8, max_retries=0)) as pool:
            futures = [pool.send(message(n)) for n in range(300)]
            wait_all(futures, 60)
            lowered = engine(pool).scheduler.effective_connections
        assert all(f.result() for f in futures)
        ids = [m.data.split(b"Message-ID: ", 1)[1].split(b"\r\n", 1)[0] for m in server.messages]
        assert len(ids) == len(set(ids)) == 300
        assert lowered < 8


def test_a_deferred_recipient_gets_the_message_once(pool_factory: Callable[..., Any]) -> None:
    faults = [Fault(on="RCPT", match="b@", reply="450 4.2.1 Mailbox busy", nth=1)]
    envelope = {"from": "s@x.test", "to": ["a@x.test", "b@x.test"]}
    with SMTPTestServer(faults=faults) as server:
        with pool_factory(**options(server, retry_delay=0.2)) as pool:
            result = pool.send(message(1), envelope).result(timeout=10)
        assert sorted(result.accepted) == ["a@x.test", "b@x.test"]
        assert result.deferred == ("b@x.test",)
        received = sorted(r for m in server.messages for r in m.rcpt_to)
        assert received == ["a@x.test", "b@x.test"]


def test_ehlo_and_421_in_one_segment_keeps_connections_bounded(
    pool_factory: Callable[..., Any],
) -> None:
    faults = [Fault(on="EHLO", inject=b"421 4.3.2 Shutting down\r\n")]
    with SMTPTestServer(faults=faults) as server:
        with pool_factory(**options(server, max_connections=5, max_retry_delay=2)) as pool:
            futures = [pool.send(message(n), deadline=5) for n in range(50)]
            wait_all(futures, 15)
            connections = server.connections
        assert all(isinstance(f.exception(), rawsmtp.SMTPTimeoutError) for f in futures)
        assert connections <= 20, connections


def test_a_haraka_like_server_switches_the_pool_to_envelope_mode(
    pool_factory: Callable[..., Any],
) -> None:
    faults = [Fault(on="DATA_END", then_refuse="503 5.5.1 Pipelining after the dot")]
    with SMTPTestServer(faults=faults, capabilities=["PIPELINING", "8BITMIME"]) as server:
        with pool_factory(**options(server, max_connections=2, max_retries=0)) as pool:
            futures = [pool.send(message(n)) for n in range(200)]
            wait_all(futures, 30)
            mode = engine(pool).settings.pipelining
        assert all(f.result() for f in futures) and len(server.messages) == 200
        assert mode == "envelope"


def test_close_is_not_held_up_by_a_backing_off_destination() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pool = rawsmtp.SMTPPool(host="127.0.0.1", port=port, ignore_tls=True)
    future = pool.send(message(1))
    time.sleep(0.3)
    closer = threading.Thread(target=pool.close)
    closer.start()
    closer.join(5)
    assert not closer.is_alive()
    assert isinstance(future.exception(timeout=1), rawsmtp.SMTPPoolClosedError)
