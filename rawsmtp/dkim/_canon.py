"""DKIM canonicalization (RFC 6376 section 3.4) of a message as it goes on the wire.

:func:`digest` reads a message's chunks once: it normalises line ends exactly as the protocol's
encoders do (so what is hashed is what is transmitted), keeps the header block, and feeds the
body to one :class:`BodyHash` per body canonicalization. Memory stays bounded: a body is hashed
chunk by chunk, with at most a partial line (itself bounded) held between chunks.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from ..protocol import LocalProtocolError
from ..protocol._data import LineEnds

__all__ = ["MAX_HEADER_BLOCK", "BodyHash", "canonical_header", "digest", "header_fields"]

MAX_HEADER_BLOCK = 1024 * 1024
_MAX_PARTIAL_LINE = 64 * 1024
_WSP_RUN = re.compile(rb"[ \t]+")
_CRLF = b"\r\n"


def _compress(text: bytes) -> bytes:
    """Relaxed: every run of WSP becomes one SP, and none is left before a line end."""
    if b"\t" in text or b"  " in text:
        text = _WSP_RUN.sub(b" ", text)
    return text.replace(b" \r\n", b"\r\n")


class BodyHash:
    """SHA-256 of a body under ``simple`` or ``relaxed`` canonicalization, fed in pieces.

    Empty lines at the end are never hashed until a later line shows they were not the end, so
    only their count is kept. ``_partial`` is the line not yet ended; past _MAX_PARTIAL_LINE it
    is hashed up to its trailing whitespace (all a later byte can still change).
    """

    __slots__ = ("_empty_lines", "_hash", "_mid_line", "_partial", "_relaxed", "_started")

    def __init__(self, canonicalization: str) -> None:
        self._relaxed = canonicalization == "relaxed"
        self._hash = hashlib.sha256()
        self._empty_lines = 0  # held back: they may be the body's last
        self._partial = b""
        self._mid_line = False  # part of the current line is hashed already
        self._started = False  # anything hashed at all

    def update(self, data: bytes) -> None:
        """Feed body bytes with CR LF line ends (a lone CR only as the last byte of the body)."""
        data = self._partial + data
        end = data.rfind(b"\n") + 1
        self._partial = data[end:]
        if end:
            self._lines(data[:end])
        if len(self._partial) > _MAX_PARTIAL_LINE:
            self._flush_partial()

    def digest(self) -> bytes:
        # The last line, ended as the DATA encoder ends it; only an empty one may be dropped.
        last = _compress(self._partial + _CRLF) if self._relaxed else self._partial + _CRLF
        if last != _CRLF or self._mid_line:
            self._lines(last)
        if not self._started and not self._relaxed:
            self._hash.update(_CRLF)  # simple: an empty body is one CR LF (section 3.4.3)
        return self._hash.digest()

    def _lines(self, text: bytes) -> None:
        """Hash whole lines (``text`` ends with CR LF), holding back trailing empty ones."""
        if self._relaxed:
            text = _compress(text)
        if self._mid_line:  # the first line end closes a line begun in an earlier piece
            first = text.index(_CRLF) + 2
            self._emit(text[:first])
            text = text[first:]
            self._mid_line = False
        content = text.rstrip(_CRLF)
        empty = (len(text) - len(content)) // 2
        if not content:
            self._empty_lines += empty
            return
        self._emit(_CRLF * self._empty_lines + content + _CRLF)
        self._empty_lines = empty - 1

    def _flush_partial(self) -> None:
        partial = self._partial
        keep = len(partial) - len(partial.rstrip(b" \t")) if self._relaxed else 0
        if keep == len(partial):
            self._partial = b" "  # relaxed: a run of WSP counts as one SP
            return
        head = partial[: len(partial) - keep]
        self._emit(_CRLF * self._empty_lines + (_compress(head) if self._relaxed else head))
        self._empty_lines = 0
        self._partial = partial[len(head) :][:1]  # whitespace: one byte says as much as all
        self._mid_line = True

    def _emit(self, data: bytes) -> None:
        if data:
            self._started = True
            self._hash.update(data)


def digest(
    chunks: Iterable[bytes], body_canonicalizations: Iterable[str]
) -> tuple[bytes, dict[str, bytes]]:
    """(header block with CR LF ends, {body canonicalization: SHA-256 of the body})."""
    hashes = {name: BodyHash(name) for name in body_canonicalizations}
    line_ends = LineEnds()
    head = bytearray()
    in_body = False
    for chunk in chunks:
        data = line_ends.normalise(chunk)
        if not in_body:
            searched = max(len(head) - 3, 0)
            head += data
            end = _header_end(head, searched)
            if end is None:
                if len(head) > MAX_HEADER_BLOCK:
                    raise LocalProtocolError(
                        f"the header block is longer than {MAX_HEADER_BLOCK} bytes"
                    )
                continue
            in_body, data = True, bytes(head[end + 2 :])
            del head[end:]
        for body in hashes.values():
            body.update(data)
    tail = line_ends.flush()
    if not in_body:
        head += tail
        if head and not head.endswith(_CRLF):
            head += _CRLF  # what the DATA encoder adds
    else:
        for body in hashes.values():
            body.update(tail)
    return bytes(head), {name: body.digest() for name, body in hashes.items()}


def _header_end(head: bytearray, start: int) -> int | None:
    """Where the empty line that ends the header block starts (after the last field's CR LF)."""
    if head.startswith(_CRLF):
        return 0
    found = head.find(b"\r\n\r\n", start)
    return None if found == -1 else found + 2


def header_fields(block: bytes) -> list[tuple[bytes, bytes]]:
    """(lower-cased name, the field as it is, continuation lines and CR LF included)."""
    fields: list[tuple[bytes, bytes]] = []
    for line in block.split(_CRLF)[:-1]:
        if line[:1] in (b" ", b"\t") and fields:
            name, raw = fields[-1]
            fields[-1] = (name, raw + line + _CRLF)
        else:
            fields.append((line.partition(b":")[0].rstrip(b" \t").lower(), line + _CRLF))
    return fields


def canonical_header(raw: bytes, relaxed: bool) -> bytes:
    """One header field under ``simple`` (as it is) or ``relaxed`` (section 3.4.2)."""
    if not relaxed:
        return raw
    name, _, value = raw.partition(b":")
    value = _WSP_RUN.sub(b" ", value.replace(_CRLF, b"")).strip(b" ")
    return name.rstrip(b" \t").lower() + b":" + value + _CRLF
