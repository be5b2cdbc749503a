"""The SOCKS5 handshake (RFC 1928), with username/password authentication (RFC 1929).

Client: greeting (offered methods) -> proxy: chosen method -> [client: user/password -> proxy:
status] -> client: CONNECT request -> proxy: reply code and bound address. Every proxy message
has a fixed or announced length, so the script reads exactly what the proxy sends and no byte of
the tunnel.
"""

from __future__ import annotations

import ipaddress

from .._errors import SMTPProxyError
from ._base import Exactly, Handshake, Script, Target
from ._url import ProxyURL

__all__ = ["SOCKS5_REPLIES", "Socks5Handshake"]

_VERSION = 0x05
_NO_AUTH = 0x00
_USER_PASS = 0x02
_NO_ACCEPTABLE = 0xFF
_CONNECT = 0x01

SOCKS5_REPLIES = {
    0x01: "general SOCKS server failure",
    0x02: "connection not allowed by ruleset",
    0x03: "network unreachable",
    0x04: "host unreachable",
    0x05: "connection refused",
    0x06: "TTL expired",
    0x07: "command not supported",
    0x08: "address type not supported",
}
"""The SOCKS5 reply codes other than success (RFC 1928 section 6) and what they mean, for the
:class:`~rawsmtp.SMTPProxyError` a refused CONNECT raises."""

# Bytes that follow ATYP in a reply (address, then the 2-byte port); ATYP 3 announces its length.
_BOUND_SIZES = {0x01: 4 + 2, 0x04: 16 + 2}


class Socks5Handshake(Handshake):
    """CONNECT through a SOCKS5 proxy; offers username/password when the URL has credentials."""

    def __init__(self, proxy: ProxyURL, host: str, port: int) -> None:
        target = Target.check(host, port)
        self._proxy = proxy
        self._target = target
        super().__init__()

    def _run(self) -> Script:
        credentials = self._proxy.has_credentials
        methods = bytes([_NO_AUTH, _USER_PASS] if credentials else [_NO_AUTH])
        self._send(bytes([_VERSION, len(methods)]) + methods)
        version, method = yield Exactly(2)
        _check_version(version)
        if method == _NO_ACCEPTABLE:
            hint = "" if credentials else " (does it want a user name and password?)"
            raise SMTPProxyError(
                f"SOCKS5 proxy: no acceptable authentication method{hint}", reply_code=method
            )
        if method == _USER_PASS and credentials:
            yield from self._authenticate()
        elif method != _NO_AUTH:
            raise SMTPProxyError(
                f"SOCKS5 proxy chose authentication method {method:#04x}, which was not offered"
            )
        self._send(bytes([_VERSION, _CONNECT, 0x00]) + _address(self._target))
        version, reply = yield Exactly(2)
        _check_version(version)
        if reply != 0x00:
            reason = SOCKS5_REPLIES.get(reply, f"unknown reply code {reply:#04x}")
            raise SMTPProxyError(
                f"SOCKS5 proxy could not connect to {self._target.authority}: {reason}",
                reply_code=reply,
            )
        _reserved, address_type = yield Exactly(2)
        if address_type == 0x03:
            (length,) = yield Exactly(1)
            yield Exactly(length + 2)
        elif address_type in _BOUND_SIZES:
            yield Exactly(_BOUND_SIZES[address_type])
        else:
            raise SMTPProxyError(f"malformed SOCKS5 reply: address type {address_type:#04x}")

    def _authenticate(self) -> Script:
        # RFC 1929: VER=1, ULEN, UNAME, PLEN, PASSWD; lengths were checked by ProxyURL.
        user = (self._proxy.username or "").encode("utf-8")
        password = (self._proxy.password or "").encode("utf-8")
        self._send(bytes([0x01, len(user)]) + user + bytes([len(password)]) + password)
        version, status = yield Exactly(2)
        if version != 0x01:
            raise SMTPProxyError(f"malformed SOCKS5 authentication reply: version {version}")
        if status != 0x00:
            raise SMTPProxyError("proxy authentication failed", reply_code=status)


def _check_version(version: int) -> None:
    if version != _VERSION:
        raise SMTPProxyError(f"not a SOCKS5 proxy: its reply has version {version}")


def _address(target: Target) -> bytes:
    """ATYP, address and port: IP literals as addresses, names for the proxy to resolve."""
    port = target.port.to_bytes(2, "big")
    if isinstance(target.ip, ipaddress.IPv4Address):
        return b"\x01" + target.ip.packed + port
    if isinstance(target.ip, ipaddress.IPv6Address):
        return b"\x04" + target.ip.packed + port
    return bytes([0x03, len(target.name)]) + target.name + port
