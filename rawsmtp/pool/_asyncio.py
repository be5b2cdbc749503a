"""The asyncio pool: ``rawsmtp.aio.SMTPPool``, same options and behaviour as ``rawsmtp.SMTPPool``.

Both drive the same :class:`~rawsmtp.pool._engine.PoolEngine` and the same connections and sans-I/O
core; only the event loop differs. Here it is the running asyncio loop: sockets are watched with
``add_reader``/``add_writer``, timers with ``call_later``, blocking work (name resolution, the
``get_socket`` hook, token providers) goes to the loop's default executor.

    async with rawsmtp.aio.SMTPPool(host="smtp.example.com", auth=("u", "p")) as pool:
        result = await pool.send(message)

Life cycle: the loop is the caller's, so nothing is left to flush at interpreter exit (a loop
that has ended runs nothing more); ``aclose()`` it before the loop ends. A pool collected
while open (which happens once its loop is gone: a running loop watching its sockets holds it)
warns with ``ResourceWarning`` and closes its sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import warnings
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Unpack

from .._errors import LocalProtocolError, SMTPConnectionError, SMTPPoolClosedError
from .._result import SendResult
from ..config._typing import BeforeCommit, EnvelopeInput, MessageInput, PoolOptions
from ._engine import UNSET, EngineFacade, PoolEngine, Submission
from ._observe import PoolStats
from ._stats import pool_stats
from ._transport import Transport, WriteBatch

__all__ = ["SMTPPool"]


class SMTPPool(EngineFacade):
    """An SMTP pool on the running asyncio loop (create and use it from one loop)."""

    def __init__(self, **options: Unpack[PoolOptions]) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watched: dict[Transport, tuple[int, bool]] = {}  # fd, watching for writes
        self._writes = WriteBatch()
        self._engine = PoolEngine(dict(options), _Driver(self))
        # on_event runs after the loop's current step, on the loop (before aclose() returns).
        self._engine.telemetry.deliver_with(lambda f, e: asyncio.get_running_loop().call_soon(f, e))
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._sync_scheduled = False
        self._finished = asyncio.Event()

    # -- public API -----------------------------------------------------------------------------

    def send(
        self,
        message: MessageInput,
        envelope: EnvelopeInput = None,
        *,
        deadline: float | None = None,
        dkim: Any = UNSET,
        before_commit: BeforeCommit | None = None,
    ) -> SendWaiter:
        """Queue one message; await the result for its :class:`~rawsmtp.SendResult` (or the
        SMTPError it failed with). Call it on the pool's loop.

        The result is an ``asyncio.Future``, not a coroutine: ``await`` it, or gather many
        without a task each. Input that can never be sent raises a ``ValueError`` subclass
        here. With ``max_queue`` set and the queue full, raises
        :class:`~rawsmtp.SMTPQueueFullError`. Cancelling the future withdraws a message that
        has not started. ``deadline``, ``dkim`` and ``before_commit`` as for the synchronous
        pool's ``send``: ``before_commit`` is a plain callable, run in the loop's default
        executor, never on the loop.
        """
        engine = self._engine
        if not engine.closed:
            self._check_loop()
        submission = engine.submit(
            message,
            envelope,
            block=False,
            timeout=0,
            on_loop=True,
            deadline=deadline,
            dkim=dkim,
            before_commit=before_commit,
        )
        if not isinstance(submission, Submission):  # the pool is closed: failed already
            waiter = SendWaiter(submission)
            waiter(submission)
            return waiter
        waiter = SendWaiter(submission.future)
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        submission.future.add_done_callback(waiter)
        self._guarded(lambda now: engine.enqueue(submission, now))
        return waiter

    async def verify(self) -> bool:
        """Connect, greet, STARTTLS and authenticate as configured, then QUIT (see the sync pool)."""
        if self._engine.closed:
            raise SMTPPoolClosedError("the pool is closed")
        self._check_loop()
        future: Future[bool] = Future()
        self._call(lambda now: self._engine.start_verify(future, now))
        return await asyncio.wrap_future(future)

    async def aclose(self, timeout: float | None = None, *, abort: bool = False) -> None:
        """Close, as ``rawsmtp.SMTPPool.close()``: in-flight messages finish, then QUIT; after
        ``timeout`` seconds (at once with ``abort``) messages still in flight are aborted."""
        if self._loop is not None and self._loop is not asyncio.get_running_loop():
            self._engine.mark_closed()  # its loop is gone: nothing of it can run any more
            return
        if self._engine.mark_closed():
            self._call(self._engine.begin_close)
        if abort:
            self._call(self._engine.abort)
        if self._loop is None:
            return
        try:
            await asyncio.wait_for(self._finished.wait(), timeout)
        except TimeoutError:
            self._call(self._engine.abort)
            await self._finished.wait()

    def stats(self) -> PoolStats:
        """A snapshot of the queue, the connections, the counters and the pace (any thread)."""
        return pool_stats(self._engine)

    async def abort(self) -> None:
        """Close at once: queued and in-flight messages fail (see ``aclose``)."""
        await self.aclose(abort=True)

    async def __aenter__(self) -> SMTPPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __del__(self) -> None:
        engine = getattr(self, "_engine", None)  # None when __init__ failed
        if engine is None or engine.closed:
            return
        warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self, stacklevel=1)
        engine.mark_closed()
        # Its loop has gone (see the module docstring): drop whatever is left, here.
        with contextlib.suppress(Exception):
            engine.fail_everything(
                SMTPPoolClosedError("the pool was collected while open"), time.monotonic()
            )

    # -- the loop -------------------------------------------------------------------------------

    def _check_loop(self) -> None:
        """A pool lives on the loop it first ran on: say so rather than fail inside asyncio."""
        if self._loop is not None and self._loop is not asyncio.get_running_loop():
            closed = "closed" if self._loop.is_closed() else "another"
            raise LocalProtocolError(
                f"this rawsmtp.aio.SMTPPool belongs to {closed} event loop (the one it first ran "
                "on); create one pool per asyncio.run()"
            )

    def _call(self, action: Callable[[float], None]) -> None:
        """Run ``action(now)`` now, on the running loop; sockets and timers follow (_sync)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._guarded(action)

    def _guarded(self, action: Callable[[float], None]) -> None:
        """Run ``action(now)``, then have the loop sync once before it next waits.

        Everything that happens in one loop iteration (every socket event, every send()) is
        decided and flushed by one _sync: the writes of all connections go out back to back,
        and the scheduler, the watches and the timer are brought up to date once, not per event.
        """
        try:
            action(time.monotonic())
        except Exception:  # pragma: no cover - a bug; fail everything rather than hang
            self._crashed()
            raise
        if not self._sync_scheduled and self._loop is not None:
            self._sync_scheduled = True
            self._loop.call_soon(self._sync_guarded)

    def _schedule_sync(self) -> None:
        self._guarded(_nothing)

    def _sync_guarded(self) -> None:
        try:
            self._sync()
        except Exception:  # pragma: no cover - a bug; fail everything rather than hang
            self._crashed()
            raise

    def _crashed(self) -> None:
        self._engine.log.exception("rawsmtp asyncio pool crashed")
        error = SMTPConnectionError("the pool's event loop crashed")
        self._engine.fail_everything(error, time.monotonic())
        self._finished.set()

    def _sync(self) -> None:
        """Decide, then make the loop watch what each connection needs and the next deadline."""
        self._sync_scheduled = False
        engine = self._engine
        now = time.monotonic()
        engine.decide(now)
        if engine.finished:
            self._cancel_timer()
            self._finished.set()
            return
        self._writes.flush(now)
        for session in list(engine.sessions):
            self._watch_socket(session.transport)
        self._set_timer(engine.next_deadline(now), now)

    def _watch_socket(self, transport: Any) -> None:
        assert self._loop is not None
        if not isinstance(transport, Transport) or transport.sock is None:
            return
        fd, writing = transport.sock.fileno(), transport.wants_write()
        current = self._watched.get(transport)
        if current == (fd, writing):
            return
        if current is None:
            self._loop.add_reader(fd, self._on_event, transport, False)
        if writing and (current is None or not current[1]):
            self._loop.add_writer(fd, self._on_event, transport, True)
        elif not writing and current is not None and current[1]:
            self._loop.remove_writer(fd)
        self._watched[transport] = (fd, writing)

    def _on_event(self, transport: Transport, writable: bool) -> None:
        if transport in self._watched:
            self._guarded(transport.on_writable if writable else transport.on_readable)

    def _set_timer(self, deadline: float | None, now: float) -> None:
        if deadline == self._timer_at:
            return
        self._cancel_timer()
        if deadline is not None and self._loop is not None:
            self._timer_at = deadline
            self._timer = self._loop.call_later(max(0.0, deadline - now), self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = None, None

    def _on_timer(self) -> None:
        self._timer, self._timer_at = None, None
        self._guarded(self._engine.fire_timers)


class _Driver:
    """The engine's :class:`~rawsmtp.pool._engine.Driver` for one asyncio pool: the hooks the
    engine, its sessions and their transports call, kept off the pool's public face. The loop's
    state (the running loop, the watched sockets, the write batch) stays on the pool."""

    __slots__ = ("_pool", "flush_soon")

    def __init__(self, pool: SMTPPool) -> None:
        self._pool = pool
        self.flush_soon = pool._writes.add  # IOServices.flush_soon, without a call in between

    def run_blocking(
        self, func: Callable[[], Any], done: Callable[[Any, BaseException | None, float], None]
    ) -> None:
        pool = self._pool

        def finished(result: asyncio.Future[Any]) -> None:
            error = result.exception()
            value = None if error is not None else result.result()
            pool._call(lambda now: done(value, error, now))

        assert pool._loop is not None
        pool._loop.run_in_executor(None, func).add_done_callback(finished)

    def withdraw(self, future: Future[SendResult]) -> None:
        engine = self._pool._engine
        self._pool._call(lambda now: engine.cancel_future(future, now))

    def watch(self, transport: Transport) -> None:
        self._pool._schedule_sync()

    def forget(self, transport: Transport) -> None:
        pool = self._pool
        watched = pool._watched.pop(transport, None)
        if watched is not None and pool._loop is not None:
            fd, writing = watched
            pool._loop.remove_reader(fd)
            if writing:
                pool._loop.remove_writer(fd)


def _nothing(now: float) -> None:
    pass


class SendWaiter(asyncio.Future[SendResult]):
    """What ``send()`` returns: an asyncio future on the pool's loop, settled by the message's
    own future (it is that future's done callback) without waking the loop through its
    self-pipe, as ``asyncio.wrap_future`` does, when settled on the loop (always, but for a
    pool closed from another thread). Cancelling it withdraws a message not yet started."""

    __slots__ = ("_source",)

    def __init__(self, source: Future[SendResult]) -> None:
        super().__init__()
        # Until settled: a result kept by the caller need not keep the message's future too
        # (about 200 B a message: bench/run.py, the queued rows).
        self._source: Future[SendResult] | None = source

    def __call__(self, source: Future[SendResult]) -> None:
        """The message's future is settled: settle this one as it (on this future's loop)."""
        loop = self.get_loop()
        if asyncio._get_running_loop() is not loop:
            loop.call_soon_threadsafe(self, source)
            return
        if self.done():  # cancelled by the caller meanwhile
            pass
        elif source.cancelled():
            super().cancel()
        elif (error := source.exception()) is not None:
            self.set_exception(error)
        else:
            self.set_result(source.result())
        self._source = None

    def cancel(self, msg: Any = None) -> bool:
        if not super().cancel(msg):
            return False
        if self._source is not None:
            self._source.cancel()  # withdraws the message when it has not started
        return True
