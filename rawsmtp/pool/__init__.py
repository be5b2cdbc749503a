"""The connection pool: a pure scheduler, an engine, sessions over transports, two drivers.

``_scheduler`` decides (pure, given ``now``); ``_engine`` carries the decisions out on the loop;
``_session`` drives one :class:`rawsmtp.protocol.ClientConnection` over a ``_transport`` (socket,
connect, proxy, TLS, send buffer and deadlines);
``_selectors`` and ``_asyncio`` are the two event-loop drivers (the asyncio one is imported by
``rawsmtp.aio`` only, since asyncio loads ssl). ``on_event=`` receives the events of
``_observe`` (exported here); ``stats()`` returns its ``PoolStats``. See ARCHITECTURE.md.
"""

from ._observe import (
    ConnectionClosed,
    ConnectionOpened,
    MessageDelivered,
    MessageFailed,
    MessageRetried,
    MessageStarted,
    PoolEvent,
    PoolStats,
    Throttled,
)
from ._selectors import SMTPPool

__all__ = [
    "ConnectionClosed",
    "ConnectionOpened",
    "MessageDelivered",
    "MessageFailed",
    "MessageRetried",
    "MessageStarted",
    "PoolEvent",
    "PoolStats",
    "SMTPPool",
    "Throttled",
]
