"""The sans-I/O SMTP client core: bytes in, events out, bytes to send out.

Nothing here opens a socket, reads a clock or starts a thread; a driver does that and passes
received bytes and the current time in. See :class:`ClientConnection` for the loop a driver runs.
"""

from .._errors import (
    LocalProtocolError,
    RemoteProtocolError,
    SMTPAuthenticationError,
    SMTPCapabilityError,
    SMTPDisconnectedError,
    SMTPError,
    SMTPRecipientsRefusedError,
    SMTPResponseError,
    SMTPTimeoutError,
    SMTPTLSError,
)
from ._client import ClientConfig, ClientConnection, State
from ._commands import orcpt_value, validate_address, validate_hostname, xtext
from ._data import ChunkingEncoder, DataEncoder, decode_data
from ._events import (
    NEED_DATA,
    Authenticated,
    AuthenticationFailed,
    ConnectionClosed,
    Event,
    Greeting,
    MessageAccepted,
    MessageFailed,
    NeedData,
    Ready,
    SendBody,
    StartTLS,
)
from ._extensions import Extensions, parse_ehlo
from ._replies import Reply, ReplyParser
from ._sasl import SASLMechanism
from ._transaction import Transaction

__all__ = [
    "NEED_DATA",
    "Authenticated",
    "AuthenticationFailed",
    "ChunkingEncoder",
    "ClientConfig",
    "ClientConnection",
    "ConnectionClosed",
    "DataEncoder",
    "Event",
    "Extensions",
    "Greeting",
    "LocalProtocolError",
    "MessageAccepted",
    "MessageFailed",
    "NeedData",
    "Ready",
    "RemoteProtocolError",
    "Reply",
    "ReplyParser",
    "SASLMechanism",
    "SMTPAuthenticationError",
    "SMTPCapabilityError",
    "SMTPDisconnectedError",
    "SMTPError",
    "SMTPRecipientsRefusedError",
    "SMTPResponseError",
    "SMTPTLSError",
    "SMTPTimeoutError",
    "SendBody",
    "StartTLS",
    "State",
    "Transaction",
    "decode_data",
    "orcpt_value",
    "parse_ehlo",
    "validate_address",
    "validate_hostname",
    "xtext",
]
