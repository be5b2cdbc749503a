"""What every proxy handshake shares: the interface, the target check, and the byte plumbing.

A handshake is a short script: "send these bytes, then read exactly n bytes" (SOCKS) or "read up
to the blank line" (HTTP). Each protocol writes its script as a generator that yields what it
needs to read next (:class:`Exactly` or :class:`Until`) and is sent back exactly those bytes.
:class:`Handshake` buffers what arrives, feeds the script, and keeps whatever arrives after the
script ends as :attr:`~Handshake.leftover`: tunnel bytes (the SMTP greeting often shares a packet
with the proxy's success reply), which belong to the SMTP layer.

Because each read has a known size or a known terminator, :meth:`~Handshake.bytes_needed` can
say how many bytes may be read without taking any from the tunnel; a blocking driver that reads
no more than that never has leftover bytes.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Generator
from dataclasses import dataclass
from typing import Protocol

from .._errors import SMTPProxyError
from ..protocol import LocalProtocolError

__all__ = ["Exactly", "Handshake", "ProxyHandshake", "Script", "Target", "Until"]

# A host name as a proxy may receive it: letters, digits, '-', '_' (seen in internal names), dots.
_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_.])?")


class ProxyHandshake(Protocol):
    """The interface every proxy handshake offers a driver.

    The driver writes :meth:`data_to_send`, reads from the proxy and hands every chunk to
    :meth:`receive_data` (``b""`` when the proxy closed the connection) until :attr:`done`;
    then :attr:`leftover` holds bytes that already belong to the tunnel. Failures raise
    :class:`~rawsmtp.SMTPProxyError` (``reply_code``: the SOCKS reply byte or HTTP status).
    """

    @property
    def done(self) -> bool:
        """True once the tunnel is established."""
        ...

    @property
    def leftover(self) -> bytes:
        """Bytes received after the proxy's reply: the start of the tunnelled stream."""
        ...

    def data_to_send(self) -> bytes:
        """The bytes to write to the proxy now (``b""`` when there are none); drains them."""
        ...

    def receive_data(self, data: bytes) -> None:
        """Bytes read from the proxy; ``b""`` means it closed the connection."""
        ...

    def bytes_needed(self) -> int:
        """How many bytes may be read now without reading past the proxy's reply (0 when over)."""
        ...


@dataclass(frozen=True, slots=True)
class Exactly:
    """The script needs exactly ``size`` more bytes."""

    size: int


@dataclass(frozen=True, slots=True)
class Until:
    """The script needs the bytes up to and including the first of ``delimiters``."""

    delimiters: tuple[bytes, ...]
    limit: int  # more bytes than this without a delimiter is the proxy's fault
    what: str  # names the bytes in the error message


Script = Generator[Exactly | Until, bytes, None]


@dataclass(frozen=True, slots=True)
class Target:
    """The host and port the tunnel should reach, checked once for every protocol.

    ``host`` has no brackets; ``ip`` is set when it is an IP literal; ``name`` is the host as
    ASCII bytes (IDNA-encoded when it was not ASCII).
    """

    host: str
    port: int
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    name: bytes

    @classmethod
    def check(cls, host: str, port: int) -> Target:
        if not isinstance(host, str):
            raise LocalProtocolError(f"target host must be a str, not {type(host).__name__}")
        if type(port) is not int or not 1 <= port <= 65535:
            raise LocalProtocolError(f"target port must be from 1 to 65535, not {port!r}")
        bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        try:
            ip = ipaddress.ip_address(bare)
        except ValueError:
            ip = None
        if bare is not host and not isinstance(ip, ipaddress.IPv6Address):
            raise LocalProtocolError(f"only IPv6 addresses go in brackets, not {host!r}")
        if ip is not None:
            if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
                raise LocalProtocolError(f"scoped IPv6 address {host!r} cannot cross a proxy")
            return cls(host=str(ip), port=port, ip=ip, name=str(ip).encode("ascii"))
        try:
            name = bare.encode("ascii") if bare.isascii() else bare.encode("idna")
        except UnicodeError as error:
            raise LocalProtocolError(f"invalid target host name {host!r}") from error
        if len(name) > 255 or not _NAME.fullmatch(name.decode("ascii")):
            raise LocalProtocolError(f"invalid target host name {host!r}")
        return cls(host=bare, port=port, ip=None, name=name)

    @property
    def authority(self) -> str:
        """``host:port`` with an IPv6 literal in brackets (HTTP's form)."""
        if isinstance(self.ip, ipaddress.IPv6Address):
            return f"[{self.ip}]:{self.port}"
        return f"{self.name.decode('ascii')}:{self.port}"


class _State(enum.Enum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Handshake:
    """Runs a protocol's :data:`Script` against received bytes; see the module docstring.

    Subclasses set their fields, then call ``super().__init__()``, which runs the script up to
    its first read (so the first request is ready in :meth:`data_to_send` at once).
    """

    def __init__(self) -> None:
        self._outgoing = bytearray()
        self._buffer = bytearray()
        self._searched = 0  # bytes of _buffer known to hold no delimiter
        self._state = _State.RUNNING
        self._script = self._run()
        self._need: Exactly | Until = next(self._script)

    def _run(self) -> Script:
        raise NotImplementedError

    def _send(self, data: bytes) -> None:
        self._outgoing += data

    @property
    def done(self) -> bool:
        return self._state is _State.DONE

    @property
    def leftover(self) -> bytes:
        return bytes(self._buffer) if self._state is _State.DONE else b""

    def data_to_send(self) -> bytes:
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    def receive_data(self, data: bytes) -> None:
        if self._state is not _State.RUNNING:
            raise LocalProtocolError(f"the proxy handshake is {self._state.value}; no more bytes")
        try:
            if not data:
                raise SMTPProxyError("proxy closed the connection during the handshake")
            self._buffer += data
            while (chunk := self._take()) is not None:
                self._need = self._script.send(chunk)
        except StopIteration:
            self._state = _State.DONE
        except SMTPProxyError:
            self._state = _State.FAILED
            self._script.close()
            raise

    def bytes_needed(self) -> int:
        if self._state is not _State.RUNNING:
            return 0
        need = self._need
        if isinstance(need, Exactly):
            return need.size - len(self._buffer)
        return min(len(d) - _overlap(self._buffer, d) for d in need.delimiters)

    def _take(self) -> bytes | None:
        """The bytes the script waits for, cut from the buffer, or None while incomplete."""
        need, buffer = self._need, self._buffer
        if isinstance(need, Exactly):
            end = need.size if len(buffer) >= need.size else None
        else:
            longest = max(len(d) for d in need.delimiters)
            start = max(0, self._searched - longest + 1)
            ends = [i + len(d) for d in need.delimiters if (i := buffer.find(d, start)) >= 0]
            end = min(ends, default=None)
            if end is None:
                self._searched = len(buffer)
            if (len(buffer) if end is None else end) > need.limit:
                raise SMTPProxyError(f"{need.what} longer than {need.limit} bytes")
        if end is None:
            return None
        chunk = bytes(buffer[:end])
        del buffer[:end]
        self._searched = 0
        return chunk


def _overlap(buffer: bytearray, delimiter: bytes) -> int:
    """The length of the longest proper prefix of ``delimiter`` that ``buffer`` ends with."""
    for size in range(len(delimiter) - 1, 0, -1):
        if buffer.endswith(delimiter[:size]):
            return size
    return 0
