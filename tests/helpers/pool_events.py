"""Synthetic pool events (rawsmtp.pool._observe) for testing observers without an engine."""

from __future__ import annotations

import time

from rawsmtp import Envelope, SendResult, SMTPConnectionError, SMTPResponseError
from rawsmtp.pool._observe import (
    ConnectionClosed,
    ConnectionOpened,
    MessageDelivered,
    MessageFailed,
    MessageRetried,
    MessageStarted,
    PoolEvent,
    Throttled,
)

ENVELOPE = Envelope(mail_from="ann@example.com", rcpt_to=("bob@example.com", "carl@example.com"))


def delivered_result(message_id: str | None) -> SendResult:
    return SendResult(
        accepted=("bob@example.com",),
        rejected=("carl@example.com",),
        rejected_errors={"carl@example.com": SMTPResponseError("no such user", code=550)},
        response="250 2.0.0 Ok: queued as 4ABC",
        envelope=ENVELOPE,
        message_id=message_id,
        message_size=1234,
    )


def a_session(t0: float | None = None) -> list[PoolEvent]:
    """One connection: message A delivered after a retry, B failed with 552, C throttled."""
    t = time.monotonic() - 10 if t0 is None else t0
    refused = SMTPResponseError("mailbox full", code=552, command="DATA")
    dropped = SMTPConnectionError("connection lost")
    slow_down = SMTPResponseError("slow down", code=421)
    return [
        ConnectionOpened(connection_id=1, host="mx.example.com", port=25, tls=True, time=t),
        MessageStarted(message_id="<a@x>", connection_id=1, recipients=2, attempt=1, time=t + 0.1),
        MessageRetried(
            message_id="<a@x>",
            connection_id=1,
            error=dropped,
            attempt=1,
            delay=1.0,
            charged=True,
            time=t + 0.2,
        ),
        MessageStarted(message_id="<a@x>", connection_id=1, recipients=2, attempt=2, time=t + 1.5),
        MessageDelivered(
            message_id="<a@x>",
            connection_id=1,
            result=delivered_result("<a@x>"),
            elapsed=1.9,
            time=t + 1.9,
        ),
        MessageStarted(message_id=None, connection_id=1, recipients=1, attempt=1, time=t + 2.0),
        MessageFailed(message_id=None, connection_id=1, error=refused, elapsed=0.3, time=t + 2.3),
        Throttled(
            connection_id=1, reply="421 slow down", max_connections=2, rate_limit=10, time=t + 2.4
        ),
        MessageRetried(
            message_id="<c@x>",
            connection_id=None,
            error=slow_down,
            attempt=0,
            delay=5.0,
            charged=False,
            time=t + 2.4,
        ),
        ConnectionClosed(connection_id=1, messages=2, error=None, time=t + 3.0),
    ]
