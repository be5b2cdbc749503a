"""The sans-I/O SMTP core: bytes in, events out, bytes to send out, for clients and servers.

Nothing here opens a socket, reads a clock or starts a thread; a driver does that and passes
received bytes and the current time in. See :class:`ClientConnection` for the loop a driver runs,
and :class:`ServerConnection` for the server side (used by :mod:`rawsmtp.testing`).
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
from ._server import ServerConnection, ServerState
from ._server_auth import SASLCredentials, SASLRefusal, ServerLogin, ServerMechanism, ServerPlain
from ._server_config import PASSWORD_MECHANISMS, ServerConfig
from ._server_events import (
    Authenticate,
    Command,
    CommandRejected,
    DataRequested,
    Hello,
    MailFrom,
    MessageReceived,
    OtherCommand,
    Quit,
    RcptTo,
    Reset,
    ServerClosed,
    ServerEvent,
    TLSRequested,
    TLSStart,
)
from ._transaction import Transaction

__all__ = [
    "NEED_DATA",
    "PASSWORD_MECHANISMS",
    "Authenticate",
    "Authenticated",
    "AuthenticationFailed",
    "ChunkingEncoder",
    "ClientConfig",
    "ClientConnection",
    "Command",
    "CommandRejected",
    "ConnectionClosed",
    "DataEncoder",
    "DataRequested",
    "Event",
    "Extensions",
    "Greeting",
    "Hello",
    "LocalProtocolError",
    "MailFrom",
    "MessageAccepted",
    "MessageFailed",
    "MessageReceived",
    "NeedData",
    "OtherCommand",
    "Quit",
    "RcptTo",
    "Ready",
    "RemoteProtocolError",
    "Reply",
    "ReplyParser",
    "Reset",
    "SASLCredentials",
    "SASLMechanism",
    "SASLRefusal",
    "SMTPAuthenticationError",
    "SMTPCapabilityError",
    "SMTPDisconnectedError",
    "SMTPError",
    "SMTPRecipientsRefusedError",
    "SMTPResponseError",
    "SMTPTLSError",
    "SMTPTimeoutError",
    "SendBody",
    "ServerClosed",
    "ServerConfig",
    "ServerConnection",
    "ServerEvent",
    "ServerLogin",
    "ServerMechanism",
    "ServerPlain",
    "ServerState",
    "StartTLS",
    "State",
    "TLSRequested",
    "TLSStart",
    "Transaction",
    "decode_data",
    "orcpt_value",
    "parse_ehlo",
    "validate_address",
    "validate_hostname",
    "xtext",
]
