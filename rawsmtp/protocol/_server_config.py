"""The server's settings and what it advertises: :class:`ServerConfig`, and reply formatting."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from .._errors import LocalProtocolError
from ._server_auth import ServerLogin, ServerMechanism, ServerPlain

__all__ = ["PASSWORD_MECHANISMS", "ServerConfig", "format_reply", "strip_enhanced"]

MechanismFactory = Callable[[], ServerMechanism]
PASSWORD_MECHANISMS: Mapping[str, MechanismFactory] = MappingProxyType(
    {"PLAIN": ServerPlain, "LOGIN": ServerLogin}
)
"""The SASL mechanisms a server checks with a password callback alone, by name."""
_REPLY_LINE = re.compile(r"[2-5]\d\d(?:[ -].*)?")
_ENHANCED = re.compile(r"^(\d{3}[ -])[245]\.\d{1,3}\.\d{1,3}(?: |$)")


def format_reply(text: str) -> bytes:
    """``"250 a\\n250 b"`` -> ``250-a CRLF 250 b CRLF``; LocalProtocolError when malformed."""
    lines = text.split("\n")
    for line in lines:
        if not _REPLY_LINE.fullmatch(line) or "\r" in line:
            raise LocalProtocolError(f"reply line must start with a 3-digit code: {line!r}")
    out = [line[:3] + "-" + line[4:] for line in lines[:-1]]
    return "".join(line + "\r\n" for line in [*out, lines[-1]]).encode("utf-8")


def strip_enhanced(text: str) -> str:
    """The reply without its enhanced status codes (for a server not advertising them)."""
    return "\n".join(_ENHANCED.sub(r"\1", line) for line in text.split("\n"))


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """Settings of one server session.

    ``capabilities`` are the EHLO lines after the first; by default PIPELINING, SIZE, 8BITMIME,
    SMTPUTF8, CHUNKING, DSN, ENHANCEDSTATUSCODES, STARTTLS when ``starttls`` (the driver can do
    TLS) and AUTH with the names of ``mechanisms``. The server honours what it advertises and
    refuses the rest. ``auth_after_tls`` offers AUTH only over TLS. ``max_size`` is the SIZE
    limit (0: none), ``max_line`` the longest command line. ``bare_lf="reject"`` refuses
    command lines and messages with a line end other than CR LF (the SMTP smuggling defence;
    DATA only ever ends at CR LF . CR LF either way). ``sync="reject"`` refuses a command that
    must end a pipelined group (or any command without PIPELINING) when input already follows it.
    ``addresses="check"`` refuses a path that is no valid mailbox (501); ``"any"`` takes whatever
    is between the brackets, as a lenient server does.
    """

    hostname: str
    capabilities: tuple[str, ...] | None = None
    lmtp: bool = False
    starttls: bool = False
    tls_active: bool = False
    mechanisms: Mapping[str, MechanismFactory] = field(default_factory=dict)
    auth_after_tls: bool = False
    require_auth: bool = False
    max_size: int = 10 * 1024 * 1024
    max_line: int = 4096
    max_recipients: int = 1000
    max_errors: int = 20
    bare_lf: Literal["accept", "reject"] = "reject"
    sync: Literal["ignore", "reject"] = "reject"
    addresses: Literal["any", "check"] = "check"

    def __post_init__(self) -> None:
        if self.max_size < 0 or self.max_line < 512:
            raise LocalProtocolError("max_size must be >= 0 and max_line >= 512")
        if self.capabilities is None:
            lines = ["PIPELINING", f"SIZE {self.max_size}" if self.max_size else "SIZE"]
            lines += ["8BITMIME", "SMTPUTF8", "CHUNKING", "DSN", "ENHANCEDSTATUSCODES"]
            lines += ["STARTTLS"] if self.starttls else []
            lines += ["AUTH " + " ".join(self.mechanisms)] if self.mechanisms else []
            object.__setattr__(self, "capabilities", tuple(lines))
        if any(not line.strip() or "\r" in line or "\n" in line for line in self.lines):
            raise LocalProtocolError(f"invalid capability lines: {self.capabilities!r}")

    @property
    def lines(self) -> tuple[str, ...]:
        assert self.capabilities is not None  # set by __post_init__
        return self.capabilities

    def ehlo_lines(self, *, tls: bool) -> list[str]:
        """Capability lines to advertise now: no STARTTLS over TLS, AUTH maybe only then."""
        return [line for line in self.lines if self._offered(line.split()[0].upper(), tls=tls)]

    def keywords(self, *, tls: bool) -> frozenset[str]:
        return frozenset(line.split()[0].upper() for line in self.ehlo_lines(tls=tls))

    def auth_names(self, *, tls: bool) -> tuple[str, ...]:
        for line in self.ehlo_lines(tls=tls):
            words = line.upper().split()
            if words[0] == "AUTH":
                return tuple(words[1:])
        return ()

    def _offered(self, keyword: str, *, tls: bool) -> bool:
        if keyword == "STARTTLS":
            return not tls
        return keyword != "AUTH" or tls or not self.auth_after_tls
