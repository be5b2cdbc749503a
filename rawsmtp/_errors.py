"""Errors of the I/O layer: connecting, timeouts, proxies, the pool's own life cycle, options.

The protocol-level classes (SMTPError and its family) live in :mod:`rawsmtp.protocol`; these add
what only a driver with sockets and clocks can know.
"""

from __future__ import annotations

from .protocol._errors import LocalProtocolError, SMTPError, SMTPTimeoutError

__all__ = [
    "SMTPConfigError",
    "SMTPConnectionError",
    "SMTPDeliveryUnknownError",
    "SMTPPoolClosedError",
    "SMTPProxyError",
    "SMTPQueueFullError",
    "SMTPTimeoutError",
]


class SMTPConfigError(LocalProtocolError):
    """An option is invalid; ``option`` names it. Also a ``ValueError``."""

    def __init__(self, message: str, *, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


class SMTPConnectionError(SMTPError):
    """No connection could be made (refused, unreachable, name not resolved)."""


class SMTPProxyError(SMTPConnectionError):
    """The proxy refused, failed authentication, or could not reach the target.

    ``reply_code`` is the proxy's own reply code (SOCKS reply byte or HTTP status) when known.
    """

    def __init__(self, message: str, *, reply_code: int | None = None) -> None:
        super().__init__(message)
        self.reply_code = reply_code


class SMTPPoolClosedError(SMTPError):
    """The pool was closed before the message could be sent."""


class SMTPQueueFullError(SMTPError):
    """``max_queue`` messages are already waiting and the caller chose not to wait longer."""


class SMTPDeliveryUnknownError(SMTPError):
    """The message was sent in full but its final reply was lost: it may have been delivered.

    rawsmtp never resends such a message by itself, so it cannot arrive twice.
    """
