"""rawsmtp: a pooled SMTP client with a sans-I/O protocol core, on the standard library alone."""

from ._errors import (
    SMTPConfigError,
    SMTPConnectionError,
    SMTPDeliveryUnknownError,
    SMTPPoolClosedError,
    SMTPProxyError,
    SMTPTimeoutError,
)
from .protocol import (
    LocalProtocolError,
    RemoteProtocolError,
    SMTPAuthenticationError,
    SMTPDisconnectedError,
    SMTPError,
    SMTPRecipientsRefusedError,
    SMTPResponseError,
    SMTPTLSError,
)

__version__ = "0.1.0"

__all__ = [
    "LocalProtocolError",
    "RemoteProtocolError",
    "SMTPAuthenticationError",
    "SMTPConfigError",
    "SMTPConnectionError",
    "SMTPDeliveryUnknownError",
    "SMTPDisconnectedError",
    "SMTPError",
    "SMTPPoolClosedError",
    "SMTPProxyError",
    "SMTPRecipientsRefusedError",
    "SMTPResponseError",
    "SMTPTLSError",
    "SMTPTimeoutError",
]
