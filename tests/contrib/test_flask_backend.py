"""rawsmtp.contrib.flask.EmailBackend as Flask-Mailman's MAIL_BACKEND, to the test server."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask_mailman import EmailMessage, Mail

import rawsmtp
from rawsmtp.contrib.flask import EmailBackend, reset_pools
from rawsmtp.testing import Fault, SMTPTestServer


def make_app(server: SMTPTestServer, **config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(
        MAIL_BACKEND="rawsmtp.contrib.flask.EmailBackend",
        MAIL_SERVER=server.host,
        MAIL_PORT=server.port,
        MAIL_TIMEOUT=30,
        MAIL_DEFAULT_SENDER="app@example.com",
        **config,
    )
    Mail(app)
    return app


@pytest.fixture
def app(smtp_server: SMTPTestServer) -> Iterator[Flask]:
    yield make_app(smtp_server)
    reset_pools()


def test_send_mail_and_mass_mail_through_flask_mailman(
    app: Flask, smtp_server: SMTPTestServer
) -> None:
    with app.app_context():
        mail = app.extensions["mailman"]
        assert isinstance(mail.get_connection(), EmailBackend)
        assert (
            mail.send_mail("Grüße", "Körper ✓\n", "Ann <ann@example.com>", ["bob@example.com"]) == 1
        )
        batch = [(f"n{n}", "hi", None, [f"r{n}@example.com"]) for n in range(5)]
        assert mail.send_mass_mail(batch) == 5
    received = smtp_server.wait_for_messages(6)
    first = next(m for m in received if m.rcpt_to == ("bob@example.com",))
    assert first.mail_from == "ann@example.com"
    parsed = email.message_from_bytes(
        first.data.replace(b"\r\n", b"\n"), policy=email.policy.default
    )
    assert parsed["Subject"] == "Grüße" and parsed.get_content() == "Körper ✓\n"
    assert {m.mail_from for m in received if m is not first} == {"app@example.com"}


def test_attachment_and_bcc(app: Flask, smtp_server: SMTPTestServer) -> None:
    with app.app_context():
        message = EmailMessage("s", "b", to=["to@example.com"], bcc=["hidden@example.com"])
        message.attach("x.bin", b"\x00\xff" * 50, "application/octet-stream")
        assert message.send() == 1
    [received] = smtp_server.wait_for_messages(1)
    assert received.rcpt_to == ("to@example.com", "hidden@example.com")
    parsed = email.message_from_bytes(received.data, policy=email.policy.default)
    assert next(parsed.iter_attachments()).get_content() == b"\x00\xff" * 50


def test_fail_silently_and_the_options_setting(smtp_server_factory: Any) -> None:
    server = smtp_server_factory(faults=[Fault(on="RCPT", reply="550 5.1.1 No such user")])
    app = make_app(server, RAWSMTP_OPTIONS={"max_connections": 1})
    try:
        with app.app_context():
            mail = app.extensions["mailman"]
            backend = mail.get_connection(fail_silently=True)
            assert backend.pool_options["max_connections"] == 1
            assert backend.pool_options["port"] == server.port
            assert mail.send_mail("s", "b", None, ["x@example.com"], fail_silently=True) == 0
            with pytest.raises(rawsmtp.SMTPRecipientsRefusedError):
                mail.send_mail("s", "b", None, ["x@example.com"])
    finally:
        reset_pools()
