"""TLS over any byte stream with ``ssl.MemoryBIO``, so the event loop never blocks on a handshake.

The same layer serves implicit TLS (port 465), STARTTLS, and TLS through a proxy tunnel: the
driver pushes received ciphertext in, takes plaintext out, and writes whatever ciphertext the
layer produces.
"""

from __future__ import annotations

import re
import ssl

from .._errors import SMTPTLSError, SMTPTLSInterruptedError

__all__ = ["TLSLayer", "tls_error"]

# OpenSSL's reasons (``SSLError.reason``) for a handshake that cannot succeed until someone
# changes a setting: no common protocol version or cipher (or no TLS on that port: "wrong
# version number"), a certificate or key refused or too weak, on either side, a name the
# server does not serve. Any other reason (a bad record MAC, an unexpected message, an
# internal-error alert) may be the stream's fault, and is worth another connection.
_PERMANENT_REASONS = re.compile(
    r"CERT|UNKNOWN_CA|VERSION|PROTOCOL|CIPHER|HANDSHAKE_FAILURE|INSUFFICIENT_SECURITY"
    r"|ACCESS_DENIED|TOO_SMALL|TOO_WEAK|UNRECOGNIZED_NAME|SIGNATURE|CURVE|GROUP|RENEGOTIATION"
)


def tls_error(error: ssl.SSLError | ssl.CertificateError) -> SMTPTLSError:
    """The SMTPTLSError for a failure of ``ssl``: a permanent one, or an SMTPTLSInterruptedError."""
    if isinstance(error, ssl.SSLCertVerificationError):  # ssl.CertificateError is this class
        return SMTPTLSError(f"certificate verification failed: {error.verify_message}")
    if isinstance(error, ssl.SSLEOFError | ssl.SSLSyscallError | ssl.SSLZeroReturnError):
        return SMTPTLSInterruptedError(f"TLS connection broken: {error}")
    reason = getattr(error, "reason", None)
    if isinstance(reason, str) and _PERMANENT_REASONS.search(reason):
        return SMTPTLSError(f"TLS failed: {error}")
    return SMTPTLSInterruptedError(f"TLS failed: {error}")


class TLSLayer:
    def __init__(self, context: ssl.SSLContext, server_hostname: str | None) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.object = context.wrap_bio(
            self._incoming, self._outgoing, server_side=False, server_hostname=server_hostname
        )
        self.handshake_done = False

    def handshake(self) -> bool:
        """Advance the handshake; True once it is complete."""
        if not self.handshake_done:
            try:
                self.object.do_handshake()
            except ssl.SSLWantReadError:
                return False
            except (ssl.SSLError, ssl.CertificateError) as error:
                raise tls_error(error) from error
            self.handshake_done = True
        return True

    def receive(self, ciphertext: bytes) -> bytes:
        """Ciphertext in; the plaintext it completes out (b"" while a record is partial).

        A close_notify from the peer comes out as b"" too; the socket's EOF ends the session.
        """
        self._incoming.write(ciphertext)
        if not self.handshake_done:
            return b""
        chunks = []
        try:
            while data := self.object.read(65536):
                chunks.append(data)
        except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
            pass
        except ssl.SSLError as error:
            raise tls_error(error) from error
        return b"".join(chunks)

    def send(self, plaintext: bytes | bytearray) -> None:
        if plaintext:
            self.object.write(plaintext)

    def take_outgoing(self) -> bytes:
        return self._outgoing.read()
