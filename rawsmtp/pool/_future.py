"""``SendFuture``: the ``concurrent.futures.Future`` that ``send()`` returns, in a tenth of the memory.

A standard Future builds its own ``threading.Condition`` (an RLock and a deque: about 1.4 KB),
and a pool may hold tens of thousands of queued messages. Every future of one pool shares one
RLock instead, in the ``_condition`` attribute where ``concurrent.futures.wait()`` and
``as_completed()`` look for something to acquire. Nothing waits on it: :meth:`result` and
:meth:`exception` wait on an event of their own, registered in the future's waiter list (the
mechanism ``wait()`` uses), so the completion of other futures never wakes them. ``wait()``,
``as_completed()`` and ``asyncio.wrap_future()`` work unchanged.

Cancelling a future tells the pool at once: a queued message leaves the queue, one on the wire
is abandoned (see :meth:`SendFuture.cancel`). The loop calls :meth:`SendFuture.commit` before it
hands out a message's final dot: from then on ``cancel()`` returns False.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from concurrent.futures._base import (
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    LOGGER,
    PENDING,
    RUNNING,
)
from typing import Any, TypeVar

__all__ = ["SendFuture"]

T = TypeVar("T")
_SETTLED = (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED)
_Callback = Callable[[Future[Any]], object]


class _Waiter:
    """One result()/exception() call's wake-up, called as concurrent.futures calls its waiters."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = threading.Event()

    def add_result(self, future: object) -> None:
        self.event.set()

    add_exception = add_cancelled = add_result


class SendFuture(Future[T]):
    """A future whose condition is shared with its pool's other futures (see the module)."""

    def __init__(self, lock: threading.RLock, on_cancel: Callable[[SendFuture[T]], None]) -> None:
        # Future.__init__ is not called: it would build the very Condition this class saves.
        # An RLock where Future keeps its Condition: nobody calls wait() or notify() on it
        # here, and it is entered without a Python-level __enter__.
        self._condition = lock  # type: ignore[assignment]
        self._state = PENDING
        self._result: T | None = None
        self._exception: BaseException | None = None
        # Most futures never have a waiter or more than one callback (the asyncio pool's
        # waiter): the waiter list is made on first use, and a lone callback is kept as itself,
        # more in a tuple (the empty one is shared): 144 B less a message queued (bench/run.py,
        # the queued rows).
        self._waiting: list[Any] | None = None
        self._done_callbacks: _Callback | tuple[_Callback, ...] = ()
        self._on_cancel = on_cancel
        self._committed = False  # the final dot is handed out: too late to cancel

    @property
    def _waiters(self) -> list[Any]:  # type: ignore[override]
        """Where ``concurrent.futures.wait()`` and the base class find the waiters."""
        if self._waiting is None:
            self._waiting = []
        return self._waiting

    def result(self, timeout: float | None = None) -> T:
        # FINISHED is final and set after the outcome: a bulk sender collecting thousands of
        # results takes neither the lock nor the detour through the base class.
        if self._state == FINISHED and self._exception is None:
            return self._result  # type: ignore[return-value]
        self._wait_settled(timeout)
        return super().result(0)  # settled: the base class only reads the outcome

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self._state == FINISHED:  # as result(): the asyncio pool asks it of every message
            return self._exception
        self._wait_settled(timeout)
        return super().exception(0)

    def done(self) -> bool:
        return self._state in _SETTLED  # one attribute read: no lock needed

    def cancelled(self) -> bool:
        return self._state in (CANCELLED, CANCELLED_AND_NOTIFIED)  # as done()

    def commit(self) -> bool:
        """The loop is about to hand out the final dot: True, and cancel() returns False from
        now on; False when the caller cancelled first (the message must then be abandoned)."""
        # acquire/release, not ``with``: on 3.11 a with block costs some 1,100 instructions
        # more (its __enter__ and __exit__ are looked up as bound methods), and this and
        # _settle run for every message.
        lock = self._condition
        lock.acquire()
        try:
            if self._state in _SETTLED:
                return False
            self._committed = True
            return True
        finally:
            lock.release()

    def set_result(self, result: T) -> None:
        self._settle(result, None)

    def set_exception(self, exception: BaseException | None) -> None:
        self._settle(None, exception)

    def _settle(self, result: T | None, exception: BaseException | None) -> None:
        # As Future's own, but without notifying the condition: nobody waits on it. The lock
        # is taken as in commit().
        lock = self._condition
        lock.acquire()
        try:
            if self._state in _SETTLED:
                raise InvalidStateError(f"{self._state}: {self!r}")
            self._result, self._exception, self._state = result, exception, FINISHED
            for waiter in self._waiting or ():
                if exception is None:
                    waiter.add_result(self)
                else:
                    waiter.add_exception(self)
        finally:
            lock.release()
        self._invoke_callbacks()

    def _wait_settled(self, timeout: float | None) -> None:
        """Return once the future is settled; TimeoutError after ``timeout`` seconds."""
        with self._condition:
            if self._state in _SETTLED:
                return
            waiter = _Waiter()
            self._waiters.append(waiter)
        try:
            settled = waiter.event.wait(timeout)
        finally:
            with self._condition:
                self._waiters.remove(waiter)
        if not settled:
            raise TimeoutError()

    def cancel(self) -> bool:
        """Cancel the message: True while it is queued or on the wire before its final dot
        (the pool withdraws or abandons it), False once the dot is handed out or it is done."""
        with self._condition:
            if self._state == FINISHED or self._committed:
                return False
            if self._state != PENDING and self._state != RUNNING:
                return True
            if self._state == RUNNING:
                # Nobody will call set_running_or_notify_cancel() again: tell every waiter,
                # wait()'s included, now.
                self._state = CANCELLED_AND_NOTIFIED
                for waiter in self._waiting or ():
                    waiter.add_cancelled(self)
            else:
                self._state = CANCELLED
                # Only our own waiters: wait()'s are told when the pool skips the message.
                for waiter in self._waiting or ():
                    if isinstance(waiter, _Waiter):
                        waiter.event.set()
        self._on_cancel(self)
        self._invoke_callbacks()
        return True

    def add_done_callback(self, fn: Callable[[Future[T]], object]) -> None:
        lock = self._condition  # taken as in commit(): the asyncio pool adds one a message
        lock.acquire()
        try:
            if self._state not in _SETTLED:
                callbacks = self._done_callbacks
                if not isinstance(callbacks, tuple):
                    self._done_callbacks = (callbacks, fn)
                else:
                    self._done_callbacks = (*callbacks, fn) if callbacks else fn
                return
        finally:
            lock.release()
        self._call(fn)

    def _invoke_callbacks(self) -> None:
        # Called once: dropping them frees what they hold (an asyncio waiter holds this future).
        callbacks, self._done_callbacks = self._done_callbacks, ()
        for callback in callbacks if isinstance(callbacks, tuple) else (callbacks,):
            self._call(callback)

    def _call(self, callback: Callable[[Future[T]], object]) -> None:
        try:
            callback(self)
        except Exception:
            LOGGER.exception("exception calling callback for %r", self)
