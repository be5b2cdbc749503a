"""What the metrics adapters (otel, prometheus) share, on the standard library alone."""

from __future__ import annotations

from typing import Any, Protocol

from ..pool._observe import (
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

__all__ = ["EventAdapter", "StatsSource", "error_labels"]

# Each event type -> the hook an adapter defines for it.
_HOOKS: dict[type, str] = {
    ConnectionOpened: "on_connection_opened",
    ConnectionClosed: "on_connection_closed",
    MessageStarted: "on_message_started",
    MessageDelivered: "on_message_delivered",
    MessageFailed: "on_message_failed",
    MessageRetried: "on_message_retried",
    Throttled: "on_throttled",
}


class EventAdapter:
    """An ``on_event=`` callable that hands each event to its ``on_<event>`` hook, if defined."""

    def __call__(self, event: PoolEvent) -> None:
        hook = getattr(self, _HOOKS.get(type(event), ""), None)
        if hook is not None:
            hook(event)


class StatsSource(Protocol):
    """What ``track()`` needs of a pool."""

    def stats(self) -> PoolStats: ...


def error_labels(error: Any) -> tuple[str, str]:
    """An error as (class name, reply code or ``"none"``): few, fixed values, fit for labels."""
    code = getattr(error, "code", None)
    return error_type(error), "none" if code is None else str(code)


def error_type(error: Any) -> str:
    """The class name of an error, ``"none"`` for a polite end."""
    return "none" if error is None else type(error).__name__
