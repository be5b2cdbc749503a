"""rawsmtp.contrib.prometheus: counters, histogram and gauges from synthetic events and stats."""

from __future__ import annotations

from types import MappingProxyType

from helpers.pool_events import a_session
from prometheus_client import CollectorRegistry, generate_latest

from rawsmtp.contrib import chain
from rawsmtp.contrib.prometheus import PrometheusObserver
from rawsmtp.pool._observe import PoolStats


class FakePool:
    def __init__(self, stats: PoolStats) -> None:
        self.value = stats

    def stats(self) -> PoolStats:
        return self.value


def test_events_become_counters_and_a_latency_histogram() -> None:
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    for event in a_session():
        observer(event)
    sample = registry.get_sample_value
    assert sample("rawsmtp_messages_sent_total") == 1
    assert (
        sample("rawsmtp_messages_failed_total", {"error": "SMTPResponseError", "code": "552"}) == 1
    )
    assert sample("rawsmtp_messages_retried_total", {"charged": "true"}) == 1
    assert sample("rawsmtp_messages_retried_total", {"charged": "false"}) == 1
    assert sample("rawsmtp_throttled_total") == 1
    assert sample("rawsmtp_connections_opened_total", {"tls": "true"}) == 1
    assert sample("rawsmtp_connections_closed_total", {"error": "none"}) == 1
    assert sample("rawsmtp_delivery_seconds_count") == 1
    assert sample("rawsmtp_delivery_seconds_sum") == 1.9
    assert sample("rawsmtp_delivery_seconds_bucket", {"le": "1.0"}) == 0
    assert sample("rawsmtp_delivery_seconds_bucket", {"le": "2.5"}) == 1


def test_no_label_carries_an_address_or_a_message_id() -> None:
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    for event in a_session():
        observer(event)
    text = generate_latest(registry).decode()
    assert "@" not in text and "example.com" not in text


def test_tracked_pools_are_read_at_each_scrape() -> None:
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    pool = FakePool(
        PoolStats(
            queued=7,
            in_flight=2,
            connections=MappingProxyType({"ready": 1, "busy": 2}),
            max_connections=3,
            rate_limit=None,
            latency=MappingProxyType({"p50": 0.2, "max": 1.5}),
        )
    )
    observer.track(pool, "bulk")
    sample = registry.get_sample_value
    assert sample("rawsmtp_queued", {"pool": "bulk"}) == 7
    assert sample("rawsmtp_in_flight", {"pool": "bulk"}) == 2
    assert sample("rawsmtp_connections", {"pool": "bulk", "state": "busy"}) == 2
    assert sample("rawsmtp_max_connections", {"pool": "bulk"}) == 3
    assert sample("rawsmtp_rate_limit", {"pool": "bulk"}) is None  # no limit: no sample
    assert sample("rawsmtp_backoff_seconds", {"pool": "bulk"}) == 0
    assert sample("rawsmtp_latency_seconds", {"pool": "bulk", "quantile": "max"}) == 1.5
    pool.value = PoolStats(queued=0, in_flight=0, rate_limit=5)
    assert sample("rawsmtp_queued", {"pool": "bulk"}) == 0
    assert sample("rawsmtp_rate_limit", {"pool": "bulk"}) == 5


def test_chain_hands_each_event_to_every_observer_even_when_one_raises() -> None:
    seen: list[object] = []

    def broken(event: object) -> None:
        raise RuntimeError("observer bug")

    registry = CollectorRegistry()
    metrics = PrometheusObserver(registry)
    observe = chain(broken, metrics, seen.append)
    events = a_session()
    errors = 0
    for event in events:
        try:
            observe(event)
        except RuntimeError:
            errors += 1
    assert errors == len(events)
    assert seen == events
    assert registry.get_sample_value("rawsmtp_messages_sent_total") == 1
