"""Message intake: what ``send()`` accepts, turned into an envelope and a stream of chunks.

Accepted messages: ``bytes``/``bytearray``/``memoryview``, ``str`` (UTF-8), an
``email.message.Message`` (any policy, compat32 and ``email.header.Header`` values included), a
binary file object, or an iterable of ``bytes`` chunks. The envelope is given (an
:class:`Envelope` or a Nodemailer-style dict) or derived from the headers: the most recent
Resent-* block when there is one (RFC 5322 section 3.6.6), else Sender or From, and To, Cc and
Bcc. Bcc and Resent-Bcc fields are never transmitted. Every address goes through the one
grammar of :mod:`rawsmtp.protocol._address`.

In-memory content is normalised here to CR LF line ends ending in CR LF, which is what either
encoder sends, so its SIZE (RFC 1870: the octets of the message, without DATA's dot-stuffing and
terminator) is exact; a seekable file is measured the same way, by reading it once more.

Everything that can be checked before a connection is used is checked here, so invalid input
raises a :class:`LocalProtocolError` from ``send()`` itself. A message source that fails while
being read raises :class:`SMTPConnectionError` (its ``__cause__`` the original error).
"""

from __future__ import annotations

import copy
import dataclasses
import email.utils
import functools
import io
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import IO, TYPE_CHECKING, Any, Literal

from ._errors import SMTPConnectionError
from .protocol import LocalProtocolError
from .protocol._address import ascii_address, parse_address_list, parse_mailbox, quote_local_part
from .protocol._data import LineEnds, to_crlf
from .protocol._frozen import builder
from .protocol._transaction import Transaction

if TYPE_CHECKING:
    import email.header
    import email.message

__all__ = ["CHUNK_SIZE", "Envelope", "PreparedMessage", "prepare_message"]

CHUNK_SIZE = 64 * 1024
# How much of a stream is read to find its header block when the envelope must come from it.
MAX_HEADER_BLOCK = 1024 * 1024
# Header fields read from a message, in order (names lower-cased): a value is the field's text,
# or the addr-specs an email.headerregistry header parsed already. ("", "") stands for any run
# of other fields: it ends a Resent- block.
_Value = str | tuple[str, ...]
_Fields = tuple[tuple[str, _Value], ...]
_OTHER: tuple[str, _Value] = ("", "")
_ADDRESS_FIELDS = frozenset({"sender", "from", "to", "cc", "bcc"})
_WANTED_FIELDS = _ADDRESS_FIELDS | {"message-id", "date"}
_HIDDEN_FIELDS = (b"bcc:", b"resent-bcc:")
# Fields a Resent- block holds once: a second one starts the next (older) block.
_ONCE_PER_BLOCK = frozenset({"resent-date", "resent-from", "resent-sender", "resent-message-id"})


@dataclass(frozen=True, slots=True)
class Envelope:
    """The SMTP envelope of one message (RFC 5321 MAIL FROM and RCPT TO, plus DSN options).

    ``Envelope(mail_from, rcpt_to, ...)``: each address is one mailbox, bare or as
    ``Name <addr>``, stored as its canonical addr-spec; ``rcpt_to`` is one such string or an
    iterable of them. ``mail_from`` may be ``""`` or ``"<>"``, the null reverse-path (for
    bounces). ``notify``, ``ret``, ``envid`` and ``orcpt`` are RFC 3461 DSN requests;
    ``requiretls`` is RFC 8689. Non-ASCII addresses need SMTPUTF8 (RFC 6531); see
    :meth:`ascii_form` for a server without it.
    """

    mail_from: str
    rcpt_to: tuple[str, ...]
    _: KW_ONLY
    ret: Literal["FULL", "HDRS"] | None = None
    envid: str | None = None
    notify: frozenset[str] | None = None
    orcpt: bool = False
    requiretls: bool = False
    _prototype: Transaction = field(init=False, repr=False, compare=False)

    if TYPE_CHECKING:  # what __init__ accepts, which __post_init__ normalises (type only)

        def __init__(
            self,
            mail_from: str,
            rcpt_to: str | Iterable[str],
            *,
            ret: Literal["FULL", "HDRS"] | None = None,
            envid: str | None = None,
            notify: Iterable[str] | None = None,
            orcpt: bool = False,
            requiretls: bool = False,
        ) -> None: ...

    def __post_init__(self) -> None:
        given = (self.rcpt_to,) if isinstance(self.rcpt_to, str) else tuple(self.rcpt_to)
        object.__setattr__(self, "mail_from", parse_mailbox(self.mail_from, null_allowed=True))
        object.__setattr__(self, "rcpt_to", tuple(parse_mailbox(r) for r in given))
        if self.notify is not None:
            object.__setattr__(self, "notify", frozenset(v.upper() for v in self.notify))
        # The protocol's own serialisation is the one validator of what goes on the wire; the
        # transaction it validated is the prototype of every message's own.
        addresses = (self.mail_from, *self.rcpt_to)
        prototype = Transaction(
            mail_from=self.mail_from,
            recipients=self.rcpt_to,
            smtputf8=not all(address.isascii() for address in addresses),
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
        return self._prototype.smtputf8  # worked out once, in __post_init__

    def ascii_form(self) -> Envelope | None:
        """This envelope for a server without SMTPUTF8: non-ASCII domains as IDNA A-labels.

        Itself when every address is ASCII; None when a local part is not ASCII (such a
        mailbox has no ASCII form: the message needs SMTPUTF8).
        """
        if not self.smtputf8:
            return self
        addresses = [ascii_address(a) for a in (self.mail_from, *self.rcpt_to)]
        if any(address is None for address in addresses):
            return None
        mail_from, *rcpt_to = (a for a in addresses if a is not None)
        return dataclasses.replace(self, mail_from=mail_from, rcpt_to=tuple(rcpt_to))

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

    ``size`` is the exact number of octets the encoders send (CR LF line ends, a final CR LF,
    no dot-stuffing) when known up front (bytes, str, Message, seekable file), else None.
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

    @property
    def crlf(self) -> bool:
        """Its chunks are in the encoders' CR LF form already (in-memory content is normalised
        here), so the core need not check their line ends again (``send_body(crlf=True)``)."""
        return isinstance(self._source, bytes)

    def without_smtputf8(self) -> PreparedMessage | None:
        """This message for a server that lacks SMTPUTF8, or None when it cannot go there.

        It can when its header block is ASCII (so a stream, whose headers were not scanned,
        cannot) and every address has an ASCII form (:meth:`Envelope.ascii_form`).
        """
        if not self.smtputf8:
            return self
        envelope = self.envelope.ascii_form()
        known_ascii = isinstance(self._source, bytes) and not self.utf8_headers
        if envelope is None or not known_ascii:
            return None
        return dataclasses.replace(self, envelope=envelope)

    def chunks(self) -> Iterator[bytes]:
        source = self._source
        if not isinstance(source, bytes):
            return source.chunks()
        if len(source) <= CHUNK_SIZE:
            return iter((source,))
        return _slices(source)

    def prepend(self, head: bytes) -> PreparedMessage:
        """This message with ``head`` (header fields, e.g. DKIM-Signature) before its content."""
        source = self._source
        content = head + source if isinstance(source, bytes) else source.prepend(head)
        size = None if self.size is None else self.size + len(head)
        return dataclasses.replace(self, size=size, _source=content)


def _slices(content: bytes) -> Iterator[bytes]:
    # Apart from PreparedMessage.chunks: its generator's variable would be a cell every call.
    view = memoryview(content)
    return (bytes(view[i : i + CHUNK_SIZE]) for i in range(0, len(view), CHUNK_SIZE))


# PreparedMessage(...) with every field given by keyword, in 40 % of the instructions (see
# protocol._frozen.builder): one is made for every message.
_in_memory = builder(
    PreparedMessage,
    "envelope",
    "message_id",
    "size",
    "eight_bit",
    "restartable",
    "utf8_headers",
    "_source",
)


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
        return _ending_in_crlf(_chain(self._prefix, self.raw_chunks()))

    def measure(self) -> int:
        """The octets the encoders will send for this content (read once; seekable files)."""
        line_ends, size = LineEnds(), 0
        for chunk in self.chunks():
            size += len(line_ends.normalise(chunk))
        return size + len(line_ends.flush())

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


def _ending_in_crlf(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The chunks, and a final CR LF when the content does not end a line (as DATA would add:
    BDAT then sends the same octets, so one SIZE is right for both)."""
    last = b"\n"
    for chunk in chunks:
        if chunk:
            last = chunk[-1:]
            yield chunk
    if last not in (b"\n", b"\r"):  # a final CR becomes CR LF in the encoders
        yield b"\r\n"


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
        return _from_email_message(message, envelope)
    if isinstance(message, str):
        message = message.encode("utf-8", "surrogateescape")
    if isinstance(message, bytes | bytearray | memoryview):
        data = bytes(message)
        head = _lower_head(data)
        fields = _header_fields(data) if envelope is None else _id_fields(data, head)
        return _from_bytes(data, _envelope(envelope, fields), fields, head=head)
    try:
        if hasattr(message, "read"):
            return _from_stream(_Source(file=message), envelope)
        if isinstance(message, Iterable):
            return _from_stream(_Source(stream=_checked_chunks(message)), envelope)
    except (LocalProtocolError, SMTPConnectionError):
        raise
    except Exception as error:
        failed = SMTPConnectionError(f"reading the message failed: {error}")
        raise failed from error
    raise LocalProtocolError(f"cannot send a message of type {type(message).__name__}")


def _from_email_message(
    message: email.message.Message, given: Envelope | Mapping[str, Any] | None
) -> PreparedMessage:
    """An email.message.Message: the envelope from its parsed header values (never from the
    flattened bytes), then flattened with CR LF, UTF-8 headers kept as such under SMTPUTF8."""
    fields = _message_fields(message)
    envelope = _envelope(given, fields)
    data = _flatten(message, utf8=envelope.smtputf8)
    return _from_bytes(data, envelope, fields, add_missing=True)


def _from_bytes(
    data: bytes,
    envelope: Envelope,
    fields: _Fields,
    *,
    add_missing: bool = False,
    head: bytes | None = None,
) -> PreparedMessage:
    """In-memory content with its header ``fields`` (and its :func:`_lower_head`, when the
    caller has it). ``add_missing`` (for an email.message.Message) adds the Message-ID and Date
    it lacks; raw bytes are sent as given, but for line ends and Bcc."""
    message_id = _message_id(fields) if fields else None
    data = to_crlf(_strip_hidden(data, head))
    if add_missing:
        added, message_id = _missing_headers(fields, envelope, message_id)
        data = added + data
    eight_bit = not data.isascii()
    utf8_headers = eight_bit and not _header_block(data).isascii()
    # envelope, message_id, size, eight_bit, restartable, utf8_headers, _source
    return _in_memory(envelope, message_id, len(data), eight_bit, True, utf8_headers, data)


def _missing_headers(
    fields: _Fields, envelope: Envelope, message_id: str | None
) -> tuple[bytes, str | None]:
    added = b""
    if message_id is None:
        # The sender's domain, never socket.getfqdn(): make_msgid's default may block on DNS.
        domain = "x@" + (envelope.mail_from.rpartition("@")[2] or "rawsmtp.invalid")
        domain = ascii_address(domain) or "x@rawsmtp.invalid"  # as an A-label
        message_id = email.utils.make_msgid(domain=domain.rpartition("@")[2])
        added += f"Message-ID: {message_id}\r\n".encode("ascii")
    if not any(name == "date" for name, _ in fields):
        added += f"Date: {email.utils.formatdate(localtime=True)}\r\n".encode("ascii")
    return added, message_id


def _from_stream(source: _Source, given: Envelope | Mapping[str, Any] | None) -> PreparedMessage:
    """A stream: its header block is read only when the envelope must come from it."""
    message_id = None
    if given is None:
        head = _read_header_block(source.raw_chunks())
        fields = _header_fields(head)
        envelope = _envelope(None, fields)
        message_id = _message_id(fields)
        source = source.replace_head(head, _strip_hidden(head))
    else:
        envelope = _envelope(given, ())
    return PreparedMessage(
        envelope=envelope,
        message_id=message_id,
        size=source.measure() if source.file_start is not None else None,
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


def _wanted(name: str) -> bool:
    return name in _WANTED_FIELDS or name.startswith("resent-")


def _header_fields(data: bytes) -> _Fields:
    """The fields the envelope and the result need, unfolded, decoded as UTF-8 (RFC 6532) with
    undecodable bytes kept as surrogates, which the address grammar refuses.

    A scan of the header block, not email.parser: that costs more than the rest of a send.
    """
    fields: list[tuple[str, _Value]] = []
    current: list[str] | None = None
    for line in _header_block(data).splitlines():
        if not line:
            break
        if line[:1] in (b" ", b"\t"):
            if current is not None:
                current.append(line.decode("utf-8", "surrogateescape"))
            continue
        if current is not None:
            fields[-1] = (fields[-1][0], "\r\n".join(current))
        name, colon, value = line.partition(b":")
        key = name.strip().lower().decode("ascii", "replace")
        if colon and _wanted(key):
            current = [value.strip().decode("utf-8", "surrogateescape")]
            fields.append((key, current[0]))
        else:
            current = None
            if not fields or fields[-1] != _OTHER:
                fields.append(_OTHER)
    if current is not None:
        fields[-1] = (fields[-1][0], "\r\n".join(current))
    return tuple(fields)


def _lower_head(data: bytes) -> bytes:
    """The header block, without the empty line that ends it, in lower case: what the
    Message-ID and Bcc checks search, made once a message (lower() is a slow scan)."""
    blank = _blank_line(data)
    return data[: blank[0] if blank else len(data)].lower()


def _id_fields(data: bytes, head: bytes) -> _Fields:
    """The fields needed when the envelope is given: only the Message-ID is read, so a header
    block without one (``head``, :func:`_lower_head`) is not scanned: the scan costs more than
    the rest of the intake. find(), not ``in``: see DataEncoder._stuff."""
    if head.find(b"message-id") == -1:
        return ()
    return _header_fields(data)


def _message_fields(message: email.message.Message) -> _Fields:
    """The same fields of an email.message.Message, from its stored header values."""
    fields: list[tuple[str, _Value]] = []
    for name, value in message.raw_items():
        key = name.lower()
        if _wanted(key):
            fields.append((key, _field_value(key, value)))
        elif not fields or fields[-1] != _OTHER:
            fields.append(_OTHER)
    return tuple(fields)


def _field_value(key: str, value: Any) -> _Value:
    """A stored header value as text for the grammar, or the addr-specs its header object
    (email.headerregistry, set through the API of a modern policy) parsed already."""
    import email.errors
    import email.header

    if isinstance(value, email.header.Header):
        return _header_text(value)
    if isinstance(value, str) and not hasattr(value, "defects"):
        # A parser's raw value: 8-bit bytes arrive as surrogates; valid UTF-8 becomes text.
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")
    addresses = getattr(value, "addresses", None)
    if addresses is None:
        return str(value)
    for defect in getattr(value, "defects", ()):
        if isinstance(
            defect, email.errors.InvalidHeaderDefect | email.errors.UndecodableBytesDefect
        ):
            raise LocalProtocolError(f"invalid address in {key.title()}: {value!r}: {defect}")
    # Not Address.addr_spec: it leaves a local part such as "." unquoted.
    return tuple(
        parse_mailbox(f"{quote_local_part(address.username)}@{address.domain}")
        for address in addresses
    )


def _header_text(header: email.header.Header) -> str:
    """An email.header.Header as address-list text, as smtplib reads one: each chunk decoded.

    A chunk in a non-ASCII charset is an encoded word when sent; one without ``@`` or ``<``
    is a display name, and is quoted so that a comma in it stays part of the name.
    """
    import email.header

    parts = []
    for raw, charset in email.header.decode_header(header):
        text = raw.decode(charset or "ascii", "surrogateescape") if isinstance(raw, bytes) else raw
        if charset not in (None, "us-ascii") and "@" not in text and "<" not in text:
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        parts.append(text)
    return "".join(parts)


def _flatten(message: email.message.Message, *, utf8: bool) -> bytes:
    """Serialise with CR LF line ends and the message's own policy; ``utf8`` (the envelope
    needs SMTPUTF8) keeps non-ASCII headers as UTF-8 (RFC 6532), as smtplib does."""
    import email.generator
    import email.policy

    policy: Any = message.policy
    if isinstance(policy, email.policy.EmailPolicy):
        policy = policy.clone(linesep="\r\n", utf8=utf8 or policy.utf8)
    else:
        policy = policy.clone(linesep="\r\n")
        if utf8:
            message = _raw_utf8_headers(message)
    out = io.BytesIO()
    try:
        email.generator.BytesGenerator(out, policy=policy).flatten(message)
    except Exception as error:
        raise LocalProtocolError(f"cannot serialise the message: {error!r}") from error
    return out.getvalue()


def _raw_utf8_headers(message: email.message.Message) -> email.message.Message:
    """A copy of a compat32 message whose non-ASCII header values are written as raw UTF-8.

    compat32 writes text with surrogates as the bytes they stand for, and encodes any other
    non-ASCII text as encoded words (which would put RFC 2047 into addresses).
    """
    import email.header

    items = list(message.raw_items())
    clone = copy.copy(message)
    for name in {name for name, _ in items}:
        del clone[name]  # rebinds the clone's header list: the caller's message is untouched
    for name, value in items:
        text = _header_text(value) if isinstance(value, email.header.Header) else value
        if isinstance(text, str) and not text.isascii():
            text = text.encode("utf-8", "surrogateescape").decode("ascii", "surrogateescape")
        clone[name] = text
    return clone


def _strip_hidden(data: bytes, head: bytes | None = None) -> bytes:
    """Remove every Bcc and Resent-Bcc field (with its continuation lines) from the header
    block (RFC 5322 section 3.6.3: the other recipients must not see them). ``head`` is
    ``data``'s :func:`_lower_head` when the caller made it already."""
    if head is None:
        head = _lower_head(data)
    if head.find(b"bcc") == -1:  # one search for both spellings (and for a false alarm)
        return data
    end = len(head)
    lines = data[:end].splitlines(keepends=True)
    kept, skipping = [], False
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                kept.append(line)
            continue
        name = line.split(b":", 1)[0].strip().lower() + b":"
        skipping = name in _HIDDEN_FIELDS
        if not skipping:
            kept.append(line)
    return b"".join(kept) + data[end:]


def _message_id(fields: _Fields) -> str | None:
    for name, value in fields:
        if name == "message-id" and isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _envelope(given: Envelope | Mapping[str, Any] | None, fields: _Fields) -> Envelope:
    if isinstance(given, Envelope):
        return given
    if given is not None:
        return _envelope_from_mapping(given)
    key: list[tuple[str, _Value]] = []
    for name, value in fields:
        if name in _ADDRESS_FIELDS or name.startswith("resent-"):
            key.append((name, value))
        elif not key or key[-1] != _OTHER:  # Message-ID, Date: other fields to a Resent- block
            key.append(_OTHER)
    return _envelope_from_fields(tuple(key))


# Messages sent in bulk often repeat their address fields, and an Envelope is immutable: one per
# distinct set of fields spares both the memory of each queued message's own and its validation.
@functools.lru_cache(maxsize=256)
def _envelope_from_fields(fields: _Fields) -> Envelope:
    """The envelope of the address fields (with markers where other fields were)."""
    block = _latest_resent_block(fields)
    prefix = "resent-" if block else ""
    chosen = block or [f for f in fields if not f[0].startswith("resent-")]

    def addresses(name: str) -> list[str]:
        found: list[str] = []
        for key, value in chosen:
            if key == prefix + name:
                found += value if isinstance(value, tuple) else parse_address_list(value)
        return found

    senders = addresses("sender") or addresses("from")
    recipients = addresses("to") + addresses("cc") + addresses("bcc")
    names = "Resent-" if block else ""
    if not senders:
        raise LocalProtocolError(
            f"no envelope given and the message has no {names}From or {names}Sender"
        )
    if not recipients:
        raise LocalProtocolError(
            f"no envelope given and the message has no {names}To, {names}Cc or {names}Bcc"
        )
    return Envelope(senders[0], tuple(dict.fromkeys(recipients)))


def _latest_resent_block(fields: _Fields) -> list[tuple[str, _Value]]:
    """The first (most recent, RFC 5322 3.6.6) run of Resent- fields; empty when none."""
    block: list[tuple[str, _Value]] = []
    for name, value in fields:
        if name.startswith("resent-"):
            if name in _ONCE_PER_BLOCK and any(key == name for key, _ in block):
                break
            block.append((name, value))
        elif block:
            break
    return block


_ENVELOPE_KEYS = frozenset({"from", "to", "cc", "bcc", "dsn", "requiretls", "requireTLS"})
_DSN_KEYS = frozenset({"ret", "envid", "notify", "orcpt"})


def _envelope_from_mapping(given: Mapping[str, Any]) -> Envelope:
    """Nodemailer's envelope shape: from, to, cc, bcc (str or list), dsn {ret, envid, notify, orcpt}.

    Each string is one mailbox, checked by the same grammar as :class:`Envelope`'s."""
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
        sender,
        tuple(dict.fromkeys(parse_mailbox(r) for r in recipients)),
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
    return list(items)
