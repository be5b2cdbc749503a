"""Message content on the wire: DATA encoding (RFC 5321 section 4.5.2) and BDAT framing (RFC 3030).

Both normalise line ends first: CR LF stays, a bare LF or a bare CR becomes CR LF, so that a dot
after a bare LF or CR is seen as the line start it is to a server (lettre's RUSTSEC-2021-0069 was
a dot missed there). Both end a message that lacks a final line end with CR LF, so the server
stores the same bytes whichever command carried them. DATA then doubles every dot that starts a
line and ends with ``.`` CR LF.

Both work on whole chunks with ``bytes`` methods (no Python loop per line) and keep the little
state a chunk boundary needs: a CR held back because the next chunk may start with its LF, and
whether the output so far ends at a line start.
"""

from __future__ import annotations

import re

from ._commands import bdat

__all__ = [
    "BDAT_CHUNK_SIZE",
    "ChunkingEncoder",
    "DataEncoder",
    "LineEnds",
    "decode_data",
    "to_crlf",
]

# BDAT chunks smaller than this are gathered: big enough that the command and its reply cost
# little against the data, small enough to bound what a chunk holds in memory.
BDAT_CHUNK_SIZE = 64 * 1024

# The regex engine scans for a two-byte literal about twice as fast as ``bytes.replace`` and
# ``in`` do, so a chunk is searched for a dot that starts a line before it is rewritten.
_DOT_AFTER_LF = re.compile(rb"\n\.")


class LineEnds:
    """Normalises line ends to CR LF across chunk boundaries, as both encoders do.

    Most messages already use CR LF throughout. Single-byte replaces run at memchr speed while
    two-byte searches do not, so a chunk is proved clean by deleting its CRs and putting one back
    before each LF: only a chunk with a bare CR or LF pays for the full rewrite.
    """

    def __init__(self) -> None:
        self.held_cr = False

    def normalise(self, chunk: bytes) -> bytes:
        """``chunk`` with CR LF line ends; a final CR is held back for the next chunk's LF."""
        if self.held_cr:
            chunk = b"\r" + chunk
        self.held_cr = chunk.endswith(b"\r")
        if self.held_cr:
            chunk = chunk[:-1]
        if chunk.replace(b"\r", b"").replace(b"\n", b"\r\n") != chunk:
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
        return chunk

    def flush(self) -> bytes:
        """The end of the content: a CR held back is a line end of its own."""
        held, self.held_cr = self.held_cr, False
        return b"\r\n" if held else b""


def to_crlf(data: bytes) -> bytes:
    """In-memory content as both encoders send it, before dot-stuffing: CR LF line ends, and a
    final CR LF when it does not end a line (empty content stays empty). Its length is the
    ``Transaction.size`` to declare for SIZE.

    >>> to_crlf(b"Subject: hi\n\nbody")
    b'Subject: hi\r\n\r\nbody\r\n'
    """
    line_ends = LineEnds()
    data = line_ends.normalise(data) + line_ends.flush()
    return data + b"\r\n" if data and not data.endswith(b"\n") else data


class DataEncoder:
    """Streams a message into the bytes that follow a 354 reply to DATA.

    After :meth:`end` it is as new, so one encoder serves every message of a session.

    >>> encoder = DataEncoder()
    >>> encoder.encode(b".hidden\\n") + encoder.end()
    b'..hidden\\r\\n.\\r\\n'
    """

    def __init__(self) -> None:
        self._line_ends = LineEnds()
        self._at_line_start = True

    def encode(self, chunk: bytes) -> bytes:
        return self._stuff(self._line_ends.normalise(chunk))

    def end(self) -> bytes:
        """The rest of the message, a line end if it lacked one, and the ``.`` terminator."""
        # A held CR is all that can be left; most messages have none, and nothing to stuff.
        tail = self._stuff(self._line_ends.flush()) if self._line_ends.held_cr else b""
        terminator = b".\r\n" if self._at_line_start else b"\r\n.\r\n"
        self._at_line_start = True  # the terminator ends a line: ready for the next message
        return tail + terminator

    def _stuff(self, text: bytes) -> bytes:
        """Double each dot that starts a line; ``text`` has CR LF line ends only."""
        if not text:
            return text
        if self._at_line_start and text.startswith(b"."):
            text = b"." + text
        self._at_line_start = text.endswith(b"\n")
        # Looking for a lone dot first is a memchr; base64 parts, most of a big message, have none.
        if b"." in text and _DOT_AFTER_LF.search(text):
            return text.replace(b"\n.", b"\n..")
        return text


class ChunkingEncoder:
    """Streams a message as BDAT chunks of at least ``chunk_size`` bytes (the last may be less).

    Data is gathered until it reaches ``chunk_size`` and more follows, so a driver's many small
    ``send_body()`` calls cost a few BDAT commands, not one each, and the last data goes out as
    ``BDAT n LAST``: a small message costs one BDAT command and one reply, not two.
    """

    def __init__(self, chunk_size: int = BDAT_CHUNK_SIZE) -> None:
        self._line_ends = LineEnds()
        self._held: list[bytes] = []
        self._held_size = 0
        self._chunk_size = chunk_size

    def encode(self, chunk: bytes) -> bytes:
        data = self._line_ends.normalise(chunk)
        if not data:
            return b""
        # Only once more data arrives is the gathered data known not to be the last.
        out = self._frame(self._take(), last=False) if self._held_size >= self._chunk_size else b""
        self._held.append(data)
        self._held_size += len(data)
        return out

    def end(self) -> bytes:
        """The last chunk, ``BDAT n LAST`` (n may be 0), with a line end if it lacked one."""
        # What is held never ends in CR (normalise holds it back), so one endswith() says it all.
        data = self._take() + self._line_ends.flush()
        if data and not data.endswith(b"\n"):
            data += b"\r\n"
        return self._frame(data, last=True)

    def _take(self) -> bytes:
        data = b"".join(self._held)  # a single part is returned as is, not copied
        self._held, self._held_size = [], 0
        return data

    @staticmethod
    def _frame(data: bytes, *, last: bool) -> bytes:
        return bdat(len(data), last=last) + data


def decode_data(encoded: bytes) -> bytes:
    """Undo :class:`DataEncoder` on a complete, terminated DATA payload (for servers and tests)."""
    if encoded == b".\r\n":
        return b""
    if not encoded.endswith(b"\r\n.\r\n"):
        raise ValueError("DATA payload does not end with CRLF.CRLF")
    body = b"\r\n" + encoded[: -len(b".\r\n")]
    return body.replace(b"\r\n..", b"\r\n.")[2:]
