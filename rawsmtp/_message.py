"""Message intake: what ``send()`` accepts, turned into an envelope and a stream of chunks.

Accepted messages: ``bytes``/``bytearray``/``memoryview``, ``str`` (UTF-8), an
``email.message.Message``, a binary file object, or an iterable of ``bytes`` chunks. The
envelope is given (an :class:`Envelope` or a Nodemailer-style dict) or derived from the headers:
Sender, else From; To, Cc and Bcc. A Bcc header is never transmitted.

Everything that can be checked before a connection is used is checked here, so invalid input
raises a ``ValueError`` subclass from ``send()`` itself.
"""

from __future__ import annotations

import copy
import dataclasses
import email.utils
import functools
import io
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Literal

from .protocol import LocalProtocolError, validate_address
from .protocol._transaction import Transaction

if TYPE_CHECKING:
    import email.message

__all__ = ["CHUNK_SIZE", "Envelope", "PreparedMessage", "prepare_message"]

CHUNK_SIZE = 64 * 1024
# How much of a stream is read to find its header block when the envelope must come from it.
MAX_HEADER_BLOCK = 1024 * 1024
# Header fields read from a message (names lower-cased), each with its values in order.
_Headers = dict[str, list[str]]
_WANTED_FIELDS = frozenset({"from", "sender", "to", "cc", "bcc", "message-id", "date"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """The SMTP envelope of one message (RFC 5321 MAIL FROM and RCPT TO, plus DSN options).

    ``mail_from`` may be ``""`` (the null reverse-path, for bounces). ``notify``, ``ret``,
    ``envid`` and ``orcpt`` are RFC 3461 DSN requests; ``requiretls`` is RFC 8689. Addresses are
    validated on creation (no CR, LF, NUL, brackets or spaces; non-ASCII means SMTPUTF8).
    """

    mail_from: str
    rcpt_to: tuple[str, ...]
    ret: Literal["FULL", "HDRS"] | None = None
    envid: str | None = None
    notify: frozenset[str] | None = None
    orcpt: bool = False
    requiretls: bool = False
    _prototype: Transaction = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.rcpt_to, str):
            object.__setattr__(self, "rcpt_to", (self.rcpt_to,))
        else:
            object.__setattr__(self, "rcpt_to", tuple(self.rcpt_to))
        if self.notify is not None:
            object.__setattr__(self, "notify", frozenset(v.upper() for v in self.notify))
        # The protocol's own serialisation is the one validator of what goes on the wire; the
        # transaction it validated is the prototype of every message's own.
        prototype = Transaction(
            mail_from=self.mail_from,
            recipients=self.rcpt_to,
            smtputf8=self.smtputf8,
            ret=self.ret,
            envid=self.envid,
            notify=self.notify,
            orcpt=self.orcpt,
            requiretls=self.requiretls,
        )
        object.__setattr__(self, "_prototype", prototype)

    @property
    def smtputf8(self) -> bool:
        """Whether an address needs SMTPUTF8 (RFC 6531)."""
        return not all(address.isascii() for address in (self.mail_from, *self.rcpt_to))

    def transaction(
        self,
        *,
        size: int | None,
        body: Literal["8BITMIME"] | None,
        smtputf8: bool,
        tag: object = None,
    ) -> Transaction:
        """The protocol transaction for this envelope; ``smtputf8`` may only add to the need."""
        return self._prototype.derive(size=size, body=body, smtputf8=smtputf8, tag=tag)


@dataclass(slots=True, eq=False)
class PreparedMessage:
    """A message ready for the pool: its envelope, what is known of its body, and the body.

    ``size`` is the byte count when known up front (bytes, Message, seekable file), else None.
    ``eight_bit`` is None when the body is a stream that was not scanned. ``utf8_headers`` says
    the header block has non-ASCII bytes (RFC 6532): SMTPUTF8 is requested where offered.
    ``restartable`` says whether :meth:`chunks` may be called again after a failed attempt.
    """

    envelope: Envelope
    message_id: str | None
    size: int | None
    eight_bit: bool | None
    restartable: bool
    utf8_headers: bool
    _source: bytes | _Source = field(repr=False)  # in-memory content as itself: no object more

    @property
    def smtputf8(self) -> bool:
        return self.envelope.smtputf8

    def chunks(self) -> Iterator[bytes]:
        source = self._source
        if not isinstance(source, bytes):
            return source.chunks()
        if len(source) <= CHUNK_SIZE:
            return iter((source,))
        view = memoryview(source)
        return (bytes(view[i : i + CHUNK_SIZE]) for i in range(0, len(view), CHUNK_SIZE))

    def prepend(self, head: bytes) -> PreparedMessage:
        """This message with ``head`` (header fields, e.g. DKIM-Signature) before its content."""
        source = self._source
        content = head + source if isinstance(source, bytes) else source.prepend(head)
        size = None if self.size is None else self.size + len(head)
        return dataclasses.replace(self, size=size, _source=content)


class _Source:
    """Where a streamed body comes from: a file (rewound for each attempt when seekable), or an
    iterator. ``prefix`` replaces the first ``skip`` bytes (a header block without its Bcc)."""

    __slots__ = ("_file", "_prefix", "_skip", "_stream", "file_start")

    def __init__(
        self,
        *,
        stream: Iterator[bytes] | None = None,
        file: IO[bytes] | None = None,
        prefix: bytes = b"",
        skip: int = 0,
    ) -> None:
        self._stream, self._file = stream, file
        self._prefix, self._skip = prefix, skip
        self.file_start = file.tell() if file is not None and _seekable(file) else None

    def raw_chunks(self) -> Iterator[bytes]:
        """The content as it is, from where a new attempt starts (no prefix applied)."""
        if self._file is not None:
            if self.file_start is not None:
                self._file.seek(self.file_start + self._skip)
            file = self._file
            return iter(lambda: _read(file), b"")
        assert self._stream is not None
        return self._stream

    def replace_head(self, head: bytes, prefix: bytes) -> _Source:
        """This source with its first ``len(head)`` bytes (already read) replaced by ``prefix``."""
        if self._file is not None and self.file_start is not None:
            self._file.seek(self.file_start)
            return _Source(file=self._file, prefix=prefix, skip=len(head))
        return _Source(stream=self.raw_chunks(), file=self._file, prefix=prefix)

    def chunks(self) -> Iterator[bytes]:
        return _chain(self._prefix, self.raw_chunks())

    def prepend(self, head: bytes) -> _Source:
        source = copy.copy(self)
        source._prefix = head + self._prefix
        return source


def _read(file: IO[bytes]) -> bytes:
    chunk = file.read(CHUNK_SIZE)
    if not isinstance(chunk, bytes | bytearray):
        raise LocalProtocolError("file objects must be opened in binary mode")
    return bytes(chunk)


def _seekable(file: IO[bytes]) -> bool:
    try:
        return bool(file.seekable())
    except (AttributeError, ValueError):
        return False


def prepare_message(
    message: Any,
    envelope: Envelope | Mapping[str, Any] | None,
    dkim: Callable[[PreparedMessage], PreparedMessage] | None = None,
) -> PreparedMessage:
    """Validate and normalise what ``send()`` was given (see the module docstring); ``dkim``
    (the ``dkim=`` option, a rawsmtp.dkim.Signatures) signs the result as it will be sent."""
    prepared = _intake(message, envelope)
    return prepared if dkim is None else dkim(prepared)


def _intake(message: Any, envelope: Envelope | Mapping[str, Any] | None) -> PreparedMessage:
    # email.message is not imported for this check: a Message cannot exist before it is.
    email_message = sys.modules.get("email.message")
    if email_message is not None and isinstance(message, email_message.Message):
        return _from_bytes(_flatten(message), envelope, add_missing=True)
    if isinstance(message, str):
        message = message.encode("utf-8")
    if isinstance(message, bytes | bytearray | memoryview):
        return _from_bytes(bytes(message), envelope)
    if hasattr(message, "read"):
        return _from_stream(_Source(file=message), envelope, _file_size(message))
    if isinstance(message, Iterable):
        return _from_stream(_Source(stream=_checked_chunks(message)), envelope, None)
    raise LocalProtocolError(f"cannot send a message of type {type(message).__name__}")


def _flatten(message: email.message.Message) -> bytes:
    """Serialise with CRLF line ends (the Bcc header is removed from the bytes afterwards)."""
    import email.generator
    import email.policy

    policy = message.policy if isinstance(message.policy, email.policy.EmailPolicy) else None
    policy = (policy or email.policy.SMTP).clone(linesep="\r\n")
    out = io.BytesIO()
    email.generator.BytesGenerator(out, policy=policy).flatten(message)
    return out.getvalue()


def _from_bytes(
    data: bytes, envelope: Envelope | Mapping[str, Any] | None, *, add_missing: bool = False
) -> PreparedMessage:
    """In-memory content. ``add_missing`` (for an email.message.Message) adds the Message-ID
    and Date it lacks; raw bytes are sent exactly as given, but for a Bcc field."""
    headers = _parse_headers(data)
    resolved = _envelope(envelope, headers)
    message_id = _message_id(headers)
    if "bcc" in headers:
        data = _strip_bcc(data)
    if add_missing:
        data, message_id = _add_missing_headers(data, headers, resolved, message_id)
    eight_bit = not data.isascii()
    return PreparedMessage(
        envelope=resolved,
        message_id=message_id,
        size=len(data),
        eight_bit=eight_bit,
        restartable=True,
        utf8_headers=eight_bit and not _header_block(data).isascii(),
        _source=data,
    )


def _add_missing_headers(
    data: bytes, headers: _Headers, envelope: Envelope, message_id: str | None
) -> tuple[bytes, str | None]:
    added = b""
    if message_id is None:
        # The sender's domain, never socket.getfqdn(): make_msgid's default may block on DNS.
        domain = envelope.mail_from.rpartition("@")[2] or "rawsmtp.invalid"
        message_id = email.utils.make_msgid(domain=domain.encode("idna").decode("ascii"))
        added += f"Message-ID: {message_id}\r\n".encode("ascii")
    if "date" not in headers:
        added += f"Date: {email.utils.formatdate(localtime=True)}\r\n".encode("ascii")
    return added + data, message_id


def _from_stream(
    source: _Source, envelope: Envelope | Mapping[str, Any] | None, size: int | None
) -> PreparedMessage:
    """A stream: read only its header block, and only when the envelope must come from it."""
    message_id = None
    if envelope is None:
        head = _read_header_block(source.raw_chunks())
        headers = _parse_headers(head)
        envelope = _envelope(None, headers)
        message_id = _message_id(headers)
        prefix = _strip_bcc(head) if "bcc" in headers else head
        if size is not None:
            size -= len(head) - len(prefix)
        source = source.replace_head(head, prefix)
    return PreparedMessage(
        envelope=_envelope(envelope, None),
        message_id=message_id,
        size=size,
        eight_bit=None,
        restartable=source.file_start is not None,
        utf8_headers=False,  # unknown without reading the stream; SMTPUTF8 still follows addresses
        _source=source,
    )


def _read_header_block(chunks: Iterator[bytes]) -> bytes:
    """Read whole chunks until the header block has ended (or MAX_HEADER_BLOCK is passed)."""
    head = bytearray()
    for chunk in chunks:
        head += chunk
        if _blank_line(head) or len(head) > MAX_HEADER_BLOCK:
            break
    return bytes(head)


def _chain(head: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if head:
        yield head
    yield from rest


def _checked_chunks(chunks: Iterable[Any]) -> Iterator[bytes]:
    for chunk in chunks:
        if not isinstance(chunk, bytes | bytearray | memoryview):
            raise LocalProtocolError(f"message chunks must be bytes, not {type(chunk).__name__}")
        yield bytes(chunk)


def _file_size(file: Any) -> int | None:
    if not _seekable(file):
        return None
    start = file.tell()
    end = file.seek(0, io.SEEK_END)
    file.seek(start)
    return int(end - start)


def _blank_line(data: bytes | bytearray) -> tuple[int, int] | None:
    """Where the empty line that ends the header block starts and ends (LF or CR LF ends).

    The usual CR LF form is searched for first: looking for LF LF through a whole CR LF
    message is slow (every LF starts a partial match), so that search stops where it would.
    """
    lf_crlf = data.find(b"\n\r\n")
    lf_lf = data.find(b"\n\n", 0, len(data) if lf_crlf == -1 else lf_crlf + 1)
    if lf_lf != -1:
        return lf_lf + 1, lf_lf + 2
    return (lf_crlf + 1, lf_crlf + 3) if lf_crlf != -1 else None


def _header_block(data: bytes) -> bytes:
    """The header block with the empty line that ends it (all of ``data`` when there is none)."""
    blank = _blank_line(data)
    return data[: blank[1]] if blank else data


def _parse_headers(data: bytes) -> _Headers:
    """The fields the envelope and the result need, unfolded and decoded as UTF-8 (RFC 6532).

    A scan of the header block, not email.parser: that costs more than the rest of a send.
    """
    fields: _Headers = {}
    current: list[str] | None = None
    for line in _header_block(data).splitlines():
        if not line:
            break
        if line[:1] in (b" ", b"\t"):
            if current is not None:
                current[-1] += " " + line.strip().decode("utf-8", "replace")
            continue
        name, colon, value = line.partition(b":")
        key = name.strip().lower().decode("ascii", "replace")
        current = fields.setdefault(key, []) if colon and key in _WANTED_FIELDS else None
        if current is not None:
            current.append(value.strip().decode("utf-8", "replace"))
    return fields


def _strip_bcc(data: bytes) -> bytes:
    """Remove every Bcc field (with its folded continuation lines) from the header block."""
    blank = _blank_line(data)
    end = blank[0] if blank else len(data)
    lines = data[:end].splitlines(keepends=True)
    kept, skipping = [], False
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                kept.append(line)
            continue
        skipping = line.lower().startswith(b"bcc:")
        if not skipping:
            kept.append(line)
    return b"".join(kept) + data[end:]


def _message_id(headers: _Headers) -> str | None:
    values = headers.get("message-id")
    return values[0] if values and values[0] else None


def _envelope(given: Envelope | Mapping[str, Any] | None, headers: _Headers | None) -> Envelope:
    if isinstance(given, Envelope):
        return given
    if given is not None:
        return _envelope_from_mapping(given)
    assert headers is not None
    return _envelope_from_fields(tuple(tuple(headers.get(name, ())) for name in _ADDRESS_FIELDS))


_ADDRESS_FIELDS = ("sender", "from", "to", "cc", "bcc")


# Messages sent in bulk often repeat their address fields, and an Envelope is immutable: one per
# distinct set of fields spares both the memory of each queued message's own and its validation.
@functools.lru_cache(maxsize=256)
def _envelope_from_fields(fields: tuple[tuple[str, ...], ...]) -> Envelope:
    """The envelope of the header fields named in _ADDRESS_FIELDS (their values, in order)."""
    sender, from_, to, cc, bcc = (_addresses(values) for values in fields)
    senders = sender or from_
    recipients = to + cc + bcc
    if not senders:
        raise LocalProtocolError("no envelope given and the message has no From or Sender")
    if not recipients:
        raise LocalProtocolError("no envelope given and the message has no To, Cc or Bcc")
    return Envelope(mail_from=senders[0], rcpt_to=tuple(dict.fromkeys(recipients)))


def _addresses(values: tuple[str, ...]) -> list[str]:
    return [address for _, address in email.utils.getaddresses(values) if address]


_ENVELOPE_KEYS = frozenset({"from", "to", "cc", "bcc", "dsn", "requiretls", "requireTLS"})
_DSN_KEYS = frozenset({"ret", "envid", "notify", "orcpt"})


def _envelope_from_mapping(given: Mapping[str, Any]) -> Envelope:
    """Nodemailer's envelope shape: from, to, cc, bcc (str or list), dsn {ret, envid, notify, orcpt}."""
    unknown = set(given) - _ENVELOPE_KEYS
    if unknown:
        raise LocalProtocolError(f"unknown envelope keys: {', '.join(sorted(unknown))}")
    dsn = dict(given.get("dsn") or {})
    if set(dsn) - _DSN_KEYS:
        raise LocalProtocolError(f"unknown dsn keys: {', '.join(sorted(set(dsn) - _DSN_KEYS))}")
    recipients = [r for key in ("to", "cc", "bcc") for r in _address_list(given.get(key), key)]
    sender = given.get("from")
    if sender is None or not isinstance(sender, str):
        raise LocalProtocolError("the envelope needs a 'from' address (use '' for a null sender)")
    notify, ret = dsn.get("notify"), dsn.get("ret")
    return Envelope(
        mail_from=_bare(sender) if sender else "",
        rcpt_to=tuple(dict.fromkeys(recipients)),
        ret=ret.upper() if isinstance(ret, str) else ret,  # type: ignore[arg-type]
        envid=dsn.get("envid"),
        notify=frozenset([notify] if isinstance(notify, str) else notify) if notify else None,
        orcpt=bool(dsn.get("orcpt")),
        requiretls=bool(given.get("requiretls") or given.get("requireTLS")),
    )


def _address_list(value: Any, key: str) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise LocalProtocolError(f"envelope '{key}' must be a str or a list of str")
    return [_bare(item) for item in items]


def _bare(address: str) -> str:
    """'Name <a@b>' or '<a@b>' -> 'a@b'; anything else is validated as it is."""
    stripped = address.strip()
    if stripped.endswith(">") and "<" in stripped:
        stripped = stripped[stripped.rindex("<") + 1 : -1]
    validate_address(stripped, smtputf8=True, null_allowed=False)
    return stripped
