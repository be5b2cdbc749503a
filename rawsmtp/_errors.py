"""Every exception rawsmtp raises, in one leaf module that every layer may import.

Every failure rawsmtp reports is an :class:`SMTPError`. The split that matters to a caller is
whose fault it is: :class:`LocalProtocolError` (also a ``ValueError``) means the caller misused
the API or gave input that can never be sent; :class:`RemoteProtocolError` means the server broke
the protocol; :class:`SMTPResponseError` means the server answered a command with a refusal. The
rest say what only a driver with sockets and clocks can know (connecting, proxies, the pool's own
life cycle, options). The errors of the transport are also the built-in exceptions of their
kind (``SMTPConnectionError`` and ``SMTPDisconnectedError`` are ``ConnectionError`` classes,
``SMTPTimeoutError`` a ``TimeoutError``, all ``OSError``); no class is both an ``OSError`` and a
``ValueError``. This module imports nothing of rawsmtp.
"""

from __future__ import annotations

__all__ = [
    "LocalProtocolError",
    "RemoteProtocolError",
    "SMTPAuthenticationError",
    "SMTPCapabilityError",
    "SMTPCommitError",
    "SMTPConfigError",
    "SMTPConnectionError",
    "SMTPDeliveryUnknownError",
    "SMTPDisconnectedError",
    "SMTPError",
    "SMTPPoolClosedError",
    "SMTPProxyError",
    "SMTPQueueFullError",
    "SMTPRecipientsRefusedError",
    "SMTPResponseError",
    "SMTPTLSError",
    "SMTPTLSInterruptedError",
    "SMTPTimeoutError",
    "SMTPTokenError",
]


class SMTPError(Exception):
    """Base class of every rawsmtp error.

    ``code`` (int), ``enhanced_code`` (e.g. ``"5.1.1"``), ``response`` (the server's text) and
    ``command`` (the verb the reply answered, e.g. ``"RCPT"``) are set where they are known.
    ``response_bytes`` is that text as received (lines joined by ``b"\\n"``); ``response`` is
    its UTF-8 decoding, or its Latin-1 decoding when it is not UTF-8, so no byte is lost.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        enhanced_code: str | None = None,
        response: str | None = None,
        command: str | None = None,
        response_bytes: bytes | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.enhanced_code = enhanced_code
        self.response = response
        self.response_bytes = response_bytes
        self.command = command

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        parts = [repr(self.message)]
        if self.code is not None:
            parts.append(f"code={self.code}")
        if self.command is not None:
            parts.append(f"command={self.command!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


class LocalProtocolError(SMTPError, ValueError):
    """The caller misused the API or gave input that can never be sent (nothing was written)."""


class SMTPCapabilityError(LocalProtocolError):
    """The message needs something this server does not offer (SMTPUTF8, 8BITMIME, REQUIRETLS),
    or is larger than its SIZE limit. Raised before anything of the message is written."""


class RemoteProtocolError(SMTPError):
    """The server broke the protocol: a malformed or oversized reply, or bytes where none may be."""


class SMTPDisconnectedError(SMTPError, ConnectionError):
    """The server closed the connection when the client still expected a reply.

    Also a ``ConnectionError`` (an ``OSError``), as smtplib's SMTPServerDisconnected is one."""


class SMTPTLSError(SMTPError):
    """TLS could not be established, or was required and not offered.

    ``is_temporary`` is False when something must change first: the certificate failed
    verification or names another host, the two sides share no protocol version or cipher (or
    the server does not speak TLS there), the server refused the client's certificate, or TLS
    is required and not offered. It is True for a 4xx reply to STARTTLS and for
    :class:`SMTPTLSInterruptedError`. The pool fails every queued message at once on a
    permanent TLS failure met while connecting, and retries a temporary one with back-off, as
    it does a connection that failed.
    """

    @property
    def is_temporary(self) -> bool:
        """True when the same attempt may succeed later (see the class docstring)."""
        return self.code is not None and 400 <= self.code < 500


class SMTPTLSInterruptedError(SMTPTLSError):
    """TLS broke off for a reason that says nothing of either side's settings: a corrupted
    record, an unexpected message, an internal-error alert, the TLS stream ending abruptly.
    Always temporary. (A reset, an end of stream or a timeout in the middle of a handshake on
    the pool's own sockets is reported as the :class:`SMTPConnectionError`,
    :class:`SMTPDisconnectedError` or :class:`SMTPTimeoutError` it is, temporary too.)"""

    @property
    def is_temporary(self) -> bool:
        """Always True."""
        return True


class SMTPResponseError(SMTPError):
    """The server refused a command with a 4xx or 5xx reply."""

    @property
    def is_temporary(self) -> bool:
        """True for a 4xx reply: the same request may succeed later."""
        return self.code is not None and 400 <= self.code < 500


class SMTPAuthenticationError(SMTPResponseError):
    """Authentication failed (a 535, 534, 538 or 454 reply, or a server that proved nothing).

    ``detail`` holds what the mechanism learnt of the failure, e.g. XOAUTH2's JSON reason.
    It never contains a password or token.
    """

    def __init__(
        self,
        message: str,
        *,
        detail: str | None = None,
        code: int | None = None,
        enhanced_code: str | None = None,
        response: str | None = None,
        command: str | None = "AUTH",
        response_bytes: bytes | None = None,
    ) -> None:
        super().__init__(
            message,
            code=code,
            enhanced_code=enhanced_code,
            response=response,
            command=command,
            response_bytes=response_bytes,
        )
        self.detail = detail


class SMTPTokenError(SMTPAuthenticationError):
    """An OAuth2 token endpoint did not issue an access token.

    ``status`` is the HTTP status (None when the endpoint could not be reached); ``error`` and
    ``error_description`` are the endpoint's own reason (RFC 6749 section 5.2), e.g.
    ``"invalid_grant"``, when it gave one.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error: str | None = None,
        error_description: str | None = None,
    ) -> None:
        super().__init__(message, command=None, detail=error_description)
        self.status = status
        self.error = error
        self.error_description = error_description


class SMTPRecipientsRefusedError(SMTPResponseError):
    """No recipient of a transaction was accepted.

    ``rejected`` maps each address to the :class:`SMTPResponseError` its RCPT received.
    """

    def __init__(self, message: str, *, rejected: dict[str, SMTPResponseError]) -> None:
        last = list(rejected.values())[-1] if rejected else None
        super().__init__(
            message,
            code=last.code if last else None,
            enhanced_code=last.enhanced_code if last else None,
            response=last.response if last else None,
            response_bytes=last.response_bytes if last else None,
            command="RCPT",
        )
        self.rejected = rejected


class SMTPTimeoutError(SMTPError, TimeoutError):
    """A wait ran out; ``phase`` says which: ``"connect"``, ``"greeting"``, ``"command"``,
    ``"data"`` (the final reply to a message), ``"tls"``..."""

    def __init__(self, message: str, *, phase: str, command: str | None = None) -> None:
        super().__init__(message, command=command)
        self.phase = phase


class SMTPConfigError(LocalProtocolError):
    """An option is invalid; ``option`` names it. Also a ``ValueError``."""

    def __init__(self, message: str, *, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


class SMTPConnectionError(SMTPError, ConnectionError):
    """No connection could be made (refused, unreachable, name not resolved), or the message
    source failed while being read. Also a ``ConnectionError`` (an ``OSError``), as smtplib's
    errors are ``OSError`` subclasses: ``except OSError`` code written for smtplib still catches it."""


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


class SMTPCommitError(SMTPError):
    """The message's ``before_commit`` hook raised (the exception is the ``__cause__``).

    The end of its data (the dot, or ``BDAT ... LAST``) was never written, so the message was
    not delivered: it is safe to send again. rawsmtp does not resend it by itself.
    """
