"""ServerConnection's hooks for drivers that embed it (rawsmtp.testing): AUTH before its exchange,
XOAUTH2 judged by a callback, BDAT unknown without CHUNKING, lenient paths, the envelope."""

from __future__ import annotations

import base64
import json

import pytest

from rawsmtp import protocol as smtp
from rawsmtp.protocol._server_auth import ServerXOAuth2
from rawsmtp.protocol._server_events import AuthRequested

EHLO = b"EHLO c.test\r\n"


def server(**options: object) -> smtp.ServerConnection:
    mechanisms = {
        **smtp.PASSWORD_MECHANISMS,
        "XOAUTH2": lambda: ServerXOAuth2(lambda user, token: (user, token) == ("ann", "good")),
    }
    options = {"sync": "ignore", **options}
    config = smtp.ServerConfig(hostname="s.test", mechanisms=mechanisms, **options)  # type: ignore[arg-type]
    connection = smtp.ServerConnection(config)
    connection.greet()
    connection.receive_data(EHLO)
    assert isinstance(connection.next_event(), smtp.Hello)
    connection.accept()
    connection.data_to_send()
    return connection


def events(connection: smtp.ServerConnection, data: bytes) -> list[smtp.ServerEvent]:
    """Feed ``data``; the events up to the first that awaits an answer (or NEED_DATA)."""
    connection.receive_data(data)
    seen: list[smtp.ServerEvent] = []
    while (event := connection.next_event()) is not smtp.NEED_DATA:
        seen.append(event)
        if isinstance(event, smtp.Command):
            break
    return seen


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def test_auth_is_reported_before_its_first_challenge_and_can_be_refused() -> None:
    connection = server()
    (requested,) = events(connection, b"AUTH LOGIN\r\nNOOP\r\n")
    assert requested == AuthRequested(
        verb="AUTH", argument="LOGIN", reply="334 VXNlcm5hbWU6", mechanism="LOGIN"
    )
    assert connection.data_to_send() == b""  # nothing goes out before the driver answers
    connection.respond("454 4.7.0 Try later")
    assert connection.data_to_send() == b"454 4.7.0 Try later\r\n"
    (noop,) = events(connection, b"")
    assert noop.verb == "NOOP"  # a command again, not a SASL response
    assert connection.auth_user is None


def test_an_accepted_auth_request_runs_the_exchange() -> None:
    connection = server()
    assert [type(e) for e in events(connection, b"AUTH LOGIN\r\n")] == [AuthRequested]
    connection.accept()
    assert connection.data_to_send() == b"334 VXNlcm5hbWU6\r\n"
    assert events(connection, b64(b"ann") + b"\r\n") == []
    assert connection.data_to_send() == b"334 UGFzc3dvcmQ6\r\n"
    (auth,) = events(connection, b64(b"pw") + b"\r\n")
    assert isinstance(auth, smtp.Authenticate) and (auth.username, auth.password) == ("ann", "pw")


def test_an_initial_response_that_settles_it_reports_authenticate_only() -> None:
    connection = server()
    (auth,) = events(connection, b"AUTH PLAIN " + b64(b"\0ann\0pw") + b"\r\n")
    assert isinstance(auth, smtp.Authenticate) and auth.password == "pw"
    assert auth.argument == "PLAIN " + b64(b"\0ann\0pw").decode()  # the line's, as received


def test_xoauth2_good_token_needs_no_password_check() -> None:
    connection = server()
    (auth,) = events(
        connection, b"AUTH XOAUTH2 " + b64(b"user=ann\1auth=Bearer good\1\1") + b"\r\n"
    )
    assert isinstance(auth, smtp.Authenticate) and (auth.username, auth.password) == ("ann", None)
    connection.accept()
    assert connection.auth_user == "ann"


@pytest.mark.parametrize(("answer", "code"), [(b"", b"535"), (b"*", b"501")])
def test_xoauth2_bad_token_gets_the_gmail_error_challenge(answer: bytes, code: bytes) -> None:
    connection = server()
    initial = b"AUTH XOAUTH2 " + b64(b"user=ann\1auth=Bearer bad\1\1") + b"\r\n"
    (requested,) = events(connection, initial)
    assert isinstance(requested, AuthRequested)
    error = json.loads(base64.b64decode(requested.reply[4:]))
    assert error["status"] == "401" and error["schemes"] == "Bearer"
    connection.accept()
    (refused,) = events(connection, answer + b"\r\n")
    assert isinstance(refused, smtp.CommandRejected) and refused.reply[:3] == code.decode()
    connection.accept()
    assert connection.data_to_send().split(b"\r\n")[1][:3] == code


def test_bdat_without_chunking_is_unknown_and_its_octets_are_commands() -> None:
    connection = server(capabilities=("PIPELINING",))
    (bdat,) = events(connection, b"BDAT 6 LAST\r\nNOOP\r\n")
    assert isinstance(bdat, smtp.CommandRejected) and bdat.reply.startswith("502")
    connection.accept()
    (noop,) = events(connection, b"")
    assert noop.verb == "NOOP"


@pytest.mark.parametrize(("addresses", "code"), [("check", "501"), ("any", "250")])
def test_lenient_paths_take_whatever_is_in_the_brackets(addresses: str, code: str) -> None:
    connection = server(addresses=addresses)
    (mail,) = events(connection, b"MAIL FROM:<a b@x.test>\r\n")
    assert mail.reply[:3] == code
    connection.respond("503 5.5.1 not this one")  # a refusal, whatever the verdict
    (empty,) = events(connection, b"MAIL FROM:<>\r\n")
    assert isinstance(empty, smtp.MailFrom)  # the null path either way
    connection.accept()
    (rcpt,) = events(connection, b"RCPT TO:<>\r\n")
    assert isinstance(rcpt, smtp.CommandRejected)  # a recipient is never empty


def test_envelope_holds_the_accepted_commands_until_reset() -> None:
    connection = server()
    assert connection.envelope is None
    (mail,) = events(connection, b"MAIL FROM:<a@x.test> SIZE=10\r\n")
    connection.accept()
    (rcpt,) = events(connection, b"RCPT TO:<b@x.test>\r\n")
    connection.accept()
    events(connection, b"RCPT TO:<c@x.test>\r\n")
    connection.respond("550 5.1.1 No")
    assert connection.envelope == (mail, (rcpt,))
    events(connection, b"RSET\r\n")
    connection.accept()
    assert connection.envelope is None
