"""The client state machine, driven with scripted server bytes (no sockets)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rawsmtp.protocol import (
    NEED_DATA,
    Authenticated,
    AuthenticationFailed,
    ClientConfig,
    ClientConnection,
    ConnectionClosed,
    Event,
    Greeting,
    LocalProtocolError,
    MessageAccepted,
    MessageFailed,
    Ready,
    RemoteProtocolError,
    SendBody,
    SMTPAuthenticationError,
    SMTPCapabilityError,
    SMTPDisconnectedError,
    SMTPError,
    SMTPRecipientsRefusedError,
    SMTPResponseError,
    SMTPTimeoutError,
    SMTPTLSError,
    StartTLS,
    State,
    Transaction,
)

EHLO_PIPELINING = b"250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n"


class Session:
    """A client plus helpers to play the server's part."""

    def __init__(self, **config: Any) -> None:
        config.setdefault("starttls", "never")
        self.client = ClientConnection(
            ClientConfig(local_hostname="client.test", **config), now=0.0
        )
        self.last: list[Event] = []

    def server(self, data: bytes) -> list[Event]:
        self.client.receive_data(data, now=0.0)
        self.last = self.events()
        return self.last

    def events(self) -> list[Event]:
        events = []
        while (event := self.client.next_event()) is not NEED_DATA:
            assert not isinstance(event, type(NEED_DATA))
            events.append(event)
        return events

    def sent(self) -> bytes:
        return self.client.data_to_send(now=0.0)

    def ready(self, ehlo: bytes = EHLO_PIPELINING) -> None:
        [greeting] = self.server(b"220 mx.test ESMTP\r\n")
        assert isinstance(greeting, Greeting)
        assert self.sent() == b"EHLO client.test\r\n"
        [ready] = self.server(ehlo)
        assert isinstance(ready, Ready) and self.client.state is State.READY

    def body(self, transaction: Transaction, data: bytes) -> None:
        """Answer the SendBody the last server bytes (or the last API call) produced."""
        [event] = self.events() or self.last
        self.last = []
        assert isinstance(event, SendBody) and event.transaction is transaction
        self.client.send_body(data)
        self.client.end_body()

    def send_to_dot(self, message: Transaction, data: bytes, *, now: float = 0.0) -> bytes:
        """Send a one-recipient ``message`` on a ready, pipelining session up to its final dot
        (MAIL, RCPT and DATA accepted); return the body and dot as written at ``now``."""
        self.client.send_mail(message)
        self.sent()
        self.server(b"250 ok\r\n250 ok\r\n354 go\r\n")
        self.body(message, data)
        return self.client.data_to_send(now=now)


def tx(*recipients: str, **options: Any) -> Transaction:
    return Transaction(mail_from="from@test", recipients=recipients or ("to@test",), **options)


def test_pipelined_transaction_is_one_write_and_next_follows_the_dot() -> None:
    session = Session()
    session.ready()
    first, second = tx("a@test", "b@test", size=10), tx("c@test")
    session.client.send_mail(first)
    session.client.send_mail(second)
    assert session.sent() == (
        b"MAIL FROM:<from@test> SIZE=10\r\nRCPT TO:<a@test>\r\nRCPT TO:<b@test>\r\nDATA\r\n"
    )
    assert session.server(b"250 ok\r\n250 ok\r\n550 5.1.1 unknown\r\n") == []
    session.server(b"354 go\r\n")
    session.body(first, b"hello\n.dot\n")
    assert session.sent() == (
        b"hello\r\n..dot\r\n.\r\nMAIL FROM:<from@test>\r\nRCPT TO:<c@test>\r\nDATA\r\n"
    )
    [accepted] = session.server(b"250 2.0.0 queued as X\r\n")
    assert isinstance(accepted, MessageAccepted)
    assert accepted.accepted == ("a@test",) and list(accepted.rejected) == ["b@test"]
    assert accepted.rejected["b@test"].code == 550
    assert accepted.rejected["b@test"].enhanced_code == "5.1.1"
    assert accepted.reply.text == "2.0.0 queued as X"
    session.server(b"250 ok\r\n250 ok\r\n354 go\r\n")
    session.body(second, b"x")
    session.client.quit()
    assert session.sent() == b"x\r\n.\r\nQUIT\r\n"
    events = session.server(b"250 ok\r\n221 bye\r\n")
    assert isinstance(events[0], MessageAccepted)
    assert events[1] == ConnectionClosed(error=None, unsent=(), unconfirmed=())


def test_every_recipient_refused_costs_one_rset_not_the_connection() -> None:
    session = Session()
    session.ready()
    message = tx("a@test", "b@test")
    session.client.send_mail(message)
    session.sent()
    [failed] = session.server(b"250 ok\r\n550 no\r\n551 no\r\n554 no valid recipients\r\n")
    assert isinstance(failed, MessageFailed)
    assert isinstance(failed.error, SMTPRecipientsRefusedError)
    assert set(failed.error.rejected) == {"a@test", "b@test"}
    assert session.sent() == b"RSET\r\n"
    assert session.server(b"250 reset\r\n") == []
    assert session.client.state is State.READY


def test_354_after_refused_envelope_gets_an_empty_message() -> None:
    """RFC 2920 3.1: a server may accept DATA although every RCPT failed."""
    session = Session()
    session.ready()
    session.client.send_mail(tx("a@test"))
    session.sent()
    assert session.server(b"250 ok\r\n550 no\r\n354 go\r\n") == []
    assert session.sent() == b".\r\n"
    [failed] = session.server(b"554 no recipients\r\n")
    assert isinstance(failed, MessageFailed)
    assert isinstance(failed.error, SMTPRecipientsRefusedError)


def test_refused_sender_reports_the_mail_reply() -> None:
    session = Session()
    session.ready()
    session.client.send_mail(tx("a@test"))
    session.sent()
    [failed] = session.server(b"553 5.7.1 sender rejected\r\n503 no mail\r\n503 no rcpt\r\n")
    assert isinstance(failed.error, SMTPResponseError)
    assert (failed.error.code, failed.error.command) == (553, "MAIL")
    assert failed.error.enhanced_code == "5.7.1"
    assert not failed.error.is_temporary
    assert session.sent() == b"RSET\r\n"


def test_message_refused_after_data() -> None:
    session = Session()
    session.ready()
    session.send_to_dot(tx(), b"spam")
    [failed] = session.server(b"451 4.7.1 greylisted\r\n")
    assert isinstance(failed, MessageFailed)
    assert failed.error.code == 451 and failed.error.is_temporary  # type: ignore[attr-defined]


def test_without_pipelining_commands_wait_for_replies() -> None:
    session = Session()
    session.ready(b"250-mx.test\r\n250 SIZE\r\n")
    session.client.send_mail(tx("a@test", "b@test"))
    assert session.sent() == b"MAIL FROM:<from@test>\r\n"
    session.server(b"250 ok\r\n")
    assert session.sent() == b"RCPT TO:<a@test>\r\n"
    session.server(b"550 no\r\n")
    assert session.sent() == b"RCPT TO:<b@test>\r\n"
    [failed] = session.server(b"550 no\r\n")
    assert isinstance(failed.error, SMTPRecipientsRefusedError)
    assert session.sent() == b"RSET\r\n"  # no DATA once every recipient is refused


def test_helo_fallback_when_ehlo_is_refused() -> None:
    session = Session()
    session.server(b"220 old server\r\n")
    session.sent()
    assert session.server(b"502 what?\r\n") == []
    assert session.sent() == b"HELO client.test\r\n"
    [ready] = session.server(b"250 hello\r\n")
    assert isinstance(ready, Ready) and not ready.extensions.pipelining


@pytest.mark.parametrize("greeting", [b"554 go away\r\n", b"421 busy\r\n"])
def test_refusing_greeting_closes_with_its_code(greeting: bytes) -> None:
    session = Session()
    [closed] = session.server(greeting)
    assert isinstance(closed, ConnectionClosed)
    assert isinstance(closed.error, SMTPResponseError)
    assert closed.error.code == int(greeting[:3])


def test_starttls_upgrade_resets_capabilities() -> None:
    session = Session(starttls="opportunistic")
    session.server(b"220 hi\r\n")
    session.sent()
    assert session.server(b"250-mx\r\n250-AUTH PLAIN\r\n250 STARTTLS\r\n") == []
    assert session.sent() == b"STARTTLS\r\n"
    [event] = session.server(b"220 go ahead\r\n")
    assert isinstance(event, StartTLS) and session.client.state is State.TLS_HANDSHAKE
    session.client.authenticate(FakeMechanism())  # asked for now, sent over TLS only
    assert session.sent() == b""
    session.client.start_tls_done()
    assert session.client.extensions.auth == frozenset()
    assert session.sent() == b"EHLO client.test\r\n"
    [ready] = session.server(b"250-mx\r\n250 AUTH PLAIN LOGIN\r\n")
    assert isinstance(ready, Ready) and ready.tls and ready.extensions.auth == {"PLAIN", "LOGIN"}
    assert session.sent() == b"AUTH PLAIN AHVzZXIAc2VjcmV0\r\n"


def test_data_pipelined_after_starttls_220_is_an_injection() -> None:
    """The aiosmtplib / Nodemailer STARTTLS response injection."""
    session = Session(starttls="opportunistic")
    session.server(b"220 hi\r\n")
    session.server(b"250-mx\r\n250 STARTTLS\r\n")
    session.sent()
    [closed] = session.server(b"220 go ahead\r\n250-injected\r\n250 AUTH PLAIN\r\n")
    assert isinstance(closed, ConnectionClosed)
    assert isinstance(closed.error, RemoteProtocolError)


def test_plaintext_bytes_during_the_handshake_close_the_session() -> None:
    session = Session(starttls="opportunistic")
    session.server(b"220 hi\r\n")
    session.server(b"250-mx\r\n250 STARTTLS\r\n")
    session.server(b"220 go ahead\r\n")
    [closed] = session.server(b"250 late injection\r\n")
    assert isinstance(closed, ConnectionClosed)
    assert isinstance(closed.error, RemoteProtocolError)


def test_required_tls_not_offered_closes_without_sending_mail() -> None:
    """smtplib-style STARTTLS stripping: a missing STARTTLS must not silently downgrade."""
    session = Session(starttls="required")
    message = tx()
    session.client.send_mail(message)
    session.server(b"220 hi\r\n")
    session.sent()
    [closed] = session.server(b"250-mx\r\n250 PIPELINING\r\n")
    assert isinstance(closed, ConnectionClosed) and isinstance(closed.error, SMTPTLSError)
    assert closed.unsent == (message,)
    assert session.sent() == b""


def test_required_tls_refused_by_server() -> None:
    session = Session(starttls="required")
    session.server(b"220 hi\r\n")
    session.server(b"250-mx\r\n250 STARTTLS\r\n")
    session.sent()
    [closed] = session.server(b"454 4.7.0 TLS not available\r\n")
    assert isinstance(closed.error, SMTPTLSError) and closed.error.code == 454


def test_421_mid_transaction_reports_unsent_messages() -> None:
    session = Session()
    session.ready()
    first, second = tx(), tx()
    session.client.send_mail(first)
    session.client.send_mail(second)
    session.sent()
    [closed] = session.server(b"421 4.3.2 shutting down\r\n")
    assert isinstance(closed, ConnectionClosed)
    assert isinstance(closed.error, SMTPResponseError) and closed.error.code == 421
    assert set(closed.unsent) == {first, second} and closed.unconfirmed == ()


def test_connection_lost_after_the_dot_makes_the_message_unconfirmed() -> None:
    session = Session()
    session.ready()
    message = tx()
    assert session.send_to_dot(message, b"body") == b"body\r\n.\r\n"
    [closed] = session.server(b"")
    assert isinstance(closed.error, SMTPDisconnectedError)
    assert closed.unconfirmed == (message,) and closed.unsent == ()


def test_timers_name_the_phase() -> None:
    session = Session(greeting_timeout=5.0, command_timeout=7.0)
    assert session.client.get_timer() == 5.0
    session.client.handle_timer(4.9)
    assert session.events() == []
    session.client.handle_timer(5.0)
    [closed] = session.events()
    assert isinstance(closed.error, SMTPTimeoutError) and closed.error.phase == "greeting"
    assert isinstance(closed.error, TimeoutError)


def dribble(client: ClientConnection, data: bytes, start: float, step: float) -> float:
    """Feed ``data`` one byte every ``step`` seconds from ``start``; return the last time."""
    now = start
    for index in range(len(data)):
        now = start + index * step
        client.handle_timer(now)
        client.receive_data(data[index : index + 1], now=now)
    return now


def test_a_dribbled_greeting_times_out_at_its_deadline() -> None:
    """Bytes that never complete a reply do not extend its deadline (RFC 5321 4.5.3.2)."""
    session = Session(greeting_timeout=5.0)
    endless = b"220-hello\r\n" * 10
    # A byte every 0.05 s: 4.95 s of greeting lines, never the last one.
    last = dribble(session.client, endless[:100], 0.0, 0.05)
    assert last < 5.0 and session.events() == [] and session.client.get_timer() == 5.0
    session.client.handle_timer(5.0)
    [closed] = session.events()
    assert isinstance(closed, ConnectionClosed) and isinstance(closed.error, SMTPTimeoutError)
    assert closed.error.phase == "greeting" and closed.error.command == "greeting"


def test_a_dribbled_ehlo_continuation_times_out_at_its_deadline() -> None:
    session = Session(command_timeout=3.0)
    session.client.receive_data(b"220 mx.test\r\n", now=1.0)
    [greeting] = session.events()
    assert isinstance(greeting, Greeting)
    assert session.client.data_to_send(now=1.5) == b"EHLO client.test\r\n"
    assert session.client.get_timer() == 4.5  # counted from when EHLO was handed out
    dribble(session.client, b"250-mx.test\r\n" + b"250-X\r\n" * 20, 2.0, 0.01)
    assert session.events() == [] and session.client.get_timer() == 4.5
    session.client.handle_timer(4.4)
    assert session.events() == []
    session.client.handle_timer(4.5)
    [closed] = session.events()
    assert isinstance(closed, ConnectionClosed) and isinstance(closed.error, SMTPTimeoutError)
    assert closed.error.phase == "command" and closed.error.command == "EHLO"


def test_each_pipelined_reply_gets_its_own_deadline() -> None:
    """A complete reply starts the next one's clock; a partial one does not."""
    session = Session(command_timeout=10.0)
    session.ready()
    session.client.send_mail(tx())
    session.client.data_to_send(now=100.0)
    assert session.client.get_timer() == 110.0  # MAIL's reply
    session.client.receive_data(b"250 ok\r\n25", now=108.0)
    assert session.client.get_timer() == 118.0  # RCPT's, from when MAIL's was complete
    session.client.receive_data(b"0 ok\r\n354 ", now=117.0)
    assert session.client.get_timer() == 127.0  # DATA's
    session.client.receive_data(b"go\r\n", now=126.0)
    assert session.client.get_timer() is None  # the body is ours to send: nothing awaited


def test_an_idle_session_keeps_no_stale_clock() -> None:
    session = Session(command_timeout=10.0)
    session.ready()
    session.client.receive_data(b"25", now=50.0)  # stray bytes while nothing is awaited
    session.client.send_mail(tx())
    session.client.data_to_send(now=500.0)
    assert session.client.get_timer() == 510.0


def test_data_timeout_applies_to_the_final_reply() -> None:
    session = Session(command_timeout=5.0, data_timeout=100.0)
    session.ready()
    assert session.client.get_timer() is None  # nothing awaited while idle
    message = tx()
    session.send_to_dot(message, b"x", now=10.0)
    assert session.client.get_timer() == 110.0
    session.client.handle_timer(110.0)
    [closed] = session.events()
    assert closed.error.phase == "data" and closed.unconfirmed == (message,)  # type: ignore[union-attr]


def test_lmtp_reports_per_recipient_delivery() -> None:
    session = Session(lmtp=True)
    session.server(b"220 lmtp\r\n")
    assert session.sent() == b"LHLO client.test\r\n"
    session.server(b"250-lmtp\r\n250 PIPELINING\r\n")
    message = tx("a@test", "b@test", "c@test")
    session.client.send_mail(message)
    session.sent()
    session.server(b"250 ok\r\n250 ok\r\n550 unknown\r\n250 ok\r\n354 go\r\n")
    session.body(message, b"x")
    session.sent()
    assert session.server(b"250 2.0.0 a delivered\r\n") == []
    [accepted] = session.server(b"452 4.2.2 over quota\r\n")
    assert isinstance(accepted, MessageAccepted)
    assert accepted.accepted == ("a@test",)
    assert accepted.reply.code == 250  # the delivery that succeeded, not the last reply
    assert accepted.rejected["b@test"].code == 550 and accepted.rejected["c@test"].code == 452


def test_lmtp_all_deliveries_failing_fails_the_message() -> None:
    session = Session(lmtp=True)
    session.server(b"220 lmtp\r\n")
    session.server(b"250 lmtp\r\n")
    message = tx("a@test")
    session.client.send_mail(message)
    session.sent()
    session.server(b"250 ok\r\n")
    session.server(b"250 ok\r\n")
    session.server(b"354 go\r\n")
    session.body(message, b"x")
    [failed] = session.server(b"552 5.2.2 quota\r\n")
    assert isinstance(failed, MessageFailed) and failed.error.code == 552  # type: ignore[attr-defined]


def test_chunking_sends_bdat_and_rsets_after_a_failure() -> None:
    session = Session(pipelining="envelope")  # nothing after BDAT LAST before its reply
    session.ready(b"250-mx\r\n250-PIPELINING\r\n250 CHUNKING\r\n")
    message, after = tx(), tx("z@test")
    session.client.send_mail(message)
    session.client.send_mail(after)
    assert session.sent() == b"MAIL FROM:<from@test>\r\nRCPT TO:<to@test>\r\n"
    session.body(message, b"a\n.b")
    assert session.sent() == b"BDAT 7 LAST\r\na\r\n.b\r\n"
    failed, next_body = session.server(b"250 ok\r\n250 ok\r\n554 5.6.0 bad content\r\n")
    assert isinstance(failed, MessageFailed) and failed.error.code == 554  # type: ignore[attr-defined]
    assert isinstance(next_body, SendBody) and next_body.transaction is after
    assert session.sent() == b"RSET\r\nMAIL FROM:<from@test>\r\nRCPT TO:<z@test>\r\n"


def test_chunking_success() -> None:
    session = Session()
    session.ready(b"250-mx\r\n250-PIPELINING\r\n250 CHUNKING\r\n")
    message = tx()
    session.client.send_mail(message)
    session.body(message, b"hi\n")
    session.sent()
    [accepted] = session.server(b"250 ok\r\n250 ok\r\n250 2.0.0 queued\r\n")
    assert isinstance(accepted, MessageAccepted)


def test_capabilities_are_checked_before_anything_is_written() -> None:
    session = Session()
    session.ready()
    utf8, big = tx("jörg@test", smtputf8=True), tx(size=1001)
    session.client.send_mail(utf8)
    session.client.send_mail(big)
    assert session.sent() == b"" and session.events() == []  # never inside send_mail()
    assert session.client.get_timer() == 0.0  # but due at once
    session.client.handle_timer(0.0)
    first, second = session.events()
    assert isinstance(first, MessageFailed) and first.transaction is utf8
    assert isinstance(first.error, SMTPCapabilityError) and "SMTPUTF8" in str(first.error)
    assert isinstance(second, MessageFailed) and second.transaction is big
    assert isinstance(second.error, SMTPCapabilityError) and "SIZE" in str(second.error)
    assert session.sent() == b"" and session.client.get_timer() is None
    assert issubclass(SMTPCapabilityError, ValueError)


@pytest.mark.parametrize("release", ["timer", "reply", "lost"])
def test_capability_failure_without_pipelining_lets_the_next_message_go(release: str) -> None:
    """Without PIPELINING, the message after a refused one is written as soon as the failure
    is reported, whatever reports it."""
    session = Session()
    session.ready(b"250-mx.test\r\n250 SIZE 100\r\n")
    big, small = tx(size=101), tx("b@test", size=10)
    session.client.send_mail(big)
    if release == "reply":  # any bytes, even a partial reply
        events = session.server(b"250-partial")
    else:
        session.client.handle_timer(1.0) if release == "timer" else session.client.connection_lost()
        events = session.events()
    assert isinstance(events[0], MessageFailed) and events[0].transaction is big
    if release == "lost":
        assert isinstance(events[1], ConnectionClosed) and events[1].unsent == ()
        return
    session.client.send_mail(small)
    assert session.sent() == b"MAIL FROM:<from@test> SIZE=10\r\n"


def test_capabilities_of_messages_queued_before_ehlo() -> None:
    session = Session()
    early = tx(size=5000)
    session.client.send_mail(early)
    session.server(b"220 hi\r\n")
    session.sent()
    [ready, failed] = session.server(EHLO_PIPELINING)
    assert isinstance(ready, Ready) and isinstance(failed, MessageFailed)
    assert isinstance(failed.error, SMTPCapabilityError)
    assert session.sent() == b""


class FakeMechanism:
    """A scripted SASL mechanism."""

    name = "PLAIN"
    failure_detail: str | None = None

    def __init__(self, initial: bytes | None = b"\x00user\x00secret", fail: bool = False) -> None:
        self._initial, self._fail, self.challenges = initial, fail, []  # type: list[bytes]
        self.completed = False

    def initial_response(self) -> bytes | None:
        return self._initial

    def respond(self, challenge: bytes) -> bytes:
        self.challenges.append(challenge)
        if self._fail:
            raise SMTPAuthenticationError("bad server proof")
        return b"secret-answer"

    def complete(self) -> None:
        self.completed = True


def test_auth_success_and_trace_redaction() -> None:
    session = Session(trace=True)
    session.ready()
    mechanism = FakeMechanism()
    session.client.authenticate(mechanism)
    assert session.sent() == b"AUTH PLAIN AHVzZXIAc2VjcmV0\r\n"
    [event] = session.server(b"235 2.7.0 ok\r\n")
    assert isinstance(event, Authenticated) and mechanism.completed
    trace = repr(session.client.take_trace())
    assert "AHVzZXIAc2VjcmV0" not in trace and "redacted" in trace


def test_auth_challenge_and_failure() -> None:
    session = Session(trace=True)
    session.ready()
    mechanism = FakeMechanism(initial=None)
    session.client.authenticate(mechanism)
    assert session.sent() == b"AUTH PLAIN\r\n"
    session.server(b"334 Y2hhbGxlbmdl\r\n")
    assert mechanism.challenges == [b"challenge"]
    assert session.sent() == b"c2VjcmV0LWFuc3dlcg==\r\n"
    [failed] = session.server(b"535 5.7.8 bad credentials\r\n")
    assert isinstance(failed, AuthenticationFailed) and failed.error.code == 535
    assert "c2VjcmV0" not in repr(session.client.take_trace())
    assert session.client.state is State.READY


def test_mechanism_error_cancels_the_exchange() -> None:
    session = Session()
    session.ready()
    session.client.authenticate(FakeMechanism(initial=None, fail=True))
    session.sent()
    session.server(b"334 \r\n")
    assert session.sent() == b"*\r\n"
    [failed] = session.server(b"501 cancelled\r\n")
    assert isinstance(failed, AuthenticationFailed)
    assert str(failed.error) == "bad server proof"


def test_long_initial_response_goes_after_an_empty_challenge() -> None:
    session = Session()
    session.ready()
    session.client.authenticate(FakeMechanism(initial=b"t" * 600))
    assert session.sent() == b"AUTH PLAIN\r\n"
    session.server(b"334 \r\n")
    assert len(session.sent()) > 800


def test_reply_without_a_command_is_a_protocol_error() -> None:
    session = Session()
    session.ready()
    [closed] = session.server(b"250 surprise\r\n")
    assert isinstance(closed.error, RemoteProtocolError)


def test_api_misuse_is_a_local_protocol_error() -> None:
    session = Session()
    session.client.authenticate(FakeMechanism())
    with pytest.raises(LocalProtocolError, match="already called"):
        session.client.authenticate(FakeMechanism())
    with pytest.raises(LocalProtocolError):
        session.client.send_body(b"x")
    with pytest.raises(LocalProtocolError):
        session.client.start_tls_done()
    with pytest.raises(ValueError):
        ClientConfig(local_hostname="bad name")


def test_quit_before_greeting_and_server_close_after_quit() -> None:
    session = Session()
    session.client.quit()
    [closed] = session.events()
    assert closed == ConnectionClosed(error=None, unsent=(), unconfirmed=())
    session = Session()
    session.ready()
    session.client.quit()
    assert session.sent() == b"QUIT\r\n"
    [closed] = session.server(b"")
    assert isinstance(closed, ConnectionClosed) and closed.error is None


server_chunks = st.lists(
    st.binary(max_size=40)
    | st.sampled_from(
        [
            b"220 hi\r\n",
            b"250-mx\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 STARTTLS\r\n",
            b"250 ok\r\n",
            b"354 go\r\n",
            b"334 \r\n",
            b"421 bye\r\n",
            b"550 no\r\n",
            b"235 ok\r\n",
            b"",
        ]
    ),
    max_size=25,
)


@settings(max_examples=300)
@given(
    server_chunks,
    st.sampled_from(["opportunistic", "never", "required"]),
    st.booleans(),
    st.booleans(),
)
def test_any_server_bytes_end_in_events_never_in_exceptions(
    chunks: list[bytes], starttls: str, lmtp: bool, mail_first: bool
) -> None:
    """Whatever the server sends, the client reports it as events; it never raises."""
    session = Session(starttls=starttls, lmtp=lmtp)
    message = tx("a@test", "b@test")
    if mail_first:
        session.client.send_mail(message)
    closed = 0
    for chunk in chunks:
        for event in session.server(chunk):
            live = session.client.state is not State.CLOSED
            if isinstance(event, SendBody) and live:
                session.client.send_body(b"body\r\n.\r\n")
                session.client.end_body()
            elif isinstance(event, StartTLS) and live:
                session.client.start_tls_done()
            elif isinstance(event, Ready) and not mail_first and live:
                session.client.authenticate(FakeMechanism())
            elif isinstance(event, Authenticated | AuthenticationFailed) and live:
                session.client.send_mail(message)
            elif isinstance(event, ConnectionClosed):
                closed += 1
                assert event.error is None or isinstance(event.error, SMTPError)
        session.sent()
    assert closed <= 1


def test_without_pipelining_the_next_mail_follows_the_rset_reply() -> None:
    session = Session()
    session.ready(b"250 mx.test\r\n")
    first, second = tx("a@test"), tx("b@test")
    session.client.send_mail(first)
    session.client.send_mail(second)
    assert session.sent() == b"MAIL FROM:<from@test>\r\n"
    session.server(b"250 ok\r\n")
    assert session.sent() == b"RCPT TO:<a@test>\r\n"
    [failed] = session.server(b"550 no\r\n")
    assert isinstance(failed, MessageFailed) and session.sent() == b"RSET\r\n"
    session.server(b"250 ok\r\n")
    assert session.sent() == b"MAIL FROM:<from@test>\r\n"


@settings(max_examples=300)
@given(
    st.sampled_from(
        [
            b"250 mx.test\r\n",
            EHLO_PIPELINING,
            b"250-mx.test\r\n250-PIPELINING\r\n250 CHUNKING\r\n",
            b"250-mx.test\r\n250 CHUNKING\r\n",
        ]
    ),
    st.lists(
        st.sampled_from(["mail", "two recipients", "quit"])
        | st.lists(
            st.sampled_from([b"250 ok\r\n", b"354 go\r\n", b"550 no\r\n", b"451 later\r\n"]),
            min_size=1,
            max_size=4,
        ).map(b"".join),
        max_size=30,
    ),
)
def test_calls_and_replies_that_skip_the_pump_leave_it_nothing_to_do(
    ehlo: bytes, steps: list[str | bytes]
) -> None:
    """Where the client does not pump (a busy writer, a pipelined reply), pumping adds nothing."""
    session = Session()
    session.ready(ehlo)
    for step in steps:
        if session.client.state is not State.READY:
            break
        if step == "mail":
            session.client.send_mail(tx())
        elif step == "two recipients":
            session.client.send_mail(tx("a@test", "b@test"))
        elif step == "quit":
            session.client.quit()
        else:
            assert isinstance(step, bytes)
            session.server(step)
        events = session.last if isinstance(step, bytes) else session.events()
        for event in events:
            if isinstance(event, SendBody) and session.client.state is not State.CLOSED:
                session.client.send_body(b"body\r\n")
                session.client.end_body()
        session.sent()
        session.client._pump()
        assert session.sent() == b"" and session.events() == []


def test_transactions_in_progress_counts_until_each_outcome_is_reported() -> None:
    session = Session()
    session.ready()
    first, second = tx("a@test"), tx("b@test")
    assert session.client.transactions_in_progress == 0
    session.client.send_mail(first)
    session.client.send_mail(second)
    assert session.client.transactions_in_progress == 2  # one written, one queued
    session.sent()
    session.server(b"250 ok\r\n250 ok\r\n354 go\r\n")
    session.body(first, b"x")
    session.sent()
    assert session.client.transactions_in_progress == 2  # both written, no outcome yet
    [accepted] = session.server(b"250 ok\r\n")
    assert isinstance(accepted, MessageAccepted) and accepted.transaction is first
    assert session.client.transactions_in_progress == 1
    session.server(b"250 ok\r\n550 no\r\n554 no valid recipients\r\n")
    assert session.client.transactions_in_progress == 0


def test_stray_empty_lines_before_the_greeting_and_after_ehlo_are_skipped() -> None:
    session = Session()
    [greeting] = session.server(b"\r\n220 mx.test\r\n")
    assert isinstance(greeting, Greeting)
    session.sent()
    [ready] = session.server(b"250-mx.test\r\n250 PIPELINING\r\n\r\n")
    assert isinstance(ready, Ready) and ready.extensions.pipelining


def test_last_words_before_the_server_closes_mid_line_are_kept() -> None:
    session = Session()
    session.ready()
    message = tx()
    session.client.send_mail(message)
    session.sent()
    session.server("421 4.3.2 Прощай".encode())
    [closed] = session.server(b"")
    assert isinstance(closed, ConnectionClosed) and isinstance(closed.error, SMTPResponseError)
    assert closed.error.code == 421 and closed.error.enhanced_code == "4.3.2"
    assert closed.error.response == "4.3.2 Прощай"
    assert closed.error.response_bytes == "4.3.2 Прощай".encode()
    assert closed.unsent == (message,)  # refused, like a complete 421


def test_a_cut_reply_of_another_code_is_kept_on_the_disconnection_error() -> None:
    session = Session()
    session.server(b"220 hi\r\n")
    session.server(b"554-5.7.1 go away\r\n554 and st")
    [closed] = session.server(b"")
    assert isinstance(closed.error, SMTPDisconnectedError)
    assert closed.error.code == 554 and closed.error.command == "EHLO"
    assert closed.error.response == "5.7.1 go away\nand st"


def test_errors_keep_the_reply_bytes_and_decode_them_losslessly() -> None:
    session = Session()
    session.ready()
    message = tx()
    session.client.send_mail(message)
    session.sent()
    [failed] = session.server(b"550 5.1.0 caf\xe9 refus\xe9\r\n550 no\r\n554 no\r\n")
    assert isinstance(failed, MessageFailed) and isinstance(failed.error, SMTPResponseError)
    assert failed.error.response_bytes == b"5.1.0 caf\xe9 refus\xe9"
    assert failed.error.response == "5.1.0 café refusé"  # Latin-1, as it is not UTF-8


def test_repr_shows_state_and_traffic() -> None:
    session = Session()
    assert repr(session.client) == "<ClientConnection state=GREETING pending=1 queued=0>"
    session.ready(b"250 mx.test\r\n")  # no PIPELINING
    session.client.send_mail(tx())
    session.client.send_mail(tx())
    assert repr(session.client) == "<ClientConnection state=READY pending=1 queued=1>"


def test_every_state_change_is_checked_against_the_table() -> None:
    from rawsmtp.protocol._state import _TRANSITIONS

    assert set(_TRANSITIONS) == set(State)
    assert all(State.CLOSED in targets for state, targets in _TRANSITIONS.items() if targets)
    session = Session()
    with pytest.raises(AssertionError, match="no transition from GREETING to READY"):
        session.client._enter(State.READY)  # a core bug, not a caller's mistake
    assert session.client.state is State.GREETING
