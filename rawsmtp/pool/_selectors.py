"""``SMTPPool``: the public pool, one ``selectors`` event loop in a background thread.

``send()`` may be called from any thread; it hands the message to the loop through a locked
inbox and a wake-up socket pair, and returns a ``concurrent.futures.Future``. The loop owns every
connection; what to do is decided by the shared :class:`~rawsmtp.pool._engine.PoolEngine`. Blocking
work (name resolution, the ``get_socket`` hook, token providers) runs in a few worker threads of
the pool's own (:class:`_Workers`) so the loop never stalls.

Life cycle, as ``concurrent.futures.ThreadPoolExecutor``'s:

- The loop thread, its selector and wake-up sockets exist only while there is work: they are made
  by the first message (or ``verify()``), and the thread ends once no connection is open and
  nothing is queued. A pool that only ran ``verify()``, or whose connections all timed out idle,
  holds no thread and no file descriptor.
- The thread runs :class:`_Loop`, which the pool holds and which never holds the pool, so a pool
  dropped without ``close()`` is collected: it warns (``ResourceWarning``), sends what it was
  given, QUITs and lets its thread end.
- At interpreter exit an unclosed pool sends what is queued, for at most ``exit_timeout``
  seconds, then fails the rest and says so in its log: forgetting ``close()`` loses nothing
  silently.
"""

from __future__ import annotations

import atexit
import contextlib
import selectors
import socket
import threading
import time
import warnings
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Unpack

from .._errors import SMTPConnectionError, SMTPPoolClosedError
from .._result import SendResult
from ..config._typing import BeforeCommit, EnvelopeInput, MessageInput, PoolOptions
from ._engine import UNSET, EngineFacade, PoolEngine, Submission
from ._observe import PoolStats
from ._stats import pool_stats
from ._threads import daemon, start
from ._transport import Transport, WriteBatch

__all__ = ["SMTPPool"]

_Action = Callable[[float], None] | Submission

# A worker thread waits this long for more work before it ends.
_WORKER_LINGER = 1.0


class SMTPPool(EngineFacade):
    """A pool of SMTP connections. Options are described in the README."""

    def __init__(self, **options: Unpack[PoolOptions]) -> None:
        self._loop = _Loop(dict(options))
        self._engine = self._loop.engine

    # -- public API -----------------------------------------------------------------------------

    def send(
        self,
        message: MessageInput,
        envelope: EnvelopeInput = None,
        *,
        block: bool = True,
        timeout: float | None = None,
        deadline: float | None = None,
        dkim: Any = UNSET,
        before_commit: BeforeCommit | None = None,
    ) -> Future[SendResult]:
        """Queue a message; the future resolves to a :class:`SendResult` or an SMTPError.

        Input that can never be sent raises a ``ValueError`` subclass here, before anything is
        queued. With ``max_queue`` set and the queue full, waits (``block=True``, at most
        ``timeout`` seconds) or raises :class:`SMTPQueueFullError`. ``deadline`` (seconds)
        replaces ``delivery_timeout`` for this message; ``dkim`` replaces the ``dkim`` option
        (None: unsigned).
        ``future.cancel()`` withdraws the message until its final dot is handed out (see the
        README).

        ``before_commit`` (a callable without arguments) is the message's commit point: it is
        called in a worker thread once the whole body but its end (the dot, or the
        ``BDAT ... LAST`` chunk) is written, and that end waits until it returns; from then on
        ``cancel()`` returns False. When it raises, the end is never written and the future
        fails with :class:`~rawsmtp.SMTPCommitError` (the exception as its cause): not
        delivered, safe to send again. With BDAT the connection then goes on after an RSET;
        inside DATA it is closed, since only a connection closed before the dot keeps a server
        from delivering (RFC 5321 section 3.8). It runs once per attempt that reaches its end
        (again for recipients a 4xx deferred).
        """
        loop = self._loop
        submission = self._engine.submit(
            message,
            envelope,
            block=block,
            timeout=timeout,
            on_loop=loop.on_loop(),
            deadline=deadline,
            dkim=dkim,
            before_commit=before_commit,
        )
        if not isinstance(submission, Submission):
            return submission
        loop.post(submission)
        return submission.future

    def verify(self) -> bool:
        """Connect, greet, STARTTLS and authenticate as configured, then QUIT.

        Returns True, or raises the typed error of the step that failed.
        """
        if self._engine.closed:
            raise SMTPPoolClosedError("the pool is closed")
        future: Future[bool] = Future()
        self._loop.post(lambda now: self._engine.start_verify(future, now))
        return future.result()

    def close(self, timeout: float | None = None, *, abort: bool = False) -> None:
        """Stop taking messages; let in-flight ones finish; QUIT every connection; fail queued
        messages with :class:`SMTPPoolClosedError`; wait for the loop thread to end.

        After ``timeout`` seconds (at once with ``abort=True``) messages still in flight are
        aborted: they fail with :class:`SMTPPoolClosedError`, or with
        :class:`SMTPDeliveryUnknownError` when their final dot was sent.
        """
        loop, engine = self._loop, self._engine
        if engine.mark_closed():
            loop.post(engine.begin_close)
        elif not abort:
            return
        if abort:
            loop.post(engine.abort)
        loop.join(timeout)
        engine.telemetry.close(timeout)  # on_event has seen every event when close returns

    def stats(self) -> PoolStats:
        """A snapshot of the queue, the connections, the counters and the pace (any thread)."""
        return pool_stats(self._engine)

    def abort(self) -> None:
        """Close at once: queued and in-flight messages fail (see :meth:`close`)."""
        self.close(abort=True)

    def __enter__(self) -> SMTPPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        loop = getattr(self, "_loop", None)  # None when __init__ failed
        if loop is None or loop.engine.closed:
            return
        warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self, stacklevel=1)
        loop.drain()


class _Loop:
    """The loop thread's side of one pool: the engine's driver. The pool holds it; it never
    holds the pool (see the module docstring)."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.engine: PoolEngine = PoolEngine(options, self)
        # Actions for the loop; a new message is posted as itself (no closure per message).
        self._inbox: deque[_Action] = deque()
        self._inbox_lock = threading.Lock()
        self._wake_pending = False
        # Made by post() when there is work, dropped when the thread ends (see _end_if_quiet).
        self._thread: threading.Thread | None = None
        self._selector: selectors.BaseSelector | None = None
        self._wake_w: socket.socket | None = None
        self._loop_done = False  # the pool has closed: actions run in the caller's thread
        self._drain_requested = False  # see drain()
        self._draining = False  # the loop's copy: close once nothing is queued or in flight
        self._registered: dict[Transport, int] = {}  # transport -> its registered event mask
        self._writes = WriteBatch()
        self.flush_soon = self._writes.add  # IOServices.flush_soon, without a call in between
        self._workers = _Workers(self.post)
        _register_exit_flush()
        _LIVE.add(self)

    def on_loop(self) -> bool:
        return self._thread is threading.current_thread()

    def wait(self, timeout: float | None) -> bool:
        """Wait at most ``timeout`` seconds for the loop thread to end; True once it has."""
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def join(self, timeout: float | None) -> None:
        """Wait for the loop thread to end, aborting what is in flight after ``timeout`` s."""
        if not self.wait(timeout):
            self.post(self.engine.abort)
            self.wait(None)

    def drain(self) -> bool:
        """Stop taking messages, send those queued, then close (a pool collected while open, or
        left open at exit). False when the pool was closed by close()."""
        engine = self.engine
        if not engine.mark_closed():
            return self._drain_requested
        self._drain_requested = True
        with self._inbox_lock:
            quiet = self._thread is None and not self._inbox and engine.queued == 0
        if not quiet:  # else nothing is open or queued, and nothing can come any more
            self.post(self._begin_drain)
        return True

    def _begin_drain(self, now: float) -> None:
        self._draining = True

    # -- Driver: what the engine needs ----------------------------------------------------------

    def run_blocking(
        self, func: Callable[[], Any], done: Callable[[Any, BaseException | None, float], None]
    ) -> None:
        self._workers.submit(func, done)

    def withdraw(self, future: Future[SendResult]) -> None:
        engine = self.engine
        self.post(lambda now: engine.cancel_future(future, now))

    def watch(self, transport: Transport) -> None:
        """A new socket: registered (with the events it waits for) before the loop next waits."""
        self._registered[transport] = 0

    def forget(self, transport: Transport) -> None:
        if self._registered.pop(transport, 0) and transport.sock is not None:
            assert self._selector is not None
            self._selector.unregister(transport.sock)

    # -- the loop -------------------------------------------------------------------------------

    def post(self, action: _Action) -> None:
        """Run ``action(now)`` (or enqueue a Submission) on the loop thread, started if need be."""
        inline: Callable[[], None] | None = None
        lock = self._inbox_lock
        lock.acquire()  # not ``with``: once a message, see SendFuture.commit
        try:
            if not self._loop_done:
                self._inbox.append(action)
                if not self._wake_pending:
                    self._wake_pending = True
                    if self._thread is None:
                        inline = self._start()  # which drains the inbox first
                    else:
                        # Under the lock: the thread closes this socket only after it saw
                        # the inbox empty under the lock (see _end_if_quiet).
                        with contextlib.suppress(OSError):
                            assert self._wake_w is not None
                            self._wake_w.send(b"\0")
                if inline is None:
                    return
        finally:
            lock.release()
        if inline is not None:
            inline()  # at interpreter shutdown: the loop runs here until it is quiet
            return
        self._perform(action, time.monotonic())  # the loop has ended: nothing can be sent

    def _start(self) -> Callable[[], None] | None:
        """Start the loop thread; at interpreter shutdown, return the loop for the caller to run."""
        selector = selectors.DefaultSelector()
        wake_r, self._wake_w = socket.socketpair()
        wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        selector.register(wake_r, selectors.EVENT_READ, None)
        self._selector = selector
        wake_w = self._wake_w

        def run() -> None:
            self._run(selector, wake_r, wake_w)

        self._thread = daemon(run, "rawsmtp-pool")
        if start(self._thread):
            return None
        # At interpreter shutdown no thread may start (see _threads): the caller runs the loop.
        self._thread = threading.current_thread()
        return run

    def _run(
        self, selector: selectors.BaseSelector, wake_r: socket.socket, wake_w: socket.socket
    ) -> None:
        finished = True
        try:
            finished = self._serve(selector, wake_r)
        except BaseException:  # pragma: no cover - a bug; fail everything rather than hang
            engine = self.engine
            engine.log.exception("rawsmtp pool loop crashed")
            error = SMTPConnectionError("the pool's event loop crashed")
            engine.fail_everything(error, time.monotonic())
            raise
        finally:
            if finished:
                self._shutdown_loop()
            selector.close()
            wake_r.close()
            wake_w.close()

    def _serve(self, selector: selectors.BaseSelector, wake_r: socket.socket) -> bool:
        """Run until the pool has closed (True) or has nothing to do (False)."""
        engine = self.engine
        while True:
            now = time.monotonic()
            self._drain_inbox(now)
            engine.decide(now)
            if self._draining and not engine.stopping and self._drained():
                engine.begin_close(now)
            if engine.finished:
                return True  # checked after the inbox, which is where close() arrives
            if not engine.sessions and engine.queued == 0 and self._end_if_quiet():
                return False
            self._writes.flush(now)
            self._update_registrations(selector)
            deadline = engine.next_deadline(now)
            for key, mask in selector.select(self._timeout(deadline, now)):
                self._on_ready(key, mask, wake_r)
            self._writes.flush(time.monotonic())  # answers to the replies, at once
            if deadline is not None and (now := time.monotonic()) >= deadline:
                engine.fire_timers(now)  # only when the earliest deadline has come

    def _drained(self) -> bool:
        return self.engine.queued == 0 and self.engine.scheduler.in_flight == 0

    def _end_if_quiet(self) -> bool:
        """No connection, nothing queued: end the thread unless an action has just arrived."""
        with self._inbox_lock:
            if self._inbox:
                return False
            self._thread = self._selector = self._wake_w = None
            return True

    def _drain_inbox(self, now: float) -> None:
        with self._inbox_lock:
            actions = list(self._inbox)
            self._inbox.clear()
            self._wake_pending = False
        for action in actions:
            self._perform(action, now)

    def _perform(self, action: _Action, now: float) -> None:
        if isinstance(action, Submission):
            self.engine.enqueue(action, now)
        else:
            action(now)

    def _on_ready(self, key: selectors.SelectorKey, mask: int, wake_r: socket.socket) -> None:
        transport = key.data
        if transport is None:  # the wake-up socket; the inbox is drained next round
            with contextlib.suppress(OSError):  # BlockingIOError once it is empty
                while wake_r.recv(4096):
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

    def _update_registrations(self, selector: selectors.BaseSelector) -> None:
        for transport, registered in list(self._registered.items()):
            if transport.sock is None:
                continue
            mask = selectors.EVENT_READ | (selectors.EVENT_WRITE if transport.wants_write() else 0)
            if mask == registered:
                continue
            if registered:
                selector.modify(transport.sock, mask, transport)
            else:
                selector.register(transport.sock, mask, transport)
            self._registered[transport] = mask

    def _shutdown_loop(self) -> None:
        self.engine.stopping = True
        with self._inbox_lock:
            self._loop_done = True
        for action in list(self._inbox):
            with contextlib.suppress(Exception):  # best effort at the very end
                self._perform(action, time.monotonic())


class _Workers:
    """A few daemon threads for blocking calls, started on demand, each ending after
    ``_WORKER_LINGER`` seconds without work. Not a ThreadPoolExecutor: those stop taking work
    at interpreter exit, when an unclosed pool still needs names resolved to send its queue."""

    def __init__(self, post: Callable[[_Action], None], size: int = 4) -> None:
        self._post = post
        self._size = size
        self._jobs: deque[Callable[[], None]] = deque()
        self._ready = threading.Condition(threading.Lock())
        self._threads = 0
        self._idle = 0

    def submit(
        self, func: Callable[[], Any], done: Callable[[Any, BaseException | None, float], None]
    ) -> None:
        """Run ``func`` in a worker, then post ``done(result, error, now)`` to the loop."""

        def job() -> None:
            try:
                value, error = func(), None
            except BaseException as failure:  # the loop reports it, as a future would
                value, error = None, failure
            self._post(lambda now: done(value, error, now))

        with self._ready:
            self._jobs.append(job)
            if self._idle:
                self._ready.notify()
                return
            if self._threads >= self._size:
                return
            self._threads += 1
            if start(daemon(self._work, "rawsmtp-worker")):
                return
            self._threads -= 1
            if self._threads:
                return  # a worker still running takes it
            self._jobs.remove(job)
        job()  # at interpreter shutdown: on this thread (see _threads)

    def _work(self) -> None:
        while True:
            with self._ready:
                if not self._jobs:
                    self._idle += 1
                    self._ready.wait(_WORKER_LINGER)
                    self._idle -= 1
                    if not self._jobs:
                        self._threads -= 1
                        return
                job = self._jobs.popleft()
            job()


# -- interpreter exit ---------------------------------------------------------------------------

_LIVE: weakref.WeakSet[_Loop] = weakref.WeakSet()  # a running loop thread keeps its _Loop here
_exit_flush_registered = False


def _register_exit_flush() -> None:
    """Arrange for :func:`_flush_at_exit` to run once, early in interpreter shutdown."""
    global _exit_flush_registered
    if _exit_flush_registered:
        return
    _exit_flush_registered = True
    # threading._register_atexit hooks run when the main thread ends, before non-daemon threads
    # are joined and before atexit: concurrent.futures stops its executors from such a hook, and
    # nothing public runs that early. Registered after concurrent.futures' own (hooks run last
    # first), ours runs while user code may still hand work to executors. atexit if it is gone.
    register = getattr(threading, "_register_atexit", None)
    try:
        if register is None:
            raise RuntimeError("no threading._register_atexit")
        register(_flush_at_exit)
    except RuntimeError:  # also: shutdown has begun
        atexit.register(_flush_at_exit)


def _flush_at_exit() -> None:
    """Every pool left open: stop taking messages, send those queued within its
    ``exit_timeout``, then abort the rest, loudly."""
    started = time.monotonic()
    draining = [loop for loop in list(_LIVE) if loop.drain()]
    for loop in draining:
        engine = loop.engine
        if loop.wait(max(0.0, started + engine.options.exit_timeout - time.monotonic())):
            continue
        engine.log.error(
            "rawsmtp: a pool left open at interpreter exit could not send everything within "
            "exit_timeout=%s s: %d queued and %d in-flight messages fail (SMTPPoolClosedError, "
            "or SMTPDeliveryUnknownError after their final dot)",
            engine.options.exit_timeout,
            engine.queued,
            engine.scheduler.in_flight,
        )
        loop.join(0)
