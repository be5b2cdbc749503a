"""What the test server records: received messages and command lines."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CommandRecord", "ReceivedMessage"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedMessage:
    """One message the server accepted.

    ``data`` is the content as the client meant it: dot-unstuffed (DATA) or reassembled (BDAT),
    with the CR LF line ends of the wire and without the terminator. ``params`` holds the MAIL
    FROM ESMTP parameters (``{"SIZE": "123", "SMTPUTF8": None}``) and ``rcpt_params`` those of
    each RCPT TO by address. ``rcpt_to`` lists the recipients that got the message (in LMTP mode,
    those whose reply after the data was a 250). ``connection`` is the connection's number.
    """

    mail_from: str
    rcpt_to: tuple[str, ...]
    data: bytes
    params: dict[str, str | None] = field(default_factory=dict)
    rcpt_params: dict[str, dict[str, str | None]] = field(default_factory=dict)
    tls: bool = False
    auth_user: str | None = None
    helo: str | None = None
    lmtp: bool = False
    chunked: bool = False
    connection: int = 0


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """A command line as received (CR LF stripped), with the connection's number and when it
    arrived (``time.monotonic()``)."""

    connection: int
    line: str
    time: float = 0.0
