"""rawsmtp: a pooled SMTP client with a sans-I/O protocol core, on the standard library alone."""

from ._errors import (
    SMTPConfigError,
    SMTPConnectionError,
    SMTPDeliveryUnknownError,
    SMTPPoolClosedError,
    SMTPProxyError,
)
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
    "LocalProtocolError",
    "RemoteProtocolError",
    "SMTPAuthenticationError",
    "SMTPCapabilityError",
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
