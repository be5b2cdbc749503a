"""rawsmtp: a pooled SMTP client with a sans-I/O protocol core, on the standard library alone.

``rawsmtp.SMTPPool`` (threads) and ``rawsmtp.aio.SMTPPool`` (asyncio) send; ``rawsmtp.protocol``
is the sans-I/O core; ``rawsmtp.auth`` the SASL mechanisms; ``rawsmtp.proxy`` the proxy
handshakes; ``rawsmtp.testing`` a fault-injecting test server.
"""

from . import auth, proxy
from ._errors import (
    SMTPCommitError,
    SMTPConfigError,
    SMTPConnectionError,
    SMTPDeliveryUnknownError,
    SMTPPoolClosedError,
    SMTPProxyError,
    SMTPQueueFullError,
    SMTPTLSInterruptedError,
    SMTPTokenError,
)
from ._message import Envelope
from ._result import SendResult
from .config import create_transport
from .pool import SMTPPool
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
    "SMTPCommitError",
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
    "SMTPTLSInterruptedError",
    "SMTPTimeoutError",
    "SMTPTokenError",
    "SendResult",
    "auth",
    "create_transport",
    "proxy",
]
