"""Proxy URLs: the :class:`ProxyURL` value and :func:`parse_proxy_url`.

Schemes and what each one sends to the proxy:

``socks5://``
    SOCKS5 (RFC 1928). The target goes to the proxy as given: an IP literal as an address
    (ATYP 1 or 4), a name as a name (ATYP 3), so the proxy resolves it. rawsmtp never resolves
    the target itself for SOCKS5 (no DNS leak); this differs from curl, whose ``socks5://``
    resolves locally.
``socks5h://``
    The same as ``socks5://`` here; accepted because curl-style URLs use it to say "the proxy
    resolves names".
``socks4://``
    SOCKS4: IPv4 addresses only. A name must be resolved by the caller first
    (:attr:`ProxyURL.needs_local_resolution` is true); :func:`~rawsmtp.proxy.connect_via_proxy`
    does that for you.
``socks4a://``
    SOCKS4a: names are sent to the proxy.
``http://``
    An HTTP proxy reached over plain TCP, asked for a tunnel with ``CONNECT``. SMTP's own TLS
    runs through the tunnel.
``https://``
    The same CONNECT, over TLS to the proxy itself (verified against the proxy's name; the
    pool's ``proxy_tls`` option sets it up as ``tls`` does SMTP's). SMTP's TLS then runs inside
    the proxy's: TLS in TLS.

``user:password@`` is percent-decoded (``%40`` for ``@``, ``%3A`` for ``:``). SOCKS5 uses it for
RFC 1929 username/password authentication, SOCKS4 sends the user as its user id (SOCKS4 has no
passwords), HTTP sends ``Proxy-Authorization: Basic``. Default ports: 1080 for SOCKS, 8080 for HTTP,
443 for HTTPS.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from .._errors import SMTPConfigError

__all__ = ["DEFAULT_PORTS", "SCHEMES", "ProxyURL", "parse_proxy_url"]

DEFAULT_PORTS = {
    "socks5": 1080,
    "socks5h": 1080,
    "socks4": 1080,
    "socks4a": 1080,
    "http": 8080,
    "https": 443,
}
"""The port a proxy URL without one gets, per scheme: 1080 is SOCKS's registered port, 8080
the usual HTTP proxy port, 443 HTTPS."""
SCHEMES = tuple(DEFAULT_PORTS)
"""The proxy URL schemes rawsmtp understands, in :data:`DEFAULT_PORTS`'s order: ``socks5`` and
``socks5h`` (the same here: the proxy resolves names), ``socks4``, ``socks4a``, ``http`` and
``https`` (CONNECT, the latter over TLS to the proxy). See the module docstring for each."""


def _fail(message: str) -> SMTPConfigError:
    return SMTPConfigError(message, option="proxy")


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class ProxyURL:
    """A validated proxy: scheme (lower case), host, port and optional credentials.

    ``repr()`` and ``str()`` never show the password.
    """

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            schemes = ", ".join(f"{s}://" for s in SCHEMES)
            raise _fail(f"unsupported proxy scheme {self.scheme!r}; use one of {schemes}")
        if not isinstance(self.host, str) or not self.host:
            raise _fail("the proxy URL needs a host")
        if type(self.port) is not int or not 1 <= self.port <= 65535:
            raise _fail(f"proxy port must be an integer from 1 to 65535, not {self.port!r}")
        for name in ("username", "password"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise _fail(f"proxy {name} must be a str, not {type(value).__name__}")
        if self.password is not None and not self.username:
            raise _fail("the proxy URL has a password but no user name")
        _check_credentials(self.scheme, self.username, self.password)

    @property
    def needs_local_resolution(self) -> bool:
        """True when the caller must resolve a target name to an IPv4 address (``socks4://``)."""
        return self.scheme == "socks4"

    @property
    def tls(self) -> bool:
        """True when the connection to the proxy itself is TLS (``https://``)."""
        return self.scheme == "https"

    @property
    def has_credentials(self) -> bool:
        return bool(self.username)

    def __repr__(self) -> str:
        password = None if self.password is None else "***"
        return (
            f"ProxyURL(scheme={self.scheme!r}, host={self.host!r}, port={self.port!r}, "
            f"username={self.username!r}, password={password!r})"
        )

    def __str__(self) -> str:
        """The URL with the password replaced by ``***`` (fit for logs)."""
        userinfo = ""
        if self.username:
            userinfo = urllib.parse.quote(self.username, safe="")
            userinfo += ":***@" if self.password is not None else "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{userinfo}{host}:{self.port}"


def _check_credentials(scheme: str, username: str | None, password: str | None) -> None:
    if username is None:
        return
    if scheme in ("socks5", "socks5h"):
        # RFC 1929: one length byte each.
        if len(username.encode("utf-8")) > 255 or len((password or "").encode("utf-8")) > 255:
            raise _fail("SOCKS5 user name and password are limited to 255 bytes each")
    elif scheme in ("socks4", "socks4a"):
        if password is not None:
            raise _fail("SOCKS4 has no passwords; give only a user id (socks4://user@host)")
        if "\0" in username or len(username.encode("utf-8")) > 255:
            raise _fail("SOCKS4 user id must have no NUL and at most 255 bytes")
    elif ":" in username:
        raise _fail("an HTTP proxy user name cannot contain ':' (RFC 7617)")


def parse_proxy_url(url: str) -> ProxyURL:
    """Parse and validate ``scheme://[user[:password]@]host[:port]``.

    Raises :class:`~rawsmtp.SMTPConfigError` (``option="proxy"``) for anything invalid; its
    message never contains the password.
    """
    if not isinstance(url, str):
        raise _fail(f"proxy must be a URL string, not {type(url).__name__}")
    shown = redact_url(url)
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError as error:
        raise _fail(f"invalid proxy URL {shown}: {error}") from error
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES or not parts.netloc:
        schemes = ", ".join(f"{s}://" for s in SCHEMES)
        raise _fail(f"proxy must be a URL of the form {schemes}host[:port]; got {shown}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise _fail(f"a proxy URL has no path, query or fragment; got {shown}")
    if not parts.hostname:
        raise _fail(f"the proxy URL needs a host; got {shown}")
    try:
        username = None if parts.username is None else _unquote(parts.username)
        password = None if parts.password is None else _unquote(parts.password)
    except UnicodeDecodeError as error:
        raise _fail(f"proxy credentials are not valid UTF-8 once decoded: {shown}") from error
    if username == "" and password is None:
        username = None  # "socks5://@host"
    return ProxyURL(
        scheme=scheme,
        host=parts.hostname,
        port=DEFAULT_PORTS[scheme] if port is None else port,
        username=username,
        password=password,
    )


def _unquote(text: str) -> str:
    return urllib.parse.unquote(text, errors="strict")


def redact_url(url: str) -> str:
    """``url`` (any URL-like text) with the password of its ``user:password@`` replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    netloc, tail = rest[:end], rest[end:]
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:***@{hostport}"
    return f"{scheme}{sep}{netloc}{tail}"
