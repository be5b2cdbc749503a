"""The :class:`Transaction`: one message's envelope and ESMTP options, validated on creation.

It is what a driver hands to :meth:`ClientConnection.send_mail`; the body follows separately, in
chunks, when the client says the server is ready for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, Literal, cast

from .._errors import LocalProtocolError
from . import _commands
from ._frozen import open_twin

if TYPE_CHECKING:  # a default for the type checker only; no runtime dependency
    from typing_extensions import TypeVar

    TagT = TypeVar("TagT", default=object)
    NewTagT = TypeVar("NewTagT")
else:
    from typing import TypeVar

    TagT = TypeVar("TagT")
    NewTagT = TypeVar("NewTagT")

__all__ = ["TagT", "Transaction"]


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Transaction(Generic[TagT]):
    """A message's envelope. Invalid input raises :class:`LocalProtocolError` here, at once.

    ``size`` is the message size for the SIZE parameter (and the check against the server's
    limit); ``body`` is the BODY parameter; ``smtputf8`` asks for SMTPUTF8 (needed for non-ASCII
    addresses). ``ret``, ``envid``, ``notify`` (applied to every recipient) and ``orcpt`` are DSN
    requests (RFC 3461), sent only when the server offers DSN. ``requiretls`` (RFC 8689) fails
    the message unless the server offers REQUIRETLS over TLS. ``tag`` is the driver's own handle,
    returned on every event about the transaction: ``Transaction[Job]`` (with a
    ``ClientConnection[Job]``) types it, so a driver reads ``event.transaction.tag`` as a
    ``Job`` without a cast; a bare ``Transaction`` has an ``object`` tag. Write
    ``Transaction(..., tag=job)`` and let the type be inferred: on Python 3.11 calling the
    subscripted class fails, as for any frozen slotted dataclass. Transactions compare by
    identity.
    """

    mail_from: str
    recipients: tuple[str, ...]
    size: int | None = None
    body: Literal["7BIT", "8BITMIME", "BINARYMIME"] | None = None
    smtputf8: bool = False
    ret: Literal["FULL", "HDRS"] | None = None
    envid: str | None = None
    notify: frozenset[str] | None = None
    orcpt: bool = False
    requiretls: bool = False
    tag: TagT = field(default=cast("TagT", None), repr=False)
    # RCPT lines by ``dsn``, serialised once per envelope: derive() hands its copies this same
    # dict, since their recipients and DSN options are the prototype's.
    _rcpt_lines: dict[bool, tuple[bytes, ...]] = field(default_factory=dict, init=False, repr=False)
    # MAIL lines, shared the same way, split where SIZE goes: the one parameter copies differ
    # in that is not part of the key (which has at most 16 values, so the dict stays small).
    _mail_lines: dict[tuple[bool, str | None, bool], tuple[bytes, bytes]] = field(
        default_factory=dict, init=False, repr=False
    )

    def __post_init__(self) -> None:
        if isinstance(self.recipients, str) or not self.recipients:
            raise LocalProtocolError("a transaction needs a non-empty tuple of recipients")
        # Serialising once checks every address and parameter with the code that sends them,
        # but for SIZE, which mail_command() formats itself.
        _commands.check_size(self.size)
        self.mail_command(dsn=True)
        self.rcpt_commands(dsn=True)

    def derive(
        self,
        *,
        size: int | None,
        body: Literal["7BIT", "8BITMIME", "BINARYMIME"] | None,
        smtputf8: bool,
        tag: NewTagT,
    ) -> Transaction[NewTagT]:
        """This envelope for another message: a copy with its own size, body type and tag.

        The addresses and DSN options were validated when this transaction was made, so only
        what changes is checked; ``smtputf8`` may only widen what the addresses may hold.
        """
        _commands.check_size(size)
        if body not in (None, "7BIT", "8BITMIME", "BINARYMIME"):
            raise LocalProtocolError(f"invalid BODY: {body!r}")
        copy = _OpenTransaction()  # built as _frozen says: a fifth of the frozen way's cost
        copy.mail_from, copy.recipients = self.mail_from, self.recipients
        copy.size, copy.body, copy.smtputf8 = size, body, smtputf8 or self.smtputf8
        copy.ret, copy.envid, copy.notify = self.ret, self.envid, self.notify
        copy.orcpt, copy.requiretls, copy.tag = self.orcpt, self.requiretls, tag
        copy._rcpt_lines, copy._mail_lines = self._rcpt_lines, self._mail_lines
        copy.__class__ = Transaction
        derived: Transaction[NewTagT] = copy
        return derived

    def mail_command(
        self, *, dsn: bool, with_size: bool = True, with_body_type: bool = True
    ) -> bytes:
        body = self.body if with_body_type else None
        key = (dsn, body, self.smtputf8)
        parts = self._mail_lines.get(key)
        if parts is None:
            line = _commands.mail(
                self.mail_from,
                body=body,
                smtputf8=self.smtputf8,
                ret=self.ret if dsn else None,
                envid=self.envid if dsn else None,
                requiretls=self.requiretls,
            )
            # The path cannot hold '>', so the first one closes it; SIZE is the first parameter.
            end = line.index(b">") + 1
            parts = self._mail_lines[key] = (line[:end], line[end:])
        head, tail = parts
        if with_size and self.size is not None:
            # The parameter _commands.mail puts first, formatted (and checked) by the same code.
            return b"%s %s%s" % (head, _commands.size_parameter(self.size).encode(), tail)
        return head + tail

    def rcpt_commands(self, *, dsn: bool) -> tuple[bytes, ...]:
        """:meth:`rcpt_command` for each recipient, in order."""
        lines = self._rcpt_lines.get(dsn)
        return self._build_rcpt_lines(dsn) if lines is None else lines

    def _build_rcpt_lines(self, dsn: bool) -> tuple[bytes, ...]:
        # Apart from rcpt_commands: the generator's variables would be cells on every call.
        # No line depends on smtputf8, the one thing a copy may change (and only widen), so
        # whichever transaction of the family builds the lines first builds them for all.
        lines = tuple(self.rcpt_command(recipient, dsn=dsn) for recipient in self.recipients)
        self._rcpt_lines[dsn] = lines
        return lines

    def rcpt_command(self, recipient: str, *, dsn: bool) -> bytes:
        return _commands.rcpt(
            recipient,
            smtputf8=self.smtputf8,
            notify=self.notify if dsn else None,
            orcpt=self.orcpt and dsn,
        )


_OpenTransaction = open_twin(Transaction)  # derive() sets every one of its fields
