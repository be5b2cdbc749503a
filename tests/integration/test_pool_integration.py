"""SMTPPool end to end against the real Postfix: every message accounted for on the server."""

from __future__ import annotations

import email.message
import hashlib
import re
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Servers
from helpers.smtp import body_of, unique

import rawsmtp


def pool(servers: Servers, port_name: str = "postfix", **options: object) -> rawsmtp.SMTPPool:
    options.setdefault("host", "localhost")
    options.setdefault("tls", {"ca_file": servers.cafile})
    return rawsmtp.SMTPPool(port=servers.ports[port_name], **options)


def simple(box: str, text: str = "hello", sender: str = "s@example.org") -> bytes:
    return f"From: <{sender}>\r\nTo: <{box}@example.test>\r\nSubject: t\r\n\r\n{text}\r\n".encode()


def log_since(servers: Servers, offset: int) -> str:
    path = Path(servers.info["maildir_root"]).parent / "postfix.log"
    with path.open("rb") as file:
        file.seek(offset)
        return file.read().decode("utf-8", "replace")


def log_size(servers: Servers) -> int:
    return (Path(servers.info["maildir_root"]).parent / "postfix.log").stat().st_size


def test_two_thousand_messages_over_five_connections(servers: Servers) -> None:
    box, count, offset = unique("bulk"), 2000, log_size(servers)
    with pool(servers, max_connections=5, max_messages=100) as smtp:
        futures = [smtp.send(simple(box, f"seq={index}")) for index in range(count)]
        results = [future.result(timeout=120) for future in futures]
    assert all(result.accepted == (f"{box}@example.test",) for result in results)
    stored = servers.mail.wait(box, count, timeout=120)
    seen = sorted(int(re.search(rb"seq=(\d+)", raw).group(1)) for raw in stored)  # type: ignore[union-attr]
    assert seen == list(range(count))  # each exactly once
    sessions = [
        int(m)
        for m in re.findall(
            r"plain-2525/smtpd\[\d+\]: disconnect from .* mail=(\d+)", log_since(servers, offset)
        )
    ]
    assert sum(sessions) >= count and max(sessions) <= 100  # recycled after max_messages
    assert len(sessions) >= count // 100
    assert "starttls=1" in log_since(servers, offset)


def test_verify_checks_the_certificate(servers: Servers) -> None:
    with pool(servers, require_tls=True) as smtp:
        assert smtp.verify() is True
    with pool(servers, tls=None) as smtp, pytest.raises(rawsmtp.SMTPTLSError) as info:
        smtp.verify()  # the test CA is not trusted by default: certificate verify failed
    assert "certificate" in str(info.value).lower()
    with (
        pool(servers, tls={"ca_file": servers.cafile}, host="127.0.0.2") as smtp,
        pytest.raises(rawsmtp.SMTPConnectionError),
    ):
        smtp.verify()  # nothing listens on 127.0.0.2:2525


def test_partial_and_total_rejection(servers: Servers) -> None:
    box = unique("rej")
    with pool(servers) as smtp:
        envelope = {
            "from": "s@example.org",
            "to": [f"{box}@example.test", "reject@example.test", "tempfail@example.test"],
        }
        result = smtp.send(simple(box), envelope).result(timeout=30)
        assert result.accepted == (f"{box}@example.test",)
        assert set(result.rejected) == {"reject@example.test", "tempfail@example.test"}
        assert result.rejected_errors["reject@example.test"].code == 550
        assert result.rejected_errors["reject@example.test"].enhanced_code == "5.1.1"
        assert result.rejected_errors["tempfail@example.test"].is_temporary
        refused = smtp.send(simple(box), {"from": "s@example.org", "to": ["reject@example.test"]})
        with pytest.raises(rawsmtp.SMTPRecipientsRefusedError) as info:
            refused.result(timeout=30)
        assert info.value.rejected["reject@example.test"].code == 550
        assert smtp.send(simple(box)).result(timeout=30).accepted  # the pool carries on
    assert len(servers.mail.wait(box, 2)) == 2


def test_bcc_is_delivered_but_not_transmitted(servers: Servers) -> None:
    to, hidden = unique("to"), unique("bcc")
    message = email.message.EmailMessage()
    message["From"] = "s@example.org"
    message["To"] = f"{to}@example.test"
    message["Bcc"] = f"{hidden}@example.test"
    message["Subject"] = "bcc"
    message.set_content("see no bcc\n")
    with pool(servers) as smtp:
        result = smtp.send(message).result(timeout=30)
    assert set(result.accepted) == {f"{to}@example.test", f"{hidden}@example.test"}
    for box in (to, hidden):
        [stored] = servers.mail.wait(box)
        assert hidden.encode() not in stored.split(b"\n\n", 1)[1].split(b"\r\n\r\n")[0]
        assert b"Bcc:" not in stored
        assert f"Message-ID: {result.message_id}".encode() in stored


def test_smtputf8_address_and_utf8_headers(servers: Servers) -> None:
    box = unique("jörg")
    raw = f"From: sénder@example.org\r\nTo: {box}@example.test\r\nSubject: Grüße\r\n\r\nÄ\r\n"
    with pool(servers) as smtp:
        result = smtp.send(raw).result(timeout=30)
    assert result.accepted == (f"{box}@example.test",)
    [stored] = servers.mail.wait(box)
    assert "Subject: Grüße".encode() in stored


def test_dsn_success_notification_carries_our_envid(servers: Servers) -> None:
    sender, box, envid = unique("dsnsender"), unique("dsn"), unique("envid")
    envelope = {
        "from": f"{sender}@example.test",
        "to": [f"{box}@example.test"],
        "dsn": {"notify": ["success"], "envid": envid, "ret": "hdrs", "orcpt": True},
    }
    with pool(servers) as smtp:
        smtp.send(simple(box, sender=f"{sender}@example.test"), envelope).result(timeout=30)
    servers.mail.wait(box)
    [report] = servers.mail.wait(sender, timeout=30)  # Postfix's delivery status notification
    assert f"Original-Envelope-Id: {envid}".encode() in report
    assert f"Original-Recipient: rfc822;{box}@example.test".encode() in report


def test_size_limit_refused_before_data_and_pool_keeps_working(servers: Servers) -> None:
    box, offset = unique("size"), log_size(servers)
    with pool(servers, "postfix_small", ignore_tls=True, host="127.0.0.1") as smtp:
        big = smtp.send(simple(box, "x" * 20000))
        with pytest.raises(rawsmtp.SMTPCapabilityError, match="SIZE"):
            big.result(timeout=30)
        assert isinstance(big.exception(), ValueError)
        assert smtp.send(simple(box)).result(timeout=30).accepted
    assert len(servers.mail.wait(box)) == 1
    assert "message size" not in log_since(servers, offset)  # never reached Postfix's own check


def test_fifty_megabytes_streamed_from_a_file(servers: Servers, tmp_path: Path) -> None:
    box = unique("big")
    path = tmp_path / "big.eml"
    digest = hashlib.sha256()
    with path.open("wb") as file:
        file.write(
            f"From: s@example.org\r\nTo: {box}@example.test\r\nSubject: big\r\n\r\n".encode()
        )
        line = b"0123456789abcdef.0123456789abcdef.0123456789abcdef.0123456789abcdef\r\n"
        for index in range(50 * 1024 * 1024 // len(line)):
            chunk = (b"." if index % 97 == 0 else b"") + line  # dots to stuff on the way
            file.write(chunk)
            digest.update(chunk)
    tracemalloc.start()
    try:
        with pool(servers) as smtp, path.open("rb") as file:
            result = smtp.send(file).result(timeout=300)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.message_size == path.stat().st_size
    assert peak < 16 * 1024 * 1024  # streamed: the 50 MB file is never held in memory
    [stored] = servers.mail.wait(box, timeout=120)
    assert hashlib.sha256(body_of(stored)).hexdigest() == digest.hexdigest()


def test_iterable_source_and_binary_file_like(servers: Servers) -> None:
    box = unique("iter")

    def chunks() -> Iterator[bytes]:
        yield f"From: s@example.org\r\nTo: {box}@example.test\r\n".encode()
        yield b"Subject: it\r\n\r\n"
        yield from (b"line %d\n" % n for n in range(1000))

    with pool(servers) as smtp:
        smtp.send(chunks()).result(timeout=30)
    [stored] = servers.mail.wait(box)
    assert body_of(stored).count(b"\r\n") == 1000


def test_close_fails_queued_messages_and_later_sends(servers: Servers) -> None:
    box = unique("close")
    smtp = pool(servers, max_connections=1, rate_limit=1, rate_delta=60.0)
    first = smtp.send(simple(box))
    queued = [smtp.send(simple(box)) for _ in range(3)]
    first.result(timeout=30)
    smtp.close()
    for future in queued:
        with pytest.raises(rawsmtp.SMTPPoolClosedError):
            future.result(timeout=5)
    late = smtp.send(simple(box))
    assert isinstance(late.exception(timeout=1), rawsmtp.SMTPPoolClosedError)
    assert not any(t.name == "rawsmtp-pool" for t in threading.enumerate())


def test_idle_callback_cancel_and_pending(servers: Servers) -> None:
    box = unique("idle")
    idle = threading.Event()
    with pool(servers, max_connections=1, rate_limit=1, rate_delta=60.0) as smtp:
        smtp.on_idle(idle.set)
        first = smtp.send(simple(box))
        second = smtp.send(simple(box))
        first.result(timeout=30)
        assert smtp.pending == 1 and not smtp.is_idle()
        assert second.cancel()
        assert idle.wait(10) and smtp.is_idle() and smtp.pending == 0
    assert len(servers.mail.wait(box)) == 1
