"""The pool's scheduling rules, driven with a fake clock (no sockets, no threads)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from rawsmtp.pool._scheduler import Job, Scheduler, SlidingWindow, Slot


def run_pool(
    scheduler: Scheduler[Job],
    arrivals: list[float],
    *,
    service_time: float,
    horizon: float,
    step: float = 0.01,
) -> list[float]:
    """Simulate connections that become ready at once and finish each job after service_time.

    Returns the start time of every job.
    """
    pending_arrivals = sorted(arrivals)
    finishing: list[tuple[float, Slot]] = []
    starts: list[float] = []
    now = 0.0
    while now <= horizon:
        while pending_arrivals and pending_arrivals[0] <= now:
            scheduler.submit(Job())
            pending_arrivals.pop(0)
        for done in [f for f in finishing if f[0] <= now]:
            finishing.remove(done)
            scheduler.job_finished(done[1], now)
        # Connections open instantly here, so decide again once they are ready.
        for _ in range(2):
            decisions = scheduler.decide(now)
            for _ in range(decisions.open):
                scheduler.slot_ready(scheduler.slot_opened(now), now, window=2)
            for slot, job in decisions.assign:
                scheduler.job_started(job, now)  # MAIL written at once here
                starts.append(now)
                finishing.append((now + service_time, slot))
        now = round(now + step, 6)
    return starts


@settings(max_examples=60, deadline=None)
@given(
    rate_limit=st.integers(1, 5),
    rate_delta=st.sampled_from([0.05, 0.1, 0.25]),
    connections=st.integers(1, 6),
    arrivals=st.lists(st.floats(0, 1.0), min_size=1, max_size=40),
    service_time=st.sampled_from([0.0, 0.01, 0.05]),
)
def test_rate_limit_is_exact_in_every_window(
    rate_limit: int,
    rate_delta: float,
    connections: int,
    arrivals: list[float],
    service_time: float,
) -> None:
    scheduler: Scheduler[Job] = Scheduler(
        max_connections=connections, rate_limit=rate_limit, rate_delta=rate_delta
    )
    horizon = 1.5 + len(arrivals) / rate_limit * (rate_delta + 0.02)
    starts = run_pool(scheduler, arrivals, service_time=service_time, horizon=horizon)
    for start in starts:
        in_window = [s for s in starts if start <= s < start + rate_delta - 1e-9]
        assert len(in_window) <= rate_limit
    # Nothing is starved: everything that arrived was started within the horizon.
    assert len(starts) == len(arrivals)


def test_burst_is_not_let_through_by_many_connections() -> None:
    scheduler: Scheduler[Job] = Scheduler(max_connections=5, rate_limit=2, rate_delta=1.0)
    starts = run_pool(scheduler, [0.0] * 10, service_time=0.0, horizon=5.0, step=0.1)
    assert starts[:2] == [0.0, 0.0]
    assert starts[2] >= 1.0
    assert len(starts) == 10


def test_max_messages_retires_the_connection_and_opens_a_new_one() -> None:
    scheduler: Scheduler[Job] = Scheduler(max_connections=1, max_messages=2)
    for _ in range(3):
        scheduler.submit(Job())
    decisions = scheduler.decide(0.0)
    assert decisions.open == 1
    slot = scheduler.slot_opened(0.0)
    scheduler.slot_ready(slot, 0.0, window=5)
    decisions = scheduler.decide(0.0)
    assert len(decisions.assign) == 2  # capped by max_messages, not by the window
    assert decisions.open == 0  # max_connections=1 and that one is still in use
    scheduler.job_finished(slot, 1.0)
    scheduler.job_finished(slot, 1.0)
    decisions = scheduler.decide(1.0)
    assert decisions.retire == [slot]
    scheduler.slot_closed(slot, 1.1, requeue=[])
    decisions = scheduler.decide(1.1)
    assert decisions.open == 1


def test_idle_timeout_and_max_age_retire_idle_connections_only() -> None:
    scheduler: Scheduler[Job] = Scheduler(idle_timeout=10.0, max_connection_age=25.0)
    slot = scheduler.slot_opened(0.0)
    scheduler.slot_ready(slot, 0.0)
    assert scheduler.next_deadline(0.0) == 10.0
    assert scheduler.decide(9.9).retire == []
    assert scheduler.decide(10.0).retire == [slot]
    scheduler.slot_closed(slot, 10.0, requeue=[])
    busy = scheduler.slot_opened(10.0)
    scheduler.slot_ready(busy, 10.0)
    job = scheduler.submit(Job())
    assert scheduler.decide(10.0).assign == [(busy, job)]
    assert scheduler.decide(40.0).retire == []  # in use: never retired mid-message
    scheduler.job_finished(busy, 40.0)
    assert scheduler.decide(40.0).retire == [busy]  # past max_connection_age once free


def test_requeue_is_bounded_with_backoff() -> None:
    scheduler: Scheduler[Job] = Scheduler(max_retries=2, retry_delay=1.0, rng=random.Random(1))
    job = scheduler.submit(Job())
    slot = scheduler.slot_opened(0.0)
    scheduler.slot_ready(slot, 0.0)
    assert scheduler.decide(0.0).assign == [(slot, job)]
    assert scheduler.slot_closed(slot, 0.0, requeue=[job]) == []
    assert job.attempts == 1 and job.not_before == 1.0
    slot = scheduler.slot_opened(0.0)
    scheduler.slot_ready(slot, 0.0)
    assert scheduler.decide(0.5).assign == []  # backing off
    assert scheduler.decide(1.0).assign == [(slot, job)]
    assert scheduler.slot_closed(slot, 1.0, requeue=[job]) == []
    assert 2.0 <= job.not_before <= 4.0  # 1.0 + between 1 and 3 times the last wait
    later = job.not_before
    slot = scheduler.slot_opened(later)
    scheduler.slot_ready(slot, later)
    assert scheduler.decide(later).assign == [(slot, job)]
    assert scheduler.slot_closed(slot, later, requeue=[job]) == [job]  # out of attempts
    assert scheduler.pending == 0


def test_failed_setup_charges_nothing_and_probes_with_one_connection() -> None:
    scheduler: Scheduler[Job] = Scheduler(max_connections=5, max_retries=1, retry_delay=1.0)
    jobs = [scheduler.submit(Job()) for _ in range(3)]
    assert scheduler.decide(0.0).open == 3
    slots = [scheduler.slot_opened(0.0) for _ in range(3)]
    for slot in slots:  # in flight together: one back-off step
        assert scheduler.slot_failed(slot, 0.0) == []
    assert all(job.attempts == 0 for job in jobs)
    assert scheduler.decide(0.5).open == 0  # backing off before reconnecting
    assert scheduler.decide(1.0).open == 1  # then one probe, not a stampede
    probe = scheduler.slot_opened(1.0)
    assert scheduler.slot_failed(probe, 1.0) == []
    assert scheduler.pending == 3 and all(job.attempts == 0 for job in jobs)


def test_cancel_removes_a_queued_job_only() -> None:
    scheduler: Scheduler[Job] = Scheduler()
    first, second = scheduler.submit(Job()), scheduler.submit(Job())
    assert scheduler.cancel(second)
    assert not scheduler.cancel(second)
    slot = scheduler.slot_opened(0.0)
    scheduler.slot_ready(slot, 0.0)
    assert scheduler.decide(0.0).assign == [(slot, first)]
    assert not scheduler.cancel(first)  # already started


def test_is_idle_tracks_queue_and_capacity() -> None:
    scheduler: Scheduler[Job] = Scheduler(max_connections=1)
    assert scheduler.is_idle()
    scheduler.submit(Job())
    assert not scheduler.is_idle()
    slot = scheduler.slot_opened(0.0)
    scheduler.slot_ready(slot, 0.0)
    scheduler.decide(0.0)
    assert not scheduler.is_idle()  # the only connection is busy
    scheduler.job_finished(slot, 1.0)
    assert scheduler.is_idle()


def test_without_a_rate_limit_nothing_accumulates_per_message() -> None:
    scheduler: Scheduler[Job] = Scheduler(max_connections=1, max_messages=10_000)
    slot = scheduler.slot_opened(0.0)
    scheduler.slot_ready(slot, 0.0, window=3)
    for step in range(1000):
        scheduler.submit(Job())
        assert len(scheduler.decide(float(step)).assign) == 1
        scheduler.job_finished(slot, float(step))
    window = scheduler.limiter
    assert isinstance(window, SlidingWindow)
    assert window.held == 0  # start times are kept only to enforce a rate limit
