"""on_event= and stats() against the test server, for both drivers: each event and counter is
checked against what the server saw (connections, MAIL commands, messages stored)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from helpers.waiting import wait_until

import rawsmtp
from rawsmtp.pool import _stats
from rawsmtp.pool._observe import (
    ConnectionClosed,
    ConnectionOpened,
    MessageDelivered,
    MessageFailed,
    MessageRetried,
    MessageStarted,
    PoolEvent,
)
from rawsmtp.testing import Fault, SMTPTestServer


def message(n: int, to: str = "r@x.test") -> bytes:
    return f"From: <s@x.test>\r\nTo: {to}\r\nMessage-ID: <m{n}@x>\r\n\r\nhi {n}\r\n".encode()


def options(server: SMTPTestServer, **extra: Any) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": server.port, "ignore_tls": True, **extra}


class Recorder:
    """An on_event callable that keeps every event and the thread it came on."""

    def __init__(self) -> None:
        self.events: list[PoolEvent] = []
        self.threads: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, event: PoolEvent) -> None:
        with self.lock:
            self.events.append(event)
            self.threads.add(threading.current_thread().name)

    def of(self, kind: type) -> list[Any]:
        with self.lock:
            return [event for event in self.events if isinstance(event, kind)]


def mails(server: SMTPTestServer) -> list[Any]:
    return [r for r in server.commands if r.line.upper().startswith("MAIL")]


def test_events_and_stats_agree_with_the_server(pool_factory: Callable[..., Any]) -> None:
    refuse = [Fault(on="RCPT", match="nobody@", reply="550 5.1.1 No such user")]
    recorder = Recorder()
    with SMTPTestServer(faults=refuse) as server:
        with pool_factory(**options(server, max_connections=2, on_event=recorder)) as pool:
            futures = [pool.send(message(n)) for n in range(5)]
            futures.append(pool.send(message(5, "r@x.test, nobody@x.test")))
            futures.append(pool.send(message(6, "nobody@x.test")))
            for future in futures[:6]:
                future.result(timeout=10)
            with pytest.raises(rawsmtp.SMTPRecipientsRefusedError):
                futures[6].result(timeout=10)
            stats = pool.stats()  # counted before the futures resolved: exact at once
        # close() returned: on_event has seen every event, without waiting here
        opened, closed = recorder.of(ConnectionOpened), recorder.of(ConnectionClosed)
        started, delivered = recorder.of(MessageStarted), recorder.of(MessageDelivered)
        failed = recorder.of(MessageFailed)
        # Every connection that opened also closed; one still setting up when close() came (the
        # other did all the work) closes without having opened, carrying nothing.
        opened_ids = {e.connection_id for e in opened}
        assert opened_ids <= {e.connection_id for e in closed} and len(closed) <= 2
        assert all(e.messages == 0 for e in closed if e.connection_id not in opened_ids)
        assert len(opened) <= server.connections <= len(closed)
        assert all(e.error is None for e in closed) and not any(e.tls for e in opened)
        assert (opened[0].host, opened[0].port) == ("127.0.0.1", server.port)
        assert len(started) == len(mails(server)) == 7
        assert sorted(e.message_id for e in delivered) == [f"<m{n}@x>" for n in range(6)]
        assert len(server.messages) == len(delivered) == 6
        assert [e.message_id for e in failed] == ["<m6@x>"]
        assert isinstance(failed[0].error, rawsmtp.SMTPRecipientsRefusedError)
        partial = next(e for e in delivered if e.message_id == "<m5@x>")
        assert partial.result.accepted == ("r@x.test",)
        assert partial.result.rejected == ("nobody@x.test",)
        # Each outcome is on the connection that started it, after the start.
        first = {e.message_id: e for e in started}
        for event in [*delivered, *failed]:
            start = first[event.message_id]
            assert start.connection_id == event.connection_id and start.attempt == 1
            assert start.time <= event.time and event.elapsed >= 0
        assert sum(e.messages for e in closed) == 7
        assert (stats.sent, stats.failed, stats.retried, stats.deferred) == (6, 1, 0, 0)
        assert (stats.queued, stats.in_flight) == (0, 0)
        assert set(stats.latency) == {"p50", "p90", "max"}
        latencies = sorted(e.elapsed for e in delivered)
        assert stats.latency["max"] == latencies[-1] and stats.latency["p50"] <= latencies[-1]
        assert stats.max_connections == 2 and stats.rate_limit is None
        assert stats.backoff_until is None
        assert sum(stats.connections.values()) <= 2
        assert pool.stats().connections == {}  # closed: no connection left


def test_a_dropped_first_connection_is_an_uncharged_retry(pool_factory: Callable[..., Any]) -> None:
    # A connection that drops before it carried a message is the destination's failure, not the
    # message's (see the failure policy): the retry costs no attempt.
    drop = [Fault(on="MAIL", action="drop", nth=1)]  # before the message: it may be resent
    recorder = Recorder()
    with SMTPTestServer(faults=drop, capabilities=["8BITMIME"]) as server:  # MAIL alone
        with pool_factory(**options(server, max_connections=1, on_event=recorder)) as pool:
            pool.send(message(1)).result(timeout=15)
            stats = pool.stats()
        assert server.connections == 2 and len(server.messages) == 1
        (retry,) = recorder.of(MessageRetried)
        started = recorder.of(MessageStarted)
        assert [e.attempt for e in started] == [1, 1]
        assert retry.message_id == "<m1@x>" and not retry.charged and retry.attempt == 0
        assert retry.connection_id == started[0].connection_id != started[1].connection_id
        assert isinstance(retry.error, rawsmtp.SMTPError)
        lost, polite = recorder.of(ConnectionClosed)
        assert lost.error is not None and lost.messages == 0
        assert polite.error is None and polite.messages == 1
        assert (stats.sent, stats.failed, stats.retried, stats.deferred) == (1, 0, 0, 1)


def test_a_refused_connection_fails_before_any_connection(
    pool_factory: Callable[..., Any],
) -> None:
    server = SMTPTestServer()
    with server:
        port = server.port
    recorder = Recorder()
    # A refused connection is the destination's failure: retried until the deadline, which
    # then fails the message with the refusal as its cause (the failure policy).
    pool = pool_factory(host="127.0.0.1", port=port, delivery_timeout=0.5, on_event=recorder)
    with pool:
        with pytest.raises(rawsmtp.SMTPTimeoutError) as error:
            pool.send(message(1)).result(timeout=10)
        assert isinstance(error.value.__cause__, rawsmtp.SMTPConnectionError)
        stats = pool.stats()
    assert recorder.of(ConnectionOpened) == [] and recorder.of(MessageStarted) == []
    (closed,) = recorder.of(ConnectionClosed)
    (failed,) = recorder.of(MessageFailed)
    assert isinstance(closed.error, rawsmtp.SMTPConnectionError)
    assert failed.connection_id is None and failed.message_id == "<m1@x>"
    assert (stats.sent, stats.failed) == (0, 1)
    assert stats.backoff_until is not None and stats.backoff_until > time.monotonic() - 60


def test_counters_are_exact_when_nothing_consumes_the_events(
    pool_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    # Without on_event and with the log above the events' levels, the per-message events are
    # never built (they cost every delivery), yet every counter moves as with a consumer.
    built: list[str] = []
    for name in ("_started", "_delivered", "_retried"):
        real = getattr(_stats, name)
        monkeypatch.setattr(_stats, name, lambda *a, r=real, n=name: built.append(n) or r(*a))
    faults = [
        Fault(on="MAIL", action="drop", nth=1),  # the first connection's: uncharged
        Fault(on="RCPT", reply="451 4.3.0 try again later", nth=2),  # charged, then delivered
    ]
    caplog.set_level(logging.ERROR, logger="rawsmtp")
    with SMTPTestServer(faults=faults, capabilities=["8BITMIME"]) as server:
        with pool_factory(**options(server, max_connections=1, retry_delay=0.05)) as pool:
            for n in range(3):
                pool.send(message(n)).result(timeout=15)
            stats = pool.stats()
        assert len(server.messages) == 3 and len(mails(server)) == 5
    assert built == []
    assert (stats.sent, stats.failed, stats.retried, stats.deferred) == (3, 0, 1, 1)
    assert set(stats.latency) == {"p50", "p90", "max"}
    # At INFO the deliveries are built, for their log lines (a message started is DEBUG's).
    caplog.set_level(logging.INFO, logger="rawsmtp")
    with SMTPTestServer() as server, pool_factory(**options(server)) as pool:
        pool.send(message(9)).result(timeout=10)
    assert built == ["_delivered"]
    assert any("<m9@x> delivered to 1 of 1" in line for line in caplog.messages)


def test_stats_while_messages_are_in_flight(pool_factory: Callable[..., Any]) -> None:
    slow = [Fault(on="DATA_END", delay=0.5)]
    with (
        SMTPTestServer(faults=slow) as server,
        pool_factory(**options(server, max_connections=1)) as pool,
    ):
        futures = [pool.send(message(n)) for n in range(6)]
        assert wait_until(lambda: pool.stats().connections == {"busy": 1})
        stats = pool.stats()
        assert stats.in_flight >= 1 and stats.queued + stats.in_flight == 6
        for future in futures:
            future.result(timeout=15)
        assert wait_until(lambda: pool.stats().connections == {"ready": 1})
        assert pool.stats().sent == 6


def test_a_failing_callback_is_logged_and_the_pool_goes_on(
    pool_factory: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[PoolEvent] = []

    def broken(event: PoolEvent) -> None:
        seen.append(event)
        raise RuntimeError("observer bug")

    caplog.set_level(logging.ERROR, logger="rawsmtp")
    with SMTPTestServer() as server:
        with pool_factory(**options(server, on_event=broken)) as pool:
            for future in [pool.send(message(n)) for n in range(3)]:
                future.result(timeout=10)
        assert len(server.messages) == 3
    failures = [r for r in caplog.records if "on_event callback failed" in r.getMessage()]
    assert len(failures) == len(seen) >= 3 + 2 * server.connections
    assert all(r.exc_info and r.exc_info[0] is RuntimeError for r in failures)


def test_the_selectors_pool_calls_on_event_from_its_own_thread() -> None:
    """Off the loop: a slow observer delays no message."""
    recorder = Recorder()

    def slow(event: PoolEvent) -> None:
        time.sleep(0.05)
        recorder(event)

    with SMTPTestServer() as server, rawsmtp.SMTPPool(**options(server, on_event=slow)) as pool:
        began = time.monotonic()
        for future in [pool.send(message(n)) for n in range(10)]:
            future.result(timeout=10)
        sent_in = time.monotonic() - began
    # 10 starts + 10 deliveries + a connection: over 1 s in the observer, all seen by close()
    assert len(recorder.events) == 20 + 2 * server.connections
    assert sent_in < 0.9 and recorder.threads == {"rawsmtp-events"}
    kinds = [type(e) for e in recorder.events]
    assert kinds[0] is ConnectionOpened and kinds[-1] is ConnectionClosed


def test_on_event_must_be_callable() -> None:
    with pytest.raises(rawsmtp.SMTPConfigError) as info:
        rawsmtp.SMTPPool(on_event="print")  # type: ignore[typeddict-item]
    assert info.value.option == "on_event"
