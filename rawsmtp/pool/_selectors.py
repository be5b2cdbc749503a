"""``SMTPPool``: the public pool, one ``selectors`` event loop in a background thread.

``send()`` may be called from any thread; it hands the message to the loop through a locked
inbox and a wake-up socket pair, and returns a ``concurrent.futures.Future``. The loop owns every
connection; what to do is decided by the shared :class:`~rawsmtp.pool._engine.PoolEngine`. Blocking
work (name resolution, the ``get_socket`` hook, token providers) runs in a small worker pool so
the loop never stalls.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Unpack

from .._errors import SMTPConnectionError, SMTPPoolClosedError
from .._result import SendResult
from ..config._typing import EnvelopeInput, MessageInput, PoolOptions
from ._engine import _UNSET, EngineFacade, PoolEngine, Submission
from ._transport import Transport, WriteBatch

__all__ = ["SMTPPool"]


class SMTPPool(EngineFacade):
    """A pool of SMTP connections. Options are described in the README."""

    def __init__(self, **options: Unpack[PoolOptions]) -> None:
        self._engine = PoolEngine(dict(options), self)
        # Actions for the loop; a new message is posted as itself (no closure per message).
        self._inbox: deque[Callable[[float], None] | Submission] = deque()
        self._inbox_lock = threading.Lock()
        self._wake_pending = False
        self._thread: threading.Thread | None = None
        self._loop_done = False
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._registered: dict[Transport, int] = {}  # transport -> its registered event mask
        self._writes = WriteBatch()
        self.flush_soon = self._writes.add  # IOServices.flush_soon, without a call in between
        self._workers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="rawsmtp-worker")

    # -- public API -----------------------------------------------------------------------------

    def send(
        self,
        message: MessageInput,
        envelope: EnvelopeInput = None,
        *,
        block: bool = True,
        timeout: float | None = None,
        deadline: float | None = None,
        dkim: Any = _UNSET,
    ) -> Future[SendResult]:
        """Queue a message; the future resolves to a :class:`SendResult` or an SMTPError.

        Input that can never be sent raises a ``ValueError`` subclass here, before anything is
        queued. With ``max_queue`` set and the queue full, waits (``block=True``, at most
        ``timeout`` seconds) or raises :class:`SMTPQueueFullError`. ``deadline`` (seconds)
        replaces ``delivery_timeout`` for this message; ``dkim`` replaces the ``dkim`` option
        (None: unsigned).
        """
        on_loop = self._thread is threading.current_thread()
        submission = self._engine.submit(
            message,
            envelope,
            block=block,
            timeout=timeout,
            on_loop=on_loop,
            deadline=deadline,
            dkim=dkim,
        )
        if not isinstance(submission, Submission):
            return submission
        self._post(submission)
        return submission.future

    def verify(self) -> bool:
        """Connect, greet, STARTTLS and authenticate as configured, then QUIT.

        Returns True, or raises the typed error of the step that failed.
        """
        if self._engine.closed:
            raise SMTPPoolClosedError("the pool is closed")
        future: Future[bool] = Future()
        self._post(lambda now: self._engine.start_verify(future, now))
        return future.result()

    def close(self, timeout: float | None = None, *, abort: bool = False) -> None:
        """Stop taking messages; let in-flight ones finish; QUIT every connection; fail queued
        messages with :class:`SMTPPoolClosedError`; wait for the loop thread to end.

        After ``timeout`` seconds (at once with ``abort=True``) messages still in flight are
        aborted: they fail with :class:`SMTPPoolClosedError`, or with
        :class:`SMTPDeliveryUnknownError` when their final dot was sent.
        """
        if self._engine.mark_closed():
            self._post(self._engine.begin_close)
        elif not abort:
            return
        if abort:
            self._post(self._engine.abort)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._post(self._engine.abort)
                self._thread.join()
        self._workers.shutdown(wait=False, cancel_futures=True)

    def abort(self) -> None:
        """Close at once: queued and in-flight messages fail (see :meth:`close`)."""
        self.close(abort=True)

    def __enter__(self) -> SMTPPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- Driver: what the engine needs ----------------------------------------------------------

    def run_blocking(
        self, func: Callable[[], Any], done: Callable[[Any, BaseException | None, float], None]
    ) -> None:
        def finished(result: Future[Any]) -> None:
            error = result.exception()
            value = None if error is not None else result.result()
            self._post(lambda now: done(value, error, now))

        try:
            self._workers.submit(func).add_done_callback(finished)
        except RuntimeError as error:  # the pool is shutting down
            done(None, error, time.monotonic())

    def withdraw(self, future: Future[SendResult]) -> None:
        engine = self._engine
        self._post(lambda now: engine.cancel_future(future))

    def watch(self, transport: Transport) -> None:
        """A new socket: registered (with the events it waits for) before the loop next waits."""
        self._registered[transport] = 0

    def forget(self, transport: Transport) -> None:
        if self._registered.pop(transport, 0) and transport.sock is not None:
            self._selector.unregister(transport.sock)

    # -- the loop -------------------------------------------------------------------------------

    def _post(self, action: Callable[[float], None] | Submission) -> None:
        """Run ``action(now)`` (or enqueue a Submission) on the loop thread, started on first use."""
        with self._inbox_lock:
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
            self._perform(action, time.monotonic())
        elif wake:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"\0")

    def _run(self) -> None:
        engine = self._engine
        try:
            while True:
                now = time.monotonic()
                self._drain_inbox(now)
                engine.decide(now)
                if engine.finished:
                    break  # checked after the inbox, which is where close() arrives
                self._writes.flush(now)
                self._update_registrations()
                deadline = engine.next_deadline(now)
                for key, mask in self._selector.select(self._timeout(deadline, now)):
                    self._on_ready(key, mask)
                self._writes.flush(time.monotonic())  # answers to the replies, at once
                if deadline is not None and (now := time.monotonic()) >= deadline:
                    engine.fire_timers(now)  # only when the earliest deadline has come
        except BaseException:  # pragma: no cover - a bug; fail everything rather than hang
            engine.log.exception("rawsmtp pool loop crashed")
            error = SMTPConnectionError("the pool's event loop crashed")
            engine.fail_everything(error, time.monotonic())
            raise
        finally:
            self._shutdown_loop()

    def _drain_inbox(self, now: float) -> None:
        with self._inbox_lock:
            actions = list(self._inbox)
            self._inbox.clear()
            self._wake_pending = False
        for action in actions:
            self._perform(action, now)

    def _perform(self, action: Callable[[float], None] | Submission, now: float) -> None:
        if isinstance(action, Submission):
            self._engine.enqueue(action, now)
        else:
            action(now)

    def _on_ready(self, key: selectors.SelectorKey, mask: int) -> None:
        transport = key.data
        if transport is None:  # the wake-up socket; the inbox is drained next round
            with contextlib.suppress(OSError):  # BlockingIOError once it is empty
                while self._wake_r.recv(4096):
                    pass
            return
        now = time.monotonic()
        if mask & selectors.EVENT_WRITE and transport in self._registered:
            transport.on_writable(now)
        if mask & selectors.EVENT_READ and transport in self._registered:
            transport.on_readable(now)

    def _timeout(self, deadline: float | None, now: float) -> float | None:
        if self._inbox:
            return 0
        return None if deadline is None else max(0.0, deadline - now)

    def _update_registrations(self) -> None:
        for transport, registered in list(self._registered.items()):
            if transport.sock is None:
                continue
            mask = selectors.EVENT_READ | (selectors.EVENT_WRITE if transport.wants_write() else 0)
            if mask == registered:
                continue
            if registered:
                self._selector.modify(transport.sock, mask, transport)
            else:
                self._selector.register(transport.sock, mask, transport)
            self._registered[transport] = mask

    def _shutdown_loop(self) -> None:
        self._engine.stopping = True
        with self._inbox_lock:
            self._loop_done = True
        for action in list(self._inbox):
            with contextlib.suppress(Exception):  # best effort at the very end
                self._perform(action, time.monotonic())
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()
