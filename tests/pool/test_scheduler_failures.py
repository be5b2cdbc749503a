"""The scheduler's failure policy, driven with a fake clock and seeded jitter: destination
back-off, deadlines, permanent failures, per-job deferral, throttling, and the rate limit
counted when MAIL is written."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from rawsmtp.pool._scheduler import Job, Scheduler, SlidingWindow, Slot


def ready_slot(scheduler: Scheduler[Job], now: float, window: int = 1) -> Slot:
    slot = scheduler.slot_opened(now)
    scheduler.slot_ready(slot, now, window=window)
    return slot


def test_failed_setups_charge_nothing_and_in_flight_failures_are_one_step() -> None:
    scheduler: Scheduler[Job] = Scheduler(max_connections=5, rng=random.Random(3))
    jobs = [scheduler.submit(Job(), 0.0) for _ in range(1000)]
    assert scheduler.decide(0.0).open == 5
    slots = [scheduler.slot_opened(0.0) for _ in range(5)]
    for slot in slots:
        assert scheduler.slot_failed(slot, 0.01) == []
    assert all(job.attempts == 0 for job in jobs)
    assert scheduler.backoff_until == 1.01  # one step: the first wait is retry_delay
    assert scheduler.decide(1.0).open == 0  # nothing opens while backing off
    assert scheduler.decide(1.01).open == 1  # then one probe
    assert scheduler.pending == 1000


def test_a_ready_session_that_dies_before_its_first_message_is_a_setup_failure() -> None:
    scheduler: Scheduler[Job] = Scheduler(max_retries=0, rng=random.Random(3))
    job = scheduler.submit(Job(), 0.0)
    slot = ready_slot(scheduler, 0.0)
    assert scheduler.decide(0.0).assign == [(slot, job)]
    assert scheduler.slot_failed(slot, 0.5, requeue=[job]) == []  # max_retries=0, not charged
    assert job.attempts == 0 and scheduler.pending == 1
    assert scheduler.backoff_until == 1.5


def test_a_drop_after_a_carried_message_charges_the_unsent_job() -> None:
    scheduler: Scheduler[Job] = Scheduler(max_retries=0, rng=random.Random(3))
    first, second = scheduler.submit(Job(), 0.0), scheduler.submit(Job(), 0.0)
    slot = ready_slot(scheduler, 0.0, window=2)
    assert len(scheduler.decide(0.0).assign) == 2
    scheduler.job_finished(slot, 0.1, first)
    assert scheduler.slot_failed(slot, 0.2, requeue=[second]) == [second]  # out of attempts
    assert scheduler.backoff_until == 0.0  # the destination itself is fine


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    steps=st.lists(st.sampled_from(["fail", "ready", "carry", "wait"]), max_size=60),
)
def test_backoff_is_capped_and_resets_only_after_a_carried_message(
    seed: int, steps: list[str]
) -> None:
    scheduler: Scheduler[Job] = Scheduler(
        max_connections=3, retry_delay=1.0, max_retry_delay=30.0, rng=random.Random(seed)
    )
    jobs = [scheduler.submit(Job(), 0.0) for _ in range(50)]
    now, slot = 0.0, None
    for step in steps:
        before = scheduler.backoff_until
        decisions = scheduler.decide(now)
        if now < before:
            assert decisions.open == 0
        if slot is None and decisions.open:
            slot = scheduler.slot_opened(now)
        if step == "fail" and slot is not None:
            requeue = [job for s, job in decisions.assign if s is slot]
            assert scheduler.slot_failed(slot, now, requeue=requeue) == []
            if slot.carried:  # the destination works; the requeued jobs were charged
                assert scheduler.backoff_until == 0.0
            else:
                assert now + 1.0 <= scheduler.backoff_until <= now + 30.0
            slot = None
        elif step == "ready" and slot is not None and not slot.ready:
            scheduler.slot_ready(slot, now)
            assert scheduler.backoff_until == before  # ready alone does not reset it
        elif step == "carry" and slot is not None and slot.in_flight:
            scheduler.job_finished(slot, now)
            assert scheduler.backoff_until == 0.0
        now += 7.0 if step == "wait" else 0.5
    assert all(job.attempts <= 1 for job in jobs)


def test_permanent_failure_drains_the_queue_once() -> None:
    scheduler: Scheduler[Job] = Scheduler(max_connections=2)
    jobs = [scheduler.submit(Job(), 0.0) for _ in range(10)]
    first, second = scheduler.slot_opened(0.0), scheduler.slot_opened(0.0)
    failed = scheduler.slot_failed(first, 0.1, permanent=True)
    assert [id(job) for job in failed] == [id(job) for job in jobs]
    assert scheduler.slot_failed(second, 0.2, permanent=True) == []
    assert scheduler.pending == 0 and scheduler.decide(0.3).expire == []
    assert scheduler.backoff_until == 0.0  # fail fast: a later message tries at once


def test_deferral_charges_or_not_and_keeps_the_connection() -> None:
    scheduler: Scheduler[Job] = Scheduler(max_retries=1, rng=random.Random(5))
    job = scheduler.submit(Job(), 0.0)
    slot = ready_slot(scheduler, 0.0)
    scheduler.decide(0.0)
    assert scheduler.job_deferred(slot, job, 0.0, charge=False)  # throttled: free, at once
    assert job.attempts == 0 and scheduler.decide(0.0).assign == [(slot, job)]
    assert scheduler.job_deferred(slot, job, 0.0)  # 4xx to MAIL: one attempt, back-off
    assert job.attempts == 1 and job.not_before == 1.0
    assert scheduler.decide(0.5).assign == []
    assert scheduler.decide(1.0).assign == [(slot, job)]
    assert not scheduler.job_deferred(slot, job, 1.0)  # out of attempts
    assert scheduler.pending == 0 and slot.in_flight == 0


def test_jitter_is_decorrelated_and_capped() -> None:
    scheduler: Scheduler[Job] = Scheduler(
        retry_delay=1.0, max_retry_delay=30.0, max_retries=100, rng=random.Random(7)
    )
    job, delays = scheduler.submit(Job(), 0.0), []
    slot = ready_slot(scheduler, 0.0)
    for _ in range(40):
        now = job.not_before
        assert scheduler.decide(now).assign == [(slot, job)]
        scheduler.job_deferred(slot, job, now)
        delays.append(job.delay)
    assert delays[0] == 1.0 and max(delays) <= 30.0 and max(delays) > 20.0
    assert all(d >= 1.0 for d in delays) and len(set(delays)) > 20


@settings(max_examples=150, deadline=None)
@given(
    deadlines=st.lists(st.sampled_from([0.2, 0.5, 1.0, 3.0, None]), min_size=1, max_size=30),
    data=st.data(),
)
def test_expired_jobs_are_never_assigned_and_reported_once(
    deadlines: list[float | None], data: st.DataObject
) -> None:
    scheduler: Scheduler[Job] = Scheduler(
        max_connections=2, delivery_timeout=2.0, retry_delay=0.1, rng=random.Random(0)
    )
    for deadline in deadlines:
        job = Job()
        if deadline is not None:
            job.deadline = deadline  # a per-send deadline
        scheduler.submit(job, 0.0)
    expired: list[Job] = []
    busy: list[tuple[Slot, Job]] = []
    now = 0.0
    while now < 5.0:
        decisions = scheduler.decide(now)
        assert all(job.deadline > now for _, job in decisions.assign)
        assert all(job.deadline <= now for job in decisions.expire)
        expired += decisions.expire
        busy += decisions.assign
        for _ in range(decisions.open):
            ready_slot(scheduler, now)
        finish: bool = data.draw(st.booleans())
        if busy and finish:
            slot, job = busy.pop(0)
            if data.draw(st.booleans()):
                scheduler.job_deferred(slot, job, now, charge=data.draw(st.booleans()))
            else:
                scheduler.job_finished(slot, now, job)
        deadline = scheduler.next_deadline(now)
        now = min(deadline, now + 0.25) if deadline is not None and deadline > now else now + 0.25
    expired += scheduler.decide(now).expire  # a job deferred in the last round comes due here
    assert len({id(job) for job in expired}) == len(expired)
    assert scheduler.pending == 0  # everything left in the queue expired by 5 s


def test_next_deadline_wakes_the_loop_for_an_expiry() -> None:
    scheduler: Scheduler[Job] = Scheduler(delivery_timeout=10.0)
    job = scheduler.submit(Job(), 1.0)
    assert scheduler.next_deadline(1.0) == 11.0
    assert scheduler.decide(10.9).expire == []
    assert scheduler.decide(11.0).expire == [job]
    assert scheduler.decide(12.0).expire == [] and scheduler.next_deadline(12.0) is None


def test_finished_jobs_do_not_linger_in_the_deadline_entries() -> None:
    scheduler: Scheduler[Job] = Scheduler(max_connections=1, max_messages=10**6)
    slot = ready_slot(scheduler, 0.0, window=4)
    for step in range(5000):
        job = scheduler.submit(Job(), float(step))
        assert scheduler.decide(float(step)).assign == [(slot, job)]
        scheduler.job_finished(slot, float(step), job)
    assert len(scheduler._in_order) + len(scheduler._deadlines) <= 2 * 64 + 1


_EXPIRY_STEP = st.one_of(
    st.tuples(st.just("submit"), st.sampled_from([None, 0.1, 0.4, 1.0, 2.5])),  # None: default
    st.tuples(st.just("wait"), st.sampled_from([0.0, 0.05, 0.1, 0.3, 1.0])),
    st.tuples(st.just("open"), st.integers(1, 3)),
    st.tuples(st.just("finish"), st.booleans()),  # True: deferred back to the queue's front
    st.tuples(st.just("cancel"), st.integers(0, 50)),
)


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(_EXPIRY_STEP, max_size=80), charge=st.booleans())
def test_every_queued_job_expires_exactly_at_its_deadline(
    steps: list[tuple[str, object]], charge: bool
) -> None:
    """Deadlines entered in order (the deque) and out of it (per-send ones, requeued jobs: the
    heap), mixed: each decide expires exactly the queued jobs whose deadline has come, in
    deadline order; next_deadline never sleeps past one; entries of gone jobs stay bounded."""
    scheduler: Scheduler[Job] = Scheduler(
        max_connections=3, delivery_timeout=1.5, retry_delay=0.05, rng=random.Random(0)
    )
    queued: list[Job] = []  # the model: what should still be waiting
    busy: list[tuple[Slot, Job]] = []
    now = 0.0
    for action, arg in steps:
        if action == "submit":
            job = Job()
            if isinstance(arg, float):
                job.deadline = now + arg  # a per-send deadline, often before earlier jobs'
            queued.append(scheduler.submit(job, now))
        elif action == "wait":
            wake = scheduler.next_deadline(now)
            if queued:
                assert wake is not None and wake <= min(job.deadline for job in queued)
            now = round(now + float(str(arg)), 6)
        elif action == "open":
            for _ in range(int(str(arg))):
                ready_slot(scheduler, now, window=2)
        elif action == "finish" and busy:
            slot, job = busy.pop(0)
            if arg and scheduler.job_deferred(slot, job, now, charge=charge):
                queued.append(job)
            elif not arg:
                scheduler.job_finished(slot, now, job)
        elif action == "cancel" and queued:
            job = queued.pop(int(str(arg)) % len(queued))
            assert scheduler.cancel(job)
        due = sorted((job for job in queued if job.deadline <= now), key=lambda job: job.deadline)
        decisions = scheduler.decide(now)
        assert [job.deadline for job in decisions.expire] == [job.deadline for job in due]
        assert {id(job) for job in decisions.expire} == {id(job) for job in due}
        assert all(job.deadline > now for _, job in decisions.assign)
        gone = {id(job) for job in decisions.expire} | {id(job) for _, job in decisions.assign}
        queued = [job for job in queued if id(job) not in gone]
        busy += decisions.assign
        assert scheduler.pending == len(queued)
        if decisions.assign:
            entries = len(scheduler._in_order) + len(scheduler._deadlines)
            assert entries <= 2 * len(queued) + 64


@settings(max_examples=100, deadline=None)
@given(
    connections=st.integers(1, 8),
    rate_limit=st.one_of(st.none(), st.integers(1, 50)),
    reports=st.lists(st.floats(0.0, 0.5), max_size=30),
)
def test_throttling_never_goes_below_one_and_recovers_to_the_configured_values(
    connections: int, rate_limit: int | None, reports: list[float]
) -> None:
    scheduler: Scheduler[Job] = Scheduler(
        max_connections=connections, rate_limit=rate_limit, throttle_quiet=10.0
    )
    now = 0.0
    for gap in reports:
        now += gap
        scheduler.throttled(now)
        scheduler.decide(now)
        assert 1 <= scheduler.effective_connections <= connections
        rate = scheduler.effective_rate_limit
        assert (rate is None) == (rate_limit is None)
        assert rate is None or rate_limit is None or 1 <= rate <= rate_limit
    scheduler.decide(now + 10.0 * 50)
    assert scheduler.effective_connections == connections
    assert scheduler.effective_rate_limit == rate_limit


def test_throttling_retires_surplus_connections_and_coalesces_reports() -> None:
    scheduler: Scheduler[Job] = Scheduler(max_connections=4, rate_limit=100)
    slots = [ready_slot(scheduler, 0.0) for _ in range(4)]
    scheduler.throttled(1.0)
    scheduler.throttled(1.5)  # the same overload, seen on another connection
    assert (scheduler.effective_connections, scheduler.effective_rate_limit) == (2, 50)
    assert scheduler.decide(1.5).retire == slots[2:]
    for _ in range(5):
        scheduler.submit(Job(), 1.5)
    assert {slot for slot, _ in scheduler.decide(1.6).assign} <= set(slots[:2])
    assert scheduler.next_deadline(1.6) == 11.5  # recovery is a reason to wake
    scheduler.decide(11.5)
    assert (scheduler.effective_connections, scheduler.effective_rate_limit) == (3, 60)


ACTIONS = ["tick", "decide", "write", "write", "finish", "defer", "unsent", "drop", "throttle"]


@settings(max_examples=300, deadline=None)
@given(
    rate_limit=st.integers(1, 4),
    rate_delta=st.sampled_from([0.1, 0.25, 1.0]),
    connections=st.integers(1, 4),
    data=st.data(),
)
def test_no_window_holds_more_than_rate_limit_starts_written(
    rate_limit: int, rate_delta: float, connections: int, data: st.DataObject
) -> None:
    scheduler: Scheduler[Job] = Scheduler(
        max_connections=connections,
        rate_limit=rate_limit,
        rate_delta=rate_delta,
        max_retries=1000,
        retry_delay=0.01,
        max_retry_delay=0.05,
        rng=random.Random(0),
    )
    for _ in range(60):
        scheduler.submit(Job(), 0.0)
    assigned: list[tuple[Slot, Job]] = []  # MAIL not written yet
    written: list[tuple[Slot, Job]] = []
    starts: list[float] = []
    now = 0.0

    def pick(pool: list[tuple[Slot, Job]]) -> tuple[Slot, Job]:
        return pool.pop(data.draw(st.integers(0, len(pool) - 1)))

    for _ in range(data.draw(st.integers(10, 200))):
        action = data.draw(st.sampled_from(ACTIONS))
        if action == "tick":
            now += data.draw(st.sampled_from([0.0, 0.01, 0.05, 0.3]))
        elif action == "decide":
            decisions = scheduler.decide(now)
            assigned += decisions.assign
            for _ in range(decisions.open):
                ready_slot(scheduler, now, window=data.draw(st.integers(1, 3)))
        elif action == "write" and assigned:
            slot, job = pick(assigned)
            scheduler.job_started(job, now)
            starts.append(now)
            written.append((slot, job))
        elif action == "finish" and written:
            slot, job = pick(written)
            scheduler.job_finished(slot, now, job)
        elif action == "defer" and (assigned or written):
            slot, job = pick(data.draw(st.sampled_from([p for p in (assigned, written) if p])))
            scheduler.job_deferred(slot, job, now, charge=data.draw(st.booleans()))
        elif action == "unsent" and assigned:  # cancelled at assignment: no MAIL
            slot, job = pick(assigned)
            scheduler.job_finished(slot, now, job, carried=False)
        elif action == "drop" and scheduler.slots:
            slot = data.draw(st.sampled_from(scheduler.slots))
            lost = [pair for pair in assigned + written if pair[0] is slot]
            assigned[:] = [pair for pair in assigned if pair[0] is not slot]
            written[:] = [pair for pair in written if pair[0] is not slot]
            scheduler.slot_failed(slot, now, requeue=[job for _, job in lost])
        elif action == "throttle":
            scheduler.throttled(now)
    starts.sort()
    for i, start in enumerate(starts):
        in_window = sum(1 for s in starts[i:] if s < start + rate_delta)
        assert in_window <= rate_limit
    # No reservation leaks: once the window has passed, only unwritten assignments hold one.
    window = scheduler.limiter
    assert isinstance(window, SlidingWindow)
    window.acquire(now + rate_delta, 0, rate_limit)
    assert window.held == len(assigned)


def test_many_connections_cannot_overshoot_when_mail_is_written_late() -> None:
    """The reported case: 10 connections, MAIL written after assignment, rate_limit=200."""
    scheduler: Scheduler[Job] = Scheduler(max_connections=10, max_messages=10**6, rate_limit=200)
    slots = [ready_slot(scheduler, 0.0, window=50) for _ in range(10)]
    for _ in range(2000):
        scheduler.submit(Job(), 0.0)
    starts: list[float] = []
    unwritten: list[tuple[Slot, Job]] = []
    now = 0.0
    while now < 5.0:
        unwritten += scheduler.decide(now).assign
        for slot, job in unwritten[:30]:  # MAIL leaves a little after assignment
            scheduler.job_started(job, now)
            scheduler.job_finished(slot, now, job)
            starts.append(now)
        del unwritten[:30]
        now = round(now + 0.01, 6)
    assert len(slots) == 10
    assert max(sum(1 for s in starts if t <= s < t + 1.0) for t in starts) == 200
