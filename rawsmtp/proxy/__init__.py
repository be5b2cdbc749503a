"""Proxies: SOCKS5 (RFC 1928/1929), SOCKS4/4a and HTTP CONNECT, as sans-I/O handshakes.

:func:`parse_proxy_url` turns ``socks5://user:pw@host:1080`` into a :class:`ProxyURL`;
:func:`start_handshake` gives a :class:`ProxyHandshake` for it: bytes out with
``data_to_send()``, bytes in with ``receive_data()`` (``b""``: the proxy closed), ``done`` when
the tunnel is open, ``leftover`` for tunnel bytes that arrived with the proxy's reply. Nothing
here blocks except :func:`connect_via_proxy` and the hook :func:`proxy_get_socket` builds, a
blocking driver for users of ``get_socket``.

Example::

    sock = rawsmtp.proxy.connect_via_proxy("socks5h://127.0.0.1:1080", "smtp.example.com", 587)
    pool = rawsmtp.SMTPPool(host="smtp.example.com",
                            get_socket=rawsmtp.proxy.proxy_get_socket("http://proxy:3128"))
"""

from ._base import ProxyHandshake
from ._blocking import connect_via_proxy, proxy_get_socket, resolve_ipv4
from ._handshake import start_handshake
from ._http import MAX_HEAD_SIZE, HTTPConnectHandshake
from ._socks4 import SOCKS4_REPLIES, Socks4Handshake
from ._socks5 import SOCKS5_REPLIES, Socks5Handshake
from ._url import DEFAULT_PORTS, SCHEMES, ProxyURL, parse_proxy_url, redact_url

__all__ = [
    "DEFAULT_PORTS",
    "MAX_HEAD_SIZE",
    "SCHEMES",
    "SOCKS4_REPLIES",
    "SOCKS5_REPLIES",
    "HTTPConnectHandshake",
    "ProxyHandshake",
    "ProxyURL",
    "Socks4Handshake",
    "Socks5Handshake",
    "connect_via_proxy",
    "parse_proxy_url",
    "proxy_get_socket",
    "redact_url",
    "resolve_ipv4",
    "start_handshake",
]
