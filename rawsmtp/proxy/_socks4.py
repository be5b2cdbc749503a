"""The SOCKS4 and SOCKS4a handshakes (CONNECT only).

Request: VN=4, CD=1, port, IPv4 address, user id, NUL; SOCKS4a puts 0.0.0.1 in the address and
the host name (NUL-terminated) after the user id, so the proxy resolves it. Reply: 8 bytes,
VN=0 and CD=0x5A when granted. SOCKS4 cannot reach a name or an IPv6 address: the caller
resolves the name to IPv4 first (:attr:`~rawsmtp.proxy.ProxyURL.needs_local_resolution`).
"""

from __future__ import annotations

import ipaddress

from .._errors import SMTPProxyError
from ..protocol import LocalProtocolError
from ._base import Exactly, Handshake, Script, Target
from ._url import ProxyURL

__all__ = ["SOCKS4_REPLIES", "Socks4Handshake"]

_GRANTED = 0x5A
SOCKS4_REPLIES = {
    0x5B: "request rejected or failed",
    0x5C: "request rejected: the proxy cannot reach the client's identd",
    0x5D: "request rejected: identd reports a different user id",
}
"""The SOCKS4 refusal codes (CD in the reply) and what they mean, for the
:class:`~rawsmtp.SMTPProxyError` a refused CONNECT raises; 0x5A, granted, is not one."""


class Socks4Handshake(Handshake):
    """CONNECT through a SOCKS4 (``socks4://``) or SOCKS4a (``socks4a://``) proxy."""

    def __init__(self, proxy: ProxyURL, host: str, port: int) -> None:
        target = Target.check(host, port)
        if isinstance(target.ip, ipaddress.IPv6Address):
            raise LocalProtocolError(f"SOCKS4 cannot reach the IPv6 address {target.host}")
        if target.ip is None and proxy.scheme != "socks4a":
            raise LocalProtocolError(
                f"socks4:// needs an IPv4 address, not {target.host!r}: resolve the name first "
                "or use socks4a:// to let the proxy resolve it"
            )
        self._proxy = proxy
        self._target = target
        super().__init__()

    def _run(self) -> Script:
        target = self._target
        user = (self._proxy.username or "").encode("utf-8") + b"\0"
        if isinstance(target.ip, ipaddress.IPv4Address):
            address, name = target.ip.packed, b""
        else:
            address, name = b"\0\0\0\x01", target.name + b"\0"  # SOCKS4a: 0.0.0.x, x != 0
        self._send(b"\x04\x01" + target.port.to_bytes(2, "big") + address + user + name)
        version, reply = yield Exactly(2)
        if version != 0x00:
            raise SMTPProxyError(f"not a SOCKS4 proxy: its reply has version {version}")
        if reply != _GRANTED:
            reason = SOCKS4_REPLIES.get(reply, f"unknown reply code {reply:#04x}")
            raise SMTPProxyError(
                f"SOCKS4 proxy could not connect to {target.authority}: {reason}",
                reply_code=reply,
            )
        yield Exactly(6)  # bound port and address: meaningless for CONNECT
