"""rawsmtp.contrib.django.EmailBackend through django.core.mail, to the test server and Postfix.

Assertions are on what the server received: envelopes, headers and decoded bodies.
"""

from __future__ import annotations

import email
import email.policy
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Servers
from django.conf import settings
from django.core import mail
from django.test.utils import override_settings
from helpers.smtp import unique

import rawsmtp
from rawsmtp.contrib.django import EmailBackend, reset_pools
from rawsmtp.testing import Fault, SMTPTestServer

BACKEND = "rawsmtp.contrib.django.EmailBackend"

if not settings.configured:  # a real settings module; README examples may have configured it
    settings.configure(EMAIL_BACKEND=BACKEND, DEFAULT_FROM_EMAIL="app@example.com")


def parsed(data: bytes) -> Any:
    # CR LF as on the wire -> LF, so decoded text compares with what the caller wrote.
    return email.message_from_bytes(data.replace(b"\r\n", b"\n"), policy=email.policy.default)


@pytest.fixture
def django_mail(smtp_server: SMTPTestServer) -> Iterator[SMTPTestServer]:
    """Django configured for the test server, with this test's pools closed afterwards."""
    with override_settings(
        EMAIL_BACKEND=BACKEND,
        EMAIL_HOST=smtp_server.host,
        EMAIL_PORT=smtp_server.port,
        EMAIL_TIMEOUT=30,
    ):
        yield smtp_server
    reset_pools()


def test_send_mail_delivers_with_the_envelope_from_the_message(django_mail: SMTPTestServer) -> None:
    sent = mail.send_mail(
        "Hello",
        "Body text\n",
        "Ann <ann@example.com>",
        ["bob@example.com", "Carl <carl@example.com>"],
    )
    assert sent == 1
    [received] = django_mail.wait_for_messages(1)
    assert received.mail_from == "ann@example.com"
    assert received.rcpt_to == ("bob@example.com", "carl@example.com")
    message = parsed(received.data)
    assert message["Subject"] == "Hello" and message.get_content() == "Body text\n"


def test_send_mass_mail_counts_every_message_and_shares_one_pool(
    django_mail: SMTPTestServer,
) -> None:
    batch = [(f"n{n}", "hi", "ann@example.com", [f"r{n}@example.com"]) for n in range(20)]
    assert mail.send_mass_mail(batch) == 20
    received = django_mail.wait_for_messages(20)
    assert sorted(m.rcpt_to[0] for m in received) == sorted(f"r{n}@example.com" for n in range(20))
    assert django_mail.connections <= 5  # the pool's connections, not one per message
    assert EmailBackend().pool_options == EmailBackend().pool_options


def test_attachments_alternatives_bcc_and_utf8_arrive_intact(django_mail: SMTPTestServer) -> None:
    message = mail.EmailMultiAlternatives(
        subject="Grüße aus Köln ✓",
        body="Plain text: naïve café\n",
        from_email="Jürgen <juergen@example.com>",
        to=["Zoë <zoe@example.com>"],
        bcc=["hidden@example.com"],
    )
    message.attach_alternative("<p>HTML: naïve café</p>", "text/html")
    message.attach("data.bin", bytes(range(256)), "application/octet-stream")
    message.attach("notes.txt", "Ünïcödé attachment\n", "text/plain")
    assert message.send() == 1
    [received] = django_mail.wait_for_messages(1)
    assert received.mail_from == "juergen@example.com"
    assert received.rcpt_to == ("zoe@example.com", "hidden@example.com")
    assert b"hidden@" not in received.data
    parsed_message = parsed(received.data)
    assert parsed_message["Subject"] == "Grüße aus Köln ✓"
    assert parsed_message["From"].addresses[0].display_name == "Jürgen"
    assert parsed_message.get_body(("plain",)).get_content() == "Plain text: naïve café\n"
    # Django 6 builds parts with email's modern API, which ends text content with a newline.
    html = parsed_message.get_body(("html",)).get_content()
    assert html.rstrip("\n") == "<p>HTML: naïve café</p>"
    attachments = {
        part.get_filename(): part.get_content() for part in parsed_message.iter_attachments()
    }
    assert attachments["data.bin"] == bytes(range(256))
    assert attachments["notes.txt"] == "Ünïcödé attachment\n"


def test_a_message_without_recipients_is_skipped(django_mail: SMTPTestServer) -> None:
    assert mail.EmailMessage("s", "b", "ann@example.com", []).send() == 0
    assert django_mail.messages == []


def test_a_refused_message_raises_unless_fail_silently(smtp_server_factory: Any) -> None:
    server = smtp_server_factory(faults=[Fault(on="RCPT", reply="550 5.1.1 No such user")])
    backend_args = {"host": server.host, "port": server.port, "timeout": 30}
    try:
        with pytest.raises(rawsmtp.SMTPRecipientsRefusedError):
            mail.send_mail(
                "s",
                "b",
                "ann@example.com",
                ["x@example.com"],
                connection=mail.get_connection(**backend_args),
            )
        quiet = mail.get_connection(fail_silently=True, **backend_args)
        assert mail.send_mail("s", "b", "ann@example.com", ["x@example.com"], connection=quiet) == 0
    finally:
        reset_pools()


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_dead_port_waits_no_longer_than_email_timeout() -> None:
    with override_settings(
        EMAIL_BACKEND=BACKEND, EMAIL_HOST="127.0.0.1", EMAIL_PORT=dead_port(), EMAIL_TIMEOUT=1
    ):
        try:
            start = time.monotonic()
            assert (
                mail.send_mail("s", "b", "ann@example.com", ["bob@example.com"], fail_silently=True)
                == 0
            )
            assert time.monotonic() - start < 5  # EMAIL_TIMEOUT is 1 s; the pool retries for ~10 s
            with pytest.raises(rawsmtp.SMTPTimeoutError) as caught:
                mail.send_mail("s", "b", "ann@example.com", ["bob@example.com"])
            assert caught.value.phase == "send"
        finally:
            reset_pools()


def test_a_slow_server_is_not_waited_for_past_the_timeout(smtp_server_factory: Any) -> None:
    server = smtp_server_factory(faults=[Fault(on="DATA_END", delay=5)])
    with override_settings(
        EMAIL_BACKEND=BACKEND, EMAIL_HOST=server.host, EMAIL_PORT=server.port, EMAIL_TIMEOUT=0.5
    ):
        try:
            start = time.monotonic()
            assert (
                mail.send_mail("s", "b", "ann@example.com", ["bob@example.com"], fail_silently=True)
                == 0
            )
            assert time.monotonic() - start < 3
        finally:
            reset_pools()


def test_many_threads_share_the_pool(django_mail: SMTPTestServer) -> None:
    counts: list[int] = []

    def work(n: int) -> None:
        for k in range(5):
            counts.append(mail.send_mail("s", "b", "ann@example.com", [f"t{n}-{k}@example.com"]))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive()
    assert counts == [1] * 80
    assert len(django_mail.wait_for_messages(80)) == 80
    assert django_mail.connections <= 5


def test_settings_map_to_pool_options() -> None:
    backend = EmailBackend(
        host="mx.example.com",
        port=465,
        username="ann",
        password="pw",
        use_ssl=True,
        timeout=7,
        options={"max_connections": 2, "rateLimit": 10},
    )
    options = backend.pool_options
    assert (options["host"], options["port"], options["secure"], options["auth"]) == (
        "mx.example.com",
        465,
        True,
        ("ann", "pw"),
    )
    assert options["socket_timeout"] == options["connection_timeout"] == 7
    assert (options["max_connections"], options["rateLimit"]) == (2, 10)
    assert EmailBackend(host="mx.example.com", use_tls=True).pool_options["require_tls"] is True
    assert EmailBackend(host="mx.example.com").pool_options["ignore_tls"] is True  # as smtplib's
    url = EmailBackend(options="smtps://u:p@smtp.example.com:2465?maxConnections=3").pool_options
    assert (url["host"], url["port"], url["secure"], url["maxConnections"]) == (
        "smtp.example.com",
        2465,
        True,
        3,
    )
    with pytest.raises(ValueError, match="mutually exclusive"):
        EmailBackend(use_tls=True, use_ssl=True)
    with pytest.raises(rawsmtp.SMTPConfigError) as caught:
        EmailBackend(options={"max_conections": 2})
    assert caught.value.option == "max_conections"


def test_rawsmtp_options_setting_is_read() -> None:
    with override_settings(RAWSMTP_OPTIONS={"max_messages": 7}):
        assert EmailBackend().pool_options["max_messages"] == 7


def test_delivered_by_real_postfix(servers: Servers) -> None:
    box = unique("django")
    with override_settings(
        EMAIL_BACKEND=BACKEND,
        EMAIL_HOST=servers.host,
        EMAIL_PORT=servers.ports["postfix"],
        EMAIL_TIMEOUT=30,
    ):
        try:
            message = mail.EmailMessage(
                "Grüße ✓", "Körper: naïve\n", "sender@example.org", [f"{box}@example.test"]
            )
            message.attach("a.bin", b"\x00\x01\xff" * 100, "application/octet-stream")
            assert message.send() == 1
            pairs = [("m", "hi", "sender@example.org", [f"{box}@example.test"])] * 3
            assert mail.send_mass_mail(pairs) == 3
        finally:
            reset_pools()
    stored = servers.mail.wait_parsed(box, 4)
    first = next(m for m in stored if m["Subject"] == "Grüße ✓")
    assert first["Return-Path"] == "<sender@example.org>"
    assert first.get_body(("plain",)).get_content() == "Körper: naïve\n"
    assert next(first.iter_attachments()).get_content() == b"\x00\x01\xff" * 100
