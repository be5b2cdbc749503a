"""The limiter interfaces the scheduler consults: message starts and connections.

Both are sans-I/O and answer at once, because the scheduler runs on the pool's event loop: a
limiter that keeps its state elsewhere (:mod:`rawsmtp.contrib.redis`) holds local leases that a
thread of its own refills, and ``acquire`` only spends what is already leased. When nothing is
leased it grants nothing and ``next_free`` says when to ask again.

- :class:`RateLimiter` (defined with the scheduler, which owns the exact in-process
  :class:`SlidingWindow`): starts per window, reserved at assignment, confirmed at MAIL.
- :class:`ConnectionLimiter`: a cap on open connections shared beyond the pool. Without one the
  cap is ``max_connections``; with one a connection opens only on a lease, held until the
  connection ends, and the lower of the two caps holds.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ._scheduler import RateLimiter

__all__ = ["ConnectionLimiter", "RateLimiter"]


@runtime_checkable
class ConnectionLimiter(Protocol):
    """Grants connection leases. Sans-I/O: time is passed in, no call waits."""

    def acquire(self, now: float) -> object | None:
        """A lease token for one more connection, or None when none is free now."""
        ...

    def release(self, token: object) -> None:
        """The connection that held ``token`` ended."""
        ...

    def next_free(self, now: float) -> float | None:
        """When to call :meth:`acquire` again after it returned None; None: only a
        :meth:`release` can free a lease."""
        ...
