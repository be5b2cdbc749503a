"""Both pool drivers behind one interface, so one behaviour suite runs against each.

The asyncio pool is driven from a loop in its own thread and shown through the selectors
pool's interface (``send`` returning a ``concurrent.futures.Future``, ``verify``, ``close``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

import rawsmtp
import rawsmtp.aio
from rawsmtp.pool._observe import PoolStats

T = TypeVar("T")


class AsyncioPool:
    """``rawsmtp.aio.SMTPPool`` on a private loop, with the synchronous pool's methods."""

    def __init__(self, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="aio-test-loop")
        self._thread.start()
        self._pool = self._run(self._make(options))

    @staticmethod
    async def _make(options: dict[str, Any]) -> rawsmtp.aio.SMTPPool:
        return rawsmtp.aio.SMTPPool(**options)

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def send(
        self, message: Any, envelope: Any = None, **keywords: Any
    ) -> Future[rawsmtp.SendResult]:
        async def send() -> rawsmtp.SendResult:
            return await self._pool.send(message, envelope, **keywords)

        if self._loop.is_closed():  # closed: the pool answers at once, on any loop
            future: Future[rawsmtp.SendResult] = Future()
            try:
                future.set_result(asyncio.run(send()))
            except Exception as error:
                future.set_exception(error)
            return future
        return asyncio.run_coroutine_threadsafe(send(), self._loop)

    @property
    def engine(self) -> Any:
        return self._pool._engine

    def __repr__(self) -> str:
        return repr(self._pool)

    def verify(self) -> bool:
        return self._run(self._pool.verify())

    def on_idle(self, callback: Callable[[], None]) -> None:
        self._pool.on_idle(callback)

    def is_idle(self) -> bool:
        return self._pool.is_idle()

    def stats(self) -> PoolStats:
        return self._pool.stats()

    @property
    def pending(self) -> int:
        return self._pool.pending

    def abort(self) -> None:
        self.close(abort=True)

    def close(self, timeout: float | None = None, *, abort: bool = False) -> None:
        if self._loop.is_closed():
            return
        try:
            self._run(self._pool.aclose(timeout, abort=abort))
            self._run(self._loop.shutdown_default_executor())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def __enter__(self) -> AsyncioPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


DRIVERS: dict[str, Callable[..., Any]] = {
    "selectors": rawsmtp.SMTPPool,
    "asyncio": AsyncioPool,
}
