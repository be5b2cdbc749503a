"""OpenTelemetry metrics and a span per delivery attempt, with ``opentelemetry-api``.

>>> telemetry = OpenTelemetryObserver()        # the global meter and tracer providers
>>> pool = rawsmtp.SMTPPool(..., on_event=telemetry)  # doctest: +SKIP
>>> telemetry.track(pool)                       # observable gauges from pool.stats()

Metrics: counters ``rawsmtp.messages.sent``, ``rawsmtp.messages.failed`` (attributes
``error.type``, ``smtp.reply.code``), ``rawsmtp.messages.retried`` (``rawsmtp.retry.charged``),
``rawsmtp.throttled``, ``rawsmtp.connections.opened`` / ``.closed``; the histogram
``rawsmtp.delivery.duration`` (seconds, ``send()`` to the final reply); gauges
``rawsmtp.queued``, ``rawsmtp.in_flight``, ``rawsmtp.connections`` (``rawsmtp.connection.state``)
per tracked pool (``rawsmtp.pool``). Metric attributes never hold addresses or message ids.

Spans: ``rawsmtp.send`` (kind CLIENT) runs from ``MessageStarted`` to the attempt's end --
``MessageDelivered`` (status OK), ``MessageFailed`` or ``MessageRetried`` (status ERROR) --
with ``rawsmtp.connection.id``, ``rawsmtp.recipients``, ``rawsmtp.attempt``,
``rawsmtp.message.id`` and, at the end, ``smtp.reply.code``. Event times are monotonic; spans
are stamped on the wall clock at the same moments.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider

from .. import __version__
from ..pool._observe import (
    ConnectionClosed,
    ConnectionOpened,
    MessageDelivered,
    MessageFailed,
    MessageRetried,
    MessageStarted,
    Throttled,
)
from ._adapters import EventAdapter, StatsSource, error_labels, error_type

__all__ = ["OpenTelemetryObserver"]

_SpanKey = tuple[str | None, int | None]  # (message id, connection id)


def _wall_ns(monotonic: float) -> int:
    """The wall-clock time, in ns, of a ``time.monotonic()`` instant."""
    return time.time_ns() - int((time.monotonic() - monotonic) * 1e9)


def _reply_code(response: str) -> int | None:
    return int(response[:3]) if response[:3].isdigit() else None


class OpenTelemetryObserver(EventAdapter):
    """An ``on_event=`` callable that records metrics and spans (see the module)."""

    def __init__(
        self,
        *,
        meter_provider: MeterProvider | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        meter = metrics.get_meter("rawsmtp", __version__, meter_provider=meter_provider)
        self._tracer = trace.get_tracer("rawsmtp", __version__, tracer_provider=tracer_provider)
        self.sent = meter.create_counter("rawsmtp.messages.sent", "{message}", "Messages delivered")
        self.failed = meter.create_counter(
            "rawsmtp.messages.failed", "{message}", "Messages failed"
        )
        self.retried = meter.create_counter("rawsmtp.messages.retried", "{message}", "Retries")
        self.throttled = meter.create_counter("rawsmtp.throttled", "{reply}", "Throttling replies")
        self.opened = meter.create_counter("rawsmtp.connections.opened", "{connection}")
        self.closed = meter.create_counter("rawsmtp.connections.closed", "{connection}")
        self.duration = meter.create_histogram(
            "rawsmtp.delivery.duration", "s", "Seconds from send() to the final reply"
        )
        self._pools: dict[str, StatsSource] = {}
        for name, read in _GAUGES.items():
            meter.create_observable_gauge(name, [self._observer(read)])
        self._spans: dict[_SpanKey, deque[Span]] = {}
        self._lock = threading.Lock()

    def track(self, pool: StatsSource, name: str = "default") -> None:
        """Report ``pool.stats()`` through the observable gauges, as ``rawsmtp.pool=name``."""
        with self._lock:
            self._pools[name] = pool

    # -- spans ------------------------------------------------------------------------------------

    def on_message_started(self, event: MessageStarted) -> None:
        attributes: dict[str, Any] = {
            "rawsmtp.connection.id": event.connection_id,
            "rawsmtp.recipients": event.recipients,
            "rawsmtp.attempt": event.attempt,
        }
        if event.message_id is not None:
            attributes["rawsmtp.message.id"] = event.message_id
        span = self._tracer.start_span(
            "rawsmtp.send",
            kind=SpanKind.CLIENT,
            attributes=attributes,
            start_time=_wall_ns(event.time),
        )
        with self._lock:
            self._spans.setdefault((event.message_id, event.connection_id), deque()).append(span)

    def _take_span(self, message_id: str | None, connection_id: int | None) -> Span | None:
        """The oldest open span of this message on this connection (pipelined ones end in order)."""
        key = (message_id, connection_id)
        with self._lock:
            spans = self._spans.get(key)
            if not spans:
                return None
            span = spans.popleft()
            if not spans:
                del self._spans[key]
            return span

    def on_message_delivered(self, event: MessageDelivered) -> None:
        self.sent.add(1)
        self.duration.record(event.elapsed)
        span = self._take_span(event.message_id, event.connection_id)
        if span is not None:
            result = event.result
            code = _reply_code(result.response)
            if code is not None:
                span.set_attribute("smtp.reply.code", code)
            span.set_attribute("rawsmtp.recipients.accepted", len(result.accepted))
            span.set_attribute("rawsmtp.recipients.rejected", len(result.rejected))
            span.set_status(Status(StatusCode.OK))
            span.end(end_time=_wall_ns(event.time))

    def on_message_failed(self, event: MessageFailed) -> None:
        kind, code = error_labels(event.error)
        self.failed.add(1, {"error.type": kind, "smtp.reply.code": code})
        self._end_in_error(event.message_id, event.connection_id, event.error, event.time)

    def on_message_retried(self, event: MessageRetried) -> None:
        self.retried.add(1, {"rawsmtp.retry.charged": event.charged})
        self._end_in_error(
            event.message_id,
            event.connection_id,
            event.error,
            event.time,
            {"rawsmtp.retry.delay": event.delay},
        )

    def _end_in_error(
        self,
        message_id: str | None,
        connection_id: int | None,
        error: Any,
        at: float,
        attributes: dict[str, Any] | None = None,
    ) -> None:
        span = self._take_span(message_id, connection_id)
        if span is None:
            return
        code = getattr(error, "code", None)
        if code is not None:
            span.set_attribute("smtp.reply.code", code)
        span.set_attributes(attributes or {})
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        span.end(end_time=_wall_ns(at))

    def on_connection_opened(self, event: ConnectionOpened) -> None:
        self.opened.add(1, {"rawsmtp.tls": event.tls})

    def on_connection_closed(self, event: ConnectionClosed) -> None:
        self.closed.add(1, {"error.type": error_type(event.error)})

    def on_throttled(self, event: Throttled) -> None:
        self.throttled.add(1)

    # -- gauges -----------------------------------------------------------------------------------

    def _observer(
        self, read: Callable[[Any], Iterable[tuple[dict[str, str], float]]]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            with self._lock:
                pools = list(self._pools.items())
            return [
                Observation(value, {"rawsmtp.pool": name, **attributes})
                for name, pool in pools
                for attributes, value in read(pool.stats())
            ]

        return observe


_GAUGES: dict[str, Callable[[Any], Iterable[tuple[dict[str, str], float]]]] = {
    "rawsmtp.queued": lambda stats: [({}, stats.queued)],
    "rawsmtp.in_flight": lambda stats: [({}, stats.in_flight)],
    "rawsmtp.connections": lambda stats: [
        ({"rawsmtp.connection.state": state}, count) for state, count in stats.connections.items()
    ],
    "rawsmtp.max_connections": lambda stats: [({}, stats.max_connections)],
}
