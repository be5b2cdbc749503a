"""The scheduler's connection-limiter hook and the limiter options (pure, fake clock)."""

from __future__ import annotations

import pytest

from rawsmtp import SMTPConfigError
from rawsmtp.config._options import make_options
from rawsmtp.pool._limits import ConnectionLimiter, RateLimiter
from rawsmtp.pool._scheduler import Job, Scheduler, SlidingWindow


class Cap:
    """An in-process ConnectionLimiter with ``free`` leases; tokens are counted."""

    def __init__(self, free: int, retry_at: float | None = None) -> None:
        self.free, self.retry_at = free, retry_at
        self.issued = 0
        self.held: set[object] = set()

    def acquire(self, now: float) -> object | None:
        if self.free <= 0:
            return None
        self.free -= 1
        self.issued += 1
        token = ("lease", self.issued)
        self.held.add(token)
        return token

    def release(self, token: object) -> None:
        self.held.remove(token)
        self.free += 1

    def next_free(self, now: float) -> float | None:
        return self.retry_at


def scheduler_with(cap: Cap, **options: object) -> Scheduler[Job]:
    scheduler: Scheduler[Job] = Scheduler(connection_limiter=cap, **options)  # type: ignore[arg-type]
    for _ in range(10):
        scheduler.submit(Job())
    return scheduler


def test_connections_open_only_on_leases_and_give_them_back() -> None:
    cap = Cap(free=2)
    scheduler = scheduler_with(cap, max_connections=5)
    assert scheduler.decide(0.0).open == 2
    slots = [scheduler.slot_opened(0.0) for _ in range(2)]
    assert {slot.lease for slot in slots} == cap.held
    assert scheduler.decide(0.1).open == 0  # no lease left
    scheduler.slot_closed(slots[0], 0.2)
    assert cap.held == {slots[1].lease} and cap.free == 1
    scheduler.slot_failed(slots[1], 0.3)
    assert cap.held == set() and cap.free == 2


def test_the_lower_cap_holds() -> None:
    assert scheduler_with(Cap(free=9), max_connections=3).decide(0.0).open == 3
    cap = Cap(free=9)
    scheduler_with(cap, max_connections=3).decide(0.0)
    assert cap.issued == 3  # no lease is taken beyond what opens


def test_refused_lease_sets_the_next_deadline() -> None:
    scheduler = scheduler_with(Cap(free=0, retry_at=0.25))
    assert scheduler.decide(0.0).open == 0
    assert scheduler.next_deadline(0.0) == 0.25
    assert scheduler_with(Cap(free=0)).next_deadline(0.0) is None  # only a release frees one


def test_limiter_options_are_checked() -> None:
    cap = Cap(free=1)
    window = SlidingWindow(1.0)
    assert isinstance(cap, ConnectionLimiter) and isinstance(window, RateLimiter)
    options = make_options(rate_limit=5, rate_limiter=window, connection_limiter=cap)
    assert options.rate_limiter is window and options.connection_limiter is cap
    assert make_options(rateLimit=5, rateLimiter=window).rate_limiter is window
    with pytest.raises(SMTPConfigError) as info:
        make_options(connection_limiter=object())
    assert info.value.option == "connection_limiter"
    with pytest.raises(SMTPConfigError) as info:
        make_options(rate_limiter=cap, rate_limit=5)
    assert info.value.option == "rate_limiter"
    with pytest.raises(SMTPConfigError, match="needs rate_limit") as info:
        make_options(rate_limiter=window)
    assert info.value.option == "rate_limiter"
