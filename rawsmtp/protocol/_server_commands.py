"""Server side of the command grammar: MAIL/RCPT paths and their ESMTP parameters, BDAT lines.

Each parser returns the parsed value or a refusal (a reply string), never raises: what a client
sends is the client's problem, answered with the RFC's code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .._errors import LocalProtocolError
from ._commands import validate_address
from ._server_events import Params

__all__ = ["Envelope", "parse_bdat", "parse_mail", "parse_rcpt", "xtext_decode"]

_PATH = re.compile(r"(?:FROM|TO):\s?<([^<>]*)>(.*)", re.IGNORECASE | re.DOTALL)
_BDAT = re.compile(r"(\d{1,12})( +LAST)? *", re.IGNORECASE)
_XTEXT = re.compile(r"\+([0-9A-F]{2})")
_NOTIFY = frozenset({"SUCCESS", "FAILURE", "DELAY"})
_SYNTAX = "501 5.5.4 Syntax: {} {}:<address>"


@dataclass(frozen=True, slots=True)
class Envelope:
    """A parsed path and its parameters."""

    address: str
    params: Params


def xtext_decode(text: str) -> str | None:
    """RFC 3461 xtext -> text (its octets read as UTF-8); None when malformed."""
    if "+" in _XTEXT.sub("", text) or "=" in text or not text.isascii():
        return None
    octets = bytearray()
    for index, part in enumerate(_XTEXT.split(text)):
        # split() alternates the text between escapes and the escapes' hex digits.
        octets += bytes.fromhex(part) if index % 2 else part.encode("ascii")
    try:
        return octets.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _params(text: str) -> Params | None:
    """``" SIZE=10 SMTPUTF8"`` -> ``{"SIZE": "10", "SMTPUTF8": None}``; None if malformed."""
    if text and not text.startswith(" "):
        return None
    params: Params = {}
    for word in text.split():
        key, sep, value = word.partition("=")
        if not key.replace("-", "").isalnum() or (sep and not value) or key.upper() in params:
            return None
        params[key.upper()] = value if sep else None
    return params


def _path(
    argument: str, verb: str, keyword: str, *, null_allowed: bool, strict: bool
) -> Envelope | str:
    match = _PATH.fullmatch(argument)
    params = _params(match.group(2)) if match else None
    if match is None or params is None or not argument.upper().startswith(keyword):
        return _SYNTAX.format(verb, keyword)
    address = match.group(1)
    try:
        if strict:
            validate_address(address, smtputf8=True, null_allowed=null_allowed)
        elif not (address or null_allowed):
            raise LocalProtocolError("empty address")
    except LocalProtocolError:
        return f"501 5.1.{7 if verb == 'MAIL' else 3} Bad address syntax"
    return Envelope(address, params)


def parse_mail(argument: str, *, strict: bool = True) -> Envelope | str:
    """``strict=False`` takes whatever is between the brackets (the empty path too)."""
    return _path(argument, "MAIL", "FROM", null_allowed=True, strict=strict)


def parse_rcpt(argument: str, *, strict: bool = True) -> Envelope | str:
    """``strict=False`` takes whatever non-empty text is between the brackets."""
    return _path(argument, "RCPT", "TO", null_allowed=False, strict=strict)


def parse_notify(value: str | None) -> frozenset[str] | None:
    """NOTIFY=NEVER or a list of SUCCESS, FAILURE, DELAY; None when malformed."""
    words = frozenset((value or "").upper().split(","))
    if words == {"NEVER"} or (words and words <= _NOTIFY):
        return words
    return None


def parse_orcpt(value: str | None) -> tuple[str, str] | None:
    """ORCPT=addr-type;xtext -> (type, address); None when malformed."""
    kind, sep, encoded = (value or "").partition(";")
    decoded = xtext_decode(encoded) if sep and kind else None
    return None if decoded is None else (kind.lower(), decoded)


def parse_bdat(argument: str) -> tuple[int, bool] | None:
    """``"123 LAST"`` -> (123, True); None when malformed."""
    match = _BDAT.fullmatch(argument)
    return None if match is None else (int(match.group(1)), match.group(2) is not None)
