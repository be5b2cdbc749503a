"""``SMTPPool``: the public pool, one ``selectors`` event loop in a background thread.

``send()`` may be called from any thread; it hands the message to the loop through a locked
inbox and a wake-up socket pair, and returns a ``concurrent.futures.Future``. The loop owns every
connection and asks the pure :class:`~rawsmtp._scheduler.Scheduler` what to do; blocking work
(name resolution, the ``get_socket`` hook, token providers) runs in a small worker pool so the
loop never stalls.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ._connection import Connection, ConnectionSettings, protocol_error_of
from ._errors import (
    SMTPConnectionError,
    SMTPDeliveryUnknownError,
    SMTPPoolClosedError,
    SMTPQueueFullError,
)
from ._message import PreparedMessage, prepare_message
from ._result import SendResult
from ._scheduler import Job, Scheduler, Slot
from ._settings import connection_settings, make_socket_plan, pool_options
from .protocol import (
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

__all__ = ["SMTPPool"]

_log = logging.getLogger("rawsmtp")


@dataclass(slots=True, eq=False)
class _Submission:
    """A message on its way: what the caller gave, its future, and its timings."""

    prepared: PreparedMessage
    future: Future[SendResult]
    job: Job[_Submission] | None = None
    assigned_at: float = 0.0
    body_at: float = 0.0
    body_started: bool = False
    sent_bytes: int = 0
    last_error: SMTPError | None = field(default=None, repr=False)

    def chunks(self) -> Any:
        self.body_started = True
        self.body_at = time.monotonic()
        self.sent_bytes = 0
        for chunk in self.prepared.chunks():
            self.sent_bytes += len(chunk)
            yield chunk


def _permanent(error: SMTPError | None) -> bool:
    """Set-up failures that will not go away by retrying: fail the queue at once."""
    if isinstance(error, SMTPAuthenticationError | SMTPTLSError | LocalProtocolError):
        return True
    return isinstance(error, SMTPResponseError) and (error.code or 0) >= 500


class SMTPPool:
    """A pool of SMTP connections. Options are described in the README (and DESIGN.md)."""

    def __init__(self, **options: Any) -> None:
        self.options = pool_options(options)
        self._settings: ConnectionSettings = connection_settings(self.options)
        self._log = self._settings.logger
        o = self.options
        self._scheduler: Scheduler[_Submission] = Scheduler(
            max_connections=o.max_connections,
            max_messages=o.max_messages,
            rate_limit=o.rate_limit,
            rate_delta=o.rate_delta,
            max_retries=o.max_retries,
            idle_timeout=o.idle_timeout,
            max_connection_age=o.max_connection_age,
        )
        self._lock = threading.Condition()
        self._inbox: deque[Callable[[float], None]] = deque()
        self._wake_pending = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._workers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="rawsmtp-worker")
        self._connections: dict[Connection, int] = {}  # connection -> registered event mask
        self._verifying: dict[Connection, Future[bool]] = {}
        self._queued = 0  # jobs waiting (mirrors the scheduler for other threads)
        self._idle = True
        self._idle_callbacks: list[Callable[[], None]] = []
        self._stopping = False
        self._loop_done = False

    # -- public API -----------------------------------------------------------------------------

    def send(
        self,
        message: Any,
        envelope: Any = None,
        *,
        block: bool = True,
        timeout: float | None = None,
    ) -> Future[SendResult]:
        """Queue a message; the future resolves to a :class:`SendResult` or an SMTPError.

        Input that can never be sent raises a ``ValueError`` subclass here, before anything is
        queued. With ``max_queue`` set and the queue full, waits (``block=True``, at most
        ``timeout`` seconds) or raises :class:`SMTPQueueFullError`.
        """
        future: Future[SendResult] = Future()
        if self._closed:
            future.set_exception(SMTPPoolClosedError("the pool is closed"))
            return future
        prepared = prepare_message(message, envelope)
        submission = _Submission(prepared, future)
        with self._lock:
            self._wait_for_room(block, timeout)
            if self._closed:
                future.set_exception(SMTPPoolClosedError("the pool is closed"))
                return future
            self._queued += 1
            self._idle = False
        future.add_done_callback(lambda done: self._on_future_done(done, submission))
        self._post(lambda now: self._enqueue(submission))
        return future

    def verify(self) -> bool:
        """Connect, greet, STARTTLS and authenticate as configured, then QUIT.

        Returns True, or raises the typed error of the step that failed.
        """
        future: Future[bool] = Future()
        if self._closed:
            raise SMTPPoolClosedError("the pool is closed")
        self._post(lambda now: self._start_verify(future, now))
        return future.result()

    def on_idle(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the pool's thread; keep it short) whenever the pool becomes idle."""
        self._idle_callbacks.append(callback)

    def is_idle(self) -> bool:
        """True when nothing is queued and another message would start at once."""
        return self._idle

    @property
    def pending(self) -> int:
        """Messages queued and not yet started."""
        return self._queued

    def close(self) -> None:
        """Stop taking messages; let in-flight ones finish; QUIT every connection; fail queued
        messages with :class:`SMTPPoolClosedError`; wait for the loop thread to end."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._lock.notify_all()
        self._post(self._begin_close)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._workers.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> SMTPPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- crossing into the loop thread ----------------------------------------------------------

    def _wait_for_room(self, block: bool, timeout: float | None) -> None:
        limit = self.options.max_queue
        if limit is None or self._queued < limit:
            return
        on_loop = self._thread is threading.current_thread()
        if not block or on_loop:
            raise SMTPQueueFullError(f"the queue holds {limit} messages already")
        if not self._lock.wait_for(lambda: self._closed or self._queued < limit, timeout):
            raise SMTPQueueFullError(f"the queue stayed full for {timeout} s")

    def _post(self, action: Callable[[float], None]) -> None:
        with self._lock:
            run_now = self._loop_done
            wake = False
            if not run_now:
                self._inbox.append(action)
                wake, self._wake_pending = not self._wake_pending, True
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="rawsmtp-pool", daemon=True
                    )
                    self._thread.start()
        if run_now:  # the loop has ended: nothing can be sent any more
            action(time.monotonic())
        elif wake:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"\0")

    def _on_future_done(self, future: Future[Any], submission: _Submission) -> None:
        if future.cancelled():
            self._post(lambda now: self._cancel(submission))

    def run_blocking(
        self, func: Callable[[], Any], done: Callable[[Any, BaseException | None], None]
    ) -> None:
        def finished(result: Future[Any]) -> None:
            error = result.exception()
            value = None if error is not None else result.result()
            self._post(lambda now: done(value, error))

        try:
            self._workers.submit(func).add_done_callback(finished)
        except RuntimeError as error:  # the pool is shutting down
            done(None, error)

    # -- the loop -------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                now = time.monotonic()
                self._drain_inbox(now)
                self._decide(now)
                if self._stopping and not self._connections:
                    break  # checked after the inbox, which is where close() arrives
                self._update_registrations()
                timeout = self._next_timeout(now)
                for key, mask in self._selector.select(timeout):
                    self._on_ready(key, mask)
                now = time.monotonic()
                for connection in list(self._connections):
                    deadline = connection.deadline()
                    if deadline is not None and now >= deadline:
                        connection.on_timer(now)
        except BaseException:  # pragma: no cover - a bug; fail everything rather than hang
            self._log.exception("rawsmtp pool loop crashed")
            self._fail_everything(SMTPConnectionError("the pool's event loop crashed"))
            raise
        finally:
            self._shutdown_loop()

    def _drain_inbox(self, now: float) -> None:
        with self._lock:
            actions = list(self._inbox)
            self._inbox.clear()
            self._wake_pending = False
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass
        for action in actions:
            action(now)

    def _on_ready(self, key: selectors.SelectorKey, mask: int) -> None:
        connection = key.data
        if connection is None:
            return  # the wake-up socket; the inbox is drained next round
        now = time.monotonic()
        if mask & selectors.EVENT_WRITE and connection in self._connections:
            connection.on_writable(now)
        if mask & selectors.EVENT_READ and connection in self._connections:
            connection.on_readable(now)

    def _next_timeout(self, now: float) -> float | None:
        deadlines = [d for c in self._connections if (d := c.deadline()) is not None]
        if (deadline := self._scheduler.next_deadline(now)) is not None:
            deadlines.append(deadline)
        if self._inbox:
            return 0
        return max(0.0, min(deadlines) - now) if deadlines else None

    def _update_registrations(self) -> None:
        for connection, registered in list(self._connections.items()):
            if connection.sock is None:
                continue
            mask = selectors.EVENT_READ | (selectors.EVENT_WRITE if connection.wants_write() else 0)
            if mask == registered:
                continue
            if registered:
                self._selector.modify(connection.sock, mask, connection)
            else:
                self._selector.register(connection.sock, mask, connection)
            self._connections[connection] = mask

    def watch(self, connection: Connection) -> None:
        """The connection's socket changed (a new address was tried): register it afresh."""
        registered = self._connections.get(connection)
        if registered:
            self._unregister(connection)
        if connection in self._connections or connection in self._verifying:
            self._connections[connection] = 0

    def _unregister(self, connection: Connection) -> None:
        for key in list(self._selector.get_map().values()):
            if key.data is connection:
                self._selector.unregister(key.fileobj)
        if connection in self._connections:
            self._connections[connection] = 0

    # -- scheduling -----------------------------------------------------------------------------

    def _enqueue(self, submission: _Submission) -> None:
        if self._stopping:
            self._fail(submission, SMTPPoolClosedError("the pool is closed"))
            return
        submission.job = self._scheduler.submit(submission)

    def _cancel(self, submission: _Submission) -> None:
        if submission.job is not None and self._scheduler.cancel(submission.job):
            self._count_dequeued()

    def _decide(self, now: float) -> None:
        if self._stopping:
            return
        decisions = self._scheduler.decide(now)
        for slot in decisions.retire:
            self._connection_of(slot).quit(now)
        for slot, job in decisions.assign:
            self._count_dequeued()
            self._assign(self._connection_of(slot), job, now)
        for _ in range(decisions.open):
            self._open_connection(now)
        self._update_idle()

    def _assign(self, connection: Connection, job: Job[_Submission], now: float) -> None:
        submission = job.payload
        future = submission.future  # RUNNING already when this is a retry on a new connection
        if not future.running() and not future.set_running_or_notify_cancel():
            self._finish_slot(connection, now)
            return
        submission.assigned_at = time.monotonic()
        assert connection.core is not None
        try:
            transaction = self._transaction_for(submission, connection)
            connection.send(transaction, now)
        except SMTPCapabilityError as error:
            self._finish_slot(connection, now)
            self._fail(submission, error)

    def _transaction_for(self, submission: _Submission, connection: Connection) -> Transaction:
        prepared, core = submission.prepared, connection.core
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

    def _open_connection(self, now: float) -> None:
        connection = Connection(self, self._settings, now)
        connection.slot = self._scheduler.slot_opened(now)
        self._connections[connection] = 0
        self._plan(connection)

    def _plan(self, connection: Connection) -> None:
        def done(plan: Any, error: BaseException | None) -> None:
            if error is not None:
                connection.fail_setup(protocol_error_of(error))
            else:
                connection.start(plan, time.monotonic())

        options = self.options
        self.run_blocking(lambda: make_socket_plan(options), done)

    def _connection_of(self, slot: Slot) -> Connection:
        for connection in self._connections:
            if connection.slot is slot:
                return connection
        raise LookupError("no connection for slot")  # pragma: no cover - a bug

    def _count_dequeued(self) -> None:
        with self._lock:
            self._queued -= 1
            if self.options.max_queue is not None:  # only then can a sender be waiting
                self._lock.notify_all()

    def _update_idle(self) -> None:
        idle = self._scheduler.is_idle() and self._queued == 0
        became_idle, self._idle = idle and not self._idle, idle
        if became_idle:
            for callback in list(self._idle_callbacks):
                try:
                    callback()
                except Exception:
                    self._log.exception("on_idle callback failed")

    # -- what connections report ----------------------------------------------------------------

    def connection_ready(self, connection: Connection, window: int) -> None:
        now = time.monotonic()
        if connection in self._verifying:
            connection.quit(now)
            return
        self._log.info(
            "[%d] connected to %s:%d", connection.id, self.options.host, self.options.port
        )
        assert isinstance(connection.slot, Slot)
        self._scheduler.slot_ready(connection.slot, now, window=window)

    def message_done(self, connection: Connection, event: MessageAccepted | MessageFailed) -> None:
        submission: _Submission = event.transaction.tag  # type: ignore[assignment]
        self._finish_slot(connection, time.monotonic())
        if isinstance(event, MessageFailed):
            self._fail(submission, event.error)
            return
        prepared = submission.prepared
        finished = time.monotonic()
        result = SendResult(
            accepted=event.accepted,
            rejected=tuple(event.rejected),
            rejected_errors=dict(event.rejected),
            response=str(event.reply),
            envelope=prepared.envelope,
            message_id=prepared.message_id,
            message_size=prepared.size if prepared.size is not None else submission.sent_bytes,
            envelope_time=max(0.0, submission.body_at - submission.assigned_at),
            message_time=max(0.0, finished - submission.body_at),
        )
        if not submission.future.done():
            submission.future.set_result(result)

    def connection_closed(
        self, connection: Connection, event: ConnectionClosed, *, setup_failed: bool
    ) -> None:
        now = time.monotonic()
        self._unregister(connection)
        self._connections.pop(connection, None)
        if (verify := self._verifying.pop(connection, None)) is not None:
            if event.error is None:
                verify.set_result(True)
            else:
                verify.set_exception(event.error)
            return
        error = event.error
        if error is not None:
            self._log.info("[%d] connection closed: %s", connection.id, error)
        for transaction in event.unconfirmed:
            self._fail(
                transaction.tag,  # type: ignore[arg-type]
                SMTPDeliveryUnknownError(
                    f"the message was sent but its final reply was lost ({error}); "
                    "it may have been delivered, so it is not resent"
                ),
            )
        requeue: list[Job[_Submission]] = []
        for transaction in event.unsent:
            submission: _Submission = transaction.tag  # type: ignore[assignment]
            submission.last_error = error
            if submission.body_started and not submission.prepared.restartable:
                self._fail(submission, error or SMTPConnectionError("connection lost"))
            elif submission.job is not None and not self._stopping:
                requeue.append(submission.job)
                self._requeued()
            else:
                self._fail(submission, SMTPPoolClosedError("the pool is closed"))
        assert isinstance(connection.slot, Slot)
        charge_setup = setup_failed and error is not None and not self._stopping
        exhausted = self._scheduler.slot_closed(
            connection.slot, now, requeue=requeue, setup_failed=charge_setup
        )
        if charge_setup and _permanent(error):
            exhausted += self._scheduler.drain()
        for job in exhausted:
            self._count_dequeued()
            reason = error or job.payload.last_error
            self._fail(job.payload, reason or SMTPConnectionError("could not send the message"))

    def _requeued(self) -> None:
        with self._lock:
            self._queued += 1

    def _finish_slot(self, connection: Connection, now: float) -> None:
        if isinstance(connection.slot, Slot):
            self._scheduler.job_finished(connection.slot, now)

    def _fail(self, submission: _Submission, error: SMTPError) -> None:
        future = submission.future
        if future.done():
            return
        if not future.running() and not future.set_running_or_notify_cancel():
            return
        future.set_exception(error)

    # -- verify and close -----------------------------------------------------------------------

    def _start_verify(self, future: Future[bool], now: float) -> None:
        connection = Connection(self, self._settings, now)
        self._verifying[connection] = future
        self._connections[connection] = 0
        self._plan(connection)

    def _begin_close(self, now: float) -> None:
        self._stopping = True
        closed = SMTPPoolClosedError("the pool was closed before the message was sent")
        for job in self._scheduler.drain():
            self._count_dequeued()
            self._fail(job.payload, closed)
        for connection in list(self._connections):
            connection.quit(now)

    def _fail_everything(self, error: SMTPError) -> None:
        for job in self._scheduler.drain():
            self._fail(job.payload, error)
        for connection in list(self._connections):
            connection.close_now(error)

    def _shutdown_loop(self) -> None:
        self._stopping = True
        with self._lock:
            self._loop_done = True
        for action in list(self._inbox):
            with contextlib.suppress(Exception):  # best effort at the very end
                action(time.monotonic())
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()
