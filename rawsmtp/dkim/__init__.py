"""DKIM signing (RFC 6376), with RSA-SHA256 and Ed25519-SHA256 (RFC 8463), standard library only.

:class:`DKIMSigner` holds one key, domain and selector; give it (or several, or a dict of its
arguments) as the pool's ``dkim=`` option, or call :meth:`DKIMSigner.sign` yourself. Keys are
parsed and the arithmetic done here: ``_der`` (PEM and DER), ``_keys`` (PKCS#8, PKCS#1),
``_rsa`` (RSASSA-PKCS1-v1_5), ``_ed25519`` (RFC 8032), ``_canon`` (canonicalization and
hashing in one streaming pass), ``_signer`` (the header field and the pool's hook).
"""

from ._signer import DEFAULT_HEADERS, OVERSIGNED, DKIMSigner, Signatures, signatures

__all__ = ["DEFAULT_HEADERS", "OVERSIGNED", "DKIMSigner", "Signatures", "signatures"]
