"""The HTTP CONNECT handshake (RFC 9110 section 9.3.6) over plain TCP.

Request: ``CONNECT host:port HTTP/1.1`` with ``Host`` and, when the URL has credentials,
``Proxy-Authorization: Basic``. Reply: a status line and header fields up to the blank line,
bounded by :data:`MAX_HEAD_SIZE`; interim 1xx replies are skipped; any 2xx opens the tunnel
(bytes after the blank line are tunnel bytes: a 2xx reply to CONNECT has no body); anything else
is an :class:`~rawsmtp.SMTPProxyError` carrying the status (407, or 401 after credentials were
sent, as tinyproxy does, means authentication). Bare LF line ends are accepted.
"""

from __future__ import annotations

import base64
import re

from .._errors import SMTPProxyError
from ._base import Handshake, Script, Target, Until
from ._url import ProxyURL

__all__ = ["MAX_HEAD_SIZE", "HTTPConnectHandshake"]

MAX_HEAD_SIZE = 16384
"""The most bytes one reply head from the proxy (status line and header fields, up to the
blank line) may take; a longer one is an :class:`~rawsmtp.SMTPProxyError`. A CONNECT reply is a
few hundred bytes: the bound keeps a misbehaving proxy from growing the buffer without end."""
_MAX_INTERIM = 8  # 1xx replies tolerated before the final one
# The blank line ending the head, whether lines end in CRLF or in bare LF.
_HEAD_END = (b"\n\r\n", b"\n\n")
_STATUS_LINE = re.compile(r"HTTP/1\.[0-9] ([0-9]{3})(?: (.*))?")
_FIELD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+:.*|[ \t].*")  # name: value, or a folded line
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


class HTTPConnectHandshake(Handshake):
    """Ask an HTTP proxy for a tunnel with ``CONNECT``."""

    def __init__(self, proxy: ProxyURL, host: str, port: int) -> None:
        target = Target.check(host, port)
        self._proxy = proxy
        self._target = target
        super().__init__()

    def _request(self) -> bytes:
        authority = self._target.authority
        lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
        if self._proxy.has_credentials:
            secret = f"{self._proxy.username}:{self._proxy.password or ''}".encode()
            lines.append(f"Proxy-Authorization: Basic {base64.b64encode(secret).decode('ascii')}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")

    def _run(self) -> Script:
        self._send(self._request())
        for _ in range(_MAX_INTERIM + 1):
            head = yield Until(_HEAD_END, MAX_HEAD_SIZE, "HTTP proxy reply header")
            status, reason = _parse_head(head)
            if not 100 <= status < 200:  # interim replies come before the final one
                break
        else:
            raise SMTPProxyError(f"HTTP proxy sent more than {_MAX_INTERIM} interim replies")
        if 200 <= status < 300:
            return
        # 407 is the standard answer; tinyproxy answers wrong credentials with 401.
        if status == 407 or (status == 401 and self._proxy.has_credentials):
            what = "failed" if self._proxy.has_credentials else "required"
            raise SMTPProxyError(f"proxy authentication {what} (HTTP {status})", reply_code=status)
        raise SMTPProxyError(
            f"HTTP proxy refused the tunnel to {self._target.authority}: {status} {reason}".rstrip(),
            reply_code=status,
        )


def _parse_head(head: bytes) -> tuple[int, str]:
    """The status code and reason of a reply head; checks the header fields' shape."""
    lines = [line.removesuffix("\r") for line in head.decode("latin-1").split("\n")]
    match = _STATUS_LINE.fullmatch(lines[0])
    if match is None:
        raise SMTPProxyError(f"malformed HTTP proxy status line: {_shown(lines[0])}")
    for line in lines[1:]:
        if line and not _FIELD.fullmatch(line):
            raise SMTPProxyError(f"malformed HTTP proxy header line: {_shown(line)}")
    return int(match.group(1)), _shown(match.group(2) or "")


def _shown(text: str, limit: int = 200) -> str:
    """Proxy-supplied text made safe for messages and logs: printable ASCII, bounded."""
    return _UNPRINTABLE.sub("?", text[:limit])
