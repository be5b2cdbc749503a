"""The pool's decisions, as pure logic: no sockets, no threads, time passed in as ``now``.

The scheduler keeps the FIFO queue of jobs and a view of every connection ("slot"). A driver
tells it what happened and asks :meth:`Scheduler.decide` what to do next. Its failure policy
follows Postfix's client: a destination that is down costs no message anything; a message pays
only for its own temporary failures; every message has a deadline.

What the engine calls, and when (``now`` is the engine's monotonic clock):

- ``submit(job, now)``: a message entered the queue; stamps ``job.deadline = now +
  delivery_timeout`` unless the engine set a per-send deadline first.
- ``decide(now) -> Decisions``: on every loop round. Do, in order: ``retire`` (QUIT these
  slots), ``expire`` (fail these jobs: SMTPTimeoutError(phase="queue"), cause ``last_error``),
  ``assign`` (send this job on this slot), ``open`` (open this many connections).
- ``next_deadline(now)``: when to call ``decide`` again if nothing else happens.
- ``slot_opened(now) -> Slot``: a connection is being opened (one per ``Decisions.open``).
- ``slot_ready(slot, now, window=n)``: its session is set up; it may pipeline ``n`` messages.
- ``job_started(job, now)``: the job's MAIL FROM was written. The rate limit counts these.
- ``job_finished(slot, now, job)``: the job got its final reply (accepted or failed for good).
  The first one on a slot proves the destination healthy and resets its back-off.
- ``job_deferred(slot, job, now, charge=...)``: the job goes back to the queue while its
  connection stays: ``charge=True`` after a 4xx to MAIL or to the end of DATA (one attempt,
  back-off); ``charge=False`` after throttling or a refused pipelined command. False when it
  has no attempts left: fail it.
- ``slot_failed(slot, now, requeue=..., permanent=...)``: the connection ended by an error.
  Before it carried a message this is the destination's health (refused, reset, timeout, 4xx
  greeting/EHLO/STARTTLS/AUTH): nothing is charged, ``requeue`` goes back as it was, and the
  destination backs off. After, ``requeue`` (sent, never committed) is charged one attempt.
  ``permanent=True`` (5xx greeting/EHLO, 535/534/538, certificate, require_tls unmet, no
  usable mechanism): returns ``requeue`` and every queued job, to fail at once with the error.
  Otherwise returns the jobs out of attempts, to fail.
- ``slot_closed(slot, now, requeue=...)``: the connection ended cleanly (QUIT).
- ``throttled(now)``: a reply meant "too fast / too many" (the engine classifies replies).
- ``cancel(job)``, ``drain()``: the caller withdrew a message; the pool is closing.

The rules it owns:

- the rate limit is exact on the wire: in no window ``[t, t + rate_delta)`` are more than
  ``rate_limit`` MAIL commands written, pool-wide. ``decide`` reserves a start for each job it
  assigns and never lets reservations plus confirmed starts exceed the limit;
  ``job_started`` confirms a reservation, and a job that leaves without MAIL gives it back. The
  window is a :class:`RateLimiter`, so a shared (distributed) limiter can replace it;
- a failed set-up backs the destination off: decorrelated jitter from ``retry_delay``, capped at
  ``max_retry_delay``; failures of set-ups in flight together are one step; no connection opens
  while backing off, then one probe; reset by the first message a session carries;
- a job is charged an attempt only for its own failures (``max_retries``), with the same
  capped, jittered back-off, and is never assigned past its deadline;
- throttling halves the effective concurrency (never below 1) and the effective rate limit;
  each ``throttle_quiet`` seconds without throttling gives back one connection and a tenth of
  the rate. Without a rate limit only concurrency is reduced: the pool keeps no per-message
  record then, and fewer connections already slow it (see ``effective_*`` for stats);
- a connection takes at most ``max_messages`` messages, then is retired (QUIT) and replaced;
  connections idle for ``idle_timeout`` or older than ``max_connection_age`` are retired between
  messages.

A :class:`~rawsmtp.pool._limits.ConnectionLimiter` (``connection_limiter=``) caps connections
beyond the pool: a connection opens only on a lease from it, taken in ``decide`` and held by the
slot until ``slot_failed``/``slot_closed``; refused, ``next_deadline`` asks again at its
``next_free``.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from heapq import heappop, heappush
from itertools import count, islice
from operator import attrgetter
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from ._limits import ConnectionLimiter

__all__ = ["Decisions", "Job", "RateLimiter", "Scheduler", "SlidingWindow", "Slot"]

JobT = TypeVar("JobT", bound="Job")
_SCAN = 64  # how far into the queue next_deadline looks for jobs in backoff
_THROTTLE_HOLD = 1.0  # throttling reports this close to a decrease are the same overload
_IN_FLIGHT = attrgetter("in_flight")


@dataclass(slots=True, eq=False)
class Job:
    """One message waiting for, or using, a connection: the driver's own message record
    subclasses it, so a queued message is one object."""

    attempts: int = 0  # failed tries so far
    not_before: float = 0.0  # backoff: not to be started before this time
    cancelled: bool = False
    deadline: float = math.inf  # absolute: fail it rather than start it after this
    delay: float = 0.0  # its last back-off (decorrelated jitter grows from it)
    queued: bool = False
    reserved: bool = False  # holds a rate reservation: assigned, MAIL not yet written


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
    carried: bool = False  # a message got its final reply on it: the destination works
    epoch: int = 0  # the destination's back-off step when it was opened
    lease: object = None  # its connection limiter's token, if there is a limiter


@dataclass(slots=True)
class Decisions(Generic[JobT]):
    """What the driver must do now, in this order: retire, expire, assign, open."""

    retire: list[Slot] = field(default_factory=list)
    expire: list[JobT] = field(default_factory=list)
    assign: list[tuple[Slot, JobT]] = field(default_factory=list)
    open: int = 0


def _deadline(job: Job) -> float:
    return job.deadline


@runtime_checkable
class RateLimiter(Protocol):
    """Grants message starts. A start is reserved at assignment, then either confirmed (its
    MAIL was written) or released (it went back unsent). Sans-I/O: time is passed in."""

    def acquire(self, now: float, n: int, limit: int) -> int:
        """Reserve up to ``n`` starts under ``limit`` per window; returns how many."""
        ...

    def confirm(self, now: float) -> None:
        """One reserved start happened at ``now``."""
        ...

    def release(self) -> None:
        """One reservation is given back unused."""
        ...

    def next_free(self, now: float, limit: int) -> float | None:
        """When time alone lets :meth:`acquire` grant again; None when it grants now or when
        only a confirm or a release can free room."""
        ...


class SlidingWindow:
    """The exact in-process limiter: a reservation holds a token from acquire until
    ``delta`` after its confirmation, and at most ``limit`` tokens are held. Then any window
    ``[t, t + delta)`` holding k confirmed starts has all k tokens held at its last start, so
    k <= limit, however late confirmations arrive."""

    __slots__ = ("_reserved", "_starts", "delta")

    def __init__(self, delta: float) -> None:
        self.delta = delta
        self._starts: deque[float] = deque()  # confirmed starts inside the current window
        self._reserved = 0

    def acquire(self, now: float, n: int, limit: int) -> int:
        self._trim(now)
        granted = max(0, min(n, limit - len(self._starts) - self._reserved))
        self._reserved += granted
        return granted

    def confirm(self, now: float) -> None:
        self._reserved -= 1
        self._starts.append(now)

    def release(self) -> None:
        self._reserved -= 1

    def next_free(self, now: float, limit: int) -> float | None:
        self._trim(now)
        expiring = len(self._starts) + self._reserved - limit + 1  # starts that must expire
        if expiring <= 0 or expiring > len(self._starts):
            return None
        return self._starts[expiring - 1] + self.delta

    @property
    def held(self) -> int:
        """Reservations plus starts inside the window (for tests and stats)."""
        return len(self._starts) + self._reserved

    def _trim(self, now: float) -> None:
        starts, delta = self._starts, self.delta
        while starts and starts[0] + delta <= now:
            starts.popleft()


class Scheduler(Generic[JobT]):
    """The queue, the slots and the rules above (see the module docstring for the calls)."""

    def __init__(
        self,
        *,
        max_connections: int = 5,
        max_messages: int = 100,
        rate_limit: int | None = None,
        rate_delta: float = 1.0,
        max_retries: int = 3,
        retry_delay: float = 1.0,
        max_retry_delay: float = 30.0,
        delivery_timeout: float | None = 600.0,
        idle_timeout: float | None = 300.0,
        max_connection_age: float | None = None,
        throttle_quiet: float = 10.0,
        rate_limiter: RateLimiter | None = None,
        connection_limiter: ConnectionLimiter | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.max_messages = max_messages
        self.rate_limit = rate_limit
        self.rate_delta = rate_delta
        self.max_retries = max_retries
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.delivery_timeout = delivery_timeout
        self.idle_timeout = idle_timeout
        self.max_connection_age = max_connection_age
        self.throttle_quiet = throttle_quiet
        self.limiter: RateLimiter = rate_limiter or SlidingWindow(rate_delta)
        self.connection_limiter = connection_limiter
        self._leases: list[object] = []  # taken by decide, handed to slot_opened
        self._lease_refused = False  # the connection limiter said no: ask again at next_free
        self._uniform = (rng or random.Random()).uniform
        self._queue: deque[JobT] = deque()
        self._slots: list[Slot] = []
        # Queued jobs' deadlines, for expiry. Jobs that enter at the back in deadline order (the
        # usual case: one delivery_timeout from a clock that only moves on) are kept in that
        # order, in a deque: no record each (a heap entry is about 100 B a queued message,
        # bench/run.py's queued rows). The others (per-send deadlines, requeued jobs) go in a
        # heap. Entries of jobs that left are dropped from the heads after assignments (the
        # FIFO case), the rest at a rebuild once they outnumber the queue.
        self._in_order: deque[JobT] = deque()
        self._deadlines: list[tuple[float, int, JobT]] = []
        self._order = count()
        # The destination's health: back-off step, its last delay, when to reopen.
        self._failures = 0
        self._epoch = 0
        self._delay = 0.0
        self._reopen_at = 0.0
        # Throttling: effective limits and the times recovery counts from.
        self._concurrency = max_connections
        self._rate = rate_limit
        self._throttled = False
        self._decreased_at = -math.inf
        self._quiet_since = 0.0

    # -- what the driver reports ----------------------------------------------------------------

    def submit(self, job: JobT, now: float | None = None) -> JobT:
        """Queue ``job``; with ``now``, give it the default deadline unless it has one."""
        if now is not None and job.deadline == math.inf and self.delivery_timeout is not None:
            job.deadline = now + self.delivery_timeout
        self._enqueue(job)
        return job

    def cancel(self, job: JobT) -> bool:
        """Remove a job that has not started; False when it already has."""
        if job.cancelled or not job.queued:
            return False
        job.cancelled, job.queued = True, False
        self._queue.remove(job)
        return True

    def drain(self) -> list[JobT]:
        """Take every queued job out (the pool is closing, or the destination refused)."""
        jobs = list(self._queue)
        for job in jobs:
            job.queued = False
        self._queue.clear()
        self._forget_deadlines()
        return jobs

    def slot_opened(self, now: float) -> Slot:
        slot = Slot(opened_at=now, idle_since=now, epoch=self._epoch)
        if self._leases:
            slot.lease = self._leases.pop()
        self._slots.append(slot)
        return slot

    def slot_ready(self, slot: Slot, now: float, *, window: int = 1) -> None:
        slot.ready, slot.window, slot.idle_since = True, max(1, window), now

    def job_started(self, job: JobT, now: float) -> None:
        """The job's MAIL FROM was written: its reserved start is confirmed."""
        if job.reserved:
            job.reserved = False
            self.limiter.confirm(now)

    def job_finished(
        self, slot: Slot, now: float, job: JobT | None = None, *, carried: bool = True
    ) -> None:
        """The slot's job got its final reply (``carried=False``: it never went out, e.g. the
        caller cancelled it at assignment)."""
        self._vacate(slot, now)
        # Each call only when it has something to do: this runs for every message, and a call
        # costs more than the test.
        if job is not None and job.reserved:
            self._unreserve(job)
        if carried and not slot.carried:
            self._carried(slot)

    def job_deferred(self, slot: Slot, job: JobT, now: float, *, charge: bool = True) -> bool:
        """The job goes back to the queue; its connection stays. False: out of attempts.

        The server answered the transaction: as :meth:`job_finished`, that proves the
        destination healthy."""
        self._vacate(slot, now)
        self._carried(slot)
        return not self._requeue((job,), now, charge=charge)

    def slot_failed(
        self,
        slot: Slot,
        now: float,
        *,
        requeue: Sequence[JobT] = (),
        permanent: bool = False,
        charge: bool = True,
    ) -> list[JobT]:
        """The connection ended by an error (see the module docstring). Returns the jobs to
        fail: all of them when ``permanent``, else those out of attempts. ``charge=False``: the
        server said why, and it was not the messages' fault (throttling, a refused pipeline)."""
        self._remove(slot)
        if permanent:
            for job in requeue:
                self._unreserve(job)
            return [*requeue, *self.drain()]
        if slot.carried:
            return self._requeue(requeue, now, charge=charge)
        self._destination_failed(slot, now)
        return self._requeue(requeue, now, charge=False)

    def slot_closed(self, slot: Slot, now: float, *, requeue: Sequence[JobT] = ()) -> list[JobT]:
        """A connection ended cleanly; ``requeue`` (not completely sent) is charged."""
        self._remove(slot)
        return self._requeue(requeue, now, charge=True)

    def throttled(self, now: float) -> None:
        """A reply said "too fast" or "too many": halve the effective concurrency and rate."""
        self._quiet_since = now
        if now - self._decreased_at < _THROTTLE_HOLD:
            return  # the same overload, reported by another connection or message
        self._decreased_at = now
        self._throttled = True
        self._concurrency = max(1, self._concurrency // 2)
        if self._rate is not None:
            self._rate = max(1, self._rate // 2)

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

    @property
    def effective_connections(self) -> int:
        """Connections the scheduler keeps now: ``max_connections`` unless throttled."""
        return self._concurrency

    @property
    def effective_rate_limit(self) -> int | None:
        """Starts per ``rate_delta`` allowed now: ``rate_limit`` unless throttled."""
        return self._rate

    @property
    def backoff_until(self) -> float:
        """No connection is opened before this time (0.0: the destination is healthy)."""
        return self._reopen_at

    def is_idle(self) -> bool:
        """Nothing queued and room for another message without waiting."""
        return not self._queue and self.in_flight < self._concurrency

    def decide(self, now: float) -> Decisions[JobT]:
        decisions: Decisions[JobT] = Decisions()
        if self._throttled:
            self._recover(now)
        if self._earliest() <= now:
            self._expire(now, decisions.expire)
        self._retire(now, decisions.retire)
        jobs = self._eligible(now, limit=self._spare_capacity())
        if jobs:
            self._assign(jobs, now, decisions.assign)
            self._tidy_deadlines()
        decisions.open = self._connections_to_open(now)
        return decisions

    def next_deadline(self, now: float) -> float | None:
        """The earliest time at which :meth:`decide` may decide something new by itself."""
        times: list[float] = []
        if self._queue:
            # Jobs ever charged a backoff precede every other (requeues go to the front), so a
            # head never charged means none is waiting out a backoff. A job already due waits
            # for room, which a reply brings, not time.
            if self._queue[0].not_before:
                due = min(job.not_before for job in islice(self._queue, _SCAN))
                if due > now:
                    times.append(due)
            if self._rate is not None:
                free = self.limiter.next_free(now, self._rate)
                if free is not None:
                    times.append(free)
            if self._reopen_at > now:
                times.append(self._reopen_at)
            if (expiry := self._next_expiry()) is not None:
                times.append(expiry)
            if self._throttled:
                times.append(self._quiet_since + self.throttle_quiet)
            if self._lease_refused and self.connection_limiter is not None:
                free = self.connection_limiter.next_free(now)
                if free is not None:
                    times.append(free)
        for slot in self._slots:
            if slot.ready and slot.in_flight == 0 and not slot.retiring:
                if self.idle_timeout is not None:
                    times.append(slot.idle_since + self.idle_timeout)
                if self.max_connection_age is not None:
                    times.append(slot.opened_at + self.max_connection_age)
        return min(times) if times else None

    # -- rules: the queue -----------------------------------------------------------------------

    def _enqueue(self, job: JobT, *, front: bool = False) -> None:
        if job.deadline != math.inf:
            if self._lingering():
                self._rebuild_deadlines()
            self._add_deadline(job, front=front)
        job.queued = True
        if front:
            self._queue.appendleft(job)
        else:
            self._queue.append(job)

    def _add_deadline(self, job: JobT, *, front: bool) -> None:
        in_order = self._in_order
        if not front and (not in_order or in_order[-1].deadline <= job.deadline):
            in_order.append(job)
        else:
            heappush(self._deadlines, (job.deadline, next(self._order), job))

    def _rebuild_deadlines(self) -> None:
        self._forget_deadlines()
        for job in self._queue:  # front to back: those out of deadline order go to the heap
            if job.deadline != math.inf:
                self._add_deadline(job, front=False)

    def _forget_deadlines(self) -> None:
        self._in_order.clear()
        self._deadlines.clear()

    def _lingering(self) -> bool:
        """Do entries of jobs that left outnumber the queue? Then a rebuild (amortised O(1))."""
        return len(self._in_order) + len(self._deadlines) > 2 * len(self._queue) + _SCAN

    def _tidy_deadlines(self) -> None:
        """Jobs left the queue: drop their entries, which would keep their messages. Sent in
        FIFO order, they are the in-order deque's head; the rest go at a rebuild."""
        if not self._queue:  # every entry left is of a gone job
            self._forget_deadlines()
            return
        self._drop_gone_heads()
        if self._lingering():
            self._rebuild_deadlines()

    def _drop_gone_heads(self) -> None:
        in_order, heap = self._in_order, self._deadlines
        while in_order and not in_order[0].queued:
            in_order.popleft()
        while heap and not heap[0][2].queued:
            heappop(heap)

    def _earliest(self) -> float:
        """The earliest deadline entered (maybe a gone job's): each structure's head."""
        in_order, heap = self._in_order, self._deadlines
        return min(in_order[0].deadline if in_order else math.inf, heap[0][0] if heap else math.inf)

    def _expire(self, now: float, expired: list[JobT]) -> None:
        in_order, heap = self._in_order, self._deadlines
        due: list[JobT] = []
        while in_order and in_order[0].deadline <= now:
            due.append(in_order.popleft())
        while heap and heap[0][0] <= now:
            due.append(heappop(heap)[2])
        due.sort(key=_deadline)  # both in one deadline order, as the heap alone gave them
        for job in due:
            if job.queued:  # else it left (an entry left over) or expired already
                job.queued = False
                self._queue.remove(job)
                expired.append(job)

    def _next_expiry(self) -> float | None:
        """The earliest deadline of a queued job."""
        self._drop_gone_heads()
        expiry = self._earliest()
        return None if expiry == math.inf else expiry

    def _requeue(self, jobs: Sequence[JobT], now: float, *, charge: bool) -> list[JobT]:
        """Put ``jobs`` back at the front, in order; returns those out of attempts."""
        exhausted: list[JobT] = []
        for job in reversed(jobs):
            self._unreserve(job)
            if charge and not self._charge(job, now):
                exhausted.append(job)
            else:
                self._enqueue(job, front=True)
        exhausted.reverse()
        return exhausted

    def _charge(self, job: JobT, now: float) -> bool:
        """Count a failed attempt; False when the job has no attempts left."""
        job.attempts += 1
        job.delay = self._backoff(job.delay)
        job.not_before = now + job.delay
        return job.attempts <= self.max_retries

    def _backoff(self, previous: float) -> float:
        """Decorrelated jitter: the first wait is ``retry_delay``, each next one is drawn
        between it and three times the previous, never above ``max_retry_delay``."""
        base = self.retry_delay
        return min(self.max_retry_delay, self._uniform(base, max(base, 3 * previous)))

    def _unreserve(self, job: JobT) -> None:
        if job.reserved:
            job.reserved = False
            self.limiter.release()

    # -- rules: the destination -----------------------------------------------------------------

    def _destination_failed(self, slot: Slot, now: float) -> None:
        """One back-off step, unless a set-up in flight with this one already took it."""
        if slot.epoch != self._epoch:
            return
        self._epoch += 1
        self._failures += 1
        self._delay = self._backoff(self._delay)
        self._reopen_at = now + self._delay

    def _carried(self, slot: Slot) -> None:
        """A message got a final reply on ``slot``: the destination works."""
        if not slot.carried:
            slot.carried = True
            self._failures, self._delay, self._reopen_at = 0, 0.0, 0.0

    def _recover(self, now: float) -> None:
        """Additive increase: one connection and a tenth of the rate per quiet period."""
        periods = int((now - self._quiet_since) // self.throttle_quiet)
        if periods <= 0:
            return
        self._quiet_since += periods * self.throttle_quiet
        self._concurrency = min(self.max_connections, self._concurrency + periods)
        if self._rate is not None and self.rate_limit is not None:
            step = max(1, self.rate_limit // 10)
            self._rate = min(self.rate_limit, self._rate + periods * step)
        self._throttled = (self._concurrency, self._rate) != (self.max_connections, self.rate_limit)

    # -- rules: slots ---------------------------------------------------------------------------

    def _vacate(self, slot: Slot, now: float) -> None:
        slot.in_flight -= 1
        if slot.in_flight == 0:
            slot.idle_since = now

    def _remove(self, slot: Slot) -> None:
        if slot in self._slots:
            self._slots.remove(slot)
            if slot.lease is not None and self.connection_limiter is not None:
                self.connection_limiter.release(slot.lease)
                slot.lease = None

    def _retire(self, now: float, retire: list[Slot]) -> None:
        usable = self._concurrency  # slots past it are surplus while throttled
        for old in self._slots:
            if old.retiring:
                continue
            usable -= 1
            if self._should_retire(old, now, surplus=usable < 0):
                old.retiring = True
                retire.append(old)

    def _should_retire(self, slot: Slot, now: float, *, surplus: bool) -> bool:
        if not slot.ready or slot.in_flight:
            return False
        if surplus or slot.started >= self.max_messages:
            return True
        if self.idle_timeout is not None and now - slot.idle_since >= self.idle_timeout:
            return True
        age = self.max_connection_age
        return age is not None and now - slot.opened_at >= age

    def _assign(self, jobs: list[JobT], now: float, assign: list[tuple[Slot, JobT]]) -> None:
        rate = self._rate
        if rate is not None:
            del jobs[self.limiter.acquire(now, len(jobs), rate) :]
        slots = self._open_slots()  # _spare_capacity counted their room: one for each job
        for job in jobs:
            slot = min(slots, key=_IN_FLIGHT)  # the first of those with the fewest in flight
            self._queue.remove(job)  # near the front: the queue is FIFO
            job.queued = False
            slot.in_flight += 1
            slot.started += 1
            if not self._has_room(slot):
                slots.remove(slot)
            if rate is not None:
                job.reserved = True
            assign.append((slot, job))

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

    # Plain loops below, not generators: decide() runs on every round of the pool's loop. Only
    # the first ``_concurrency`` slots not retiring take jobs (all of them unless throttled).

    def _spare_capacity(self) -> int:
        spare = 0
        for slot in self._open_slots():
            # never below zero: a slot near max_messages must not take room from the others.
            # Conditionals, not min() and max(): on 3.11 a builtin call costs more than the
            # rest of this loop (bench/instructions.py).
            left = self.max_messages - slot.started
            room = (slot.window if slot.window < left else left) - slot.in_flight
            spare += room if room > 0 else 0
        return spare

    def _open_slots(self) -> list[Slot]:
        """The usable slots that have room for another job, in order."""
        slots: list[Slot] = []
        usable = self._concurrency
        for slot in self._slots:
            if slot.retiring:
                continue
            usable -= 1
            if usable < 0:
                break
            if slot.ready and self._has_room(slot):
                slots.append(slot)
        return slots

    def _has_room(self, slot: Slot) -> bool:
        """Can ``slot`` take one more job (its window, and max_messages for its connection)?"""
        return slot.in_flight < slot.window and slot.started < self.max_messages

    def _connections_to_open(self, now: float) -> int:
        room = self._concurrency - len(self._slots)
        if now < self._reopen_at or room <= 0:
            return 0
        opening = sum(1 for slot in self._slots if not slot.ready)
        spare = self._spare_capacity()
        waiting = len(self._eligible(now, limit=opening + spare + room))
        wanted = waiting - opening - spare
        # After a failed set-up, probe with one connection until a message gets through.
        if self._failures:
            room = min(room, 1 - opening)
        return self._lease(max(0, min(wanted, room)), now)

    def _lease(self, wanted: int, now: float) -> int:
        """How many of ``wanted`` connections the connection limiter lets open."""
        limiter = self.connection_limiter
        self._lease_refused = False
        if limiter is None:
            return wanted
        for granted in range(wanted):
            token = limiter.acquire(now)
            if token is None:
                self._lease_refused = True
                return granted
            self._leases.append(token)
        return wanted
