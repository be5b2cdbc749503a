"""Bounded reading for the test server: command lines, DATA payloads, BDAT chunks.

The server owns its buffer (rather than relying on :class:`asyncio.StreamReader`'s) so that it
can hand leftover pipelined bytes from one phase to the next and throw plaintext away at
STARTTLS. Every read is bounded: a line by ``max_line``, a message by a cap past which bytes are
counted but not kept.
"""

from __future__ import annotations

import asyncio

__all__ = ["Input", "LineTooLong"]

_READ_SIZE = 65536
_TERMINATOR = b"\r\n.\r\n"


class LineTooLong(Exception):
    """A command line grew past the limit without a line end."""


class Input:
    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self._buffer = bytearray()

    async def _fill(self) -> bool:
        chunk = await self._reader.read(_READ_SIZE)
        self._buffer += chunk
        return bool(chunk)

    def discard(self) -> int:
        """Throw away everything received and not yet read (plaintext at STARTTLS)."""
        count = len(self._buffer)
        self._buffer.clear()
        # Bytes that asyncio's own reader holds arrived before the handshake, too.
        pending = getattr(self._reader, "_buffer", None)
        if isinstance(pending, bytearray):
            count += len(pending)
            pending.clear()
        return count

    async def line(self, max_line: int) -> bytes | None:
        """The next line, line end included; None when the peer closed first."""
        searched = 0
        while (end := self._buffer.find(b"\n", searched)) < 0:
            searched = len(self._buffer)
            if searched > max_line:
                raise LineTooLong
            if not await self._fill():
                return None
        line = bytes(self._buffer[: end + 1])
        del self._buffer[: end + 1]
        if len(line) > max_line:
            raise LineTooLong
        return line

    async def data(self, cap: int) -> tuple[bytes, bool] | None:
        """A DATA payload up to and including CRLF.CRLF, and whether it outgrew ``cap``.

        A payload over ``cap`` comes back as just the terminator. None when the peer closed.
        """
        body = bytearray(b"\r\n")  # the message starts at a line start
        body += self._buffer
        self._buffer.clear()
        searched, too_big = 0, False
        while (end := body.find(_TERMINATOR, searched)) < 0:
            if len(body) > cap:
                too_big = True
                del body[: len(body) - len(_TERMINATOR)]
            searched = max(0, len(body) - len(_TERMINATOR) + 1)
            chunk = await self._reader.read(_READ_SIZE)
            if not chunk:
                return None
            body += chunk
        self._buffer += body[end + len(_TERMINATOR) :]
        payload = bytes(body[2 : end + len(_TERMINATOR)])
        return (b".\r\n", True) if too_big else (payload, False)

    async def exactly(self, size: int, cap: int) -> tuple[bytes, bool] | None:
        """The next ``size`` bytes (a BDAT chunk); only the first ``cap`` are kept."""
        kept = bytearray()
        remaining = size
        while remaining:
            if not self._buffer and not await self._fill():
                return None
            take = min(remaining, len(self._buffer))
            if len(kept) < cap:
                kept += self._buffer[: min(take, cap - len(kept))]
            del self._buffer[:take]
            remaining -= take
        return bytes(kept), size > cap
