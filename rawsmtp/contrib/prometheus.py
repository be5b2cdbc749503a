"""Prometheus metrics from a pool's events and ``stats()``, with ``prometheus_client``.

>>> metrics = PrometheusObserver()          # registers in prometheus_client.REGISTRY
>>> pool = rawsmtp.SMTPPool(..., on_event=metrics)  # doctest: +SKIP
>>> metrics.track(pool)                     # gauges read pool.stats() at each scrape

Counters (``_total``): ``rawsmtp_messages_sent``, ``rawsmtp_messages_failed`` (labels ``error``:
the exception class, ``code``: the reply code or ``none``), ``rawsmtp_messages_retried``
(``charged``), ``rawsmtp_throttled``, ``rawsmtp_connections_opened`` (``tls``) and
``rawsmtp_connections_closed`` (``error``); the histogram ``rawsmtp_delivery_seconds`` (from
``send()`` to the final reply); gauges per tracked pool (label ``pool``) from ``PoolStats``.
Labels never hold addresses or message ids: their values are few and fixed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..pool._observe import (
    ConnectionClosed,
    ConnectionOpened,
    MessageDelivered,
    MessageFailed,
    MessageRetried,
    PoolStats,
    Throttled,
)
from ._adapters import EventAdapter, StatsSource, error_labels, error_type

__all__ = ["PrometheusObserver"]

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class PrometheusObserver(EventAdapter):
    """An ``on_event=`` callable that keeps Prometheus metrics (see the module)."""

    def __init__(
        self, registry: CollectorRegistry | None = REGISTRY, *, namespace: str = "rawsmtp"
    ) -> None:
        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(name, doc, labels, namespace=namespace, registry=registry)

        self.sent = counter("messages_sent", "Messages at least one recipient accepted")
        self.failed = counter("messages_failed", "Messages that failed for good", "error", "code")
        self.retried = counter("messages_retried", "Messages queued again", "charged")
        self.throttled = counter("throttled", "Replies that made the pool slow down")
        self.opened = counter("connections_opened", "Connections made ready", "tls")
        self.closed = counter("connections_closed", "Connections ended", "error")
        self.latency = Histogram(
            "delivery_seconds",
            "Seconds from send() to the final reply, for delivered messages",
            namespace=namespace,
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )
        self._stats = _StatsCollector(namespace)
        if registry is not None:
            registry.register(self._stats)

    def track(self, pool: StatsSource, name: str = "default") -> None:
        """Export ``pool.stats()`` as gauges labelled ``pool=name``, read at each scrape."""
        self._stats.add(name, pool)

    def on_message_delivered(self, event: MessageDelivered) -> None:
        self.sent.inc()
        self.latency.observe(event.elapsed)

    def on_message_failed(self, event: MessageFailed) -> None:
        self.failed.labels(*error_labels(event.error)).inc()

    def on_message_retried(self, event: MessageRetried) -> None:
        self.retried.labels(str(event.charged).lower()).inc()

    def on_connection_opened(self, event: ConnectionOpened) -> None:
        self.opened.labels(str(event.tls).lower()).inc()

    def on_connection_closed(self, event: ConnectionClosed) -> None:
        self.closed.labels(error_type(event.error)).inc()

    def on_throttled(self, event: Throttled) -> None:
        self.throttled.inc()


class _StatsCollector(Collector):
    """Gauges read from each tracked pool's ``stats()`` when Prometheus scrapes."""

    def __init__(self, namespace: str) -> None:
        self._prefix = namespace + "_"
        self._pools: dict[str, StatsSource] = {}
        self._lock = threading.Lock()

    def add(self, name: str, pool: StatsSource) -> None:
        with self._lock:
            self._pools[name] = pool

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            pools = list(self._pools.items())
        families = {
            key: GaugeMetricFamily(self._prefix + key, doc, labels=["pool", *extra])
            for key, (doc, extra) in _GAUGES.items()
        }
        now = time.monotonic()
        for name, pool in pools:
            for key, labels, value in _gauge_values(pool.stats(), now):
                families[key].add_metric([name, *labels], value)
        yield from families.values()


_GAUGES: dict[str, tuple[str, list[str]]] = {
    "queued": ("Messages queued, not yet started", []),
    "in_flight": ("Messages on a connection now", []),
    "connections": ("Connections by state", ["state"]),
    "max_connections": ("The effective concurrency (lowered while throttled)", []),
    "rate_limit": ("The effective rate limit (absent: none)", []),
    "backoff_seconds": ("Seconds until a connection may open again", []),
    "latency_seconds": ("Recent send()-to-final-reply seconds", ["quantile"]),
}


def _gauge_values(stats: PoolStats, now: float) -> Iterator[tuple[str, list[str], float]]:
    yield "queued", [], stats.queued
    yield "in_flight", [], stats.in_flight
    for state, count in stats.connections.items():
        yield "connections", [state], count
    yield "max_connections", [], stats.max_connections
    if stats.rate_limit is not None:
        yield "rate_limit", [], stats.rate_limit
    yield "backoff_seconds", [], max(0.0, (stats.backoff_until or now) - now)
    for quantile, seconds in stats.latency.items():
        yield "latency_seconds", [quantile], seconds
