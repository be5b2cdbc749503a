"""The adapters against a real pool: what the observers saw vs. what the server received."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import rawsmtp
from rawsmtp.contrib import chain
from rawsmtp.contrib.prometheus import PrometheusObserver
from rawsmtp.pool._observe import (
    ConnectionClosed,
    ConnectionOpened,
    MessageDelivered,
    MessageFailed,
    MessageStarted,
    PoolEvent,
)
from rawsmtp.testing import Fault, SMTPTestServer


class Recorder:
    def __init__(self) -> None:
        self.events: list[PoolEvent] = []
        self.lock = threading.Lock()

    def __call__(self, event: PoolEvent) -> None:
        with self.lock:
            self.events.append(event)

    def of(self, kind: type) -> list[Any]:
        with self.lock:
            return [event for event in self.events if isinstance(event, kind)]

    def wait_for(self, kind: type, count: int, timeout: float = 10.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while len(self.of(kind)) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        found = self.of(kind)
        assert len(found) >= count, f"{len(found)} of {count} {kind.__name__} events"
        return found


def test_events_and_stats_match_what_the_server_received(smtp_server_factory: Any) -> None:
    server: SMTPTestServer = smtp_server_factory(
        faults=[Fault(on="RCPT", match="refused@", reply="550 5.1.1 No such user")]
    )
    recorder = Recorder()
    registry = CollectorRegistry()
    metrics = PrometheusObserver(registry)
    pool = rawsmtp.SMTPPool(
        host=server.host,
        port=server.port,
        ignore_tls=True,
        max_connections=2,
        on_event=chain(recorder, metrics),
    )
    with pool:
        metrics.track(pool)
        futures = [
            pool.send(
                f"From: a@example.com\r\nTo: r{n}@example.com\r\nMessage-ID: <m{n}@x>\r\n\r\nhi\r\n"
            )
            for n in range(20)
        ]
        futures.append(pool.send(b"From: a@example.com\r\nTo: refused@example.com\r\n\r\nno\r\n"))
        for future in futures[:20]:
            future.result(timeout=30)
        with pytest.raises(rawsmtp.SMTPRecipientsRefusedError):
            futures[20].result(timeout=30)
        delivered = recorder.wait_for(MessageDelivered, 20)
        failed = recorder.wait_for(MessageFailed, 1)
        stats = pool.stats()
    recorder.wait_for(ConnectionClosed, server.connections)
    assert len(server.messages) == 20
    assert sorted(e.message_id for e in delivered) == sorted(f"<m{n}@x>" for n in range(20))
    assert {e.result.accepted for e in delivered} == {(m.rcpt_to[0],) for m in server.messages}
    assert isinstance(failed[0].error, rawsmtp.SMTPRecipientsRefusedError)
    assert len(recorder.of(ConnectionOpened)) == server.connections
    started = recorder.of(MessageStarted)
    assert len(started) == 21
    for event in delivered:  # every delivery was started first, on the same connection
        start = next(s for s in started if s.message_id == event.message_id)
        assert start.connection_id == event.connection_id and start.time <= event.time
    assert (stats.sent, stats.failed) == (20, 1)
    assert registry.get_sample_value("rawsmtp_messages_sent_total") == 20
    assert registry.get_sample_value("rawsmtp_delivery_seconds_count") == 20
