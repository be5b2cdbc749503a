"""Command serialisation, with the validation that keeps caller data from becoming protocol.

Everything that goes into a command line is checked before a byte is produced: addresses must be
RFC 5321 mailboxes (checked by ._address: no CR, LF, NUL, ``<``, ``>`` or white space outside a
quoted local part, so no ESMTP parameter or command can be smuggled in), non-ASCII needs SMTPUTF8, and
free-text parameters (ENVID, ORCPT) are xtext-encoded (RFC 3461) or utf-8-addr-xtext (RFC 6533).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable

from .._errors import LocalProtocolError
from ._address import validate_address

__all__ = [
    "auth",
    "bdat",
    "check_size",
    "ehlo",
    "helo",
    "lhlo",
    "mail",
    "orcpt_value",
    "rcpt",
    "sasl_response",
    "size_parameter",
    "validate_address",
    "validate_hostname",
    "vrfy",
    "xtext",
]

DATA = b"DATA\r\n"
RSET = b"RSET\r\n"
NOOP = b"NOOP\r\n"
QUIT = b"QUIT\r\n"
STARTTLS = b"STARTTLS\r\n"
AUTH_CANCEL = b"*\r\n"

# RFC 4954 section 4: the AUTH command line, CRLF included, is limited to 512 octets.
MAX_AUTH_LINE = 512

# A domain (letters, digits, hyphens, and underscores that real machine names carry) or an
# address literal such as [192.0.2.1] or [IPv6:2001:db8::1].
_HOSTNAME = re.compile(
    r"(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*"
    r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?"
    r"|\[[A-Za-z0-9:.]+\]"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NOTIFY_VALUES = frozenset({"SUCCESS", "FAILURE", "DELAY"})


def validate_hostname(name: str) -> str:
    """Check an EHLO/HELO/LHLO name: a domain or an address literal, at most 255 characters."""
    if not isinstance(name, str) or len(name) > 255 or not _HOSTNAME.fullmatch(name):
        raise LocalProtocolError(f"invalid EHLO name: {name!r}")
    return name


def xtext(value: str) -> str:
    """RFC 3461 xtext: printable ASCII except '+' and '=' as is, everything else as +XX."""
    return "".join(
        chr(byte) if 33 <= byte <= 126 and byte not in (43, 61) else f"+{byte:02X}"
        for byte in value.encode("utf-8")
    )


def orcpt_value(address: str) -> str:
    """The ORCPT parameter value for an address: rfc822 xtext, or RFC 6533 utf-8-addr-xtext."""
    if address.isascii():
        return "rfc822;" + xtext(address)
    encoded = "".join(
        char if 33 <= ord(char) <= 126 and char not in "+=\\" else f"\\x{{{ord(char):X}}}"
        for char in address
    )
    return "utf-8;" + encoded


def _line(text: str) -> bytes:
    return text.encode("utf-8") + b"\r\n"


def ehlo(name: str) -> bytes:
    return _line("EHLO " + validate_hostname(name))


def helo(name: str) -> bytes:
    return _line("HELO " + validate_hostname(name))


def lhlo(name: str) -> bytes:
    return _line("LHLO " + validate_hostname(name))


def vrfy(text: str) -> bytes:
    if not text or _CONTROL.search(text):
        raise LocalProtocolError(f"invalid VRFY argument: {text!r}")
    return _line("VRFY " + text)


def size_parameter(size: int) -> str:
    """MAIL's SIZE parameter (RFC 1870), the first when present."""
    check_size(size)
    return f"SIZE={size}"


def check_size(size: object) -> None:
    """Refuse what cannot be a SIZE (RFC 1870 takes a count of octets); None is no SIZE."""
    if size is not None and (not isinstance(size, int) or size < 0):
        raise LocalProtocolError(f"invalid SIZE: {size!r}")


def mail(
    address: str,
    *,
    size: int | None = None,
    body: str | None = None,
    smtputf8: bool = False,
    ret: str | None = None,
    envid: str | None = None,
    requiretls: bool = False,
) -> bytes:
    """MAIL FROM with the ESMTP parameters the caller decided to send."""
    params = [size_parameter(size)] if size is not None else []
    if body is not None:
        if body not in ("7BIT", "8BITMIME", "BINARYMIME"):
            raise LocalProtocolError(f"invalid BODY: {body!r}")
        params.append("BODY=" + body)
    if smtputf8:
        params.append("SMTPUTF8")
    if ret is not None:
        if ret not in ("FULL", "HDRS"):
            raise LocalProtocolError(f"invalid RET: {ret!r}")
        params.append("RET=" + ret)
    if envid is not None:
        if not envid or len(envid) > 100:
            raise LocalProtocolError("ENVID must have 1 to 100 characters")
        params.append("ENVID=" + xtext(envid))
    if requiretls:
        params.append("REQUIRETLS")
    path = validate_address(address, smtputf8=smtputf8, null_allowed=True)
    return _line(" ".join([f"MAIL FROM:<{path}>", *params]))


def rcpt(
    address: str,
    *,
    smtputf8: bool = False,
    notify: Iterable[str] | None = None,
    orcpt: bool = False,
) -> bytes:
    """RCPT TO with optional DSN parameters (RFC 3461)."""
    params: list[str] = []
    if notify is not None:
        values = sorted({value.upper() for value in notify})
        if not values or not (values == ["NEVER"] or set(values) <= _NOTIFY_VALUES):
            raise LocalProtocolError(f"invalid NOTIFY: {values!r}")
        params.append("NOTIFY=" + ",".join(values))
    path = validate_address(address, smtputf8=smtputf8)
    if orcpt:
        params.append("ORCPT=" + orcpt_value(path))
    return _line(" ".join([f"RCPT TO:<{path}>", *params]))


def bdat(size: int, *, last: bool) -> bytes:
    return b"BDAT %d LAST\r\n" % size if last else b"BDAT %d\r\n" % size


def auth(mechanism: str, initial_response: bytes | None) -> bytes:
    """The AUTH line; an initial response that would break the 512-octet limit raises."""
    if not mechanism or not mechanism.replace("-", "").replace("_", "").isalnum():
        raise LocalProtocolError(f"invalid SASL mechanism name: {mechanism!r}")
    line = "AUTH " + mechanism.upper()
    if initial_response is not None:
        line += " " + (base64.b64encode(initial_response).decode("ascii") or "=")
    encoded = _line(line)
    if len(encoded) > MAX_AUTH_LINE:
        raise LocalProtocolError("AUTH line longer than 512 octets")
    return encoded


def sasl_response(response: bytes) -> bytes:
    """One base64 line answering a 334 challenge (an empty response is an empty line)."""
    return base64.b64encode(response) + b"\r\n"
