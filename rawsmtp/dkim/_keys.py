"""Private keys from PEM (or DER): PKCS#8 (RSA or Ed25519) and PKCS#1 RSAPrivateKey.

PEM base64 -> DER -> PKCS#8 PrivateKeyInfo (RFC 5208 / RFC 5958) -> RSAPrivateKey (RFC 8017
appendix A.1.2) or the Ed25519 seed (RFC 8410 section 7). Also the ``p=`` value of the DNS
record that publishes the public half (RFC 6376 section 3.6.1, RFC 8463 section 4.2).
"""

from __future__ import annotations

import base64
import hashlib

from ._der import (
    BIT_STRING,
    NULL,
    OCTET_STRING,
    OID,
    SEQUENCE,
    DERError,
    Reader,
    encode,
    pem_blocks,
)
from ._der import encode_integer as _int
from ._ed25519 import Ed25519Key
from ._rsa import RSAKey

__all__ = ["PrivateKey", "key_algorithm", "load_private_key", "public_key_data", "sign"]

PrivateKey = RSAKey | Ed25519Key

# OID contents (X.690 encoding): 1.2.840.113549.1.1.1 and 1.3.101.112.
_RSA_OID = bytes.fromhex("2a864886f70d010101")
_ED25519_OID = bytes.fromhex("2b6570")
_RSA_ALGORITHM = encode(SEQUENCE, encode(OID, _RSA_OID) + encode(NULL, b""))

_REFUSED_LABELS = {
    "ENCRYPTED PRIVATE KEY": "an encrypted key; decrypt it first (openssl pkey -in KEY -out PLAIN)",
    "PUBLIC KEY": "a public key; the private key is needed to sign",
    "OPENSSH PRIVATE KEY": "an OpenSSH key; convert it to PKCS#8 (ssh-keygen -p -m PKCS8)",
}


def load_private_key(key: str | bytes) -> PrivateKey:
    """The key in ``key`` (PEM text, or DER bytes); ``ValueError`` saying what is wrong."""
    if isinstance(key, bytes) and key[:1] == b"\x30":
        return _pkcs8_or_pkcs1(key)
    text = key.decode("ascii", "replace") if isinstance(key, bytes) else key
    try:
        blocks = pem_blocks(text)
    except DERError as error:
        raise ValueError(f"not a PEM private key: {error}") from None
    for label, der in blocks:
        if label in _REFUSED_LABELS:
            raise ValueError(f"the PEM block is {_REFUSED_LABELS[label]}")
        if label in ("PRIVATE KEY", "RSA PRIVATE KEY"):
            try:
                return _rsa_private_key(der) if label == "RSA PRIVATE KEY" else _pkcs8(der)
            except DERError as error:
                raise ValueError(f"malformed {label}: {error}") from None
    raise ValueError("no '-----BEGIN PRIVATE KEY-----' or '-----BEGIN RSA PRIVATE KEY-----' block")


def _pkcs8_or_pkcs1(der: bytes) -> PrivateKey:
    try:
        return _pkcs8(der)
    except DERError:
        try:
            return _rsa_private_key(der)
        except DERError as error:
            raise ValueError(f"malformed DER private key: {error}") from None


def _pkcs8(der: bytes) -> PrivateKey:
    outer = Reader(der).sequence()
    if outer.integer() not in (0, 1):  # v1 (RFC 5208) or v2 OneAsymmetricKey (RFC 5958)
        raise DERError("unknown PrivateKeyInfo version")
    algorithm = outer.sequence()
    oid = algorithm.read(OID)
    private = outer.read(OCTET_STRING)  # attributes and a public key may follow: not needed
    if oid == _RSA_OID:
        return _rsa_private_key(private)
    if oid == _ED25519_OID:
        seed = Reader(private)
        key = Ed25519Key(seed.read(OCTET_STRING))
        seed.end()
        return key
    raise ValueError("only RSA and Ed25519 keys can sign DKIM (RFC 6376, RFC 8463)")


def _rsa_private_key(der: bytes) -> RSAKey:
    outer = Reader(der)
    fields = outer.sequence()
    outer.end()
    if fields.integer() != 0:
        raise ValueError("multi-prime RSA keys are not supported")
    n, e, d, p, q, dp, dq, qinv = (fields.integer() for _ in range(8))
    fields.end()
    return RSAKey(n=n, e=e, d=d, p=p, q=q, dp=dp, dq=dq, qinv=qinv)


def key_algorithm(key: PrivateKey) -> str:
    """The k= name of the key type."""
    return "rsa" if isinstance(key, RSAKey) else "ed25519"


def public_key_data(key: PrivateKey) -> str:
    """The base64 ``p=`` value: a SubjectPublicKeyInfo for RSA, the raw 32 bytes for Ed25519."""
    if isinstance(key, Ed25519Key):
        return base64.b64encode(key.public).decode("ascii")
    rsa_public = encode(SEQUENCE, _int(key.n) + _int(key.e))
    info = encode(SEQUENCE, _RSA_ALGORITHM + encode(BIT_STRING, b"\x00" + rsa_public))
    return base64.b64encode(info).decode("ascii")


def sign(key: PrivateKey, data: bytes) -> bytes:
    """The DKIM signature of ``data``: both algorithms sign its SHA-256 (RFC 8463 section 3)."""
    digest = hashlib.sha256(data).digest()
    return key.sign(digest) if isinstance(key, Ed25519Key) else key.sign_digest(digest)
