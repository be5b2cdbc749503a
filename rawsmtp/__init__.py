"""rawsmtp: a pooled SMTP client with a sans-I/O protocol core, on the standard library alone."""

from . import auth
from ._errors import (
    SMTPConfigError,
    SMTPConnectionError,
    SMTPDeliveryUnknownError,
    SMTPPoolClosedError,
    SMTPProxyError,
    SMTPQueueFullError,
)
from ._message import Envelope
from ._pool import SMTPPool
from ._result import SendResult
from ._url import create_transport
from .protocol import (
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

__version__ = "0.1.0"

__all__ = [
    "Envelope",
    "LocalProtocolError",
    "RemoteProtocolError",
    "SMTPAuthenticationError",
    "SMTPCapabilityError",
    "SMTPConfigError",
    "SMTPConnectionError",
    "SMTPDeliveryUnknownError",
    "SMTPDisconnectedError",
    "SMTPError",
    "SMTPPool",
    "SMTPPoolClosedError",
    "SMTPProxyError",
    "SMTPQueueFullError",
    "SMTPRecipientsRefusedError",
    "SMTPResponseError",
    "SMTPTLSError",
    "SMTPTimeoutError",
    "SendResult",
    "auth",
    "create_transport",
]
