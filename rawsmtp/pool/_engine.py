"""The pool's logic without its event loop: :class:`PoolEngine`, shared by both drivers.

The engine owns the scheduler, the sessions and every message's future; it decides and the
sessions act. What it needs from an event loop is the small :class:`Driver` protocol: the
:class:`~rawsmtp.pool._transport.IOServices` it lends to sessions (a worker for blocking calls,
socket registration, batched writes) and a way back to the loop for cancellations. The selectors
pool (``rawsmtp.SMTPPool``) and the asyncio pool (``rawsmtp.aio.SMTPPool``) each give their engine
such a driver, a private object of theirs (so the pools show only the user API), and the two
behave the same by construction. Every engine method but :meth:`PoolEngine.submit` runs
on the driver's loop and is given the driver's clock as ``now``: the engine never reads one.
Sessions come from an injected factory, so tests can run the engine over scripted transports.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from .._errors import (
    SMTPConnectionError,
    SMTPDeliveryUnknownError,
    SMTPPoolClosedError,
    SMTPProxyError,
    SMTPQueueFullError,
    SMTPRecipientsRefusedError,
    SMTPTimeoutError,
)
from .._message import Envelope, PreparedMessage, prepare_message
from .._result import NO_REJECTIONS, SendResult, capabilities_of
from ..config._options import Options
from ..config._typing import BeforeCommit
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
from ..protocol._frozen import builder, open_twin
from ._future import SendFuture
from ._observe import Throttled
from ._scheduler import Job, Scheduler, Slot
from ._session import Session, SessionSettings, as_smtp_error
from ._stats import Telemetry, closed, failed, opened
from ._transport import IOServices
from ._wiring import make_socket_plan, pool_options, session_settings

__all__ = [
    "THROTTLE_REPLIES",
    "UNSET",
    "Driver",
    "EngineFacade",
    "PoolEngine",
    "SessionFactory",
    "Submission",
    "Unset",
]

# Replies that mean "too fast" or "too many", searched in "<code> <text>" of a 4xx reply (the
# text starts with the enhanced code): the server is fine and the message is not at fault, so
# the pool slows down instead of charging it. The throttle_replies option adds to these.
THROTTLE_REPLIES: tuple[re.Pattern[str], ...] = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        r"^4(21|51|54) 4\.7\.",  # policy limits: Gmail's 421-4.7.28 and 454 4.7.0
        r"^4(21|32) 4\.3\.2",  # "not accepting messages": Office 365's 432, "too busy"
        r"throttl",  # Amazon SES: 454 Throttling failure
        r"too (fast|busy|many (connections|concurrent|sessions|messages))",
        r"rate.?limit",
    )
)


class Unset(enum.Enum):
    """The type of :data:`UNSET` (a one-member enum: ``is``, ``match`` and mypy know it)."""

    UNSET = "UNSET"


UNSET = Unset.UNSET
"""``send(dkim=UNSET)``, the default: the pool's ``dkim`` option applies (None: unsigned)."""

_OpenSendResult = open_twin(SendResult)  # see _delivered

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
    """A message on its way (the scheduler's job): what the caller gave, its future, timings.

    After a delivery that some recipients deferred (4xx), the job goes round again to those
    alone (``retry_to``): ``accepted`` gathers the recipients accepted so far, ``rejected``
    every other one with its latest refusal, and ``delivered`` keeps the delivery's result."""

    prepared: PreparedMessage
    future: SendFuture[SendResult]
    timeout: float | None = None  # send(deadline=): seconds from entering the queue
    assigned_at: float = 0.0
    body_at: float = 0.0
    body_started: bool = False
    sent_bytes: int = 0
    last_error: SMTPError | None = field(default=None, repr=False)
    running: bool = False  # the future was moved to RUNNING (only the loop does that)
    retry_to: Envelope | None = field(default=None, repr=False)
    accepted: tuple[str, ...] = ()
    rejected: dict[str, SMTPResponseError] | None = field(default=None, repr=False)  # refusals()
    delivered: SendResult | None = field(default=None, repr=False)
    retried: tuple[str, ...] = ()  # recipients sent again alone after a 4xx
    submitted_at: float = field(default_factory=time.monotonic)  # send()'s time, its thread
    connection_id: int | None = None  # the session of its latest attempt
    # Where it is being sent, for a cancel() before its final dot (see cancel_future).
    placed: tuple[Session, Transaction] | None = field(default=None, repr=False)
    # send(before_commit=): run off the loop before each end of data (Session._hold).
    before_commit: BeforeCommit | None = field(default=None, repr=False)

    def start(self) -> bool:
        """Move the future to RUNNING once; False when the caller cancelled it first."""
        if self.running:  # sent before (and requeued): the caller may have cancelled since
            return not self.future.cancelled()
        if not self.future.set_running_or_notify_cancel():
            return False
        self.running = True
        return True

    def refusals(self) -> dict[str, SMTPResponseError]:
        """``rejected``, made on first use: most messages are never refused, and a dict each
        is 64 B more a queued message (bench/run.py, the queued rows)."""
        if self.rejected is None:
            self.rejected = {}
        return self.rejected

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


# Submission(prepared=, future=, timeout=, before_commit=), in half the instructions (see
# protocol._frozen.builder): its __init__ looked up twenty keyword-only defaults a message.
_new_submission = builder(Submission, "prepared", "future", "timeout", "before_commit")


def _permanent(error: SMTPError) -> bool:
    """Set-up failures that will not go away by retrying: fail the queue at once (5xx, failed
    credentials or no usable mechanism, a TLS failure that is not ``is_temporary``, such as a
    certificate that fails verification or require_tls unmet, misconfiguration)."""
    if isinstance(error, SMTPTLSError):
        return not error.is_temporary
    if isinstance(error, LocalProtocolError):
        return True
    if isinstance(error, SMTPProxyError):  # the proxy refused our credentials, or its TLS
        if isinstance(error.__cause__, SMTPTLSError):
            return not error.__cause__.is_temporary
        return error.reply_code is not None and "authentication" in error.message
    if isinstance(error, SMTPAuthenticationError):
        return not (error.code is not None and 400 <= error.code < 500)  # 454: try again
    return isinstance(error, SMTPResponseError) and (error.code or 0) >= 500


def _not_in(addresses: tuple[str, ...], known: tuple[str, ...]) -> tuple[str, ...]:
    # Out of message_done, which runs for every message: its variable would be a cell.
    return tuple(address for address in addresses if address not in known)


def _temporary(errors: Mapping[str, SMTPResponseError]) -> tuple[str, ...]:
    """The recipients refused with a 4xx: worth another try."""
    return tuple(address for address, error in errors.items() if error.is_temporary)


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
            retry_delay=o.retry_delay,
            max_retry_delay=o.max_retry_delay,
            delivery_timeout=o.delivery_timeout,
            idle_timeout=o.idle_timeout,
            max_connection_age=o.max_connection_age,
            rate_limiter=o.rate_limiter,
            connection_limiter=o.connection_limiter,
        )
        self._throttle_replies: tuple[re.Pattern[str], ...] = THROTTLE_REPLIES + tuple(
            item if isinstance(item, re.Pattern) else re.compile(re.escape(item), re.IGNORECASE)
            for item in o.throttle_replies
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
        self._last_error: SMTPError | None = None  # the latest connection failure
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
        self,
        message: Any,
        envelope: Any,
        *,
        block: bool,
        timeout: float | None,
        on_loop: bool,
        deadline: float | None = None,
        dkim: Any = UNSET,
        before_commit: BeforeCommit | None = None,
    ) -> Submission | Future[SendResult]:
        """Prepare and count a message; the driver then hands the Submission to :meth:`enqueue`.

        Returns an already failed future instead when the pool is closed or the message's
        source could not be read. ``deadline``: seconds it may wait in the queue (the
        ``delivery_timeout`` option when None); ``dkim`` replaces the pool's ``dkim`` option;
        ``before_commit`` is the message's commit hook (see the drivers' ``send``).
        """
        future: SendFuture[SendResult] = SendFuture(self._futures_lock, self._withdraw)
        if self.closed:
            future.set_exception(SMTPPoolClosedError("the pool is closed"))
            return future
        if deadline is not None and not deadline > 0:
            raise LocalProtocolError(f"deadline must be a number of seconds > 0, not {deadline!r}")
        if before_commit is not None and not callable(before_commit):
            raise LocalProtocolError(f"before_commit must be callable, not {before_commit!r}")
        if dkim is UNSET:
            signer = self.options.dkim
        elif dkim is None:
            signer = None
        else:
            from ..dkim import signatures  # only when asked for, as the option does

            signer = signatures(dkim)
        try:
            prepared = prepare_message(message, envelope, signer)
        except SMTPConnectionError as error:  # the source failed while read: not a misuse
            future.set_exception(error)
            return future
        submission = _new_submission(prepared, future, deadline, before_commit)
        # The condition's own lock, entered directly: Condition.__enter__ is Python code, and
        # this runs for every message. Not in a with block either: see SendFuture.commit.
        counting = self._counting
        counting.acquire()
        try:
            self._wait_for_room(block, timeout, on_loop)
            if self.closed:
                future.set_exception(SMTPPoolClosedError("the pool is closed"))
                return future
            self._entered += 1
            self.idle = False
        finally:
            counting.release()
        return submission

    def _wait_for_room(self, block: bool, timeout: float | None, on_loop: bool) -> None:
        limit = self.options.max_queue
        if limit is None or self.queued < limit:
            return
        if not block or on_loop:
            raise SMTPQueueFullError(f"the queue holds {limit} messages already")
        self._wait_for_queue(limit, timeout)

    def _wait_for_queue(self, limit: int, timeout: float | None) -> None:
        # Apart from _wait_for_room, which runs for every message: a function whose variables
        # a lambda captures pays for making them cells on every call, lambda or not.
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

    def enqueue(self, submission: Submission, now: float) -> None:
        if self.stopping:
            self._count_dequeued()
            self._fail(submission, SMTPPoolClosedError("the pool is closed"))
            return
        if submission.timeout is not None:
            submission.deadline = now + submission.timeout
        self.scheduler.submit(submission, now)
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
        for submission in decisions.expire:
            self._count_dequeued()
            self._expired(submission)
        for slot, submission in decisions.assign:
            self._count_dequeued()
            self._assign(by_slot[slot], submission, now)
        for _ in range(decisions.open):
            self._open_session(now)
        self._update_idle()

    def next_deadline(self, now: float) -> float | None:
        # A plain loop: a comprehension is a call of its own, and min() another (on 3.11).
        soonest: float | None = None
        for session in self.sessions:
            deadline = session.deadline()
            if deadline is not None and (soonest is None or deadline < soonest):
                soonest = deadline
        # Closing, decide() decides nothing: a scheduler deadline (an idle connection's, while
        # its QUIT is answered) would come round at once, forever.
        deadline = None if self.stopping else self.scheduler.next_deadline(now)
        if deadline is not None and (soonest is None or deadline < soonest):
            soonest = deadline
        return soonest

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

    def message_started(self, session: Session, transaction: Transaction, now: float) -> None:
        """Its MAIL FROM is on the wire (its body is asked for): the rate limit counts it."""
        job: Submission = transaction.tag  # type: ignore[assignment]
        if job.reserved:  # else nothing to confirm, and no call for it (once a message)
            self.scheduler.job_started(job, now)

    def message_done(
        self, session: Session, event: MessageAccepted | MessageFailed, now: float
    ) -> None:
        submission: Submission = event.transaction.tag  # type: ignore[assignment]
        slot = session.slot
        assert isinstance(slot, Slot)
        scheduler = self.scheduler
        if isinstance(event, MessageFailed) and isinstance(event.error, SMTPCapabilityError):
            scheduler.job_finished(slot, now, submission, carried=False)  # nothing was written
            self._fail(submission, event.error)
            return
        if submission.reserved:  # refused before its body: MAIL went out
            scheduler.job_started(submission, now)
        if isinstance(event, MessageFailed) and event.pipelining_refused:
            self._pipelining_refused(session, now)
            self._defer(slot, submission, event.error, now, charge=False)
            return
        if isinstance(event, MessageAccepted):
            self._delivered(session, submission, event, now)
        deferred, error = self._to_retry(submission, event)
        if not deferred:
            scheduler.job_finished(slot, now, submission)
            self._settle(submission, error)
            return
        if len(deferred) < len(event.transaction.recipients):
            submission.retry_to = dataclasses.replace(
                submission.prepared.envelope, rcpt_to=deferred
            )
            submission.retried += _not_in(deferred, submission.retried)
        assert error is not None
        self._defer(slot, submission, error, now, charge=not self._throttling(session, error, now))

    @staticmethod
    def _to_retry(
        submission: Submission, event: MessageAccepted | MessageFailed
    ) -> tuple[tuple[str, ...], SMTPError | None]:
        """The recipients to try again (those a 4xx deferred), and the error to report."""
        if isinstance(event, MessageAccepted):
            if not event.rejected:  # the usual case: every recipient took it
                return (), None
            deferred = _temporary(event.rejected)
            return deferred, event.rejected[deferred[0]] if deferred else None
        error = event.error
        if isinstance(error, SMTPRecipientsRefusedError):
            submission.refusals().update(error.rejected)
            return _temporary(error.rejected), error
        submission.last_error = error
        if isinstance(error, SMTPResponseError) and error.is_temporary:
            return event.transaction.recipients, error
        return (), error

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
        if error is not None:
            self._last_error = error
        for transaction in event.unconfirmed:
            self.scheduler.job_started(transaction.tag, now)  # type: ignore[arg-type]
            self._fail(
                transaction.tag,  # type: ignore[arg-type]
                SMTPDeliveryUnknownError(
                    f"the message was sent but its final reply was lost ({error}); "
                    "it may have been delivered, so it is not resent"
                ),
            )
        requeue = self._requeue(event.unsent, error, now)
        attempts = {id(job): job.attempts for job in requeue}
        slot = session.slot
        assert isinstance(slot, Slot)
        del self._by_slot[slot]
        if error is None or self.stopping:
            failed = self.scheduler.slot_closed(slot, now, requeue=requeue)
        else:
            if event.pipelining_refused:
                self._pipelining_refused(session, now)
            throttled = self._throttling(session, error, now)
            # The core closed it to abandon a message inside DATA (a cancel, a failed commit
            # hook): the messages behind it are not at fault.
            abandoned = isinstance(error, LocalProtocolError)
            failed = self.scheduler.slot_failed(
                slot,
                now,
                requeue=requeue,
                permanent=setup_failed and _permanent(error),
                charge=not (throttled or event.pipelining_refused or abandoned),
            )
        for job in failed:
            self._count_dequeued()
            self._fail(job, error or job.last_error or SMTPConnectionError("not sent"))
        for job in requeue:  # charged only where the scheduler took an attempt
            self.telemetry.retrying(job, error, now, charged=job.attempts > attempts[id(job)])

    def _requeue(
        self, unsent: tuple[Transaction, ...], error: SMTPError | None, now: float
    ) -> list[Submission]:
        """Messages the server never committed go back to the queue, unless they cannot."""
        requeue: list[Submission] = []
        for transaction in unsent:
            submission: Submission = transaction.tag  # type: ignore[assignment]
            # Its MAIL may be out: counting it errs on the safe side of the rate limit.
            self.scheduler.job_started(submission, now)
            submission.last_error = error or submission.last_error
            if submission.body_started and not submission.prepared.restartable:
                self._fail(submission, error or SMTPConnectionError("connection lost"))
            elif not self.stopping:
                requeue.append(submission)
                self._count_requeued()
            else:
                self._fail(submission, SMTPPoolClosedError("the pool is closed"))
        return requeue

    # -- the failure policy ---------------------------------------------------------------------

    def _defer(
        self, slot: Slot, submission: Submission, error: SMTPError, now: float, *, charge: bool
    ) -> None:
        """Back to the queue on the same connection's terms; fail it when out of attempts."""
        submission.last_error = error
        if self.stopping:
            self.scheduler.job_finished(slot, now, submission)
            self._fail(submission, SMTPPoolClosedError("the pool is closed"))
        elif self.scheduler.job_deferred(slot, submission, now, charge=charge):
            self._count_requeued()
            self.telemetry.retrying(submission, error, now, charged=charge)
        else:
            self._settle(submission, error)

    def _throttling(self, session: Session, error: SMTPError, now: float) -> bool:
        """Does ``error`` say "too fast / too many"? Then slow down (and say so)."""
        if not (isinstance(error, SMTPResponseError) and error.is_temporary):
            return False
        text = f"{error.code} {error.response or ''}"
        if not any(pattern.search(text) for pattern in self._throttle_replies):
            return False
        scheduler = self.scheduler
        scheduler.throttled(now)
        # The event is logged (WARNING), counted in stats() and given to on_event.
        self._emit(
            Throttled(
                connection_id=session.id,
                reply=text,
                max_connections=scheduler.effective_connections,
                rate_limit=scheduler.effective_rate_limit,
                time=now,
            )
        )
        return True

    def _pipelining_refused(self, session: Session, now: float) -> None:
        """The server refused what followed an accepted end: new sessions pipeline envelopes."""
        core = session.core
        if core is None or core.pipelining != "envelope" or self.settings.pipelining != "full":
            return
        self.settings = dataclasses.replace(self.settings, pipelining="envelope")
        self.log.warning(
            "%s refuses commands pipelined after the end of a message: "
            "pipelining envelopes only from now on",
            self.options.host,
        )
        if isinstance(session.slot, Slot):
            self.scheduler.slot_ready(session.slot, now, window=core.window)

    def _delivered(
        self, session: Session, submission: Submission, event: MessageAccepted, now: float
    ) -> None:
        """Record a delivery: the message's result, for the recipients it reached so far."""
        prepared = submission.prepared
        accepted, rejected = event.accepted, event.rejected
        if rejected or submission.rejected:  # refusals of this and earlier attempts
            refusals = submission.refusals()
            for address in accepted:
                refusals.pop(address, None)
            refusals.update(rejected)
            rejected = refusals
        if submission.accepted:
            accepted = submission.accepted + accepted
        elif accepted == event.transaction.recipients:  # the usual case: share the envelope's
            accepted = event.transaction.recipients
        submission.accepted = accepted
        result = _OpenSendResult()  # every field set, as protocol._frozen says (one a message)
        result.accepted, result.rejected = accepted, tuple(rejected) if rejected else ()
        result.rejected_errors = MappingProxyType(dict(rejected)) if rejected else NO_REJECTIONS
        result.response, result.envelope = str(event.reply), prepared.envelope
        result.message_id = prepared.message_id
        result.message_size = prepared.size if prepared.size is not None else submission.sent_bytes
        # Conditionals, not max(0.0, ...): a builtin call costs ~1,700 instructions on 3.11.
        envelope_time = submission.body_at - submission.assigned_at
        result.envelope_time = envelope_time if envelope_time > 0.0 else 0.0
        message_time = now - submission.body_at
        result.message_time = message_time if message_time > 0.0 else 0.0
        result.capabilities = capabilities_of(session.core)
        result.deferred, result.unconfirmed = submission.retried, ()
        result.__class__ = SendResult
        submission.delivered = result

    def _settle(self, submission: Submission, error: SMTPError | None) -> None:
        """Every recipient has its final outcome: resolve the future."""
        result = submission.delivered
        if result is not None:
            if submission.retried:  # the refusals may have changed since
                result = self._result(submission)
            self._forget(submission)
            if not submission.future.done():
                self.telemetry.delivered(submission, result, time.monotonic())
                submission.future.set_result(result)
            return
        if isinstance(error, SMTPRecipientsRefusedError) and submission.retried:
            # Every attempt refused: report every recipient's refusal, not the last attempt's.
            error = SMTPRecipientsRefusedError(
                "all recipients were refused", rejected=dict(submission.refusals())
            )
        assert error is not None
        self._fail(submission, error)

    def _result(self, submission: Submission, unconfirmed: tuple[str, ...] = ()) -> SendResult:
        """The delivery's result with each recipient's final outcome."""
        delivered = submission.delivered
        assert delivered is not None
        rejected = submission.refusals()
        for address in unconfirmed:
            rejected.pop(address, None)
        return dataclasses.replace(
            delivered,
            rejected=tuple(rejected),
            rejected_errors=MappingProxyType(dict(rejected)) if rejected else NO_REJECTIONS,
            deferred=submission.retried,
            unconfirmed=unconfirmed,
        )

    def _expired(self, submission: Submission) -> None:
        if submission.delivered is not None:  # delivered in part: the rest stays refused
            self._settle(submission, None)
            return
        timeout = SMTPTimeoutError(
            "the message's deadline passed before it could be delivered", phase="queue"
        )
        # What kept it from going: its own last failure, else the destination's.
        timeout.__cause__ = submission.last_error or self._last_error
        self._fail(submission, timeout)

    # -- helpers --------------------------------------------------------------------------------

    def _assign(self, session: Session, submission: Submission, now: float) -> None:
        if not submission.start():  # cancelled while queued
            self._forget(submission)
            self._finish_slot(session, submission, now)
            return
        submission.assigned_at = now
        submission.connection_id = session.id
        self.telemetry.started(session, submission, now)
        transaction = self._transaction_for(submission, session)
        submission.placed = (session, transaction)
        try:
            session.send(transaction, now)
        except SMTPCapabilityError as error:
            self._finish_slot(session, submission, now)
            self._fail(submission, error)

    def _transaction_for(self, submission: Submission, session: Session) -> Transaction:
        prepared, core = submission.prepared, session.core
        assert core is not None
        offered = core.extensions
        if not offered.smtputf8 and prepared.smtputf8:  # the cheaper test first
            # Domains have an ASCII form (A-labels); without one the capability error stands.
            ascii_form = prepared.without_smtputf8()
            if ascii_form is not None:
                submission.prepared = prepared = ascii_form
        eight_bit = prepared.eight_bit
        if eight_bit is None:  # a stream we could not scan: declare 8BITMIME where offered
            eight_bit = offered.eightbitmime
        envelope = submission.retry_to or prepared.envelope
        return envelope.transaction(
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

    def _finish_slot(self, session: Session, submission: Submission, now: float) -> None:
        if isinstance(session.slot, Slot):
            self.scheduler.job_finished(session.slot, now, submission, carried=False)

    def _count_requeued(self) -> None:
        with self.lock:
            self._entered += 1

    def _forget(self, submission: Submission) -> None:
        """Its outcome is known: nothing can cancel it any more. ``placed`` goes too: its
        transaction's tag is the submission, a cycle that would otherwise keep every finished
        message (with its bytes) until a full garbage collection, which a long queue makes
        rare (bench/run.py's queued rows: the aio pool's peak RSS, 163 MB, was mostly that)."""
        self._cancellable.pop(submission.future, None)
        submission.placed = None

    def _fail(self, submission: Submission, error: SMTPError) -> None:
        """The message is over without (further) delivery; a message delivered to some of its
        recipients resolves with its result all the same (unknown ones in ``unconfirmed``)."""
        self._forget(submission)
        if submission.future.done() or not submission.start():
            return
        if submission.delivered is not None:
            retry_to = submission.retry_to
            unknown = isinstance(error, SMTPDeliveryUnknownError) and retry_to is not None
            unconfirmed = retry_to.rcpt_to if unknown and retry_to is not None else ()
            result = self._result(submission, unconfirmed)
            self.telemetry.delivered(submission, result, time.monotonic())
            submission.future.set_result(result)
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
