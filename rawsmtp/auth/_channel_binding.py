"""TLS channel binding data for SCRAM-*-PLUS: ``tls-server-end-point`` (RFC 5929 section 4).

It is the one binding Python's ``ssl`` module can give for every TLS version: ``tls-unique``
is undefined for TLS 1.3 (RFC 9266) and ``tls-exporter`` needs an exporter ``ssl`` does not
expose. The data is a hash of the server's DER certificate; the hash is the one the
certificate's signature uses, except that MD5 and SHA-1 are replaced by SHA-256. A signature
with no single hash (Ed25519, Ed448) leaves the binding undefined, and then there is none.

The stdlib does not parse certificates, so a few lines of DER reading find the signature
algorithm: ``Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature }``.
"""

from __future__ import annotations

__all__ = ["TLS_SERVER_END_POINT", "ChannelBinding", "tls_server_end_point"]

TLS_SERVER_END_POINT = "tls-server-end-point"

ChannelBinding = tuple[str, bytes]
"""TLS channel binding for SCRAM-*-PLUS: (the binding type's name as the GS2 header spells
it, such as :data:`TLS_SERVER_END_POINT`, the binding data). Binding the SASL exchange to
the TLS channel is what lets -PLUS detect a man in the middle that terminates TLS."""

_SEQUENCE, _OID, _CONTEXT_0 = 0x30, 0x06, 0xA0

# Signature algorithm OIDs (dotted) -> the hashlib name of the hash they sign with.
_SIGNATURE_HASHES = {
    "1.2.840.113549.1.1.4": "md5",  # md5WithRSAEncryption
    "1.2.840.113549.1.1.5": "sha1",  # sha1WithRSAEncryption
    "1.2.840.113549.1.1.11": "sha256",
    "1.2.840.113549.1.1.12": "sha384",
    "1.2.840.113549.1.1.13": "sha512",
    "1.2.840.113549.1.1.14": "sha224",
    "1.2.840.10045.4.1": "sha1",  # ecdsa-with-SHA1
    "1.2.840.10045.4.3.1": "sha224",
    "1.2.840.10045.4.3.2": "sha256",
    "1.2.840.10045.4.3.3": "sha384",
    "1.2.840.10045.4.3.4": "sha512",
    "1.2.840.10040.4.3": "sha1",  # dsa-with-sha1
    "2.16.840.1.101.3.4.3.1": "sha224",  # dsa-with-sha224
    "2.16.840.1.101.3.4.3.2": "sha256",  # dsa-with-sha256
}
_RSASSA_PSS = "1.2.840.113549.1.1.10"
# Digest algorithm OIDs, for RSASSA-PSS parameters.
_DIGEST_HASHES = {
    "1.3.14.3.2.26": "sha1",
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
    "2.16.840.1.101.3.4.2.4": "sha224",
}


class _DERError(ValueError):
    pass


def tls_server_end_point(certificate: bytes) -> ChannelBinding | None:
    """The binding for a server's DER certificate, or None where RFC 5929 leaves it undefined
    (no single signature hash, or a certificate this reader cannot parse)."""
    try:
        hash_name = _signature_hash(certificate)
    except _DERError:
        return None
    if hash_name is None:
        return None
    if hash_name in ("md5", "sha1"):
        hash_name = "sha256"
    import hashlib  # on use: it loads OpenSSL (see rawsmtp.config._tls)

    return TLS_SERVER_END_POINT, hashlib.new(hash_name, certificate).digest()


def _signature_hash(certificate: bytes) -> str | None:
    body, _ = _element(certificate, 0, _SEQUENCE)  # Certificate
    _, after_tbs = _element(certificate, body, _SEQUENCE)  # tbsCertificate (skipped)
    algorithm, _ = _element(certificate, after_tbs, _SEQUENCE)  # signatureAlgorithm
    oid_start, params = _element(certificate, algorithm, _OID)
    oid = _oid_text(certificate[oid_start:params])
    if oid == _RSASSA_PSS:
        return _pss_hash(certificate, params)
    return _SIGNATURE_HASHES.get(oid)


def _pss_hash(der: bytes, offset: int) -> str | None:
    """RSASSA-PSS-params ``SEQUENCE { hashAlgorithm [0] AlgorithmIdentifier DEFAULT sha1, ...}``."""
    body, end = _element(der, offset, _SEQUENCE)
    if body == end or der[body] != _CONTEXT_0:
        return "sha1"
    explicit, _ = _element(der, body, _CONTEXT_0)
    identifier, _ = _element(der, explicit, _SEQUENCE)
    oid_start, oid_end = _element(der, identifier, _OID)
    return _DIGEST_HASHES.get(_oid_text(der[oid_start:oid_end]))


def _element(der: bytes, offset: int, tag: int) -> tuple[int, int]:
    """The (start, end) of the content of the TLV at ``offset``, which must have ``tag``."""
    if offset + 2 > len(der) or der[offset] != tag:
        raise _DERError(f"expected tag {tag:#x} at {offset}")
    length, start = der[offset + 1], offset + 2
    if length & 0x80:  # long form: the low bits count the length octets
        count = length & 0x7F
        if not 1 <= count <= 4 or start + count > len(der):
            raise _DERError("bad length")
        length = int.from_bytes(der[start : start + count], "big")
        start += count
    end = start + length
    if end > len(der):
        raise _DERError("truncated")
    return start, end


def _oid_text(content: bytes) -> str:
    """Dotted text of an OBJECT IDENTIFIER's content octets (X.690 section 8.19)."""
    if not content or content[-1] & 0x80:
        raise _DERError("bad OID")
    arcs, value = [], 0
    for octet in content:
        value = (value << 7) | (octet & 0x7F)
        if not octet & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(map(str, [first, arcs[0] - 40 * first, *arcs[1:]]))
