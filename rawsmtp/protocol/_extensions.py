"""The EHLO reply turned into what the server offers (RFC 5321 section 4.1.1.1 and friends).

Every line after the first is ``KEYWORD [params]``. Keywords are case-insensitive; unknown ones
are kept so callers can look at them. The pre-standard ``AUTH=PLAIN LOGIN`` form some servers
still send is read as AUTH.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ._replies import Reply

__all__ = ["Extensions", "parse_ehlo"]


@dataclass(frozen=True, slots=True)
class Extensions:
    """What an EHLO (or LHLO) reply advertised. ``keywords`` maps each keyword to its params."""

    keywords: dict[str, tuple[str, ...]] = field(default_factory=dict)
    size: int | None = None  # SIZE n; 0 means "no fixed limit"
    auth: frozenset[str] = frozenset()
    # ``keywords`` read-only, as every SendResult's ``capabilities``: one view per EHLO, not
    # one per message (40 B each, kept with every result: bench/run.py, the queued rows).
    view: Mapping[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "view", MappingProxyType(self.keywords))

    def __contains__(self, keyword: str) -> bool:
        return keyword.upper() in self.keywords

    @property
    def pipelining(self) -> bool:
        return "PIPELINING" in self.keywords

    @property
    def starttls(self) -> bool:
        return "STARTTLS" in self.keywords

    @property
    def eightbitmime(self) -> bool:
        return "8BITMIME" in self.keywords

    @property
    def smtputf8(self) -> bool:
        return "SMTPUTF8" in self.keywords

    @property
    def chunking(self) -> bool:
        return "CHUNKING" in self.keywords

    @property
    def binarymime(self) -> bool:
        return "BINARYMIME" in self.keywords

    @property
    def dsn(self) -> bool:
        return "DSN" in self.keywords

    @property
    def enhanced_status_codes(self) -> bool:
        return "ENHANCEDSTATUSCODES" in self.keywords

    @property
    def requiretls(self) -> bool:
        return "REQUIRETLS" in self.keywords


def parse_ehlo(reply: Reply) -> Extensions:
    """Read the capabilities out of a successful EHLO/LHLO reply (the first line is the greeting)."""
    keywords: dict[str, tuple[str, ...]] = {}
    auth: set[str] = set()
    size: int | None = None
    for line in reply.lines[1:]:
        words = line.split()
        if not words:
            continue  # smtp-sink ends its reply with an empty "250 " line
        keyword, params = words[0].upper(), tuple(words[1:])
        if keyword.startswith("AUTH="):
            params = (keyword[5:], *params)
            keyword = "AUTH"
        if keyword == "AUTH":
            auth.update(p.upper() for p in params if p)
        elif keyword == "SIZE" and params and params[0].isdigit():
            size = int(params[0])
        keywords.setdefault(keyword, params)
    return Extensions(keywords=keywords, size=size, auth=frozenset(auth))
