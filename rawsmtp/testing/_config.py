"""The test server's configuration: options checked once, the session settings built once."""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..protocol._server_auth import ServerXOAuth2
from ..protocol._server_config import PASSWORD_MECHANISMS, MechanismFactory, ServerConfig

__all__ = ["CA_FILE", "CERT_FILE", "DEFAULT_MAX_SIZE", "KEY_FILE", "Settings", "build_settings"]

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


def _tls_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def _mechanisms(
    users: Mapping[str, str], tokens: Mapping[str, str], *, all_of_them: bool
) -> dict[str, MechanismFactory]:
    """PLAIN and LOGIN when there are users, XOAUTH2 when there are tokens (or all three, for
    capabilities written by hand: what they advertise is then honoured)."""
    mechanisms: dict[str, MechanismFactory] = {}
    if users or all_of_them:
        mechanisms.update(PASSWORD_MECHANISMS)
    if tokens or all_of_them:
        mechanisms["XOAUTH2"] = lambda: ServerXOAuth2(lambda u, t: tokens.get(u) == t)
    return mechanisms


def build_settings(
    *,
    hostname: str = "rawsmtp.test",
    capabilities: Iterable[str] | None = None,
    tls: bool | ssl.SSLContext = False,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    implicit_tls: bool = False,
    users: Mapping[str, str] | None = None,
    tokens: Mapping[str, str] | None = None,
    lmtp: bool = False,
    max_size: int = DEFAULT_MAX_SIZE,
    max_line: int = DEFAULT_MAX_LINE,
    require_auth: bool = False,
) -> Settings:
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("tls_cert and tls_key go together")
    context: ssl.SSLContext | None = None
    if isinstance(tls, ssl.SSLContext):
        context = tls
    elif tls_cert is not None and tls_key is not None:
        context = _tls_context(tls_cert, tls_key)
    elif tls or implicit_tls:
        context = _tls_context(CERT_FILE, KEY_FILE)
    users, tokens = dict(users or {}), dict(tokens or {})
    lines = None if capabilities is None else tuple(line.strip() for line in capabilities)
    if lines is not None and "STARTTLS" in (line.upper() for line in lines) and context is None:
        raise ValueError("STARTTLS advertised without tls=True or tls_cert/tls_key")
    session = ServerConfig(
        hostname=hostname,
        capabilities=lines,
        lmtp=lmtp,
        starttls=context is not None and not implicit_tls,
        tls_active=implicit_tls,
        mechanisms=_mechanisms(users, tokens, all_of_them=lines is not None),
        require_auth=require_auth,
        max_size=max_size,
        max_line=max_line,
        # The test server takes what a client under test sends, sloppy or not (unsynchronised
        # pipelining, bare LF, odd paths): how real servers treat those is probe()'s question.
        bare_lf="accept",
        sync="ignore",
        addresses="any",
    )
    return Settings(
        session=session,
        users=users,
        tokens=tokens,
        tls_context=context,
        implicit_tls=implicit_tls,
    )
