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


class LineEnds:
    """Normalises line ends to CR LF across chunk boundaries, as both encoders do: a CR at the
    end of a chunk waits for the next one, whose first byte may be its LF."""

    def __init__(self) -> None:
        self.held_cr = False

    def normalise(self, chunk: bytes, *, crlf: bool = False) -> bytes:
        """``chunk`` with CR LF line ends; a final CR is held back for the next chunk's LF.

        ``crlf``: the chunk is part of content in that form already (as :func:`to_crlf` returns
        it), so it is returned as is: proving it again cost more than the rest of the encoding
        (bench/instructions.py). A CR at either side of it, a CR LF cut in two, takes the
        usual way, so the output is the same byte for byte, BDAT framing included."""
        if crlf and not self.held_cr and not chunk.endswith(b"\r"):
            return chunk
        if self.held_cr:
            chunk = b"\r" + chunk
        self.held_cr = chunk.endswith(b"\r")
        return _crlf(chunk[:-1] if self.held_cr else chunk)

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
    # Not through LineEnds: a whole content has no next chunk, so a final CR is a line end now.
    # (That object and its state cost a quarter of this call, which runs for every message.)
    data = _crlf(data)
    return data + b"\r\n" if data and not data.endswith(b"\n") else data


def _crlf(chunk: bytes) -> bytes:
    """``chunk`` with every bare CR or LF made CR LF."""
    # Most content is clean already, and this proves it: deleting the CRs and putting one back
    # before each LF gives the same bytes. Single-byte replaces are the cheapest scan bytes
    # have: 15k instructions for 1.7 KB under callgrind, where counting CR LF pairs took 19k
    # and deleting them 25k. Only content with a bare CR or LF pays for the rewrite.
    if chunk.replace(b"\r", b"").replace(b"\n", b"\r\n") != chunk:
        chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    return chunk


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

    def encode(self, chunk: bytes, *, crlf: bool = False) -> bytes:
        return self._stuff(self._line_ends.normalise(chunk, crlf=crlf))

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
        # Looking for a lone dot first is a memchr; base64 parts, most of a big message, have
        # none. find(), not ``in``: on 3.11 ``bytes in bytes`` first tries the needle as an int
        # and formats the TypeError it then discards. Then the replace is its own search: with
        # no dot to stuff it returns ``text`` itself, in fewer instructions than a regex search.
        if text.find(b".") != -1:
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

    def encode(self, chunk: bytes, *, crlf: bool = False) -> bytes:
        data = self._line_ends.normalise(chunk, crlf=crlf)
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
