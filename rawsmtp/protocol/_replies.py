"""Server replies: the :class:`Reply` value and the incremental, bounded reply parser.

RFC 5321 section 4.2: a reply is one or more lines ``CODE-text`` ending in a line ``CODE text``
(or a bare ``CODE``). RFC 3463 enhanced status codes (``5.1.1``) are split out of the first line.
The parser accepts bare LF as a line end and a few empty lines between replies (real servers
send both) but nothing else loose: codes must be three digits of the right ranges and every line
of a reply must carry the same code. Text is decoded as UTF-8, else as Latin-1, so no byte is
lost; :attr:`Reply.raw` keeps the bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TypedDict

from .._errors import RemoteProtocolError

__all__ = [
    "DEFAULT_MAX_LINE_LENGTH",
    "DEFAULT_MAX_REPLY_LINES",
    "Reply",
    "ReplyFields",
    "ReplyParser",
    "reply_fields",
]

DEFAULT_MAX_LINE_LENGTH = 8192
DEFAULT_MAX_REPLY_LINES = 256

# RFC 5321 reply codes: first digit 2-5, second 0-5, third any digit; then a space, a hyphen,
# or nothing at all (a bare "250" line is legal).
_LINE = re.compile(rb"([2-5][0-5][0-9])([ -]?)(.*)", re.DOTALL)
# RFC 3463: class "." subject "." detail, class matching the reply's first digit.
_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?: |$)")
# How many distinct single-line replies a parser remembers.
_SEEN_REPLIES = 64
# How many empty lines in a row are skipped where a reply should start.
_MAX_EMPTY_LINES = 8


@dataclass(frozen=True, slots=True)
class Reply:
    """One complete server reply. ``lines`` holds each line's text after the code.

    ``raw`` is the text as received, lines joined by ``b"\\n"`` (not part of equality).
    """

    code: int
    lines: tuple[str, ...]
    raw: bytes = field(default=b"", compare=False, repr=False)

    @property
    def enhanced_code(self) -> str | None:
        """The RFC 3463 code opening the first line (``"5.1.1"``), when there is one.

        Worked out on access: most replies are successes nobody asks this of.
        """
        return _enhanced_code(self.code, self.lines[0]) if self.lines else None

    @property
    def text(self) -> str:
        """The reply's text, lines joined by newlines (enhanced code included)."""
        return "\n".join(self.lines)

    @property
    def is_success(self) -> bool:
        return 200 <= self.code < 400

    @property
    def is_temporary_failure(self) -> bool:
        return 400 <= self.code < 500

    @property
    def is_permanent_failure(self) -> bool:
        return self.code >= 500

    def __str__(self) -> str:
        return f"{self.code} " + "\n".join(self.lines)  # as .text, without its call


class ReplyFields(TypedDict):
    """What an :class:`~rawsmtp.SMTPError` carries of the reply that caused it."""

    code: int
    enhanced_code: str | None
    response: str
    response_bytes: bytes


def reply_fields(reply: Reply) -> ReplyFields:
    """The keyword arguments that put ``reply`` on an error: ``SMTPError(..., **fields)``."""
    return ReplyFields(
        code=reply.code,
        enhanced_code=reply.enhanced_code,
        response=reply.text,
        response_bytes=reply.raw,
    )


def _enhanced_code(code: int, first_line: str) -> str | None:
    if first_line[:1] not in ("2", "4", "5"):
        return None  # no regex for the many replies without an enhanced code
    match = _ENHANCED.match(first_line)
    if match is None or match.group(1) != str(code)[0]:
        return None
    return f"{match.group(1)}.{int(match.group(2))}.{int(match.group(3))}"


class ReplyParser:
    """Turns received bytes into :class:`Reply` objects, incrementally and within limits.

    Bytes already searched for a line end are never searched again, so a reply fed one byte at
    a time costs linear time. A line longer than ``max_line_length`` or a reply of more than
    ``max_lines`` lines is a :class:`RemoteProtocolError` before the buffer can grow past them.

    The buffer is ``bytes``, not a bytearray: the received block itself when everything before
    it was parsed (the usual case, no copy), else the unparsed tail and the block joined. That
    tail is the unfinished line, so each feed copies at most ``max_line_length`` bytes. The
    buffer's slices are then the lines themselves, ready to be looked up.
    """

    def __init__(
        self,
        *,
        max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
        max_lines: int = DEFAULT_MAX_REPLY_LINES,
    ) -> None:
        self._buffer = b""
        self._start = 0  # where the unparsed bytes begin
        self._searched = 0  # bytes from _start already known to hold no line end
        self._max_line_length = max_line_length
        self._max_lines = max_lines
        self._code: int | None = None
        self._lines: list[str] = []
        self._raw: list[bytes] = []
        self._empty_lines = 0  # empty lines skipped in a row, the last one starting at:
        self._empty_at = -3
        # A server answers MAIL, RCPT and DATA with the same line message after message, so a
        # single-line reply is parsed once and then found by its bytes (a Reply is immutable).
        self._seen: dict[bytes, Reply] = {}

    def feed(self, data: bytes) -> None:
        if type(data) is not bytes:
            data = bytes(data)  # a bytearray or memoryview: its lines must be hashable
        start = self._start
        if start == len(self._buffer):
            self._buffer = data
        else:
            self._buffer = self._buffer[start:] + data
            self._empty_at -= start
        self._start = 0

    @property
    def buffered(self) -> int:
        """How many received bytes are not yet part of a complete reply."""
        return len(self._buffer) - self._start

    def next_reply(self) -> Reply | None:
        """The next complete reply, or None until more bytes arrive."""
        buffer = self._buffer
        while True:
            start = self._start
            end = buffer.find(b"\n", start + self._searched)
            if end < 0:
                self._searched = len(buffer) - start
                if self._searched > self._max_line_length:
                    raise RemoteProtocolError(
                        f"reply line longer than {self._max_line_length} bytes"
                    )
                return None
            if end - start > self._max_line_length:
                raise RemoteProtocolError(f"reply line longer than {self._max_line_length} bytes")
            line = buffer[start:end]  # with its CR, if any: the key of the replies seen
            reply = None if self._lines else self._seen.get(line)
            if reply is None:
                reply = self._add_line(line)
            self._start, self._searched = end + 1, 0
            if reply is not None:
                return reply

    def _add_line(self, key: bytes) -> Reply | None:
        line = key[:-1] if key.endswith(b"\r") else key  # CR LF or bare LF
        match = _LINE.fullmatch(line)
        if match is None:
            if not line and not self._lines:
                # A stray line end between replies: skip a few in a row. Found here, off the
                # path of good replies; the previous empty line was 1 or 2 bytes before.
                in_a_row = self._start - self._empty_at <= 2
                self._empty_lines = self._empty_lines + 1 if in_a_row else 1
                self._empty_at = self._start
                if self._empty_lines <= _MAX_EMPTY_LINES:
                    return None
                raise RemoteProtocolError(f"more than {_MAX_EMPTY_LINES} empty reply lines")
            raise RemoteProtocolError(f"malformed reply line: {line[:80]!r}")
        code_digits, separator, text = match.groups()
        code = int(code_digits)
        if self._code is not None and code != self._code:
            raise RemoteProtocolError(
                f"reply code changed within a multi-line reply ({self._code} then {code})"
            )
        if separator == b"" and text:
            raise RemoteProtocolError(f"malformed reply line: {code_digits + text!r}")
        self._code = code
        self._lines.append(_decode(text))
        self._raw.append(text)
        if separator == b"-":
            if len(self._lines) >= self._max_lines:
                raise RemoteProtocolError(f"reply longer than {self._max_lines} lines")
            return None
        reply = self._complete(code)
        if len(reply.lines) == 1:
            if len(self._seen) >= _SEEN_REPLIES:
                self._seen.clear()  # replies that differ each time (queue IDs) must not pile up
            self._seen[key] = reply
        return reply

    def _complete(self, code: int) -> Reply:
        reply = Reply(code=code, lines=tuple(self._lines), raw=b"\n".join(self._raw))
        self._code, self._lines, self._raw = None, [], []
        return reply

    def last_words(self) -> Reply | None:
        """The reply cut short when the server closed mid-line (``421 Bye`` and no CR LF).

        Whatever complete lines it had, plus the unfinished one if it reads as a reply line;
        None when the unparsed bytes are not the start of a reply. Never raises.
        """
        tail = bytes(self._buffer[self._start :]).rstrip(b"\r")
        match = _LINE.fullmatch(tail) if tail else None
        if match is not None and (self._code is None or int(match.group(1)) == self._code):
            self._code = int(match.group(1))
            self._lines.append(_decode(match.group(3)))
            self._raw.append(match.group(3))
        if self._code is None:
            return None
        return self._complete(self._code)


def _decode(text: bytes) -> str:
    """UTF-8, else Latin-1: lossless either way, and always printable (no lone surrogates)."""
    try:
        return text.decode()
    except UnicodeDecodeError:
        return text.decode("latin-1")
