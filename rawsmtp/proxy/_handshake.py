"""Choosing the handshake for a proxy URL: :func:`start_handshake`."""

from __future__ import annotations

from ._base import Handshake, ProxyHandshake
from ._http import HTTPConnectHandshake
from ._socks4 import Socks4Handshake
from ._socks5 import Socks5Handshake
from ._url import ProxyURL, parse_proxy_url

__all__ = ["start_handshake"]

_HANDSHAKES: dict[str, type[Socks5Handshake | Socks4Handshake | HTTPConnectHandshake]] = {
    "socks5": Socks5Handshake,
    "socks5h": Socks5Handshake,
    "socks4": Socks4Handshake,
    "socks4a": Socks4Handshake,
    "http": HTTPConnectHandshake,
    "https": HTTPConnectHandshake,  # the same CONNECT, inside TLS to the proxy
}


def start_handshake(proxy: ProxyURL | str, host: str, port: int) -> ProxyHandshake:
    """A new handshake asking ``proxy`` for a tunnel to ``host:port``; its first request is ready.

    ``host`` is a name or an IP literal (IPv6 with or without brackets). Input that can never
    be sent (a bad port, a name for ``socks4://``, an IPv6 target for SOCKS4) raises
    :class:`~rawsmtp.LocalProtocolError` here, before anything is written.
    """
    url = proxy if isinstance(proxy, ProxyURL) else parse_proxy_url(proxy)
    handshake: Handshake = _HANDSHAKES[url.scheme](url, host, port)
    return handshake
