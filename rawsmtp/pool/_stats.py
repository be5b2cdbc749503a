"""What the engine tells its observers: the events it emits, counted, logged and dispatched.

The engine calls :meth:`Telemetry.emit` (its ``_emit``) on the loop with events built by the
functions here from its own records, so the engine's side of it is one line per point. The
telemetry keeps the counters and latencies of :func:`pool_stats`, writes the log lines
(:class:`~rawsmtp.pool._log.LogObserver`, on the loop, in order with the protocol transcript)
and hands each event to ``on_event=`` off the loop: the selectors pool through an
:class:`EventDispatcher` thread, the asyncio pool with ``loop.call_soon``. Either way the
callback sees the events in order, and an exception it raises is logged, never raised into
the pool. Counters are updated before the message's future resolves, so ``stats()`` read after
``future.result()`` counts that message.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from logging import DEBUG, INFO, WARNING
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .._errors import SMTPConnectionError
from ..protocol import SMTPError, State
from ._log import LogObserver
from ._observe import (
    ConnectionClosed,
    ConnectionOpened,
    MessageDelivered,
    MessageFailed,
    MessageRetried,
    MessageStarted,
    PoolEvent,
    PoolStats,
    Throttled,
)
from ._threads import daemon, start

if TYPE_CHECKING:
    from .._result import SendResult
    from ..config._options import Options
    from ._engine import PoolEngine, Submission
    from ._session import Session

__all__ = [
    "EventDispatcher",
    "Telemetry",
    "closed",
    "failed",
    "opened",
    "pool_stats",
]

EventCallback = Callable[[PoolEvent], object]
# ``call_soon(deliver, event)`` runs ``deliver(event)`` soon, after the loop's current step (the
# asyncio pool passes its loop's call_soon).
CallSoon = Callable[[Callable[[PoolEvent], None], PoolEvent], object]

_LATENCY_SAMPLES = 1024  # deliveries the latency summary is taken over (the most recent)
_DISPATCHER_IDLE = 2.0  # seconds without an event before the dispatcher thread ends


# -- the events, from the engine's records ------------------------------------------------------


def opened(session: Session, options: Options, now: float) -> ConnectionOpened:
    core = session.core
    tls = core is not None and core.tls
    return ConnectionOpened(
        connection_id=session.id, host=options.host, port=options.port, tls=tls, time=now
    )


def closed(
    session: Session, error: SMTPError | None, messages: int, now: float
) -> ConnectionClosed:
    return ConnectionClosed(connection_id=session.id, messages=messages, error=error, time=now)


def _started(session: Session, submission: Submission, now: float) -> MessageStarted:
    prepared = submission.prepared
    return MessageStarted(
        message_id=prepared.message_id,
        connection_id=session.id,
        recipients=len(prepared.envelope.rcpt_to),
        attempt=submission.attempts + 1,
        time=now,
    )


def _delivered(
    submission: Submission, result: SendResult, elapsed: float, now: float
) -> MessageDelivered:
    assert submission.connection_id is not None  # set when it was assigned
    return MessageDelivered(
        message_id=result.message_id,
        connection_id=submission.connection_id,
        result=result,
        elapsed=elapsed,
        time=now,
    )


def failed(submission: Submission, error: SMTPError) -> MessageFailed:
    # Failures are reported from places the loop's clock is not passed to: read it here.
    now = time.monotonic()
    return MessageFailed(
        message_id=submission.prepared.message_id,
        connection_id=submission.connection_id,
        error=error,
        elapsed=max(0.0, now - submission.submitted_at),
        time=now,
    )


def _retried(
    submission: Submission, error: SMTPError | None, now: float, charged: bool
) -> MessageRetried:
    return MessageRetried(
        message_id=submission.prepared.message_id,
        connection_id=submission.connection_id,
        error=error or submission.last_error or SMTPConnectionError("connection closed"),
        attempt=submission.attempts,
        delay=max(0.0, submission.not_before - now),
        charged=charged,
        time=now,
    )


# -- the stream's consumers ---------------------------------------------------------------------


def _deliver_to(callback: EventCallback, log: logging.Logger) -> Callable[[PoolEvent], None]:
    def deliver(event: PoolEvent) -> None:
        try:
            callback(event)
        except Exception:
            log.exception("on_event callback failed on %s", type(event).__name__)

    return deliver


class EventDispatcher:
    """Calls ``deliver(event)`` from one worker thread, in order; :meth:`post` never blocks.

    The thread starts with the first event and ends after ``_DISPATCHER_IDLE`` quiet seconds
    (or at :meth:`close`), so an idle pool holds no thread for it.
    """

    def __init__(self, deliver: Callable[[PoolEvent], None]) -> None:
        self._deliver = deliver
        self._events: queue.SimpleQueue[PoolEvent | None] = queue.SimpleQueue()
        self._lock = threading.Condition(threading.Lock())
        self._running = False
        self._thread: threading.Thread | None = None
        self._posted = 0  # only the loop writes it
        self._delivered = 0

    def post(self, event: PoolEvent) -> None:
        self._posted += 1
        self._events.put(event)
        if not self._running:  # re-checked under the lock: see _run's exit
            self._start()

    def _start(self) -> None:
        with self._lock:
            if self._running:
                return
            self._running = True
            self._thread = daemon(self._run, "rawsmtp-events")
            if start(self._thread):
                return
            self._running, self._thread = False, None
        self._drain()  # at interpreter shutdown: deliver on this thread (see _threads)

    def _drain(self) -> None:
        while not self._events.empty():
            event = self._events.get()
            if event is not None:
                self._deliver(event)
            with self._lock:
                self._delivered += event is not None
                self._lock.notify_all()

    def _run(self) -> None:
        while True:
            try:
                event = self._events.get(timeout=_DISPATCHER_IDLE)
            except queue.Empty:
                event = None
            if event is None:  # quiet, or close(): end unless something arrived meanwhile
                with self._lock:
                    self._running = False
                    if self._events.empty():
                        return
                    self._running = True
                continue
            self._deliver(event)
            with self._lock:
                self._delivered += 1
                self._lock.notify_all()

    def close(self, timeout: float | None = None) -> None:
        """Wait (at most ``timeout`` s) until every posted event was delivered; end the thread."""
        if threading.current_thread() is self._thread:  # on_event itself closed the pool
            return
        with self._lock:
            self._lock.wait_for(lambda: self._delivered >= self._posted, timeout)
        self._events.put(None)


class _Latencies:
    """The most recent delivery times, in a ring readable from any thread (a list copy is one
    step under the GIL, where a deque mutated by the loop could fail the copy)."""

    __slots__ = ("_next", "_samples")

    def __init__(self) -> None:
        self._samples: list[float] = []
        self._next = 0

    def record(self, seconds: float) -> None:
        if len(self._samples) < _LATENCY_SAMPLES:
            self._samples.append(seconds)
        else:
            self._samples[self._next] = seconds
            self._next = (self._next + 1) % _LATENCY_SAMPLES

    def summary(self) -> MappingProxyType[str, float]:
        samples = sorted(self._samples.copy())
        if not samples:
            return MappingProxyType({})
        last = len(samples) - 1
        return MappingProxyType(
            {"p50": samples[last // 2], "p90": samples[(last * 9) // 10], "max": samples[last]}
        )


class Telemetry:
    """One pool's counters, log lines and ``on_event`` delivery (see the module).

    The per-message points (:meth:`started`, :meth:`delivered`, :meth:`retrying`) count
    directly and build their event only when something consumes it: an ``on_event`` callback,
    or the log at the event's level. The level is asked each time (``isEnabledFor`` reads the
    logging module's cache), since the application may change it at any moment. The two events
    of a delivery, built and passed through the log for nothing, cost it 27,000 instructions
    (475k to 449k per message in ``bench/instructions.py``).
    """

    def __init__(self, options: Options, log: logging.Logger) -> None:
        self.sent = self.failed = self.retried = self.deferred = self.throttled = 0
        self.latency = _Latencies()
        self._carried: dict[int, int] = {}  # connection id -> messages it took to a final reply
        self._log = LogObserver(log)
        self._enabled = log.isEnabledFor
        self._deliver = _deliver_to(options.on_event, log) if options.on_event else None
        self.dispatcher = EventDispatcher(self._deliver) if self._deliver else None
        self._post: Callable[[PoolEvent], object] | None = (
            self.dispatcher.post if self.dispatcher else None
        )
        self._count: dict[type, Callable[[Any], None]] = {
            ConnectionOpened: self._count_opened,
            MessageFailed: self._count_failed,
            Throttled: self._count_throttled,
        }

    def deliver_with(self, call_soon: CallSoon) -> None:
        """Hand events to ``on_event`` through ``call_soon`` instead of a thread."""
        if self._deliver is not None:
            self.dispatcher, self._post = None, functools.partial(call_soon, self._deliver)

    def emit(self, event: PoolEvent) -> None:
        """On the loop: count, log, and pass on ``event``."""
        count = self._count.get(type(event))
        if count is not None:
            count(event)
        self._pass_on(event)

    def started(self, session: Session, submission: Submission, now: float) -> None:
        """The message was handed to ``session`` (logged at DEBUG)."""
        if self._post is not None or self._enabled(DEBUG):
            self._pass_on(_started(session, submission, now))

    def delivered(self, submission: Submission, result: SendResult, now: float) -> None:
        """The message's future resolves with ``result`` (logged at INFO, WARNING with
        refused recipients)."""
        elapsed = now - submission.submitted_at
        elapsed = elapsed if elapsed > 0.0 else 0.0  # not max(): see PoolEngine._delivered
        self.sent += 1
        self.latency.record(elapsed)
        self._carry(submission.connection_id)
        if self._post is not None or self._enabled(WARNING if result.rejected else INFO):
            self._pass_on(_delivered(submission, result, elapsed, now))

    def retrying(
        self, submission: Submission, error: SMTPError | None, now: float, *, charged: bool
    ) -> None:
        """The message went back to the queue (when it did: not when out of attempts);
        ``charged``: it cost an attempt. ``error`` None: its own last error, else "closed"."""
        if not submission.queued:
            return
        if charged:
            self.retried += 1
        else:
            self.deferred += 1
        if self._post is not None or self._enabled(WARNING):
            self._pass_on(_retried(submission, error, now, charged))

    def carried(self, connection_id: int) -> int:
        """Messages the connection took to a final reply (it is closing: forgotten here)."""
        return self._carried.pop(connection_id, 0)

    def close(self, timeout: float | None = None) -> None:
        """The pool has closed: let ``on_event`` see the last events (see EventDispatcher)."""
        if self.dispatcher is not None:
            self.dispatcher.close(timeout)

    def _pass_on(self, event: PoolEvent) -> None:
        self._log(event)
        if self._post is not None:
            self._post(event)

    def _count_opened(self, event: ConnectionOpened) -> None:
        self._carried[event.connection_id] = 0

    def _carry(self, connection_id: int | None) -> None:
        # Only while it is open: a message failed after its connection closed is not counted.
        if connection_id in self._carried:
            self._carried[connection_id] += 1

    def _count_failed(self, event: MessageFailed) -> None:
        self.failed += 1
        self._carry(event.connection_id)

    def _count_throttled(self, event: Throttled) -> None:
        self.throttled += 1


# -- the snapshot -------------------------------------------------------------------------------


def _state(session: Session, stopping: bool) -> str:
    slot: Any = session.slot
    if not session.ready:
        return "opening"
    core = session.core
    if stopping or slot.retiring or (core is not None and core.state is State.QUIT):
        return "closing"
    return "busy" if slot.in_flight else "ready"


def pool_stats(engine: PoolEngine) -> PoolStats:
    """``pool.stats()``: read from any thread, without stopping the loop (each figure is
    current, the set of them is not one instant)."""
    scheduler, telemetry = engine.scheduler, engine.telemetry
    sessions = list(engine.sessions)  # one C-level copy: safe from any thread
    states = Counter(_state(s, engine.stopping) for s in sessions if s.slot is not None)
    return PoolStats(
        queued=engine.queued,
        in_flight=scheduler.in_flight,
        connections=MappingProxyType(dict(states)),
        sent=telemetry.sent,
        failed=telemetry.failed,
        retried=telemetry.retried,
        deferred=telemetry.deferred,
        throttled=telemetry.throttled,
        max_connections=scheduler.effective_connections,
        rate_limit=scheduler.effective_rate_limit,
        backoff_until=scheduler.backoff_until or None,
        latency=telemetry.latency.summary(),
    )
