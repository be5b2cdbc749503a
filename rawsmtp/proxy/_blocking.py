"""A blocking driver for the handshakes: :func:`connect_via_proxy` and :func:`proxy_get_socket`.

For users who build their own ``get_socket`` hook (or any other blocking client). Reads never
ask for more than :meth:`~rawsmtp.proxy.ProxyHandshake.bytes_needed`, so no byte of the tunnel is
consumed: the returned socket starts exactly at the target's first byte (the SMTP greeting).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._errors import SMTPConnectionError, SMTPError, SMTPProxyError, SMTPTimeoutError
from ._handshake import start_handshake
from ._url import ProxyURL, parse_proxy_url

if TYPE_CHECKING:
    import ssl

__all__ = ["connect_via_proxy", "proxy_get_socket", "resolve_ipv4"]


def connect_via_proxy(
    proxy: str | ProxyURL,
    host: str,
    port: int,
    *,
    timeout: float = 30.0,
    source_address: tuple[str, int] | None = None,
    tls: ssl.SSLContext | None = None,
) -> socket.socket:
    """Connect to ``proxy``, open a tunnel to ``host:port`` and return the connected socket.

    For ``https://`` the connection to the proxy is TLS, made with ``tls`` (default: a
    verifying context of the system's CAs) and checked against the proxy's name; the socket
    returned is then an ``ssl.SSLSocket`` whose tunnel is plaintext to the target, so give it
    to the pool as a plain socket (SMTP's own TLS runs inside it). ``timeout`` (seconds) bounds the connection to the proxy and the whole handshake, and stays
    set on the returned socket (as with :func:`socket.create_connection`). For ``socks4://`` a
    target name is resolved here, to IPv4. Raises :class:`~rawsmtp.SMTPProxyError` when the
    proxy cannot be reached, refuses or fails, :class:`~rawsmtp.SMTPTimeoutError`
    (``phase="proxy"``) when time runs out, :class:`~rawsmtp.SMTPConfigError` for a bad URL.
    """
    url = proxy if isinstance(proxy, ProxyURL) else parse_proxy_url(proxy)
    if url.needs_local_resolution:
        host = resolve_ipv4(host, port)
    handshake = start_handshake(url, host, port)  # checks the target before connecting
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection(
            (url.host, url.port), timeout=timeout, source_address=source_address
        )
    except TimeoutError as error:
        raise SMTPTimeoutError(f"connecting to proxy {url} timed out", phase="connect") from error
    except OSError as error:
        raise SMTPProxyError(f"cannot connect to proxy {url}: {error}") from error
    try:
        if url.tls:
            sock = _secure(sock, url, tls)
        while True:
            if data := handshake.data_to_send():
                sock.settimeout(_remaining(deadline, url))
                sock.sendall(data)
            if handshake.done:
                break
            sock.settimeout(_remaining(deadline, url))
            handshake.receive_data(sock.recv(handshake.bytes_needed()))
    except SMTPError:  # the handshake's own verdict (an SMTPProxyError is also an OSError)
        sock.close()
        raise
    except TimeoutError as error:  # also ssl's handshake timeout (socket.timeout)
        sock.close()
        raise SMTPTimeoutError(f"handshake with proxy {url} timed out", phase="proxy") from error
    except OSError as error:
        sock.close()
        raise SMTPProxyError(f"connection to proxy {url} failed: {error}") from error
    except BaseException:
        sock.close()
        raise
    if handshake.leftover:  # cannot happen: reads stop at the end of the reply
        sock.close()
        raise SMTPProxyError("read past the end of the proxy's reply")
    sock.settimeout(timeout)
    return sock


def proxy_get_socket(
    proxy: str | ProxyURL,
    *,
    timeout: float = 30.0,
    source_address: tuple[str, int] | None = None,
    tls: ssl.SSLContext | None = None,
) -> Callable[[str, int], socket.socket]:
    """A ``get_socket`` hook for :class:`~rawsmtp.SMTPPool` that connects through ``proxy``
    (``tls``: for an ``https://`` proxy, see :func:`connect_via_proxy`).

    The URL is checked now, so a bad one fails at once rather than on the first connection.
    """
    url = proxy if isinstance(proxy, ProxyURL) else parse_proxy_url(proxy)

    def get_socket(host: str, port: int) -> socket.socket:
        return connect_via_proxy(
            url, host, port, timeout=timeout, source_address=source_address, tls=tls
        )

    return get_socket


def _secure(sock: socket.socket, url: ProxyURL, tls: ssl.SSLContext | None) -> socket.socket:
    """TLS to an https:// proxy (ssl is imported only for one)."""
    import ssl

    context = tls or ssl.create_default_context()
    try:
        return context.wrap_socket(sock, server_hostname=url.host)
    except ssl.SSLError as error:  # a certificate failure included; timeouts are not SSLErrors
        raise SMTPProxyError(f"TLS to proxy {url} failed: {error}") from error


def _remaining(deadline: float, url: ProxyURL) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError(f"proxy {url}")
    return left


def resolve_ipv4(host: str, port: int) -> str:
    """``host`` as an IPv4 literal, resolving a name (SOCKS4 carries no names)."""
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)
    except OSError as error:
        raise SMTPConnectionError(f"cannot resolve {host!r} to IPv4: {error}") from error
    if not infos:
        raise SMTPConnectionError(f"{host!r} has no IPv4 address")
    return str(infos[0][4][0])
