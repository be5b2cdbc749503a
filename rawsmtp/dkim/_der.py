"""The little ASN.1 DER that private keys need: PEM armour, a TLV reader, and a writer for the
public key a DNS record publishes.

Only definite, minimal lengths are accepted (DER, X.690 section 10.1): a key file is either
well formed or refused, never guessed at.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass

__all__ = [
    "BIT_STRING",
    "INTEGER",
    "NULL",
    "OCTET_STRING",
    "OID",
    "SEQUENCE",
    "DERError",
    "Reader",
    "encode",
    "encode_integer",
    "pem_blocks",
]

INTEGER, BIT_STRING, OCTET_STRING, NULL, OID, SEQUENCE = 0x02, 0x03, 0x04, 0x05, 0x06, 0x30


class DERError(ValueError):
    """The bytes are not the DER structure expected."""


@dataclass(slots=True)
class Reader:
    """Reads DER elements one after another from ``data``."""

    data: bytes
    pos: int = 0

    @property
    def done(self) -> bool:
        return self.pos == len(self.data)

    def read(self, tag: int) -> bytes:
        """The content of the next element, which must carry ``tag``."""
        found, content = self.next()
        if found != tag:
            raise DERError(f"expected tag 0x{tag:02x}, found 0x{found:02x}")
        return content

    def next(self) -> tuple[int, bytes]:
        """The next element's tag and content."""
        data, pos = self.data, self.pos
        if pos + 2 > len(data):
            raise DERError("truncated element")
        tag, length = data[pos], data[pos + 1]
        pos += 2
        if length & 0x80:
            count = length & 0x7F
            if count == 0 or count > 4 or pos + count > len(data):
                raise DERError("bad length")
            length = int.from_bytes(data[pos : pos + count], "big")
            if length < 0x80 or data[pos] == 0:
                raise DERError("length not minimally encoded")
            pos += count
        if pos + length > len(data):
            raise DERError("element runs past the end")
        self.pos = pos + length
        return tag, data[pos : pos + length]

    def sequence(self) -> Reader:
        return Reader(self.read(SEQUENCE))

    def integer(self) -> int:
        """A non-negative INTEGER (every number in a key is one)."""
        content = self.read(INTEGER)
        if not content or (len(content) > 1 and content[0] == 0 and content[1] < 0x80):
            raise DERError("integer not minimally encoded")
        if content[0] & 0x80:
            raise DERError("negative integer")
        return int.from_bytes(content, "big")

    def end(self) -> None:
        if not self.done:
            raise DERError("unexpected data after the last element")


def encode(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        return bytes((tag, length)) + content
    size = (length.bit_length() + 7) // 8
    return bytes((tag, 0x80 | size)) + length.to_bytes(size, "big") + content


def encode_integer(value: int) -> bytes:
    # One byte more than the bits need keeps the sign bit clear.
    return encode(INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def pem_blocks(text: str) -> list[tuple[str, bytes]]:
    """Every ``-----BEGIN label-----`` block of ``text`` as (label, DER bytes)."""
    blocks: list[tuple[str, bytes]] = []
    label: str | None = None
    lines: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if label is None:
            if line.startswith("-----BEGIN ") and line.endswith("-----"):
                label, lines = line[11:-5], []
        elif line == f"-----END {label}-----":
            blocks.append((label, _base64("".join(lines))))
            label = None
        elif ":" in line:
            # RFC 1421 headers only appear in encrypted legacy keys.
            raise DERError(f"the {label} block has a {line.split(':')[0]!r} header: encrypted?")
        else:
            lines.append(line)
    if label is not None:
        raise DERError(f"the {label} block has no END line")
    return blocks


def _base64(text: str) -> bytes:
    try:
        return binascii.a2b_base64(text.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError) as error:
        raise DERError(f"invalid base64 ({error})") from None
