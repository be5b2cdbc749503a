"""The test server's configuration: the pieces ``SMTPTestServer`` builds its :class:`Settings`
from, options checked once when it is made."""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..protocol._server_auth import ServerXOAuth2
from ..protocol._server_config import PASSWORD_MECHANISMS, MechanismFactory, ServerConfig

__all__ = [
    "CA_FILE",
    "CERT_FILE",
    "DEFAULT_MAX_SIZE",
    "KEY_FILE",
    "Settings",
    "capability_lines",
    "mechanisms",
    "tls_context",
]

CERT_FILE = str(Path(__file__).with_name("cert.pem"))
"""The test server's shipped certificate (PEM), used when ``tls`` or ``implicit_tls`` is on."""
KEY_FILE = str(Path(__file__).with_name("key.pem"))
"""The private key of :data:`CERT_FILE` (PEM, unencrypted: it protects nothing)."""
# The shipped certificate is self-signed: it is its own CA (CN=localhost, SAN localhost and
# 127.0.0.1), so a client trusts the test server with ssl.create_default_context(cafile=CA_FILE).
CA_FILE = CERT_FILE
"""The CA file a client trusts to verify the test server (its self-signed certificate)."""

DEFAULT_MAX_SIZE = 10 * 1024 * 1024
DEFAULT_MAX_LINE = 16384  # room for XOAUTH2 initial responses; RFC 5321 asks only 512


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """``session`` configures each connection's :class:`ServerConnection`; the rest is I/O."""

    session: ServerConfig
    users: Mapping[str, str] = field(default_factory=dict)
    # The XOAUTH2 tokens the server accepts, by user; the live dict its mechanism reads, so a
    # test may change it while the server runs (a token endpoint issuing new ones).
    tokens: dict[str, str] = field(default_factory=dict)
    tls_context: ssl.SSLContext | None = None
    implicit_tls: bool = False

    @property
    def keywords(self) -> frozenset[str]:
        """The extension keywords advertised before TLS (STARTTLS included when offered)."""
        return self.session.keywords(tls=False)


def tls_context(
    tls: bool | ssl.SSLContext, cert: str | None, key: str | None, *, implicit: bool
) -> ssl.SSLContext | None:
    """The server's TLS context: the one given, one from ``cert``/``key``, or the shipped
    certificate's when TLS is on; None without TLS."""
    if (cert is None) != (key is None):
        raise ValueError("tls_cert and tls_key go together")
    if isinstance(tls, ssl.SSLContext):
        return tls
    if cert is not None and key is not None:
        return _load(cert, key)
    return _load(CERT_FILE, KEY_FILE) if tls or implicit else None


def _load(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def capability_lines(
    capabilities: Iterable[str] | None, context: ssl.SSLContext | None
) -> tuple[str, ...] | None:
    """EHLO lines written by hand, stripped (None: the default set); STARTTLS needs TLS."""
    if capabilities is None:
        return None
    lines = tuple(line.strip() for line in capabilities)
    if "STARTTLS" in (line.upper() for line in lines) and context is None:
        raise ValueError("STARTTLS advertised without tls=True or tls_cert/tls_key")
    return lines


def mechanisms(
    users: Mapping[str, str], tokens: Mapping[str, str], *, all_of_them: bool
) -> dict[str, MechanismFactory]:
    """PLAIN and LOGIN when there are users, XOAUTH2 when there are tokens (or all three, for
    capabilities written by hand: what they advertise is then honoured)."""
    found: dict[str, MechanismFactory] = {}
    if users or all_of_them:
        found.update(PASSWORD_MECHANISMS)
    if tokens or all_of_them:
        found["XOAUTH2"] = lambda: ServerXOAuth2(lambda u, t: tokens.get(u) == t)
    return found
