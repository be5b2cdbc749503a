"""Ed25519 signatures (RFC 8032 section 5.1), in pure Python, for DKIM's ed25519-sha256 (RFC 8463).

Points are in extended homogeneous coordinates (X:Y:Z:T), added with the complete formula of
RFC 8032 section 5.1.4 (it also doubles). The only multiplications are of the base point, so a
table of ``j * 16**i * B`` turns one into 64 additions; every nibble costs one addition, the
zero nibble included, so the work does not depend on the secret scalar's digits.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field

__all__ = ["Ed25519Key"]

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, -1, _P) % _P
_D2 = 2 * _D % _P
_BX = 15112221349535400772501151409588531511454012693041857206046113283949847762202
_BY = 46316835694926478169428394003475163141307993866256225615783033603165251855960

_Point = tuple[int, int, int, int]
_IDENTITY: _Point = (0, 1, 1, 0)
_BASE: _Point = (_BX, _BY, 1, _BX * _BY % _P)


def _add(a: _Point, b: _Point) -> _Point:
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    p = _P
    aa = (y1 - x1) * (y2 - x2) % p
    bb = (y1 + x1) * (y2 + x2) % p
    c = t1 * _D2 * t2 % p
    dd = 2 * z1 * z2 % p
    e, f, g, h = bb - aa, dd - c, dd + c, bb + aa
    return e * f % p, g * h % p, f * g % p, e * h % p


@functools.cache
def _table() -> tuple[tuple[_Point, ...], ...]:
    """``_table()[i][j] == j * 16**i * B`` for i < 64 and j < 16 (made once, on first use)."""
    rows = []
    base = _BASE
    for _ in range(64):
        row = [_IDENTITY]
        for _ in range(15):
            row.append(_add(row[-1], base))
        rows.append(tuple(row))
        base = _add(row[15], base)  # 16 * base
    return tuple(rows)


def _times_base(scalar: int) -> _Point:
    point = _IDENTITY
    for row in _table():
        point = _add(point, row[scalar & 15])
        scalar >>= 4
    return point


def _encode(point: _Point) -> bytes:
    x, y, z, _ = point
    zinv = pow(z, -1, _P)
    x, y = x * zinv % _P, y * zinv % _P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def _hash_int(*parts: bytes) -> int:
    return int.from_bytes(hashlib.sha512(b"".join(parts)).digest(), "little")


@dataclass(frozen=True, slots=True)
class Ed25519Key:
    """An Ed25519 private key from its 32-byte seed (RFC 8032 section 5.1.5)."""

    seed: bytes = field(repr=False)
    public: bytes = field(init=False)
    _scalar: int = field(init=False, repr=False)
    _prefix: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.seed) != 32:
            raise ValueError(f"an Ed25519 seed has 32 bytes, not {len(self.seed)}")
        digest = hashlib.sha512(self.seed).digest()
        scalar = int.from_bytes(digest[:32], "little")
        scalar = (scalar & ((1 << 254) - 8)) | (1 << 254)
        object.__setattr__(self, "_scalar", scalar)
        object.__setattr__(self, "_prefix", digest[32:])
        object.__setattr__(self, "public", _encode(_times_base(scalar)))

    def sign(self, message: bytes) -> bytes:
        """The 64-byte signature of ``message`` (RFC 8032 section 5.1.6)."""
        r = _hash_int(self._prefix, message) % _L
        big_r = _encode(_times_base(r))
        k = _hash_int(big_r, self.public, message) % _L
        s = (r + k * self._scalar) % _L
        return big_r + s.to_bytes(32, "little")
