"""rawsmtp.contrib.redis: the shared rate limit and connection cap, against a real redis-server
on loopback and against fakeredis's Lua (both run the same scripts)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from helpers.redis_server import redis_url

from rawsmtp import SMTPPool
from rawsmtp.pool._limits import ConnectionLimiter, RateLimiter
from rawsmtp.testing import SMTPTestServer

redis = pytest.importorskip("redis")
contrib = pytest.importorskip("rawsmtp.contrib.redis")
RedisRateLimiter = contrib.RedisRateLimiter
RedisConnectionSemaphore = contrib.RedisConnectionSemaphore


@pytest.fixture(params=["redis-server", "fakeredis"])
def client(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "fakeredis":
        fakeredis = pytest.importorskip("fakeredis")
        pytest.importorskip("lupa")
        yield fakeredis.FakeRedis()
        return
    real = redis.Redis.from_url(redis_url(0))
    yield real
    real.close()


def key() -> str:
    return f"rawsmtp:test:{uuid.uuid4().hex}"


def wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def worst_window(times: list[float], delta: float) -> int:
    times = sorted(times)
    worst, first = 0, 0
    for last, at in enumerate(times):
        while times[first] <= at - delta:
            first += 1
        worst = max(worst, last - first + 1)
    return worst


def test_the_limiters_implement_the_protocols(client: Any) -> None:
    assert isinstance(RedisRateLimiter(client, key()), RateLimiter)
    assert isinstance(RedisConnectionSemaphore(client, key(), limit=1), ConnectionLimiter)


def test_shared_rate_is_exact_across_clients(client: Any) -> None:
    limit, delta, shared = 20, 0.25, key()
    limiters = [RedisRateLimiter(client, shared, delta=delta) for _ in range(4)]
    starts: list[float] = []
    stop = time.monotonic() + 1.2

    def worker(limiter: Any) -> None:
        while (now := time.monotonic()) < stop:
            for _ in range(limiter.acquire(now, 3, limit)):
                limiter.confirm(time.monotonic())
                starts.append(time.monotonic())
            time.sleep(0.001)

    threads = [threading.Thread(target=worker, args=(lim,)) for lim in limiters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    for limiter in limiters:
        limiter.close()
    assert worst_window(starts, delta) <= limit
    assert len(starts) >= 0.6 * limit * 1.2 / delta  # it does grant, near the limit
    assert sum(limiter.late for limiter in limiters) == 0
    # Saturated and contended: refused requests count too.
    assert sum(lim.round_trips for lim in limiters) <= 4 * len(starts)


def test_unused_starts_are_given_back_when_the_lease_ends(client: Any) -> None:
    shared = key()
    first = RedisRateLimiter(client, shared, lease=0.3, max_lease=10)
    first.acquire(time.monotonic(), 10, 10)
    wait_for(lambda: first.acquire(time.monotonic(), 2, 10) == 2)
    first.confirm(time.monotonic())
    first.confirm(time.monotonic())
    assert client.zcard(shared) == 10
    wait_for(lambda: client.zcard(shared) == 2)  # the 8 unspent entries went back
    second = RedisRateLimiter(client, shared, max_lease=10)
    second.acquire(time.monotonic(), 10, 10)
    wait_for(lambda: second.acquire(time.monotonic(), 10, 10) > 0)
    assert client.zcard(shared) == 10
    for limiter in (first, second):
        limiter.close()


def test_a_full_window_says_when_to_look_again(client: Any) -> None:
    shared = key()
    limiter = RedisRateLimiter(client, shared, delta=0.5, max_lease=5)
    limiter.acquire(time.monotonic(), 5, 5)
    wait_for(lambda: limiter.acquire(time.monotonic(), 5, 5) == 5)
    for _ in range(5):
        limiter.confirm(time.monotonic())
    granted_at = time.monotonic()
    assert limiter.acquire(granted_at, 1, 5) == 0
    wait_for(lambda: limiter.full_until > granted_at)
    assert granted_at + 0.3 < limiter.next_free(time.monotonic(), 5) < granted_at + 0.7
    limiter.close()


def test_connection_cap_is_shared_and_expires_with_a_crashed_holder(client: Any) -> None:
    shared = key()
    semaphores = [RedisConnectionSemaphore(client, shared, limit=3, ttl=0.6) for _ in range(2)]
    tokens: list[tuple[Any, object]] = []
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        for semaphore in semaphores:
            token = semaphore.acquire(time.monotonic())
            if token is not None:
                tokens.append((semaphore, token))
        time.sleep(0.005)
    assert len(tokens) == 3 and client.zcard(shared) == 3  # refreshed past its ttl, never more
    owner, token = tokens.pop()
    owner.release(token)
    wait_for(lambda: client.zcard(shared) == 2)
    # A crash: the holder's process stops refreshing without giving anything back.
    crashed = tokens[0][0]
    crashed._give_up = lambda: None
    crashed.closing = True  # its thread stops at its next round
    with crashed.lock:
        crashed.lock.notify()
    survivor = next(s for s in semaphores if s is not crashed)
    wait_for(lambda: survivor.acquire(time.monotonic()) is not None, timeout=3.0)
    assert sum(s.lost for s in semaphores if s is not crashed) == 0
    survivor.close()


def test_redis_down_fails_closed_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "rawsmtp.contrib.redis")
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    dead = redis.Redis(port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    limiter = RedisRateLimiter(dead, key())
    semaphore = RedisConnectionSemaphore(dead, key(), limit=2)
    deadline = time.monotonic() + 0.8
    while time.monotonic() < deadline:
        now = time.monotonic()
        assert limiter.acquire(now, 5, 10) == 0
        assert semaphore.acquire(now) is None
        time.sleep(0.01)
    assert limiter.round_trips >= 2 and limiter.down  # retried, with back-off
    assert limiter.next_free(time.monotonic(), 10) > time.monotonic()
    warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(warnings) == 2  # one per limiter for the whole outage
    limiter.close()
    semaphore.close()


def test_a_pool_sends_through_the_shared_limiters(client: Any) -> None:
    rate = RedisRateLimiter(client, key(), max_lease=5)
    cap = RedisConnectionSemaphore(client, key(), limit=2)
    with SMTPTestServer() as server:
        pool = SMTPPool(
            host=server.host,
            port=server.port,
            ignore_tls=True,
            max_connections=4,
            rate_limit=50,
            rate_limiter=rate,
            connection_limiter=cap,
        )
        futures = [
            pool.send(b"Subject: x\r\n\r\nhi\r\n", {"from": "a@x.test", "to": ["b@y.test"]})
            for _ in range(30)
        ]
        for future in futures:
            future.result(timeout=20)
        pool.close()
        assert len(server.messages) == 30
        assert server.peak_connections <= 2, (server.connections, server.peak_connections)
    assert rate.confirmed == 30 and rate.late == 0 and 0 < rate.round_trips <= 30
    assert cap.held == 0
    rate.close()
    cap.close()
