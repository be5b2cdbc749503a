"""Integrations: where Python applications send mail, and where a pool's events go.

Each module imports its third-party library itself, so ``import rawsmtp.contrib`` costs nothing
and the core stays on the standard library; install the extra that names the module:

- :mod:`rawsmtp.contrib.django` -- a Django email backend (``rawsmtp[django]``);
- :mod:`rawsmtp.contrib.flask` -- the same backend for Flask-Mailman (``rawsmtp[flask]``);
- :mod:`rawsmtp.contrib.logging` -- a non-blocking ``SMTPHandler`` with a cap on error storms;
- :mod:`rawsmtp.contrib.otel` -- OpenTelemetry metrics and spans (``rawsmtp[otel]``);
- :mod:`rawsmtp.contrib.prometheus` -- Prometheus counters, histogram and gauges
  (``rawsmtp[prometheus]``).

:func:`chain` joins several ``on_event=`` observers into one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..pool._observe import PoolEvent

__all__ = ["Observer", "chain"]

Observer = Callable[["PoolEvent"], object]


def chain(*observers: Observer) -> Callable[[PoolEvent], None]:
    """One ``on_event=`` callable that hands each event to every observer, in order.

    An observer that raises does not keep the event from the others; the first exception is
    raised again once all have seen the event.
    """

    def observe(event: PoolEvent) -> None:
        failure: BaseException | None = None
        for observer in observers:
            try:
                observer(event)
            except Exception as error:
                failure = failure or error
        if failure is not None:
            raise failure

    return observe
