"""The one address grammar: RFC 5322 address lists and RFC 5321 paths, with RFC 6531/6532 UTF-8.

Every way an address enters rawsmtp goes through here: :func:`parse_mailbox` for a string that
names one mailbox (an :class:`~rawsmtp.Envelope` field, a dict envelope entry), bare or as
``Display Name <addr>``; :func:`parse_address_list` for a header field's value (groups, comments,
quoted local parts and display names, encoded words as the atoms they are); and
:func:`validate_address` for what goes between ``<`` and ``>`` on the wire. The first two return
the canonical addr-spec: a local part quoted only when it is not a dot-atom, comments and folding
whitespace dropped. Anything else (two addresses where one is expected, CR, LF, NUL, unbalanced
quotes or brackets, an empty local part or domain, undecodable bytes) is a
:class:`LocalProtocolError` naming the address.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from .._errors import LocalProtocolError

__all__ = [
    "ascii_address",
    "parse_address_list",
    "parse_mailbox",
    "quote_local_part",
    "validate_address",
]

# RFC 5321 section 4.5.3.1.3: a path is at most 256 octets, its brackets included.
MAX_PATH = 254

_ATEXT = "A-Za-z0-9!#$%&'*+/=?^_`{|}~\\-"  # the hyphen escaped: more ranges follow it
# The everyday address (ASCII dot-atom @ LDH domain): one match proves it valid and canonical.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_PLAIN_ADDRESS = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*@{_LABEL}(?:\.{_LABEL})*")
# RFC 6531 widens atext to every non-ASCII character (RFC 6532 UTF8-non-ascii).
_DOT_ATOM = re.compile(rf"[{_ATEXT}\u00a0-\U0010ffff]+(?:\.[{_ATEXT}\u00a0-\U0010ffff]+)*")
_ASCII_LABEL = re.compile(_LABEL)
_LDH_TAG = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
# Controls (C0, DEL, C1) and lone surrogates (what undecodable bytes become) are never text.
_NOT_TEXT = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\ud800-\udfff]")
_SPECIALS = frozenset('()<>[]:;@\\,."')
# Folding: a line end followed by white space is white space (RFC 5322 section 2.2.3).
_FOLD = re.compile(r"\r?\n(?=[ \t])")


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "atom", "quoted" (value unquoted), "literal" (with brackets) or a special
    value: str
    spaced: bool  # white space or a comment came before it


def _fail(text: str, reason: str) -> LocalProtocolError:
    return LocalProtocolError(f"invalid address {text!r}: {reason}")


def _tokens(text: str, *, folded: bool) -> list[_Token]:
    """Split text into atoms, quoted strings, domain literals and specials. ``folded`` (a
    header field's value) lets a line end followed by white space be white space."""
    unfolded = _FOLD.sub("", text) if folded else text
    bad = _NOT_TEXT.search(unfolded)
    if bad:
        char = bad.group()
        what = "undecodable bytes" if "\ud800" <= char <= "\udfff" else "a control character"
        raise _fail(text, f"{what} ({char!r})")
    tokens: list[_Token] = []
    index, spaced, length = 0, False, len(unfolded)
    while index < length:
        char = unfolded[index]
        if char in " \t":
            index, spaced = index + 1, True
        elif char == "(":
            index, spaced = _skip_comment(text, unfolded, index), True
        elif char == '"':
            index, value = _quoted(text, unfolded, index)
            tokens.append(_Token("quoted", value, spaced))
            spaced = False
        elif char == "[":
            end = unfolded.find("]", index)
            if end < 0 or "[" in unfolded[index + 1 : end] or "\\" in unfolded[index:end]:
                raise _fail(text, "unbalanced '['")
            tokens.append(_Token("literal", unfolded[index : end + 1], spaced))
            index, spaced = end + 1, False
        elif char in _SPECIALS:
            if char in ")]\\":
                raise _fail(text, f"stray {char!r}")
            tokens.append(_Token(char, char, spaced))
            index, spaced = index + 1, False
        else:
            end = index
            while end < length and unfolded[end] not in _SPECIALS and unfolded[end] not in " \t":
                end += 1
            tokens.append(_Token("atom", unfolded[index:end], spaced))
            index, spaced = end, False
    return tokens


def _skip_comment(text: str, unfolded: str, index: int) -> int:
    depth = 0
    while index < len(unfolded):
        char = unfolded[index]
        if char == "\\":
            index += 2
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        index += 1
        if depth == 0:
            return index
    raise _fail(text, "unbalanced '('")


def _quoted(text: str, unfolded: str, index: int) -> tuple[int, str]:
    """The quoted string starting at ``index``: where it ends and its content, unescaped."""
    value: list[str] = []
    index += 1
    while index < len(unfolded):
        char = unfolded[index]
        if char == "\\" and index + 1 < len(unfolded):
            value.append(unfolded[index + 1])
            index += 2
        elif char == '"':
            return index + 1, "".join(value)
        else:
            value.append(char)
            index += 1
    raise _fail(text, "unbalanced quote")


class _Parser:
    """Recursive descent over the tokens of one header value or one mailbox string."""

    def __init__(self, text: str, *, folded: bool = False) -> None:
        self.text = text
        self.tokens = _tokens(text, folded=folded)
        self.index = 0

    def peek(self) -> str | None:
        return self.tokens[self.index].kind if self.index < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def expect(self, kind: str, reason: str) -> _Token:
        if self.peek() != kind:
            raise _fail(self.text, reason)
        return self.take()

    def address(self, *, groups: bool) -> list[str]:
        """One address: a mailbox, or (in a header) a group of them."""
        phrase = self.words()
        kind = self.peek()
        if kind == "<":
            self.take()
            if self.peek() == "@":
                raise _fail(self.text, "source routes are not supported")
            found = self.addr_spec([])
            self.expect(">", "unbalanced '<'")
            return [found]
        if kind == ":" and phrase and groups:
            self.take()
            members: list[str] = []
            while self.peek() not in (";", None):
                if self.peek() == ",":
                    self.take()
                    continue
                members += self.address(groups=False)
            self.expect(";", "group without its closing ';'")
            return members
        if kind == "@":
            return [self.addr_spec(phrase)]
        if not phrase and kind is not None:
            raise _fail(self.text, f"unexpected {self.tokens[self.index].value!r}")
        raise _fail(self.text, "no '@' in the address" if phrase else "empty address")

    def words(self) -> list[_Token]:
        """A phrase, or the start of a local part: atoms, quoted strings and dots."""
        words: list[_Token] = []
        while self.peek() in ("atom", "quoted", "."):
            words.append(self.take())
        return words

    def addr_spec(self, local: list[_Token]) -> str:
        if not local:
            local = self.words()
        self.expect("@", "no '@' in the address")
        return _local_part(self.text, local) + "@" + self.domain()

    def domain(self) -> str:
        if self.peek() == "literal":
            return _domain_literal(self.text, self.take().value)
        labels: list[str] = []
        while True:
            label = self.expect("atom", "empty domain" if not labels else "empty domain label")
            labels.append(_domain_label(self.text, label.value))
            if self.peek() != ".":
                return ".".join(labels)
            self.take()


def _local_part(text: str, words: list[_Token]) -> str:
    """The canonical local part: a dot-atom as is, anything else quoted (RFC 5321 4.1.2)."""
    # RFC 5322 obs-local-part: words joined by dots; their content is what counts.
    parts: list[str] = []
    expect_word = True
    for word in words:
        if (word.kind == ".") == expect_word:
            raise _fail(text, "misplaced '.' in the local part")
        parts.append(word.value)
        expect_word = not expect_word
    if expect_word:
        raise _fail(text, "empty local part" if not parts else "local part ends with '.'")
    value = "".join(parts)
    if not value:
        raise _fail(text, "empty local part")
    if "\t" in value:
        raise _fail(text, "a tab in a quoted local part")
    if "<" in value or ">" in value:
        # Valid in a quoted string, but a server (and Transaction's SIZE splice) that ends the
        # path at the first '>' would read the rest as parameters: never sent.
        raise _fail(text, "'<' or '>' in the local part")
    return quote_local_part(value)


def quote_local_part(value: str) -> str:
    """A local part's value in its canonical form: a dot-atom as is, else a quoted string."""
    if _DOT_ATOM.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _domain_label(text: str, label: str) -> str:
    if label.isascii():
        if not _ASCII_LABEL.fullmatch(label):
            raise _fail(text, f"invalid domain label {label!r}")
    elif not _DOT_ATOM.fullmatch(label) or label.startswith("-") or label.endswith("-"):
        raise _fail(text, f"invalid domain label {label!r}")
    return label


def _domain_literal(text: str, literal: str) -> str:
    """[192.0.2.1], [IPv6:2001:db8::1] or a standardised tag: content (RFC 5321 4.1.3)."""
    inner = literal[1:-1]
    tag, colon, content = inner.partition(":")
    try:
        if not colon:
            ipaddress.IPv4Address(inner)
            return literal
        if tag.lower() == "ipv6":
            ipaddress.IPv6Address(content)
            return literal
    except ValueError:
        raise _fail(text, f"invalid address literal {literal!r}") from None
    if not _LDH_TAG.fullmatch(tag) or not content or not content.isascii() or " " in content:
        raise _fail(text, f"invalid address literal {literal!r}")
    return literal


def _check_length(text: str, address: str) -> str:
    if len(address.encode("utf-8")) > MAX_PATH:
        raise _fail(text, f"longer than {MAX_PATH} octets")
    return address


def parse_mailbox(text: str, *, null_allowed: bool = False) -> str:
    """One mailbox (``a@b``, ``<a@b>`` or ``Name <a@b>``) -> its canonical addr-spec.

    ``null_allowed`` accepts ``""`` and ``"<>"`` as the null reverse-path, returned as ``""``.
    """
    if not isinstance(text, str):
        raise LocalProtocolError(f"an address must be a str, not {type(text).__name__}")
    if _PLAIN_ADDRESS.fullmatch(text) and len(text) <= MAX_PATH:
        return text
    if null_allowed and text.strip() in ("", "<>"):
        return ""
    parser = _Parser(text)
    [address] = parser.address(groups=False)
    if parser.peek() is not None:
        raise _fail(text, "more than one address" if parser.peek() == "," else "trailing text")
    return _check_length(text, address)


def parse_address_list(text: str) -> list[str]:
    """The addr-specs of a header field's address list (RFC 5322 3.4), groups flattened.

    Empty members (``a@b, , c@d``, RFC 5322 obs-addr-list) and empty groups yield nothing.
    """
    parser = _Parser(text, folded=True)
    found: list[str] = []
    while parser.peek() is not None:
        if parser.peek() == ",":
            parser.take()
            continue
        found += parser.address(groups=True)
        if parser.peek() not in (",", None):
            raise _fail(text, f"unexpected {parser.tokens[parser.index].value!r}")
    return [_check_length(text, address) for address in found]


def validate_address(address: str, *, smtputf8: bool, null_allowed: bool = False) -> str:
    """Check an RFC 5321 Mailbox for use inside ``<...>``; return it unchanged.

    Stricter than :func:`parse_mailbox`: no display name, brackets, comments or white space
    outside a quoted local part. Non-ASCII needs ``smtputf8``; ``null_allowed`` permits the
    empty reverse-path of MAIL FROM:<>.
    """
    if not isinstance(address, str):
        raise LocalProtocolError(f"an address must be a str, not {type(address).__name__}")
    if _PLAIN_ADDRESS.fullmatch(address) and len(address) <= MAX_PATH:
        return address
    if not address:
        if null_allowed:
            return address
        raise LocalProtocolError("empty address")
    parser = _Parser(address)
    # A trailing comment or space precedes no token; every other one is marked on the next.
    if any(token.spaced for token in parser.tokens) or address.rstrip(" \t)") != address:
        raise _fail(address, "white space or a comment outside a quoted local part")
    parser.addr_spec([])
    if parser.peek() is not None:
        raise _fail(address, "trailing text")
    if not smtputf8 and not address.isascii():
        raise LocalProtocolError(f"non-ASCII address {address!r} needs SMTPUTF8")
    return _check_length(address, address)


def ascii_address(address: str) -> str | None:
    """The address without SMTPUTF8: a non-ASCII domain as its IDNA A-label (RFC 5890).

    None when the local part is not ASCII (no ASCII form exists) or the domain cannot be
    encoded; an ASCII address is its own ASCII form.
    """
    if address.isascii():
        return address
    local, _, domain = address.rpartition("@")
    if not local.isascii():
        return None
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        return None
