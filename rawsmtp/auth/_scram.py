"""SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677), one class parameterised by the hash.

SCRAM is the one mechanism where the server proves something back: its final message carries a
signature only a holder of the password's verifier can compute. A 235 without that proof is not
trusted, because a man in the middle can say 235 to anything.

The -PLUS variants bind the exchange to the TLS channel (RFC 5802 section 6): the GS2 header
says ``p=<binding type>`` and the client-final ``c=`` carries the header and the binding data, so
a man in the middle with another certificate cannot relay the exchange. Without -PLUS, the GS2
flag says whether the client could have bound: ``y`` (it could, but the server did not offer
-PLUS, so a server that did offer it detects the downgrade) or ``n`` (no binding data).

User name and password go through SASLprep (RFC 4013, :mod:`._saslprep`) as RFC 5802 asks: the
user name as a query string, the password as a stored string. For ASCII and for NFC text without
compatibility characters that is the identity, so it matches servers (Dovecot among them) that
use the password's UTF-8 bytes as they are.
"""

from __future__ import annotations

import base64
import binascii
from enum import Enum

from .._errors import SMTPConfigError
from ._base import Mechanism, decode_text, fail, saslname
from ._channel_binding import ChannelBinding
from ._credentials import Credentials
from ._saslprep import saslprep

__all__ = ["MAX_ITERATIONS", "Scram", "prepare_credentials"]

# hashlib names of the hashes RFC 5802 and RFC 7677 register.
_HASHES = {"SHA-1": "sha1", "SHA-256": "sha256"}

MAX_ITERATIONS = 1_000_000
"""The largest SCRAM iteration count a server may ask for; a larger one fails authentication.

The count is the server's to choose and PBKDF2 costs time in proportion to it: this is enough
for any real server (RFC 7677 asks for at least 4096; OWASP suggests 600,000 for PBKDF2-SHA256)
while keeping a hostile server from burning minutes of the client's CPU."""


class _Step(Enum):
    START = "start"
    SENT_FIRST = "sent client-first"
    SENT_FINAL = "sent client-final"
    VERIFIED = "verified the server"


class Scram(Mechanism):
    """``Scram("SHA-256", credentials)``; ``nonce`` is for tests (default: from ``secrets``)."""

    __slots__ = (
        "_auth_message",
        "_cbind_data",
        "_client_first_bare",
        "_digest",
        "_gs2_header",
        "_hash",
        "_nonce",
        "_password",
        "_plus",
        "_server_signature",
        "_step",
    )

    def __init__(
        self,
        hash_name: str,
        credentials: Credentials,
        *,
        nonce: str | None = None,
        channel_binding: ChannelBinding | None = None,
        plus: bool = False,
    ):
        """``channel_binding`` is the TLS binding the client has (None: no TLS binding data);
        ``plus`` uses it (SCRAM-*-PLUS). Given but not used, the GS2 flag is ``y``."""
        super().__init__()
        if hash_name not in _HASHES:
            raise SMTPConfigError(f"unsupported SCRAM hash {hash_name!r}", option="auth_method")
        if credentials.password is None:
            raise SMTPConfigError("SCRAM needs credentials with a password", option="auth")
        if plus and channel_binding is None:
            raise SMTPConfigError(
                f"SCRAM-{hash_name}-PLUS needs channel binding data", option="auth_method"
            )
        self._hash = hash_name
        self._digest = _HASHES[hash_name]
        self._plus = plus
        user, password = prepare_credentials(credentials)
        self._password = password.encode("utf-8")
        if nonce is None:
            import secrets  # here and below on use: hashing loads OpenSSL (see rawsmtp.config._tls)

            nonce = secrets.token_urlsafe(24)
        self._nonce = _check_nonce(nonce)
        if channel_binding is None:
            flag = "n"
        elif plus:
            flag = "p=" + channel_binding[0]
        else:
            flag = "y"
        self._cbind_data = channel_binding[1] if plus and channel_binding else b""
        authzid = credentials.authzid
        self._gs2_header = f"{flag}," + (f"a={saslname(authzid)}" if authzid else "") + ","
        self._client_first_bare = f"n={saslname(user)},r={self._nonce}"
        self._auth_message = b""
        self._server_signature = b""
        self._step = _Step.START

    @property
    def name(self) -> str:
        return f"SCRAM-{self._hash}" + ("-PLUS" if self._plus else "")

    def initial_response(self) -> bytes:
        self._step = _Step.SENT_FIRST
        return (self._gs2_header + self._client_first_bare).encode("utf-8")

    def respond(self, challenge: bytes) -> bytes:
        if self._step is _Step.SENT_FIRST:
            self._step = _Step.SENT_FINAL
            return self._client_final(challenge)
        if self._step is _Step.SENT_FINAL:
            self._verify_server_final(challenge)
            self._step = _Step.VERIFIED
            # The server-final came as a challenge (Dovecot does this); the 235 follows.
            return b""
        return super().respond(challenge)

    def complete(self) -> None:
        # The server-final may also arrive as data on the 235 line, which the client core does
        # not pass on; such a server has not proved anything we checked, so it is refused.
        if self._step is not _Step.VERIFIED:
            fail(f"{self.name}: the server accepted without proving it knows the password")

    def _client_final(self, challenge: bytes) -> bytes:
        server_first = _ascii(challenge, "server-first")
        nonce, salt, iterations = _parse_server_first(server_first, self._nonce)
        cbind_input = self._gs2_header.encode("utf-8") + self._cbind_data
        without_proof = f"c={base64.b64encode(cbind_input).decode()},r={nonce}"
        auth_message = f"{self._client_first_bare},{server_first},{without_proof}".encode()
        import hashlib

        salted = hashlib.pbkdf2_hmac(self._digest, self._password, salt, iterations)
        client_key = self._hmac(salted, b"Client Key")
        stored_key = hashlib.new(self._digest, client_key).digest()
        signature = self._hmac(stored_key, auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self._server_signature = self._hmac(self._hmac(salted, b"Server Key"), auth_message)
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode("ascii")

    def _verify_server_final(self, challenge: bytes) -> None:
        server_final = _ascii(challenge, "server-final")
        first = server_final.split(",", 1)[0]
        if first.startswith("e="):
            self._detail = first[2:]
            fail(f"{self.name}: the server reports an error: {first[2:]}", detail=self._detail)
        if not first.startswith("v="):
            fail(f"{self.name}: malformed server-final message: {server_final!r}")
        verifier = _b64decode(first[2:], "v")
        import hmac

        if not hmac.compare_digest(verifier, self._server_signature):
            fail(f"{self.name}: the server's signature does not verify (wrong server?)")

    def _hmac(self, key: bytes, message: bytes) -> bytes:
        import hmac

        return hmac.new(key, message, self._digest).digest()


def prepare_credentials(credentials: Credentials) -> tuple[str, str]:
    """The SASLprep'd (user, password); SMTPConfigError when either cannot be prepared."""
    assert credentials.password is not None
    user = saslprep(credentials.user, what="the SCRAM user name", allow_unassigned=True)
    if not user:
        raise SMTPConfigError("the SCRAM user name is empty after SASLprep", option="auth")
    password = saslprep(credentials.password, what="the password", allow_unassigned=False)
    return user, password


def _check_nonce(nonce: str) -> str:
    # RFC 5802 "printable": ASCII 0x21-0x7E except ",".
    if not nonce or any(not 0x21 <= ord(c) <= 0x7E or c == "," for c in nonce):
        raise SMTPConfigError("a SCRAM nonce must be printable ASCII without ','", option="auth")
    return nonce


def _ascii(challenge: bytes, what: str) -> str:
    # Every attribute the client reads is ASCII (names stay out of server messages).
    try:
        return challenge.decode("ascii")
    except UnicodeDecodeError:
        fail(f"SCRAM: the {what} message is not ASCII: {decode_text(challenge)!r}")


def _b64decode(value: str, attribute: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        fail(f"SCRAM: attribute {attribute} is not base64: {value!r}")


def _parse_server_first(message: str, client_nonce: str) -> tuple[str, bytes, int]:
    """``r=NONCE,s=SALT,i=COUNT[,extensions]`` -> (combined nonce, salt, iteration count)."""
    attributes = message.split(",")
    if len(attributes) < 3 or [a[:2] for a in attributes[:3]] != ["r=", "s=", "i="]:
        fail(f"SCRAM: malformed server-first message: {message!r}")
    nonce, salt_text, count = (a[2:] for a in attributes[:3])
    if not nonce.startswith(client_nonce) or len(nonce) == len(client_nonce):
        fail("SCRAM: the server's nonce does not extend ours (replayed or forged exchange?)")
    if any(not 0x21 <= ord(c) <= 0x7E for c in nonce):
        fail(f"SCRAM: the server's nonce is not printable: {nonce!r}")
    salt = _b64decode(salt_text, "s")
    if not salt:
        fail("SCRAM: the server sent an empty salt")
    # The length test comes first: int() of thousands of digits is slow, and then refused.
    digits = count.isascii() and count.isdigit() and len(count) <= len(str(MAX_ITERATIONS))
    if not digits or not 1 <= int(count) <= MAX_ITERATIONS:
        fail(f"SCRAM: iteration count must be an integer from 1 to {MAX_ITERATIONS}: {count!r}")
    return nonce, salt, int(count)
