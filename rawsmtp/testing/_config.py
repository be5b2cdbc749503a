"""The test server's configuration: options checked once, capabilities worked out once."""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

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
    hostname: str
    capabilities: tuple[str, ...]  # EHLO lines after the first, STARTTLS included when offered
    lmtp: bool
    max_size: int
    max_line: int
    users: Mapping[str, str] = field(default_factory=dict)
    tokens: Mapping[str, str] = field(default_factory=dict)
    require_auth: bool = False
    tls_context: ssl.SSLContext | None = None
    implicit_tls: bool = False

    @property
    def keywords(self) -> frozenset[str]:
        return frozenset(line.split()[0].upper() for line in self.capabilities if line.strip())

    @property
    def mechanisms(self) -> tuple[str, ...]:
        for line in self.capabilities:
            words = line.upper().split()
            if words and words[0] == "AUTH":
                return tuple(words[1:])
        return ()

    def ehlo_lines(self, *, tls: bool) -> list[str]:
        """Capability lines to advertise now (no STARTTLS once TLS is on)."""
        return [line for line in self.capabilities if not (tls and line.upper() == "STARTTLS")]


def _tls_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


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
    if max_size < 0 or max_line < 512:
        raise ValueError("max_size must be >= 0 and max_line >= 512")
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
    if capabilities is None:
        lines = ["PIPELINING", f"SIZE {max_size}" if max_size else "SIZE", "8BITMIME"]
        lines += ["SMTPUTF8", "CHUNKING", "DSN", "ENHANCEDSTATUSCODES"]
        if context is not None and not implicit_tls:
            lines.append("STARTTLS")
        mechanisms = (["PLAIN", "LOGIN"] if users else []) + (["XOAUTH2"] if tokens else [])
        if mechanisms:
            lines.append("AUTH " + " ".join(mechanisms))
        capabilities = lines
    lines = [line.strip() for line in capabilities]
    if any(not line or "\r" in line or "\n" in line for line in lines):
        raise ValueError(f"invalid capability lines: {lines!r}")
    if "STARTTLS" in (line.upper() for line in lines) and context is None:
        raise ValueError("STARTTLS advertised without tls=True or tls_cert/tls_key")
    return Settings(
        hostname=hostname,
        capabilities=tuple(lines),
        lmtp=lmtp,
        max_size=max_size,
        max_line=max_line,
        users=users,
        tokens=tokens,
        require_auth=require_auth,
        tls_context=context,
        implicit_tls=implicit_tls,
    )
