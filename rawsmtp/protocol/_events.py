"""The events a :class:`ClientConnection` reports, and the NEED_DATA sentinel.

Every event is a frozen, slotted dataclass. A driver loops ``next_event()`` until it returns
``NEED_DATA``, acting on each event, then writes ``data_to_send()``. The events about a
transaction are generic over its tag type, like :class:`Transaction`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Generic, TypeAlias

from .._errors import SMTPAuthenticationError, SMTPError, SMTPResponseError
from ._extensions import Extensions
from ._replies import Reply
from ._transaction import TagT, Transaction

__all__ = [
    "NEED_DATA",
    "Authenticated",
    "AuthenticationFailed",
    "ConnectionClosed",
    "Event",
    "Greeting",
    "MessageAccepted",
    "MessageFailed",
    "NeedData",
    "Ready",
    "SendBody",
    "StartTLS",
]


class NeedData(enum.Enum):
    """``next_event()`` has nothing until more bytes are received."""

    NEED_DATA = "NEED_DATA"


NEED_DATA = NeedData.NEED_DATA
"""What ``next_event()`` returns when no event is complete: feed more bytes with
``receive_data()``. A one-member enum rather than h11's metaclass sentinel, so ``is``, ``match``
and type checkers all narrow ``Event | NeedData`` (see :class:`NeedData`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Greeting:
    """The server's 220 greeting arrived; the client has sent EHLO (or LHLO)."""

    reply: Reply


@dataclass(frozen=True, slots=True, kw_only=True)
class StartTLS:
    """The server accepted STARTTLS: do the TLS handshake now, then call ``start_tls_done()``.

    Until then the client sends nothing, and any byte received is a protocol error.
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class Ready:
    """The session is set up (greeting, EHLO, STARTTLS when done): transactions and AUTH may go.

    ``extensions`` is what the last EHLO advertised; ``tls`` says whether the link is encrypted.
    """

    extensions: Extensions
    tls: bool
    reply: Reply


@dataclass(frozen=True, slots=True, kw_only=True)
class Authenticated:
    """The server accepted the credentials (235)."""

    reply: Reply


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthenticationFailed:
    """The AUTH exchange failed; the connection is still usable for another attempt or QUIT."""

    error: SMTPAuthenticationError


@dataclass(frozen=True, slots=True, kw_only=True)
class SendBody(Generic[TagT]):
    """The server is ready for this transaction's message: call ``send_body()`` then ``end_body()``."""

    transaction: Transaction[TagT]


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageAccepted(Generic[TagT]):
    """The server took responsibility for the message for the ``accepted`` recipients.

    ``rejected`` maps each refused recipient (at RCPT, or after the data for LMTP) to its error.
    """

    transaction: Transaction[TagT]
    reply: Reply
    accepted: tuple[str, ...]
    rejected: dict[str, SMTPResponseError] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageFailed(Generic[TagT]):
    """The message was refused (sender, every recipient, or the data); the session goes on.

    ``error`` is an :class:`SMTPResponseError` (the server said no) or an
    :class:`SMTPCapabilityError` (the server lacks what the message needs; nothing was sent),
    or a :class:`LocalProtocolError` for a transaction given up with
    :meth:`ClientConnection.abandon`.

    ``pipelining_refused``: the refusal was a 503 (bad sequence of commands) to a transaction
    written before the previous message's final reply came, so it says nothing about this
    message: the server objected to the pipelining (or still held the failed message ahead).
    It was not delivered; send it again, uncharged. When the message ahead had been accepted,
    the session itself has switched to ``"envelope"`` pipelining (see
    :attr:`ClientConnection.pipelining`).
    """

    transaction: Transaction[TagT]
    error: SMTPError
    pipelining_refused: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionClosed(Generic[TagT]):
    """The session is over; the driver should close the socket.

    ``error`` is None after a normal QUIT. ``unsent`` are transactions whose message was not
    completely handed out (or that the server refused with 421): safe to send again elsewhere.
    ``unconfirmed`` were sent in full but their final reply never came: they may have been
    delivered and must not be resent blindly. After a 421 every transaction still awaiting a
    reply is unsent: the server processes nothing after the command it answers with 421.
    With PIPELINING and CHUNKING a whole message goes out with its envelope, before MAIL is
    answered: a server that then falls silent leaves it ``unconfirmed``, not ``unsent``.
    Transactions held by a failed AUTH are ``unsent``.
    Transactions the server had already refused are reported as :class:`MessageFailed` before
    this event, not here.

    ``pipelining_refused``: the server went away at a MAIL written after the previous message's
    end, right after accepting that message: it may object to commands pipelined after the end
    of data; resend the unsent with ``pipelining="envelope"``.
    """

    error: SMTPError | None
    unsent: tuple[Transaction[TagT], ...] = ()
    unconfirmed: tuple[Transaction[TagT], ...] = ()
    pipelining_refused: bool = False


# Generic in the tag too: ``Event[Job]``; a bare ``Event`` is ``Event[object]``.
Event: TypeAlias = (
    Greeting
    | StartTLS
    | Ready
    | Authenticated
    | AuthenticationFailed
    | SendBody[TagT]
    | MessageAccepted[TagT]
    | MessageFailed[TagT]
    | ConnectionClosed[TagT]
)
"""Every event ``ClientConnection.next_event()`` can return, as one union to ``match`` on.

Generic in the tag a caller attaches to each :class:`Transaction` (``Event[Job]`` when the
tags are ``Job`` objects), so the transaction in ``MessageAccepted`` and ``MessageFailed`` comes
back typed; a bare ``Event`` is ``Event[object]``."""
