"""The pool's log lines: one per message outcome and per connection, from the event stream.

:class:`LogObserver` turns the same events ``on_event=`` and the metrics adapters see into log
records, so logs and metrics agree: INFO for a delivery and for connections opened and closed
politely, WARNING for refused recipients, failed messages, retries, throttling and connection
failures, DEBUG for a message handed to a connection (the protocol transcript, also at DEBUG,
is written by the session). Every line starts with ``[connection id]`` (``[-]`` for a message
that never reached one). Lines hold addresses and replies, never a password or a token: the
events carry none.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..protocol import SMTPError
from ._observe import (
    ConnectionClosed,
    ConnectionOpened,
    MessageDelivered,
    MessageFailed,
    MessageRetried,
    MessageStarted,
    PoolEvent,
    Throttled,
)

__all__ = ["LogObserver"]

DEBUG, INFO, WARNING = logging.DEBUG, logging.INFO, logging.WARNING


def _one_line(text: str) -> str:
    return " / ".join(text.splitlines())


def _error(error: SMTPError) -> str:
    return f"{type(error).__name__}: {_one_line(str(error))}"


def _connection(connection_id: int | None) -> str:
    return "-" if connection_id is None else str(connection_id)


def _message(message_id: str | None) -> str:
    return message_id or "(no Message-ID)"


class LogObserver:
    """Writes each event to ``log`` (see the module); called on the loop, in order."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self._opened: set[int] = set()  # connections that got ready and have not closed
        self._lines: dict[type, Callable[[Any], None]] = {
            ConnectionOpened: self._connection_opened,
            ConnectionClosed: self._connection_closed,
            MessageStarted: self._message_started,
            MessageDelivered: self._message_delivered,
            MessageFailed: self._message_failed,
            MessageRetried: self._message_retried,
            Throttled: self._throttled,
        }

    def __call__(self, event: PoolEvent) -> None:
        self._lines[type(event)](event)

    def _connection_opened(self, event: ConnectionOpened) -> None:
        self._opened.add(event.connection_id)
        if self.log.isEnabledFor(INFO):
            tls = " (TLS)" if event.tls else ""
            self.log.info(
                "[%d] connected to %s:%d%s", event.connection_id, event.host, event.port, tls
            )

    def _connection_closed(self, event: ConnectionClosed) -> None:
        was_open = event.connection_id in self._opened
        self._opened.discard(event.connection_id)
        error = event.error
        if error is None:
            if self.log.isEnabledFor(INFO):
                self.log.info(
                    "[%d] connection closed after %d messages", event.connection_id, event.messages
                )
        elif not was_open:
            self.log.warning("[%d] could not connect: %s", event.connection_id, _error(error))
        else:
            self.log.warning(
                "[%d] connection lost after %d messages: %s",
                event.connection_id,
                event.messages,
                _error(error),
            )

    def _message_started(self, event: MessageStarted) -> None:
        if self.log.isEnabledFor(DEBUG):
            self.log.debug(
                "[%d] %s: sending to %d recipients (attempt %d)",
                event.connection_id,
                _message(event.message_id),
                event.recipients,
                event.attempt,
            )

    def _message_delivered(self, event: MessageDelivered) -> None:
        result = event.result
        level = WARNING if result.rejected else INFO
        if not self.log.isEnabledFor(level):
            return
        refused = "".join(
            f"; refused {address}: {_one_line(str(error))}"
            for address, error in result.rejected_errors.items()
        )
        self.log.log(
            level,
            "[%d] %s delivered to %d of %d recipients in %.3f s, queue id %s: %s%s",
            event.connection_id,
            _message(event.message_id),
            len(result.accepted),
            len(result.envelope.rcpt_to),
            event.elapsed,
            result.queue_id or "unknown",
            _one_line(result.response),
            refused,
        )

    def _message_failed(self, event: MessageFailed) -> None:
        self.log.warning(
            "[%s] %s failed after %.3f s: %s",
            _connection(event.connection_id),
            _message(event.message_id),
            event.elapsed,
            _error(event.error),
        )

    def _message_retried(self, event: MessageRetried) -> None:
        cost = f"attempt {event.attempt} failed" if event.charged else "no attempt charged"
        self.log.warning(
            "[%s] %s will be retried in %.1f s (%s): %s",
            _connection(event.connection_id),
            _message(event.message_id),
            event.delay,
            cost,
            _error(event.error),
        )

    def _throttled(self, event: Throttled) -> None:
        rate = "" if event.rate_limit is None else f", {event.rate_limit} messages per period"
        self.log.warning(
            "[%d] throttled by the server (%s): now at most %d connections%s",
            event.connection_id,
            _one_line(event.reply),
            event.max_connections,
            rate,
        )
