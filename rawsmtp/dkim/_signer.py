"""DKIM-Signature header fields (RFC 6376 section 3.5): :class:`DKIMSigner` (one key) and
:class:`Signatures` (what the pool's ``dkim=`` option becomes: every signature a message gets).

A message is signed as it will be transmitted: after the intake in ``rawsmtp._message`` (Bcc
removed, Message-ID and Date added to a ``Message``) and with the wire's CR LF line ends. A
source that can be read twice is hashed in one pass and then sent; any other is buffered, up to
``max_buffer`` bytes, and sent from memory.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._errors import SMTPConfigError
from ..protocol import LocalProtocolError
from ..protocol._data import to_crlf
from ._canon import canonical_header, digest, header_fields
from ._keys import PrivateKey, key_algorithm, load_private_key, public_key_data, sign

if TYPE_CHECKING:
    from .._message import PreparedMessage

__all__ = ["DEFAULT_HEADERS", "OVERSIGNED", "DKIMSigner", "Signatures", "signatures"]

# RFC 6376 section 5.4.1's list, with the fields that identify and shape the message.
DEFAULT_HEADERS = (
    "from", "sender", "reply-to", "subject", "date", "to", "cc", "message-id",
    "in-reply-to", "references", "mime-version", "content-type", "content-transfer-encoding",
    "resent-date", "resent-from", "resent-sender", "resent-to", "resent-cc", "resent-message-id",
    "list-id", "list-help", "list-unsubscribe", "list-unsubscribe-post", "list-subscribe",
    "list-post", "list-owner", "list-archive",
)  # fmt: skip
# Signed once more than they occur (section 8.15): no copy of them can be added unnoticed.
OVERSIGNED = ("from", "subject", "to", "date")
_CANONICALIZATIONS = ("simple", "relaxed")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_FIELD_NAME = re.compile(r"[!-9;-~]+")  # RFC 5322 ftext
_LINE = 76  # fold before this column
DEFAULT_MAX_BUFFER = 16 * 1024 * 1024


def _fail(message: str, option: str = "dkim") -> SMTPConfigError:
    return SMTPConfigError(f"{option}: {message}", option=option)


class DKIMSigner:
    """Signs messages with one key for one domain and selector.

    ``private_key`` is PEM (PKCS#8 RSA or Ed25519, or PKCS#1 RSA) or DER. ``headers`` are the
    field names to sign (each instance present is signed); ``oversign`` (True for
    :data:`OVERSIGNED`, or names) signs names once more. ``canonicalization`` is
    ``header/body`` of ``simple`` and ``relaxed``. ``timestamp`` adds ``t=``; ``expiration``
    (seconds) adds ``t=`` and ``x=``. Invalid settings raise :class:`~rawsmtp.SMTPConfigError`.
    """

    __slots__ = (
        "algorithm", "body_canon", "domain", "expiration", "header_canon", "headers", "key",
        "max_buffer", "oversign", "selector", "timestamp",
    )  # fmt: skip

    def __init__(
        self,
        domain: str,
        selector: str,
        private_key: str | bytes,
        *,
        headers: Iterable[str] | str = DEFAULT_HEADERS,
        oversign: bool | Iterable[str] = False,
        canonicalization: str = "relaxed/relaxed",
        timestamp: bool = False,
        expiration: float | None = None,
        max_buffer: int = DEFAULT_MAX_BUFFER,
    ) -> None:
        self.domain = _domain(domain, "domain")
        self.selector = _domain(selector, "selector")
        try:
            self.key: PrivateKey = load_private_key(private_key)
        except (ValueError, TypeError) as error:
            raise _fail(f"private_key: {error}") from None
        self.algorithm = f"{key_algorithm(self.key)}-sha256"
        self.header_canon, self.body_canon = _canonicalization(canonicalization)
        names = _names(headers, "headers")
        if b"from" not in names:
            raise _fail("headers: From must be signed (RFC 6376 section 5.4)")
        over = _names(
            OVERSIGNED if oversign is True else () if oversign is False else oversign, "oversign"
        )
        self.headers = tuple(dict.fromkeys(names + over))
        self.oversign = frozenset(over)
        if expiration is not None and (isinstance(expiration, bool) or not expiration > 0):
            raise _fail(f"expiration: must be a number of seconds above 0, not {expiration!r}")
        if isinstance(max_buffer, bool) or not isinstance(max_buffer, int) or max_buffer < 0:
            raise _fail(f"max_buffer: must be an int >= 0, not {max_buffer!r}")
        self.timestamp = timestamp or expiration is not None
        self.expiration = expiration
        self.max_buffer = max_buffer

    def __repr__(self) -> str:
        return f"DKIMSigner(domain={self.domain!r}, selector={self.selector!r}, {self.algorithm})"

    @property
    def dns_name(self) -> str:
        """Where the public key is published: ``selector._domainkey.domain``."""
        return f"{self.selector}._domainkey.{self.domain}"

    def dns_record(self) -> str:
        """The TXT record to publish at :attr:`dns_name` (RFC 6376 section 3.6.1)."""
        return f"v=DKIM1; k={key_algorithm(self.key)}; p={public_key_data(self.key)}"

    def signature(self, message: bytes | str) -> bytes:
        """The ``DKIM-Signature`` field (ending in CR LF) for ``message`` as sent."""
        return Signatures((self,)).fields(_message_bytes(message))

    def sign(self, message: bytes | str) -> bytes:
        """``message`` as it goes on the wire (CR LF line ends, ending in one), its
        ``DKIM-Signature`` field first."""
        # Empty: one CR LF, the blank line that ends the header block the signature then heads.
        data = to_crlf(_message_bytes(message)) or b"\r\n"
        return self.signature(data) + data

    def field(self, fields: Sequence[tuple[bytes, bytes]], body_hash: bytes, now: int) -> bytes:
        """The signature field for a message's header ``fields`` and body hash."""
        relaxed = self.header_canon == "relaxed"
        names, signed = self._select(fields, relaxed)
        tags = ["v=1;", f"a={self.algorithm};", f"c={self.header_canon}/{self.body_canon};"]
        tags += [f"d={self.domain};", f"s={self.selector};"]
        if self.timestamp:
            tags.append(f"t={now};")
            if self.expiration is not None:
                tags.append(f"x={now + max(1, round(self.expiration))};")
        parts = [("", "DKIM-Signature:"), *((" ", tag) for tag in tags)]
        parts += [("", name + ":") if i else (" ", f"h={name}:") for i, name in enumerate(names)]
        parts[-1] = (parts[-1][0], parts[-1][1][:-1] + ";")
        parts += [(" ", f"bh={base64.b64encode(body_hash).decode('ascii')};"), (" ", "b=")]
        unsigned = _fold(parts)
        own = canonical_header(unsigned + b"\r\n", relaxed)[:-2]
        value = base64.b64encode(sign(self.key, b"".join(signed) + own)).decode("ascii")
        parts += [("", value[i : i + 16]) for i in range(0, len(value), 16)]
        return _fold(parts) + b"\r\n"

    def _select(
        self, fields: Sequence[tuple[bytes, bytes]], relaxed: bool
    ) -> tuple[list[str], list[bytes]]:
        """The h= names and the canonical fields they sign, each name's instances bottom up."""
        present: dict[bytes, list[bytes]] = {}
        for name, raw in fields:
            present.setdefault(name, []).append(raw)
        if b"from" not in present:
            raise LocalProtocolError(
                "DKIM signing needs a From header field (RFC 6376 section 5.4)"
            )
        names: list[str] = []
        signed: list[bytes] = []
        for name in self.headers:
            for raw in reversed(present.get(name, ())):
                names.append(name.decode("ascii"))
                signed.append(canonical_header(raw, relaxed))
            if name in self.oversign:
                names.append(name.decode("ascii"))
        return names, signed


class Signatures:
    """Every DKIM signature a message gets (one per signer); what ``dkim=`` becomes.

    Called with a prepared message, returns it with its signature fields first.
    """

    __slots__ = ("max_buffer", "signers")

    def __init__(self, signers: Sequence[DKIMSigner]) -> None:
        self.signers = tuple(signers)
        self.max_buffer = min(signer.max_buffer for signer in self.signers)

    def __repr__(self) -> str:
        return f"Signatures({list(self.signers)!r})"

    def __call__(self, prepared: PreparedMessage) -> PreparedMessage:
        if not prepared.restartable:
            prepared = self._buffered(prepared)
        return prepared.prepend(self.fields(prepared.chunks()))

    def fields(self, message: bytes | Iterator[bytes]) -> bytes:
        """Every signature field for a message given whole or as chunks."""
        chunks = iter((message,)) if isinstance(message, bytes) else message
        block, bodies = digest(chunks, {signer.body_canon for signer in self.signers})
        fields = header_fields(block)
        now = int(time.time())
        return b"".join(s.field(fields, bodies[s.body_canon], now) for s in self.signers)

    def _buffered(self, prepared: PreparedMessage) -> PreparedMessage:
        """A stream read once, into memory: the signature goes before what it covers."""
        from .._message import prepare_message

        data = bytearray()
        for chunk in prepared.chunks():
            data += chunk
            if len(data) > self.max_buffer:
                raise LocalProtocolError(
                    f"a stream that cannot be read twice is signed from memory, up to"
                    f" max_buffer={self.max_buffer} bytes, and this one is longer: give a"
                    " seekable file, bytes, a str or an email.message.Message instead"
                )
        return prepare_message(bytes(data), prepared.envelope)


def signatures(value: Any, option: str = "dkim") -> Signatures:
    """The ``dkim=`` option's value checked: a :class:`DKIMSigner`, a mapping of its arguments
    (Nodemailer's ``domainName``, ``keySelector``, ``privateKey``, ``headerFieldNames`` too),
    or a list of those; several mean several signatures (e.g. RSA and Ed25519)."""
    if isinstance(value, Signatures):
        return value
    items = list(value) if isinstance(value, list | tuple) else [value]
    if not items:
        raise _fail("an empty list signs nothing; use None for no signature", option)
    return Signatures([_signer(item, option) for item in items])


_NODEMAILER_KEYS = {
    "domainName": "domain",
    "keySelector": "selector",
    "privateKey": "private_key",
    "headerFieldNames": "headers",
}


def _signer(item: Any, option: str) -> DKIMSigner:
    if isinstance(item, DKIMSigner):
        return item
    if not isinstance(item, Mapping):
        raise _fail(
            f"must be a DKIMSigner, a dict of its arguments or a list, not {item!r}", option
        )
    arguments: dict[str, Any] = {_NODEMAILER_KEYS.get(k, str(k)): v for k, v in item.items()}
    try:
        return DKIMSigner(**arguments)
    except TypeError as error:
        raise _fail(str(error).replace("DKIMSigner.__init__() ", ""), option) from None
    except SMTPConfigError as error:
        raise _fail(str(error).removeprefix("dkim: "), option) from None


def _domain(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(f"{what}: must be a non-empty str, not {value!r}")
    try:
        ascii_name = value.rstrip(".").encode("idna").decode("ascii")
    except UnicodeError:
        raise _fail(f"{what}: {value!r} is not a domain name") from None
    if len(ascii_name) > 253 or not all(_LABEL.fullmatch(label) for label in ascii_name.split(".")):
        raise _fail(f"{what}: {value!r} is not a domain name")
    return ascii_name.lower()


def _canonicalization(value: Any) -> tuple[str, str]:
    """``header/body``; one word means ``header/simple`` (RFC 6376 section 3.5, c=)."""
    if isinstance(value, str):
        header, _, body = value.lower().partition("/")
        body = body or "simple"
        if header in _CANONICALIZATIONS and body in _CANONICALIZATIONS:
            return header, body
    raise _fail(
        f"canonicalization: must be 'relaxed/relaxed', 'simple/simple', 'relaxed/simple' or 'simple/relaxed', not {value!r}"
    )


def _names(value: Any, what: str) -> tuple[bytes, ...]:
    items = value.split(":") if isinstance(value, str) else value
    try:
        names = tuple(str(name).strip().lower() for name in items)
    except TypeError:
        raise _fail(f"{what}: must be field names, not {value!r}") from None
    if not all(isinstance(name, str) and _FIELD_NAME.fullmatch(name) for name in names):
        raise _fail(f"{what}: {value!r} has a name that is not a header field name")
    return tuple(name.encode("ascii") for name in names)


def _message_bytes(message: bytes | str) -> bytes:
    if isinstance(message, str):
        return message.encode("utf-8")
    if isinstance(message, bytes | bytearray | memoryview):
        return bytes(message)
    raise LocalProtocolError(f"DKIMSigner signs bytes or str, not {type(message).__name__}")


def _fold(parts: Sequence[tuple[str, str]]) -> bytes:
    """Join (glue, text) parts on lines shorter than _LINE; where a line is full, a folding
    CR LF TAB replaces the glue (FWS is allowed there in every tag a signature has)."""
    lines = [""]
    for glue, text in parts:
        if lines[-1] and len(lines[-1]) + len(glue) + len(text) > _LINE:
            lines.append("\t" + text)
        else:
            lines[-1] += glue + text
    return "\r\n".join(lines).encode("ascii")
