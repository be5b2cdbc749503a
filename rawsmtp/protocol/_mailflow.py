"""One transaction's bookkeeping, and what each reply to it means: pure verdicts.

:class:`MailFlow` records what the server has said so far about one transaction (recipients
accepted and refused, the first refusal that dooms it). Each ``*_reply`` function takes the
bookkeeping and one reply, records what the reply says and returns a verdict; it knows nothing
of the session, its queues or its bytes, so it can be tested with a reply and a MailFlow alone.
The client acts on the verdicts (writes RSET, opens the body, reports the outcome).

:func:`missing_capability` is the check of a transaction against what the server offers.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeAlias

from .._errors import SMTPCapabilityError, SMTPRecipientsRefusedError, SMTPResponseError
from ._extensions import Extensions
from ._replies import Reply, reply_fields
from ._state import _Awaiting
from ._transaction import TagT, Transaction

__all__ = [
    "DataVerdict",
    "MailFlow",
    "Outcome",
    "Pending",
    "bdat_reply",
    "data_reply",
    "doomed",
    "final_reply",
    "mail_reply",
    "missing_capability",
    "must_abort",
    "rcpt_reply",
    "refused_for_sequence",
    "response_error",
]


@dataclass(slots=True, eq=False)
class MailFlow(Generic[TagT]):
    """The client's bookkeeping for one transaction."""

    transaction: Transaction[TagT]
    checked: bool  # capabilities already checked against the final EHLO
    # What to write, each command with what its reply answers; planned when the writing begins.
    commands: deque[tuple[bytes, Pending[TagT]]] = field(default_factory=deque)
    chunking: bool = False
    accepted: list[str] = field(default_factory=list)
    rejected: dict[str, SMTPResponseError] = field(default_factory=dict)
    error: SMTPResponseError | None = None  # the refusal that dooms the transaction
    end_sent: bool = False  # the driver ended the body (its end may still be held back)
    bdat_awaited: int = 0  # replies to its BDAT chunks (not the LAST) still to come
    body_refused: bool = False  # a BDAT chunk was refused: no further segment may go
    # The transaction whose end was the latest written when this one's MAIL was, if its final
    # reply was still awaited then: this one was pipelined behind it.
    ahead: MailFlow[TagT] | None = None
    body_bytes: int = 0  # BDAT bytes written (counted for the chunking window only)
    end_number: int = 0  # its BDAT LAST's place among the session's BDAT ends (from 1)
    lmtp_replies: int = 0  # LMTP replies to the data received so far
    success: Reply | None = None  # the reply to report with the delivery
    abandoned: bool = False  # given up by the caller: replies to it are read and ignored

    def failure(self) -> SMTPResponseError:
        if self.error is not None:
            return self.error
        return SMTPRecipientsRefusedError("all recipients were refused", rejected=self.rejected)


# An awaited reply: what it answers, and the transaction and recipient it concerns. A plain
# tuple, because several are made for every message and a tuple costs no Python-level call.
Pending: TypeAlias = tuple[_Awaiting, MailFlow[TagT] | None, str | None]


class DataVerdict(enum.Enum):
    """What to do after the reply to DATA."""

    BODY = "send the body"
    EMPTY_BODY = "send an empty body"  # 354 after the envelope was refused (RFC 2920 3.1)
    FAIL = "the transaction failed"


class Outcome(enum.Enum):
    """What a reply to the end of the data settles."""

    ACCEPTED = "accepted"
    FAILED = "failed"
    MORE = "more LMTP replies to come"


# The members a delivered message's replies return and _client compares, bound once: on
# Python 3.11 ``Outcome.ACCEPTED`` is a slow lookup (see _client's _READY).
_BODY, _EMPTY_BODY = DataVerdict.BODY, DataVerdict.EMPTY_BODY
_ACCEPTED, _MORE = Outcome.ACCEPTED, Outcome.MORE


def response_error(reply: Reply, awaiting: _Awaiting, what: str) -> SMTPResponseError:
    return SMTPResponseError(
        f"{what} refused: {reply}", command=awaiting.value, **reply_fields(reply)
    )


def mail_reply(flow: MailFlow[TagT], reply: Reply) -> None:
    # Only the first refusal counts: later replies to a doomed transaction explain nothing.
    if reply.code >= 400 and flow.error is None:
        flow.error = response_error(reply, _Awaiting.MAIL, "sender")


def rcpt_reply(flow: MailFlow[TagT], reply: Reply, recipient: str) -> None:
    # A parsed code is 200 to 599: below 400 is Reply.is_success, without a property call.
    if reply.code < 400:
        flow.accepted.append(recipient)
    else:
        flow.rejected[recipient] = response_error(reply, _Awaiting.RCPT, "recipient")


def data_reply(flow: MailFlow[TagT], reply: Reply) -> DataVerdict:
    if reply.code != 354:
        if flow.error is None and flow.accepted:
            flow.error = response_error(reply, _Awaiting.DATA, "DATA")
        return DataVerdict.FAIL
    if flow.error is not None or not flow.accepted:
        return DataVerdict.EMPTY_BODY
    return _BODY


def bdat_reply(flow: MailFlow[TagT], reply: Reply) -> None:
    if reply.code >= 400:
        flow.body_refused = True  # RFC 3030 section 2: send no additional BDAT segment
        if flow.error is None and flow.accepted:
            flow.error = response_error(reply, _Awaiting.BDAT, "BDAT")


def final_reply(flow: MailFlow[TagT], reply: Reply, *, lmtp: bool) -> Outcome:
    """The reply to the dot (or the last BDAT); LMTP sends one per accepted recipient."""
    if lmtp and flow.accepted and flow.error is None:
        return _lmtp_reply(flow, reply)
    if reply.code < 400 and flow.error is None and flow.accepted:
        flow.success = reply
        return _ACCEPTED
    if flow.error is None and flow.accepted:
        flow.error = response_error(reply, _Awaiting.DATA_END, "message")
    return Outcome.FAILED


def _lmtp_reply(flow: MailFlow[TagT], reply: Reply) -> Outcome:
    """LMTP answers the data once per accepted recipient, in RCPT order (RFC 2033)."""
    recipient = flow.accepted[flow.lmtp_replies]
    if reply.code < 400:
        flow.success = reply
    else:
        flow.rejected[recipient] = response_error(reply, _Awaiting.DATA_END, "delivery")
    flow.lmtp_replies += 1
    if flow.lmtp_replies < len(flow.accepted):
        return Outcome.MORE
    flow.accepted = [r for r in flow.accepted if r not in flow.rejected]
    if flow.accepted:
        return Outcome.ACCEPTED  # with the last success as its reply
    flow.error = flow.rejected[recipient]
    return Outcome.FAILED


def refused_for_sequence(flow: MailFlow[TagT]) -> bool:
    """Was the transaction refused with 503, bad sequence, which says nothing of the message?"""
    if flow.error is not None:
        return flow.error.code == 503
    rejected = flow.rejected.values()
    return bool(rejected) and all(error.code == 503 for error in rejected)


def doomed(flow: MailFlow[TagT]) -> bool:
    """Has the server already refused the transaction, whatever its final reply will say?"""
    if flow.error is not None:
        return True
    return not flow.accepted and len(flow.rejected) == len(flow.transaction.recipients)


def must_abort(flow: MailFlow[TagT]) -> bool:
    """Without pipelining a refusal is known before the next command: stop there?"""
    if flow.error is not None:
        return True
    next_is_body = not flow.commands or flow.commands[0][1][0] is _Awaiting.DATA
    return next_is_body and not flow.accepted


def missing_capability(
    transaction: Transaction[TagT], extensions: Extensions, *, tls: bool
) -> SMTPCapabilityError | None:
    """Why this server cannot take this transaction, or None when it can."""
    body = transaction.body
    # Most messages need no extension (a 7BIT body needs none): no list to build for them.
    if transaction.smtputf8 or body or transaction.requiretls:
        missing = [
            name
            for name, needed, offered in (
                ("SMTPUTF8", transaction.smtputf8, extensions.smtputf8),
                ("8BITMIME", body == "8BITMIME", extensions.eightbitmime),
                ("BINARYMIME", body == "BINARYMIME", extensions.binarymime and extensions.chunking),
                ("REQUIRETLS", transaction.requiretls, extensions.requiretls and tls),
            )
            if needed and not offered
        ]
        if missing:
            return SMTPCapabilityError(f"the message needs {', '.join(missing)}, not offered")
    if extensions.size and transaction.size is not None and transaction.size > extensions.size:
        return SMTPCapabilityError(
            f"message of {transaction.size} bytes exceeds the server's SIZE {extensions.size}"
        )
    return None
