"""RSA signatures with SHA-256, RSASSA-PKCS1-v1_5 (RFC 8017 section 8.2), over Python integers.

The private operation uses the Chinese remainder theorem, is blinded (Python's integers are not
constant-time: the exponentiation works on ``m * r**e``, a random multiple unknown to an
observer, not on ``m``), and its result is checked (``s**e mod n == m``) before it leaves: a
CRT result spoiled by a fault would otherwise give the key away (Boneh, DeMillo, Lipton).
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field

__all__ = ["RSAKey"]

# DigestInfo for SHA-256 up to the hash itself (RFC 8017 section 9.2, note 1).
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
MIN_BITS = 1024  # RFC 8301 section 3.2: verifiers must not accept less


@dataclass(frozen=True, slots=True)
class RSAKey:
    """An RSA private key; :func:`check` is called on creation and raises ``ValueError``."""

    n: int
    e: int
    d: int
    p: int
    q: int
    dp: int
    dq: int
    qinv: int
    size: int = field(init=False)  # the modulus in bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", (self.n.bit_length() + 7) // 8)
        self.check()

    @property
    def bits(self) -> int:
        return self.n.bit_length()

    def check(self) -> None:
        """Refuse keys too short or whose numbers do not belong together."""
        if self.bits < MIN_BITS:
            raise ValueError(
                f"RSA keys must have at least {MIN_BITS} bits, this one has {self.bits}"
            )
        p, q, d = self.p, self.q, self.d
        if self.p * self.q != self.n or min(p, q) < 3:
            raise ValueError("the RSA key's primes do not multiply to its modulus")
        if self.e < 3 or self.e % 2 == 0 or (self.e * d) % math.lcm(p - 1, q - 1) != 1:
            raise ValueError("the RSA key's exponents do not match")
        if self.dp != d % (p - 1) or self.dq != d % (q - 1) or (self.qinv * q) % p != 1:
            raise ValueError("the RSA key's CRT values do not match its primes")

    def sign_digest(self, digest: bytes) -> bytes:
        """The RSASSA-PKCS1-v1_5 signature of a message whose SHA-256 is ``digest``."""
        encoded = _emsa_pkcs1_v15(digest, self.size)
        m = int.from_bytes(encoded, "big")
        r = self._blinding_factor()
        s = (self._private(m * pow(r, self.e, self.n) % self.n) * pow(r, -1, self.n)) % self.n
        if pow(s, self.e, self.n) != m:
            raise ArithmeticError("the RSA signature failed its check; it was not used")
        return s.to_bytes(self.size, "big")

    def _blinding_factor(self) -> int:
        while True:
            r = secrets.randbelow(self.n - 2) + 2
            if math.gcd(r, self.n) == 1:
                return r

    def _private(self, c: int) -> int:
        """c**d mod n by the CRT (Garner's recombination)."""
        m1 = pow(c, self.dp, self.p)
        m2 = pow(c, self.dq, self.q)
        h = (self.qinv * (m1 - m2)) % self.p
        return m2 + h * self.q


def _emsa_pkcs1_v15(digest: bytes, size: int) -> bytes:
    """EM = 0x00 0x01 PS 0x00 T, with T the DigestInfo and PS at least 8 bytes of 0xff."""
    t = _SHA256_DIGEST_INFO + digest
    padding = size - len(t) - 3
    if padding < 8:
        raise ValueError("the RSA modulus is too short for a SHA-256 signature")
    return b"\x00\x01" + b"\xff" * padding + b"\x00" + t
