"""rawsmtp.contrib.otel: metrics and spans from synthetic events, read with the SDK's in-memory
reader and exporter."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest
from helpers.pool_events import a_session
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from rawsmtp.contrib.otel import OpenTelemetryObserver
from rawsmtp.pool._observe import PoolStats


class Telemetry:
    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.exporter = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.observer = OpenTelemetryObserver(
            meter_provider=MeterProvider(metric_readers=[self.reader]),
            tracer_provider=tracer_provider,
        )

    def points(self) -> dict[str, list[Any]]:
        data = self.reader.get_metrics_data()
        found: dict[str, list[Any]] = {}
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found[metric.name] = list(metric.data.data_points)
        return found


@pytest.fixture
def telemetry() -> Telemetry:
    result = Telemetry()
    for event in a_session():
        result.observer(event)
    return result


def test_counters_and_the_duration_histogram(telemetry: Telemetry) -> None:
    points = telemetry.points()
    assert [p.value for p in points["rawsmtp.messages.sent"]] == [1]
    [failed] = points["rawsmtp.messages.failed"]
    assert (failed.value, dict(failed.attributes)) == (
        1,
        {"error.type": "SMTPResponseError", "smtp.reply.code": "552"},
    )
    retried = {
        p.attributes["rawsmtp.retry.charged"]: p.value for p in points["rawsmtp.messages.retried"]
    }
    assert retried == {True: 1, False: 1}
    assert [p.value for p in points["rawsmtp.throttled"]] == [1]
    [duration] = points["rawsmtp.delivery.duration"]
    assert (duration.count, duration.sum) == (1, 1.9)
    for name, data_points in points.items():  # no addresses, no message ids in attributes
        for point in data_points:
            assert "@" not in repr(dict(point.attributes)), name


def test_a_span_per_attempt_with_status_and_reply_code(telemetry: Telemetry) -> None:
    spans = telemetry.exporter.get_finished_spans()
    assert [s.name for s in spans] == ["rawsmtp.send"] * 3
    retried, delivered, failed = spans
    assert all(s.kind is SpanKind.CLIENT for s in spans)
    assert retried.attributes["rawsmtp.attempt"] == 1
    assert retried.status.status_code is StatusCode.ERROR
    assert retried.attributes["rawsmtp.retry.delay"] == 1.0
    assert retried.events[0].name == "exception"
    assert delivered.attributes["rawsmtp.attempt"] == 2
    assert delivered.attributes["rawsmtp.message.id"] == "<a@x>"
    assert delivered.attributes["rawsmtp.connection.id"] == 1
    assert delivered.attributes["rawsmtp.recipients"] == 2
    assert delivered.attributes["smtp.reply.code"] == 250
    assert delivered.attributes["rawsmtp.recipients.rejected"] == 1
    assert delivered.status.status_code is StatusCode.OK
    assert failed.attributes["smtp.reply.code"] == 552
    assert "rawsmtp.message.id" not in failed.attributes  # the message had no Message-ID
    assert failed.status.status_code is StatusCode.ERROR
    # Stamped at the events' moments: the delivered attempt took 0.4 s (1.5 -> 1.9).
    assert delivered.end_time - delivered.start_time == pytest.approx(0.4e9, abs=1e6)


def test_pipelined_messages_without_ids_end_in_order() -> None:
    from helpers.pool_events import delivered_result

    from rawsmtp.pool._observe import MessageDelivered, MessageStarted

    telemetry = Telemetry()
    for n in range(3):
        telemetry.observer(
            MessageStarted(message_id=None, connection_id=4, recipients=n + 1, attempt=1, time=n)
        )
    for n in range(3):
        telemetry.observer(
            MessageDelivered(
                message_id=None,
                connection_id=4,
                result=delivered_result(None),
                elapsed=1,
                time=5 + n,
            )
        )
    spans = telemetry.exporter.get_finished_spans()
    assert [s.attributes["rawsmtp.recipients"] for s in spans] == [1, 2, 3]


def test_tracked_pool_stats_become_gauges() -> None:
    telemetry = Telemetry()

    class Pool:
        def stats(self) -> PoolStats:
            return PoolStats(
                queued=4, in_flight=1, connections=MappingProxyType({"busy": 1}), max_connections=5
            )

    telemetry.observer.track(Pool(), "main")
    points = telemetry.points()
    assert [(dict(p.attributes), p.value) for p in points["rawsmtp.queued"]] == [
        ({"rawsmtp.pool": "main"}, 4)
    ]
    assert [p.value for p in points["rawsmtp.connections"]] == [1]
    assert points["rawsmtp.connections"][0].attributes["rawsmtp.connection.state"] == "busy"
