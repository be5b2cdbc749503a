"""The sans-I/O SMTP client core: bytes in, events out, bytes to send out.

Nothing here opens a socket, reads a clock or starts a thread; a driver does that and passes
received bytes and the current time in.
"""

from ._errors import (
    LocalProtocolError,
    RemoteProtocolError,
    SMTPAuthenticationError,
    SMTPDisconnectedError,
    SMTPError,
    SMTPRecipientsRefusedError,
    SMTPResponseError,
    SMTPTLSError,
)
from ._sasl import SASLMechanism

__all__ = [
    "LocalProtocolError",
    "RemoteProtocolError",
    "SASLMechanism",
    "SMTPAuthenticationError",
    "SMTPDisconnectedError",
    "SMTPError",
    "SMTPRecipientsRefusedError",
    "SMTPResponseError",
    "SMTPTLSError",
]
