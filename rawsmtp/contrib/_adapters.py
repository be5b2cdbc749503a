"""What the metrics adapters (otel, prometheus) share, on the standard library alone."""

from __future__ import annotations

from typing import Any, Protocol

from ..pool._observe import PoolStats

__all__ = ["StatsSource", "error_labels"]


class StatsSource(Protocol):
    """What ``track()`` needs of a pool."""

    def stats(self) -> PoolStats: ...


def error_labels(error: Any) -> tuple[str, str]:
    """An error as (class name, reply code or ``"none"``): few, fixed values, fit for labels."""
    code = getattr(error, "code", None)
    return type(error).__name__, "none" if code is None else str(code)
