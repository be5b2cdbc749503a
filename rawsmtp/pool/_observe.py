"""What a pool tells its observers: typed events for ``on_event=`` and the ``stats()`` snapshot.

The engine builds these on the event loop and hands them to the observer off its hot path (the
selectors pool calls ``on_event`` from a thread of its own, the asyncio pool after the loop's
current step; in order, either way); integrations (OpenTelemetry, Prometheus, logs)
are adapters over this one stream, so they all see the same facts. Times are ``time.monotonic()``
seconds, durations are seconds. Nothing here holds a message body or a secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._errors import SMTPError
    from .._result import SendResult

__all__ = [
    "ConnectionClosed",
    "ConnectionOpened",
    "MessageDelivered",
    "MessageFailed",
    "MessageRetried",
    "MessageStarted",
    "PoolEvent",
    "PoolStats",
    "Throttled",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionOpened:
    """A connection is ready for messages (greeting, EHLO, STARTTLS and AUTH done)."""

    connection_id: int
    host: str
    port: int
    tls: bool
    time: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionClosed:
    """A connection ended: politely (``error`` is None) or by ``error``.

    Every connection attempt ends with one, also one that never got ready (a refused connect,
    a failed STARTTLS or AUTH: no ConnectionOpened came before it then).
    """

    connection_id: int
    messages: int  # messages it carried to a final reply
    error: SMTPError | None
    time: float


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageStarted:
    """A message was handed to a ready connection (its MAIL FROM goes out next)."""

    message_id: str | None
    connection_id: int
    recipients: int
    attempt: int  # 1 for the first try
    time: float


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageDelivered:
    """At least one recipient accepted the message; ``result`` says which."""

    message_id: str | None
    connection_id: int
    result: SendResult
    elapsed: float  # from send() to the final reply
    time: float


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageFailed:
    """The message's future failed with ``error`` (it will not be retried)."""

    message_id: str | None
    connection_id: int | None  # None when it failed before reaching a connection
    error: SMTPError
    elapsed: float
    time: float


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageRetried:
    """The message went back to the queue after ``error``; ``delay`` before its next try."""

    message_id: str | None
    connection_id: int | None
    error: SMTPError
    attempt: int  # attempts charged so far
    delay: float
    charged: bool  # False for throttling and destination failures, which cost no attempt
    time: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Throttled:
    """The server said "too fast / too many"; the pool lowered its pace to these values."""

    connection_id: int
    reply: str
    max_connections: int  # the effective concurrency now
    rate_limit: int | None  # the effective rate now (None: no rate limit)
    time: float


PoolEvent = (
    ConnectionOpened
    | ConnectionClosed
    | MessageStarted
    | MessageDelivered
    | MessageFailed
    | MessageRetried
    | Throttled
)
"""What ``on_event=`` is called with: one of the event classes above."""

_NO_CONNECTIONS: Mapping[str, int] = MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolStats:
    """A snapshot of the pool, from ``pool.stats()``.

    ``connections`` counts connections by state (``"opening"``, ``"ready"``, ``"busy"``,
    ``"closing"``); the counters run from the pool's creation, ``retried`` counting the retries
    that cost an attempt and ``deferred`` those that did not; ``latency`` holds the median
    (``"p50"``), 90th percentile (``"p90"``) and maximum (``"max"``) of send()-to-final-reply
    seconds over the last 1024 deliveries.
    """

    queued: int
    in_flight: int
    connections: Mapping[str, int] = field(default_factory=lambda: _NO_CONNECTIONS)
    sent: int = 0
    failed: int = 0
    retried: int = 0
    deferred: int = 0  # retries that cost no attempt (throttling, destination down)
    throttled: int = 0
    max_connections: int = 0  # the effective concurrency now (lowered while throttled)
    rate_limit: int | None = None  # the effective rate now
    backoff_until: float | None = None  # no connection opens before this monotonic time
    latency: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
