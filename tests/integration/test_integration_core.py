"""The sans-I/O core over a plain blocking socket against a real Postfix (and Dovecot LMTP).

Assertions are on what the server stored: the bytes of the message and the envelope (Postfix
writes the envelope sender into Return-Path and the recipient into Delivered-To).
"""

from __future__ import annotations

import ssl

import pytest
from conftest import Servers
from helpers.smtp import body_of, run_core, unique

from rawsmtp.protocol import (
    ClientConfig,
    ConnectionClosed,
    MessageAccepted,
    MessageFailed,
    Ready,
    SMTPCapabilityError,
    SMTPRecipientsRefusedError,
    Transaction,
)

# Dots at line starts, a lone dot line, a bare LF and a bare CR: what the encoder must get right.
TRICKY_BODY = b"first line\r\n.starts with a dot\n.\r\n..two dots\rlast line without end"
TRICKY_STORED = b"first line\r\n.starts with a dot\r\n.\r\n..two dots\r\nlast line without end\r\n"


def context(servers: Servers) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=servers.cafile)


def message(sender: str, recipient: str, body: bytes = TRICKY_BODY, **options: object) -> bytes:
    head = f"From: <{sender}>\r\nTo: <{recipient}>\r\nSubject: core test\r\n\r\n"
    return head.encode() + body


def config(**options: object) -> ClientConfig:
    return ClientConfig(local_hostname="client.example.test", **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("use_chunking", [True, False], ids=["bdat", "data"])
def test_pipelined_messages_over_starttls_arrive_intact(
    servers: Servers, use_chunking: bool
) -> None:
    boxes = [unique("pipe") for _ in range(3)]
    sender = f"{unique('sender')}@example.org"
    txs = [
        (Transaction(mail_from=sender, recipients=(f"{box}@example.test",)), message(sender, box))
        for box in boxes
    ]
    run = run_core(
        servers.host,
        servers.ports["postfix"],
        txs,
        config=config(starttls="required", use_chunking=use_chunking),
        ssl_context=context(servers),
        queue_early=True,
    )
    [ready] = run.of(Ready)
    assert ready.tls and ready.extensions.pipelining and ready.extensions.chunking  # type: ignore[attr-defined]
    assert len(run.of(MessageAccepted)) == 3, run.events
    assert run.of(ConnectionClosed) == [ConnectionClosed(error=None, unsent=(), unconfirmed=())]
    for box in boxes:
        [stored] = servers.mail.wait(box)
        assert body_of(stored) == TRICKY_STORED
        assert f"Return-Path: <{sender}>".encode() in stored
        assert f"Delivered-To: {box}@example.test".encode() in stored
        assert b"TLS" in stored  # Postfix records the encrypted hop in its Received header


def test_partial_rejection_keeps_per_recipient_results(servers: Servers) -> None:
    box = unique("partial")
    tx = Transaction(
        mail_from="s@example.org",
        recipients=(f"{box}@example.test", "reject@example.test", "tempfail@example.test"),
    )
    run = run_core(
        servers.host,
        servers.ports["postfix"],
        [(tx, message("s@example.org", box))],
        config=config(starttls="never"),
    )
    [accepted] = run.of(MessageAccepted)
    assert accepted.accepted == (f"{box}@example.test",)  # type: ignore[attr-defined]
    rejected = accepted.rejected  # type: ignore[attr-defined]
    assert (
        rejected["reject@example.test"].code,
        rejected["reject@example.test"].enhanced_code,
    ) == (
        550,
        "5.1.1",
    )
    assert rejected["tempfail@example.test"].code == 450
    assert rejected["tempfail@example.test"].is_temporary
    servers.mail.wait(box)


def test_all_recipients_refused_costs_one_rset_and_the_next_message_goes(
    servers: Servers,
) -> None:
    box = unique("after")
    refused = Transaction(mail_from="s@example.org", recipients=("reject@example.test",))
    good = Transaction(mail_from="s@example.org", recipients=(f"{box}@example.test",))
    run = run_core(
        servers.host,
        servers.ports["postfix"],
        [(refused, b"x\r\n"), (good, message("s@example.org", box))],
        config=config(starttls="never"),
    )
    [failed] = run.of(MessageFailed)
    assert isinstance(failed.error, SMTPRecipientsRefusedError)  # type: ignore[attr-defined]
    assert failed.error.rejected["reject@example.test"].code == 550  # type: ignore[attr-defined]
    assert len(run.of(MessageAccepted)) == 1
    servers.mail.wait(box)


def test_smtputf8_and_dsn_parameters(servers: Servers) -> None:
    box = unique("jörg")
    tx = Transaction(
        mail_from="sénder@example.org",
        recipients=(f"{box}@example.test",),
        smtputf8=True,
        body="8BITMIME",
        ret="HDRS",
        envid="envelope+id=1",
        notify=frozenset({"FAILURE", "DELAY"}),
        orcpt=True,
    )
    body = "Subject: ünïcode\r\n\r\nGrüße\r\n".encode()
    run = run_core(
        servers.host, servers.ports["postfix"], [(tx, body)], config=config(starttls="never")
    )
    assert len(run.of(MessageAccepted)) == 1, run.events
    [stored] = servers.mail.wait(box)
    assert "Grüße".encode() in stored
    assert "Return-Path: <sénder@example.org>".encode() in stored


def test_implicit_tls(servers: Servers) -> None:
    box = unique("tls")
    tx = Transaction(mail_from="s@example.org", recipients=(f"{box}@example.test",))
    run = run_core(
        servers.host,
        servers.ports["postfix_tls"],
        [(tx, message("s@example.org", box))],
        config=config(tls_active=True),
        ssl_context=context(servers),
        implicit_tls=True,
    )
    assert len(run.of(MessageAccepted)) == 1, run.events
    servers.mail.wait(box)


def test_without_pipelining_or_chunking(servers: Servers) -> None:
    boxes = [unique("nopipe") for _ in range(2)]
    txs = [
        (
            Transaction(
                mail_from="s@example.org", recipients=(f"{b}@example.test", "reject@example.test")
            ),
            message("s@example.org", b),
        )
        for b in boxes
    ]
    run = run_core(
        servers.host, servers.ports["postfix_nopipe"], txs, config=config(starttls="never")
    )
    [ready] = run.of(Ready)
    assert not ready.extensions.pipelining and not ready.extensions.chunking  # type: ignore[attr-defined]
    assert len(run.of(MessageAccepted)) == 2
    for box in boxes:
        assert body_of(servers.mail.wait(box)[0]) == TRICKY_STORED


def test_size_limit_refuses_before_sending(servers: Servers) -> None:
    box = unique("size")
    big = Transaction(mail_from="s@example.org", recipients=(f"{box}@example.test",), size=20000)
    small = Transaction(mail_from="s@example.org", recipients=(f"{box}@example.test",), size=200)
    run = run_core(
        servers.host,
        servers.ports["postfix_small"],
        [(big, b"x" * 20000), (small, message("s@example.org", box))],
        config=config(starttls="never"),
        queue_early=True,
    )
    [ready] = run.of(Ready)
    assert ready.extensions.size == 10000  # type: ignore[attr-defined]
    [failed] = run.of(MessageFailed)
    assert isinstance(failed.error, SMTPCapabilityError)  # type: ignore[attr-defined]
    assert len(run.of(MessageAccepted)) == 1
    servers.mail.wait(box)


def test_lmtp_delivery_to_dovecot_reports_each_recipient(servers: Servers) -> None:
    """Dovecot accepts quota@ at RCPT, then refuses it after the data: one reply per recipient."""
    user, _ = servers.users["alice"]
    marker = unique("lmtp").encode()
    tx = Transaction(mail_from="s@example.org", recipients=(user, "quota@example.test"))
    run = run_core(
        servers.host,
        servers.ports["lmtp"],
        [(tx, b"Subject: lmtp\r\n\r\n" + marker + b"\r\n")],
        config=config(lmtp=True, starttls="never"),
    )
    [accepted] = run.of(MessageAccepted)
    assert accepted.accepted == (user,)  # type: ignore[attr-defined]
    assert accepted.rejected["quota@example.test"].code == 552  # type: ignore[attr-defined]
    stored = servers.lmtp_mail.wait("alice", 1)
    assert any(marker in raw for raw in stored)
