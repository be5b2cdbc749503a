"""The events a :class:`ServerConnection` reports.

Every command the client sends becomes one event subclassing :class:`Command`, which waits for
the driver's answer: ``accept()`` sends the event's ``reply`` (what the server would say) and
applies the command; ``respond(text)`` sends another reply instead, and a refusal (4xx/5xx)
leaves the session as it was. The next command is read only after that, so replies always go
out in command order, which is what RFC 2920 asks of a pipelining server.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .._errors import SMTPError

__all__ = [
    "AuthRequested",
    "Authenticate",
    "Command",
    "CommandRejected",
    "DataRequested",
    "Hello",
    "MailFrom",
    "MessageReceived",
    "OtherCommand",
    "Quit",
    "RcptTo",
    "Reset",
    "ServerClosed",
    "ServerEvent",
    "TLSRequested",
    "TLSStart",
]

Params = dict[str, str | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """A command line awaiting an answer. ``verb`` is upper-cased; ``reply`` is the default."""

    verb: str
    argument: str
    reply: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandRejected(Command):
    """The server refuses this command itself (syntax, sequence, limits): ``reply`` says why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello(Command):
    """EHLO, HELO or LHLO with the client's name; accepting it resets any transaction."""

    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TLSRequested(Command):
    """STARTTLS: accepting it sends 220, then :class:`TLSStart` follows."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthRequested(Command):
    """AUTH whose mechanism asks first (no initial response, or XOAUTH2's error challenge).

    Reported before the exchange starts: accepting sends ``reply`` (the first 334 challenge) and
    reads the client's responses; a refusal (4xx/5xx) answers the AUTH command instead. With an
    initial response that settles the exchange, :class:`Authenticate` comes straight away.
    """

    mechanism: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Authenticate(Command):
    """A SASL exchange finished: accept (235) or refuse (535) these credentials.

    ``password`` is None when the mechanism checked the credentials itself (a callback one).
    """

    mechanism: str
    username: str
    password: str | None = None
    authzid: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MailFrom(Command):
    """MAIL FROM, parsed. ``params`` are the ESMTP parameters by upper-cased keyword;
    ``envid`` is the DSN ENVID decoded from xtext."""

    address: str
    params: Params = field(default_factory=dict)
    size: int | None = None
    body: str | None = None
    smtputf8: bool = False
    ret: str | None = None
    envid: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RcptTo(Command):
    """RCPT TO, parsed; ``notify`` and ``orcpt`` are the DSN parameters (ORCPT decoded)."""

    address: str
    params: Params = field(default_factory=dict)
    notify: frozenset[str] | None = None
    orcpt: tuple[str, str] | None = None  # (address type, address)


@dataclass(frozen=True, slots=True, kw_only=True)
class DataRequested(Command):
    """DATA: accepting it sends 354; the content then arrives as :class:`MessageReceived`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageReceived(Command):
    """A complete message: after DATA's final dot, or BDAT ... LAST (``chunked``).

    ``data`` is dot-unstuffed or reassembled, CR LF line ends as received. ``too_big`` says it
    outgrew the size limit (then ``data`` is empty and the default reply is 552). In LMTP mode
    one event per accepted recipient (``recipient``), each answered on its own.
    """

    mail_from: str
    recipients: tuple[str, ...]
    data: bytes
    chunked: bool = False
    too_big: bool = False
    recipient: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Reset(Command):
    """RSET."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Quit(Command):
    """QUIT: whatever the answer, the session ends after it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OtherCommand(Command):
    """NOOP, VRFY, HELP, a non-last BDAT chunk, or a command the server does not know."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TLSStart:
    """Do the server side of the TLS handshake now, then call ``start_tls_done()``.

    ``discarded`` counts plaintext bytes the client sent after STARTTLS, before the handshake:
    they were thrown away unread (RFC 3207 section 5; the command-injection defence).
    """

    discarded: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerClosed:
    """The session is over; close the socket. ``error`` is None after QUIT."""

    error: SMTPError | None


# Every Command subclass, plus the two events that are no command.
ServerEvent = Command | TLSStart | ServerClosed
"""What ``ServerConnection.next_event()`` returns, besides ``NEED_DATA``."""
