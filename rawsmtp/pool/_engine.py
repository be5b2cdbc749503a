"""The pool's logic without its event loop: :class:`PoolEngine`, shared by both drivers.

The engine owns the scheduler, the sessions and every message's future; it decides and the
sessions act. What it needs from an event loop is the small :class:`Driver` protocol: the
:class:`~rawsmtp.pool._transport.IOServices` it lends to sessions (a worker for blocking calls,
socket registration, batched writes) and a way back to the loop for cancellations. The selectors
pool (``rawsmtp.SMTPPool``) and the asyncio pool (``rawsmtp.aio.SMTPPool``) are such drivers, so
the two behave the same by construction. Every engine method but :meth:`PoolEngine.submit` runs
on the driver's loop and is given the driver's clock as ``now``: the engine never reads one.
Sessions come from an injected factory, so tests can run the engine over scripted transports.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from .._errors import (
    SMTPConnectionError,
    SMTPDeliveryUnknownError,
    SMTPPoolClosedError,
    SMTPQueueFullError,
)
from .._message import PreparedMessage, prepare_message
from .._result import NO_REJECTIONS, SendResult, capabilities_of
from ..config._options import Options
from ..protocol import (
    ConnectionClosed,
    LocalProtocolError,
    MessageAccepted,
    MessageFailed,
    SMTPAuthenticationError,
    SMTPCapabilityError,
    SMTPError,
    SMTPResponseError,
    SMTPTLSError,
    Transaction,
)
from ._future import SendFuture
from ._scheduler import Job, Scheduler, Slot
from ._session import Session, SessionSettings, as_smtp_error
from ._stats import Telemetry, closed, delivered, failed, opened, retries, started
from ._transport import IOServices
from ._wiring import make_socket_plan, pool_options, session_settings

__all__ = ["Driver", "EngineFacade", "PoolEngine", "SessionFactory", "Submission"]

# Builds a session (tests pass one that runs over a scripted transport).
SessionFactory = Callable[[Any, IOServices, SessionSettings, float], Session]


class Driver(IOServices, Protocol):
    """What the engine needs from an event loop: the I/O services, and the way back to it."""

    def withdraw(self, future: Future[SendResult]) -> None:
        """The caller cancelled ``future`` (any thread): call :meth:`PoolEngine.cancel_future`
        on the loop."""
        ...


@dataclass(slots=True, eq=False, kw_only=True)
class Submission(Job):
    """A message on its way (the scheduler's job): what the caller gave, its future, timings."""

    prepared: PreparedMessage
    future: SendFuture[SendResult]
    assigned_at: float = 0.0
    body_at: float = 0.0
    body_started: bool = False
    sent_bytes: int = 0
    last_error: SMTPError | None = field(default=None, repr=False)
    running: bool = False  # the future was moved to RUNNING (only the loop does that)
    submitted_at: float = field(default_factory=time.monotonic)  # send()'s time, its thread
    connection_id: int | None = None  # the session of its latest attempt
    # Where it is being sent, for a cancel() before its final dot (see cancel_future).
    placed: tuple[Session, Transaction] | None = field(default=None, repr=False)

    def start(self) -> bool:
        """Move the future to RUNNING once; False when the caller cancelled it first."""
        if self.running:  # sent before (and requeued): the caller may have cancelled since
            return not self.future.cancelled()
        if not self.future.set_running_or_notify_cancel():
            return False
        self.running = True
        return True

    def commit(self) -> bool:
        """Its final dot is about to be handed out: False when the caller cancelled first."""
        return self.future.commit()

    def chunks(self, now: float) -> Iterator[bytes]:
        self.body_started = True
        self.body_at = now
        if self.prepared.size is not None:  # known: no need to count what goes out
            return self.prepared.chunks()
        return self._counted(self.prepared.chunks())

    def _counted(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        self.sent_bytes = 0
        for chunk in chunks:
            self.sent_bytes += len(chunk)
            yield chunk


def _permanent(error: SMTPError | None) -> bool:
    """Set-up failures that will not go away by retrying: fail the queue at once."""
    if isinstance(error, SMTPAuthenticationError | SMTPTLSError | LocalProtocolError):
        return True
    return isinstance(error, SMTPResponseError) and (error.code or 0) >= 500


class PoolEngine:
    """Scheduling, connections and futures of one pool (see the module docstring)."""

    def __init__(
        self,
        options: dict[str, Any],
        driver: Driver,
        *,
        session_factory: SessionFactory = Session,
    ) -> None:
        self.options: Options = pool_options(options)
        self.settings: SessionSettings = session_settings(self.options)
        self.session_factory = session_factory
        self.log = self.settings.logger
        self.driver = driver
        o = self.options
        self.scheduler: Scheduler[Submission] = Scheduler(
            max_connections=o.max_connections,
            max_messages=o.max_messages,
            rate_limit=o.rate_limit,
            rate_delta=o.rate_delta,
            max_retries=o.max_retries,
            idle_timeout=o.idle_timeout,
            max_connection_age=o.max_connection_age,
            rate_limiter=o.rate_limiter,
            connection_limiter=o.connection_limiter,
        )
        self.sessions: dict[Session, None] = {}  # every open session, in opening order
        self._by_slot: dict[Slot, Session] = {}
        self.stopping = False
        self.closed = False  # no more send(); set from the caller's thread
        # Messages waiting, readable from any thread: ``queued`` = entered - left. Callers add
        # under the lock; only the loop counts departures, without the lock on the hot path
        # (a lone writer), taking it only to wake senders blocked on ``max_queue``.
        self._counting = threading.Lock()  # entered directly by submit(): see there
        self.lock = threading.Condition(self._counting)
        self._entered = 0
        self._left = 0
        self.idle = True
        self.idle_callbacks: list[Callable[[], None]] = []
        self._verifying: dict[Session, Future[bool]] = {}
        self._cancellable: dict[Future[SendResult], Submission] = {}  # queued, not started
        # Shared by every future of the pool (see SendFuture); the bound method is made once.
        self._futures_lock = threading.RLock()
        self._withdraw = driver.withdraw
        self.telemetry = Telemetry(self.options, self.log)
        self._emit = self.telemetry.emit  # events: counted, logged, given to on_event

    @property
    def queued(self) -> int:
        """Messages submitted and not yet started (or failed)."""
        return self._entered - self._left

    # -- the caller's side (any thread) ---------------------------------------------------------

    def submit(
        self, message: Any, envelope: Any, *, block: bool, timeout: float | None, on_loop: bool
    ) -> Submission | Future[SendResult]:
        """Prepare and count a message; the driver then hands the Submission to :meth:`enqueue`.

        Returns an already failed future instead when the pool is closed.
        """
        future: SendFuture[SendResult] = SendFuture(self._futures_lock, self._withdraw)
        if self.closed:
            future.set_exception(SMTPPoolClosedError("the pool is closed"))
            return future
        prepared = prepare_message(message, envelope, self.options.dkim)
        submission = Submission(prepared=prepared, future=future)
        # The condition's own lock, entered directly: Condition.__enter__ is Python code, and
        # this runs for every message.
        with self._counting:
            self._wait_for_room(block, timeout, on_loop)
            if self.closed:
                future.set_exception(SMTPPoolClosedError("the pool is closed"))
                return future
            self._entered += 1
            self.idle = False
        return submission

    def _wait_for_room(self, block: bool, timeout: float | None, on_loop: bool) -> None:
        limit = self.options.max_queue
        if limit is None or self.queued < limit:
            return
        if not block or on_loop:
            raise SMTPQueueFullError(f"the queue holds {limit} messages already")
        if not self.lock.wait_for(lambda: self.closed or self.queued < limit, timeout):
            raise SMTPQueueFullError(f"the queue stayed full for {timeout} s")

    def mark_closed(self) -> bool:
        """Stop taking messages; False when the pool was closed already."""
        with self.lock:
            if self.closed:
                return False
            self.closed = True
            self.lock.notify_all()
            return True

    # -- the loop's side ------------------------------------------------------------------------

    def enqueue(self, submission: Submission) -> None:
        if self.stopping:
            self._count_dequeued()
            self._fail(submission, SMTPPoolClosedError("the pool is closed"))
            return
        self.scheduler.submit(submission)
        self._cancellable[submission.future] = submission  # until its outcome

    def cancel_future(self, future: Future[SendResult], now: float) -> None:
        """The caller cancelled ``future``: withdraw its message if it has not started, or
        abandon it on its connection if its final dot is not out (SendFuture said so)."""
        submission = self._cancellable.pop(future, None)
        if submission is None:
            return
        if self.scheduler.cancel(submission):
            self._count_dequeued()
            self._update_idle()
        elif submission.placed is not None:
            session, transaction = submission.placed
            session.abandon(transaction, now)

    def decide(self, now: float) -> None:
        if self.stopping:
            return
        decisions = self.scheduler.decide(now)
        by_slot = self._by_slot
        for slot in decisions.retire:
            by_slot[slot].quit(now)
        for slot, submission in decisions.assign:
            self._count_dequeued()
            self._assign(by_slot[slot], submission, now)
        for _ in range(decisions.open):
            self._open_session(now)
        self._update_idle()

    def next_deadline(self, now: float) -> float | None:
        deadlines = [d for c in self.sessions if (d := c.deadline()) is not None]
        # Closing, decide() decides nothing: a scheduler deadline (an idle connection's, while
        # its QUIT is answered) would come round at once, forever.
        if not self.stopping and (deadline := self.scheduler.next_deadline(now)) is not None:
            deadlines.append(deadline)
        return min(deadlines) if deadlines else None

    def fire_timers(self, now: float) -> None:
        for session in list(self.sessions):
            deadline = session.deadline()
            if deadline is not None and now >= deadline:
                session.on_timer(now)

    def start_verify(self, future: Future[bool], now: float) -> None:
        session = self.session_factory(self, self.driver, self.settings, now)
        self._verifying[session] = future
        self.sessions[session] = None
        self._plan(session)

    def begin_close(self, now: float) -> None:
        self.stopping = True
        closed = SMTPPoolClosedError("the pool was closed before the message was sent")
        for job in self.scheduler.drain():
            self._count_dequeued()
            self._fail(job, closed)
        for session in list(self.sessions):
            session.quit(now)

    def fail_everything(self, error: SMTPError, now: float) -> None:
        """Fail every queued message with ``error`` and drop every session at once: messages
        in flight fail too (with SMTPDeliveryUnknownError once their final dot was sent)."""
        self.stopping = True
        for job in self.scheduler.drain():
            self._count_dequeued()
            self._fail(job, error)
        for session in list(self.sessions):
            session.close_now(error, now)

    def abort(self, now: float) -> None:
        """Close without waiting for messages in flight (close's timeout ran out, or abort())."""
        self.fail_everything(SMTPPoolClosedError("the pool was aborted"), now)

    @property
    def finished(self) -> bool:
        """Closing, and every session has ended."""
        return self.stopping and not self.sessions

    def describe(self) -> str:
        """``queued=3 | 2 ready, 1 opening``: the pool's state for its ``repr``."""
        sessions = list(self.sessions)  # one C-level copy: safe from any thread
        ready = sum(1 for session in sessions if session.ready)
        opening = len(sessions) - ready
        state = f"queued={self.queued} | {ready} ready, {opening} opening"
        return f"{state}, closed" if self.closed else state

    # -- SessionReports: what sessions report ---------------------------------------------------

    def session_ready(self, session: Session, window: int, now: float) -> None:
        if session in self._verifying:
            session.quit(now)
            return
        self._emit(opened(session, self.options, now))
        assert isinstance(session.slot, Slot)
        self.scheduler.slot_ready(session.slot, now, window=window)

    def message_done(
        self, session: Session, event: MessageAccepted | MessageFailed, now: float
    ) -> None:
        submission: Submission = event.transaction.tag  # type: ignore[assignment]
        self._finish_slot(session, now)
        self._cancellable.pop(submission.future, None)
        if isinstance(event, MessageFailed):
            self._fail(submission, event.error)
            return
        prepared = submission.prepared
        accepted = event.accepted
        if accepted == event.transaction.recipients:  # the usual case: share the envelope's
            accepted = event.transaction.recipients
        result = SendResult(
            accepted=accepted,
            rejected=tuple(event.rejected),
            rejected_errors=MappingProxyType(dict(event.rejected))
            if event.rejected
            else NO_REJECTIONS,
            response=str(event.reply),
            envelope=prepared.envelope,
            message_id=prepared.message_id,
            message_size=prepared.size if prepared.size is not None else submission.sent_bytes,
            envelope_time=max(0.0, submission.body_at - submission.assigned_at),
            message_time=max(0.0, now - submission.body_at),
            capabilities=capabilities_of(session.core),
        )
        if not submission.future.done():
            self._emit(delivered(session, submission, result, now))
            submission.future.set_result(result)

    def session_closed(
        self, session: Session, event: ConnectionClosed, now: float, *, setup_failed: bool
    ) -> None:
        self.sessions.pop(session, None)
        if (verify := self._verifying.pop(session, None)) is not None:
            if event.error is None:
                verify.set_result(True)
            else:
                verify.set_exception(event.error)
            return
        error = event.error
        self._emit(closed(session, error, self.telemetry.carried(session.id), now))
        for transaction in event.unconfirmed:
            self._fail(
                transaction.tag,  # type: ignore[arg-type]
                SMTPDeliveryUnknownError(
                    f"the message was sent but its final reply was lost ({error}); "
                    "it may have been delivered, so it is not resent"
                ),
            )
        requeue = self._requeue(event.unsent, error)
        assert isinstance(session.slot, Slot)
        del self._by_slot[session.slot]
        charge_setup = setup_failed and error is not None and not self.stopping
        exhausted = self.scheduler.slot_closed(
            session.slot, now, requeue=requeue, setup_failed=charge_setup
        )
        if charge_setup and _permanent(error):
            exhausted += self.scheduler.drain()
        for job in exhausted:
            self._count_dequeued()
            reason = error or job.last_error
            self._fail(job, reason or SMTPConnectionError("could not send the message"))
        for retry in retries(requeue, error, now):
            self._emit(retry)

    def _requeue(
        self, unsent: tuple[Transaction, ...], error: SMTPError | None
    ) -> list[Submission]:
        """Messages the server never committed go back to the queue, unless they cannot."""
        requeue: list[Submission] = []
        for transaction in unsent:
            submission: Submission = transaction.tag  # type: ignore[assignment]
            submission.last_error = error
            if submission.body_started and not submission.prepared.restartable:
                self._fail(submission, error or SMTPConnectionError("connection lost"))
            elif not self.stopping:
                requeue.append(submission)
                with self.lock:
                    self._entered += 1
            else:
                self._fail(submission, SMTPPoolClosedError("the pool is closed"))
        return requeue

    # -- helpers --------------------------------------------------------------------------------

    def _assign(self, session: Session, submission: Submission, now: float) -> None:
        if not submission.start():  # cancelled while queued
            self._cancellable.pop(submission.future, None)
            self._finish_slot(session, now)
            return
        submission.assigned_at = now
        submission.connection_id = session.id
        self._emit(started(session, submission, now))
        transaction = self._transaction_for(submission, session)
        submission.placed = (session, transaction)
        try:
            session.send(transaction, now)
        except SMTPCapabilityError as error:
            self._finish_slot(session, now)
            self._fail(submission, error)

    def _transaction_for(self, submission: Submission, session: Session) -> Transaction:
        prepared, core = submission.prepared, session.core
        assert core is not None
        offered = core.extensions
        eight_bit = prepared.eight_bit
        if eight_bit is None:  # a stream we could not scan: declare 8BITMIME where offered
            eight_bit = offered.eightbitmime
        return prepared.envelope.transaction(
            size=prepared.size,
            body="8BITMIME" if eight_bit else None,
            smtputf8=prepared.utf8_headers and offered.smtputf8,
            tag=submission,
        )

    def _open_session(self, now: float) -> None:
        session = self.session_factory(self, self.driver, self.settings, now)
        slot = self.scheduler.slot_opened(now)
        session.slot = slot
        self._by_slot[slot] = session
        self.sessions[session] = None
        self._plan(session)

    def _plan(self, session: Session) -> None:
        def done(plan: Any, error: BaseException | None, now: float) -> None:
            if error is not None:
                session.close_now(as_smtp_error(error), now)
            else:
                session.start(plan, now)

        options = self.options
        self.driver.run_blocking(lambda: make_socket_plan(options), done)

    def _count_dequeued(self) -> None:
        self._left += 1
        if self.options.max_queue is not None:  # only then can a sender be waiting
            with self.lock:
                self.lock.notify_all()

    def _update_idle(self) -> None:
        idle = self.scheduler.is_idle() and self.queued == 0
        became_idle, self.idle = idle and not self.idle, idle
        if became_idle:
            for callback in list(self.idle_callbacks):
                try:
                    callback()
                except Exception:
                    self.log.exception("on_idle callback failed")

    def _finish_slot(self, session: Session, now: float) -> None:
        if isinstance(session.slot, Slot):
            self.scheduler.job_finished(session.slot, now)

    def _fail(self, submission: Submission, error: SMTPError) -> None:
        self._cancellable.pop(submission.future, None)
        if submission.future.done() or not submission.start():
            return
        self._emit(failed(submission, error))
        submission.future.set_exception(error)


class EngineFacade:
    """What both public pools show of their engine, written once."""

    _engine: PoolEngine

    @property
    def options(self) -> Options:
        """The validated options (see the README's table)."""
        return self._engine.options

    def on_idle(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the pool's loop; keep it short) whenever the pool becomes idle."""
        self._engine.idle_callbacks.append(callback)

    def is_idle(self) -> bool:
        """True when nothing is queued and another message would start at once."""
        return self._engine.idle

    @property
    def pending(self) -> int:
        """Messages queued and not yet started."""
        return self._engine.queued

    def __repr__(self) -> str:
        return f"<SMTPPool {self._engine.describe()}>"
