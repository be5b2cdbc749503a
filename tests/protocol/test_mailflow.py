"""The per-transaction verdicts as pure functions: a MailFlow and a reply in, a verdict out."""

from __future__ import annotations

import pytest

from rawsmtp.protocol import (
    Extensions,
    Reply,
    SMTPCapabilityError,
    SMTPRecipientsRefusedError,
    Transaction,
)
from rawsmtp.protocol._mailflow import (
    DataVerdict,
    MailFlow,
    Outcome,
    bdat_reply,
    data_reply,
    final_reply,
    mail_reply,
    missing_capability,
    rcpt_reply,
)

OK, GO = Reply(250, ("ok",)), Reply(354, ("go",))
TEMP, PERM = Reply(451, ("4.3.0 later",)), Reply(550, ("5.1.1 no such user",))


def flow(*recipients: str) -> MailFlow:
    transaction = Transaction(mail_from="f@test", recipients=recipients or ("a@test",))
    return MailFlow(transaction, checked=True)


def envelope(*replies: Reply, recipients: tuple[str, ...] = ("a@test", "b@test")) -> MailFlow:
    """A flow after MAIL's reply (the first) and one RCPT reply per recipient (the rest)."""
    state = flow(*recipients)
    mail_reply(state, replies[0])
    for recipient, reply in zip(recipients, replies[1:], strict=True):
        rcpt_reply(state, reply, recipient)
    return state


def test_recipients_are_sorted_into_accepted_and_refused() -> None:
    state = envelope(OK, OK, PERM)
    assert state.accepted == ["a@test"] and list(state.rejected) == ["b@test"]
    assert state.rejected["b@test"].code == 550 and state.rejected["b@test"].command == "RCPT"
    assert state.error is None


def test_the_first_refusal_is_the_one_kept() -> None:
    state = envelope(TEMP, OK, OK)
    assert state.error is not None and state.error.code == 451 and state.error.command == "MAIL"
    assert data_reply(state, PERM) is DataVerdict.FAIL
    assert state.error.code == 451


@pytest.mark.parametrize(
    ("replies", "data", "verdict"),
    [
        ((OK, OK, OK), GO, DataVerdict.BODY),
        ((OK, PERM, PERM), GO, DataVerdict.EMPTY_BODY),  # RFC 2920 3.1: 354 after refusals
        ((PERM, OK, OK), GO, DataVerdict.EMPTY_BODY),
        ((OK, OK, OK), TEMP, DataVerdict.FAIL),
        ((OK, PERM, PERM), Reply(554, ("no valid recipients",)), DataVerdict.FAIL),
    ],
)
def test_data_verdicts(replies: tuple[Reply, ...], data: Reply, verdict: DataVerdict) -> None:
    assert data_reply(envelope(*replies), data) is verdict


def test_every_recipient_refused_fails_with_their_errors() -> None:
    state = envelope(OK, PERM, TEMP)
    assert data_reply(state, Reply(554, ("none",))) is DataVerdict.FAIL
    failure = state.failure()
    assert isinstance(failure, SMTPRecipientsRefusedError) and failure.code == 451
    assert set(failure.rejected) == {"a@test", "b@test"}


def test_final_reply() -> None:
    state = envelope(OK, OK, OK)
    assert final_reply(state, OK, lmtp=False) is Outcome.ACCEPTED and state.success is OK
    state = envelope(OK, OK, OK)
    assert final_reply(state, PERM, lmtp=False) is Outcome.FAILED
    assert state.failure().command == "end of data" and state.failure().code == 550


def test_bdat_refusal_dooms_the_message_and_the_final_reply_fails_it() -> None:
    state = envelope(OK, OK, OK)
    bdat_reply(state, Reply(552, ("too big",)))
    assert final_reply(state, OK, lmtp=False) is Outcome.FAILED
    assert state.failure().code == 552 and state.failure().command == "BDAT"


def test_lmtp_one_reply_per_accepted_recipient_in_rcpt_order() -> None:
    state = envelope(OK, OK, PERM, OK, recipients=("a@test", "b@test", "c@test"))
    assert final_reply(state, OK, lmtp=True) is Outcome.MORE  # a@test
    assert final_reply(state, Reply(452, ("full",)), lmtp=True) is Outcome.ACCEPTED  # c@test
    assert state.accepted == ["a@test"] and state.success is OK
    assert state.rejected["c@test"].code == 452 and state.rejected["b@test"].code == 550


def test_lmtp_every_delivery_refused_fails_with_the_last() -> None:
    state = envelope(OK, OK, OK)
    assert final_reply(state, TEMP, lmtp=True) is Outcome.MORE
    assert final_reply(state, PERM, lmtp=True) is Outcome.FAILED
    assert state.accepted == [] and state.failure().code == 550


def test_missing_capability() -> None:
    plain = Extensions()
    offered = Extensions(
        keywords={"SMTPUTF8": (), "8BITMIME": (), "REQUIRETLS": (), "SIZE": ("100",)}, size=100
    )
    utf8 = Transaction(mail_from="f@test", recipients=("jörg@test",), smtputf8=True)
    eight = Transaction(mail_from="f@test", recipients=("a@test",), body="8BITMIME")
    tls = Transaction(mail_from="f@test", recipients=("a@test",), requiretls=True)
    big = Transaction(mail_from="f@test", recipients=("a@test",), size=101)
    for transaction, needs in ((utf8, "SMTPUTF8"), (eight, "8BITMIME"), (tls, "REQUIRETLS")):
        error = missing_capability(transaction, plain, tls=True)
        assert isinstance(error, SMTPCapabilityError) and needs in str(error)
        assert missing_capability(transaction, offered, tls=True) is None
    assert missing_capability(tls, offered, tls=False) is not None  # REQUIRETLS needs TLS
    error = missing_capability(big, offered, tls=False)
    assert error is not None and "SIZE 100" in str(error)
    assert missing_capability(big, plain, tls=False) is None  # no SIZE advertised: no limit
