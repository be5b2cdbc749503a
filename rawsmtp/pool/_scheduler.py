"""The pool's decisions, as pure logic: no sockets, no threads, time passed in as ``now``.

The scheduler keeps the FIFO queue of jobs and a view of every connection ("slot"). A driver
tells it what happened (a connection became ready, a message finished, a connection closed) and
asks :meth:`Scheduler.decide` what to do next: open connections, assign jobs to slots, retire
slots. It owns the rules users care about:

- the rate limit is exact: in no window ``[t, t + rate_delta)`` do more than ``rate_limit``
  messages start, pool-wide, however many connections are open;
- a connection takes at most ``max_messages`` messages, then is retired (QUIT) and replaced;
  connections idle for ``idle_timeout`` or older than ``max_connection_age`` are retired between
  messages;
- a job whose connection failed before its message was complete is requeued with exponential
  backoff, at most ``max_retries`` times; a failing connection set-up charges every queued job
  one attempt, so a dead server fails the queue after a bounded number of tries.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from itertools import islice
from typing import Generic, TypeVar

__all__ = ["Decisions", "Job", "Scheduler", "Slot"]

JobT = TypeVar("JobT", bound="Job")
_SCAN = 64  # how far into the queue next_deadline looks for jobs in backoff


@dataclass(slots=True, eq=False)
class Job:
    """One message waiting for, or using, a connection: the driver's own message record
    subclasses it, so a queued message is one object."""

    attempts: int = 0  # failed tries so far
    not_before: float = 0.0  # backoff: not to be started before this time
    cancelled: bool = False


@dataclass(slots=True, eq=False)
class Slot:
    """The scheduler's view of one connection."""

    opened_at: float
    ready: bool = False  # session set up; may take jobs
    window: int = 1  # jobs it may hold at once (more when the server pipelines)
    started: int = 0  # jobs assigned over its life
    in_flight: int = 0
    idle_since: float = 0.0
    retiring: bool = False


@dataclass(slots=True)
class Decisions(Generic[JobT]):
    """What the driver must do now, in this order: retire, assign, open."""

    retire: list[Slot] = field(default_factory=list)
    assign: list[tuple[Slot, JobT]] = field(default_factory=list)
    open: int = 0


class Scheduler(Generic[JobT]):
    def __init__(
        self,
        *,
        max_connections: int = 5,
        max_messages: int = 100,
        rate_limit: int | None = None,
        rate_delta: float = 1.0,
        max_retries: int = 3,
        retry_delay: float = 1.0,
        idle_timeout: float | None = 300.0,
        max_connection_age: float | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.max_messages = max_messages
        self.rate_limit = rate_limit
        self.rate_delta = rate_delta
        self.max_retries = max_retries
        self.retry_delay = retry_delay
        self.idle_timeout = idle_timeout
        self.max_connection_age = max_connection_age
        self._queue: deque[JobT] = deque()
        self._slots: list[Slot] = []
        self._starts: deque[float] = deque()  # start times inside the current rate window
        self._reopen_at = 0.0  # backoff after a failed connection set-up
        self._setup_failures = 0

    # -- what the driver reports ----------------------------------------------------------------

    def submit(self, job: JobT) -> JobT:
        self._queue.append(job)
        return job

    def cancel(self, job: JobT) -> bool:
        """Remove a job that has not started; False when it already has."""
        if job.cancelled or job not in self._queue:
            return False
        job.cancelled = True
        self._queue.remove(job)
        return True

    def drain(self) -> list[JobT]:
        """Take every queued job out (the pool is closing)."""
        jobs = list(self._queue)
        self._queue.clear()
        return jobs

    def slot_opened(self, now: float) -> Slot:
        slot = Slot(opened_at=now, idle_since=now)
        self._slots.append(slot)
        return slot

    def slot_ready(self, slot: Slot, now: float, *, window: int = 1) -> None:
        slot.ready, slot.window, slot.idle_since = True, max(1, window), now
        self._setup_failures = 0

    def job_finished(self, slot: Slot, now: float) -> None:
        slot.in_flight -= 1
        if slot.in_flight == 0:
            slot.idle_since = now

    def slot_closed(
        self,
        slot: Slot,
        now: float,
        *,
        requeue: list[JobT],
        setup_failed: bool = False,
    ) -> list[JobT]:
        """A connection ended. Requeue ``requeue`` (jobs not completely sent) with backoff;
        after a failed set-up also charge every queued job one attempt. Returns the jobs that
        are out of attempts, for the driver to fail."""
        if slot in self._slots:
            self._slots.remove(slot)
        exhausted: list[JobT] = []
        for job in reversed(requeue):
            if self._charge(job, now):
                self._queue.appendleft(job)
            else:
                exhausted.append(job)
        if setup_failed:
            self._setup_failures += 1
            self._reopen_at = now + self._backoff(self._setup_failures)
            for job in list(self._queue):
                if not self._charge(job, now):
                    self._queue.remove(job)
                    exhausted.append(job)
        return exhausted

    # -- what the driver asks -------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Jobs waiting for a connection."""
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        return sum(slot.in_flight for slot in self._slots)

    @property
    def slots(self) -> tuple[Slot, ...]:
        return tuple(self._slots)

    def is_idle(self) -> bool:
        """Nothing queued and room for another message without waiting."""
        return not self._queue and self.in_flight < self.max_connections

    def decide(self, now: float) -> Decisions[JobT]:
        decisions: Decisions[JobT] = Decisions()
        for old in self._slots:
            if not old.retiring and self._should_retire(old, now):
                old.retiring = True
                decisions.retire.append(old)
        for job in self._eligible(now, limit=self._spare_capacity()):
            slot = self._free_slot()
            if slot is None or not self._rate_allows(now):
                break
            self._queue.remove(job)  # near the front: the queue is FIFO
            slot.in_flight += 1
            slot.started += 1
            if self.rate_limit is not None:  # only then is the window trimmed, and needed
                self._starts.append(now)
            decisions.assign.append((slot, job))
        decisions.open = self._connections_to_open(now)
        return decisions

    def next_deadline(self, now: float) -> float | None:
        """The earliest time at which :meth:`decide` may decide something new by itself."""
        times: list[float] = []
        if self._queue:
            # Jobs ever charged a backoff precede every other (requeues go to the front; a
            # failed set-up charges all), so a head never charged means none is waiting out a
            # backoff. A job already due waits for room, which a reply brings, not time.
            if self._queue[0].not_before:
                due = min(job.not_before for job in islice(self._queue, _SCAN))
                if due > now:
                    times.append(due)
            if self.rate_limit is not None and len(self._starts) >= self.rate_limit:
                times.append(self._starts[0] + self.rate_delta)
            if self._reopen_at > now:
                times.append(self._reopen_at)
        for slot in self._slots:
            if slot.ready and slot.in_flight == 0 and not slot.retiring:
                if self.idle_timeout is not None:
                    times.append(slot.idle_since + self.idle_timeout)
                if self.max_connection_age is not None:
                    times.append(slot.opened_at + self.max_connection_age)
        return min(times) if times else None

    # -- rules ----------------------------------------------------------------------------------

    def _charge(self, job: JobT, now: float) -> bool:
        """Count a failed attempt; False when the job has no attempts left."""
        job.attempts += 1
        job.not_before = now + self._backoff(job.attempts)
        return job.attempts <= self.max_retries

    def _backoff(self, attempts: int) -> float:
        return float(self.retry_delay * 2 ** (attempts - 1))

    def _should_retire(self, slot: Slot, now: float) -> bool:
        if not slot.ready or slot.in_flight:
            return False
        if slot.started >= self.max_messages:
            return True
        if self.idle_timeout is not None and now - slot.idle_since >= self.idle_timeout:
            return True
        age = self.max_connection_age
        return age is not None and now - slot.opened_at >= age

    def _eligible(self, now: float, *, limit: int) -> list[JobT]:
        """Up to ``limit`` startable jobs from the front; jobs in backoff let later ones pass.

        The scan stops at ``limit`` (zero when no connection has room): only the few jobs in
        backoff, requeued at the front, are passed over, so a long queue costs little."""
        eligible: list[JobT] = []
        for job in self._queue:
            if len(eligible) >= limit:
                break
            if job.not_before <= now:
                eligible.append(job)
        return eligible

    # Plain loops below, not generators: decide() runs on every round of the pool's loop.

    def _spare_capacity(self) -> int:
        spare = 0
        for slot in self._slots:
            if slot.ready and not slot.retiring:
                spare += max(0, min(slot.window, self.max_messages - slot.started) - slot.in_flight)
        return spare

    def _free_slot(self) -> Slot | None:
        """The first of the slots with room that have the fewest jobs in flight."""
        best: Slot | None = None
        for slot in self._slots:
            if (
                slot.ready
                and not slot.retiring
                and slot.in_flight < slot.window
                and slot.started < self.max_messages
                and (best is None or slot.in_flight < best.in_flight)
            ):
                best = slot
        return best

    def _rate_allows(self, now: float) -> bool:
        if self.rate_limit is None:
            return True
        while self._starts and self._starts[0] + self.rate_delta <= now:
            self._starts.popleft()
        return len(self._starts) < self.rate_limit

    def _connections_to_open(self, now: float) -> int:
        room = self.max_connections - len(self._slots)
        if now < self._reopen_at or room <= 0:
            return 0
        opening = sum(1 for slot in self._slots if not slot.ready)
        spare = self._spare_capacity()
        waiting = len(self._eligible(now, limit=opening + spare + room))
        wanted = waiting - opening - spare
        # After a failed set-up, probe with one connection before opening many.
        if self._setup_failures:
            room = min(room, 1 - opening)
        return max(0, min(wanted, room))
