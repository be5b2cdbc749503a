"""ServerConnection fed raw bytes: the defences and rules a client library would never trigger."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rawsmtp import protocol as smtp
from rawsmtp.protocol._commands import xtext
from rawsmtp.protocol._server_commands import xtext_decode


def server(**options: object) -> smtp.ServerConnection:
    """A greeted server; it takes pipelined input anyway unless a test asks for ``sync``."""
    options = {"sync": "ignore", **options}
    connection = smtp.ServerConnection(smtp.ServerConfig(hostname="s.test", **options))  # type: ignore[arg-type]
    connection.greet()
    connection.data_to_send()
    return connection


def converse(connection: smtp.ServerConnection, data: bytes) -> tuple[list[object], bytes]:
    """Feed ``data``, accept every command; the events and everything the server wrote."""
    connection.receive_data(data)
    events: list[object] = []
    while (event := connection.next_event()) is not smtp.NEED_DATA:
        events.append(event)
        if isinstance(event, smtp.Command):
            connection.accept()
    return events, connection.data_to_send()


def codes(output: bytes) -> list[str]:
    return [line[:3] for line in output.decode().split("\r\n") if line[3:4] == " "]


EHLO = b"EHLO c.test\r\n"
ENVELOPE = b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\n"


@pytest.mark.parametrize("sync", ["ignore", "reject"])
def test_plaintext_pipelined_after_starttls_is_discarded_unread(sync: str) -> None:
    connection = server(starttls=True, sync=sync)
    converse(connection, EHLO)
    events, output = converse(connection, b"STARTTLS\r\nMAIL FROM:<evil@x.test>\r\n")
    assert codes(output) == ["220"]
    assert events[-1] == smtp.TLSStart(discarded=len(b"MAIL FROM:<evil@x.test>\r\n"))
    connection.receive_data(b"RCPT TO:<late@x.test>\r\n")  # still before the handshake
    connection.start_tls_done()
    events, output = converse(connection, b"MAIL FROM:<a@x.test>\r\n")
    assert codes(output) == ["503"]  # EHLO again first: nothing of the old session survived
    assert connection.discarded == 48 and connection.tls


@pytest.mark.parametrize(
    "content",
    [b"one\n.\ntwo\r\n.\r\n", b"one\r\n.\ntwo\r\n.\r\n", b"one\n.\r\ntwo\r\n.\r\n"],
)
def test_only_crlf_dot_crlf_ends_data_and_bare_lf_is_refused(content: bytes) -> None:
    connection = server()
    converse(connection, EHLO + ENVELOPE + b"DATA\r\n")
    events, output = converse(connection, content)
    (message,) = [e for e in events if isinstance(e, smtp.MessageReceived)]
    assert message.data == content[: -len(b".\r\n")].replace(b"\r\n..", b"\r\n.")
    assert codes(output) == ["550"] and connection.mail_from is None


def test_bare_lf_accepted_when_configured() -> None:
    connection = server(bare_lf="accept")
    converse(connection, EHLO + ENVELOPE + b"DATA\r\n")
    _, output = converse(connection, b"a\nb\r\n.\r\n")
    assert codes(output) == ["250"]


def test_bare_lf_command_line_is_refused() -> None:
    _, output = converse(server(), b"EHLO c.test\n")
    assert codes(output) == ["500"]


def test_a_line_over_the_limit_is_answered_500_and_closes() -> None:
    connection = server(max_line=512)
    events, output = converse(connection, b"NOOP " + b"x" * 600)
    assert output == b"500 5.5.6 Line too long\r\n"
    assert isinstance(events[-1], smtp.ServerClosed)
    assert isinstance(events[-1].error, smtp.RemoteProtocolError)


def test_pipelining_without_the_extension_is_refused() -> None:
    connection = server(capabilities=("SIZE 1000",), sync="reject")
    converse(connection, EHLO)
    _, output = converse(connection, ENVELOPE)
    assert codes(output) == ["503", "503"]  # MAIL out of sync; RCPT then has no MAIL


def test_pipelining_honours_group_enders() -> None:
    connection = server(sync="reject")
    _, output = converse(connection, EHLO + b"NOOP\r\n")
    assert codes(output) == ["503", "250"]  # EHLO must end its group
    _, output = converse(connection, EHLO)
    _, output = converse(connection, ENVELOPE + b"DATA\r\nSubject: early\r\n")
    assert codes(output)[:3] == ["250", "250", "503"]  # content before 354: DATA refused


def test_sync_ignore_takes_pipelined_commands_anyway() -> None:
    connection = server(capabilities=("SIZE 1000",))
    _, output = converse(connection, EHLO + ENVELOPE)
    assert codes(output) == ["250", "250", "250"]


def test_replies_leave_in_command_order_one_buffer_per_group() -> None:
    connection = server()
    converse(connection, EHLO)
    connection.receive_data(ENVELOPE + b"RCPT TO:<c@x.test>\r\n")
    mail = connection.next_event()
    assert isinstance(mail, smtp.MailFrom)
    with pytest.raises(smtp.LocalProtocolError):
        connection.next_event()  # the RCPT waits until MAIL is answered
    assert connection.data_to_send() == b""
    connection.accept()
    _, output = converse(connection, b"")
    assert codes(output) == ["250", "250", "250"]


def test_bdat_chunk_is_consumed_even_when_refused() -> None:
    connection = server()
    converse(connection, EHLO)
    _, output = converse(connection, b"BDAT 12 LAST\r\nRSET\r\nNOOP\r\nNOOP\r\n")
    assert codes(output) == ["503", "250"]  # the 12 octets were the chunk, not commands


def test_malformed_bdat_closes() -> None:
    connection = server()
    converse(connection, EHLO)
    events, output = converse(connection, b"BDAT ten\r\n")
    assert codes(output) == ["501"] and isinstance(events[-1], smtp.ServerClosed)


def test_a_refused_greeting_answers_503_to_all_but_quit() -> None:
    connection = smtp.ServerConnection(smtp.ServerConfig(hostname="s.test"))
    connection.greet("554 5.7.1 Go away")
    assert connection.data_to_send() == b"554 5.7.1 Go away\r\n"
    events, output = converse(connection, EHLO)
    assert codes(output) == ["503"]
    events, output = converse(connection, b"QUIT\r\n")
    assert codes(output) == ["221"] and events[-1] == smtp.ServerClosed(error=None)


def test_too_many_errors_end_the_session_with_421() -> None:
    connection = server(max_errors=3)
    events, output = converse(connection, b"BOGUS\r\n" * 4)
    assert codes(output) == ["500", "500", "500", "421"]
    assert isinstance(events[-1], smtp.ServerClosed)


def test_rset_noop_vrfy_and_unknown_commands() -> None:
    connection = server()
    converse(connection, EHLO + ENVELOPE)
    assert connection.recipients == ("b@x.test",)
    _, output = converse(connection, b"RSET\r\n")
    assert codes(output) == ["250"] and connection.mail_from is None
    for line, code in [(b"NOOP\r\n", "250"), (b"VRFY x\r\n", "252"), (b"XYZZY\r\n", "500")]:
        assert codes(converse(connection, line)[1]) == [code]


def test_enhanced_codes_only_when_advertised() -> None:
    connection = server(capabilities=("PIPELINING",))
    converse(connection, EHLO)
    assert converse(connection, b"NOOP\r\n")[1] == b"250 Ok\r\n"


def test_extension_parameters_need_the_extension() -> None:
    connection = server(capabilities=("PIPELINING",))
    converse(connection, EHLO)
    assert codes(converse(connection, b"MAIL FROM:<a@x.test> SMTPUTF8\r\n")[1]) == ["555"]
    assert codes(converse(connection, b"MAIL FROM:<\xc3\xa5@x.test>\r\n")[1]) == ["553"]


def test_misuse_is_a_local_protocol_error() -> None:
    connection = server()
    with pytest.raises(smtp.LocalProtocolError):
        connection.accept()
    with pytest.raises(smtp.LocalProtocolError):
        connection.start_tls_done()
    converse(connection, b"")
    connection.receive_data(b"NOOP\r\n")
    connection.next_event()
    with pytest.raises(smtp.LocalProtocolError):
        connection.respond("25O not a code")


def test_client_closing_mid_session_is_a_disconnect() -> None:
    connection = server()
    events, _ = converse(connection, EHLO + b"MAIL FROM:<a@x.test>")
    events, _ = converse(connection, b"")
    assert isinstance(events[-1], smtp.ServerClosed)
    assert isinstance(events[-1].error, smtp.SMTPDisconnectedError)


@given(st.text())
def test_xtext_round_trips(text: str) -> None:
    assert xtext_decode(xtext(text)) == text
