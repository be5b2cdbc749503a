"""rawsmtp.testing.SMTPTestServer, driven by smtplib and by raw sockets (not by rawsmtp itself).

Every fault mode is checked from the wire: what a client sees, and what the server recorded.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from rawsmtp.testing import CA_FILE, Fault, FaultContext, SMTPTestServer

MESSAGE = b"From: a@example.test\r\nSubject: t\r\n\r\n.starts with a dot\r\n..two\r\nend\r\n"


def tls_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=CA_FILE)


def open_sockets() -> int:
    """Sockets this process holds open (Linux: /proc/self/fd links named socket:[...])."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{name}").startswith("socket:")
    return count


class Raw:
    """A raw-socket SMTP client: send exact bytes, read exact replies."""

    def __init__(self, server: SMTPTestServer, *, timeout: float = 5.0) -> None:
        self.sock: socket.socket = socket.create_connection((server.host, server.port), timeout)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(self.buffer)
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"

    def reply(self) -> tuple[int, list[str]]:
        lines = []
        while True:
            line = self.line().decode().rstrip("\r\n")
            lines.append(line[4:])
            if line[3:4] != "-":
                return int(line[:3]), lines

    def command(self, line: str) -> tuple[int, list[str]]:
        self.send(line.encode() + b"\r\n")
        return self.reply()

    def closed(self) -> bool:
        """True when the server closes without sending anything more."""
        return self.buffer == b"" and self.sock.recv(65536) == b""

    def starttls(self) -> None:
        self.sock = tls_context().wrap_socket(self.sock, server_hostname="localhost")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., SMTPTestServer]]:
    """Starts servers with options and stops them; also checks nothing leaked afterwards."""
    threads, sockets = threading.active_count(), open_sockets()
    started: list[SMTPTestServer] = []
    clients: list[Raw] = []

    def start(**options: object) -> SMTPTestServer:
        server = SMTPTestServer(**options).start()  # type: ignore[arg-type]
        started.append(server)
        return server

    start.clients = clients  # type: ignore[attr-defined]
    yield start
    for server in started:
        server.stop()
        assert server.errors == []
    for client in clients:
        client.close()
    assert threading.active_count() == threads
    assert open_sockets() == sockets


def raw(server: SMTPTestServer, serve: Callable[..., SMTPTestServer]) -> Raw:
    client = Raw(server)
    serve.clients.append(client)  # type: ignore[attr-defined]
    return client


def greeted(
    server: SMTPTestServer, serve: Callable[..., SMTPTestServer], verb: str = "EHLO"
) -> Raw:
    client = raw(server, serve)
    assert client.reply()[0] == 220
    assert client.command(f"{verb} client.test")[0] == 250
    return client


# -- messages and the envelope ------------------------------------------------------------------


def test_smtplib_message_recorded_with_envelope_params_and_unstuffed_data(serve) -> None:
    server = serve()
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.ehlo("client.test")
        client.sendmail(
            "sender@example.test",
            ["one@example.test", "two@example.test"],
            MESSAGE,
            mail_options=["BODY=8BITMIME", "RET=HDRS", "ENVID=abc"],
            rcpt_options=["NOTIFY=SUCCESS,FAILURE"],
        )
    [message] = server.wait_for_messages(1)
    assert message.mail_from == "sender@example.test"
    assert message.rcpt_to == ("one@example.test", "two@example.test")
    assert message.data == MESSAGE
    assert message.params == {
        "SIZE": str(len(MESSAGE)),
        "BODY": "8BITMIME",
        "RET": "HDRS",
        "ENVID": "abc",
    }
    assert message.rcpt_params["two@example.test"] == {"NOTIFY": "SUCCESS,FAILURE"}
    assert (message.tls, message.auth_user, message.helo, message.lmtp) == (
        False,
        None,
        "client.test",
        False,
    )
    assert not message.chunked
    assert server.connections == 1
    assert [record.line.split()[0].upper() for record in server.commands][:3] == [
        "EHLO",
        "MAIL",
        "RCPT",
    ]


def test_smtputf8_and_empty_message(serve) -> None:
    server = serve()
    client = greeted(server, serve)
    assert client.command("MAIL FROM:<josé@example.test>")[0] == 553
    assert client.command("MAIL FROM:<josé@example.test> SMTPUTF8")[0] == 250
    assert client.command("RCPT TO:<zoë@example.test>")[0] == 250
    assert client.command("DATA")[0] == 354
    assert client.command(".")[0] == 250
    [message] = server.wait_for_messages(1)
    assert (message.mail_from, message.rcpt_to, message.data) == (
        "josé@example.test",
        ("zoë@example.test",),
        b"",
    )
    assert message.params == {"SMTPUTF8": None}


def test_bdat_chunks_are_reassembled_and_pipelined(serve) -> None:
    server = serve()
    client = greeted(server, serve)
    chunks = [b"Subject: chunked\r\n\r\n", b".no stuffing\r\n", b"tail\r\n"]
    pipelined = b"MAIL FROM:<s@example.test>\r\nRCPT TO:<r@example.test>\r\n"
    pipelined += b"".join(b"BDAT %d\r\n%s" % (len(chunk), chunk) for chunk in chunks[:-1])
    pipelined += b"BDAT %d LAST\r\n%s" % (len(chunks[-1]), chunks[-1])
    client.send(pipelined + b"NOOP\r\n")
    codes = [client.reply()[0] for _ in range(6)]
    assert codes == [250] * 6
    [message] = server.wait_for_messages(1)
    assert message.data == b"".join(chunks)
    assert message.chunked


def test_bdat_without_recipients_consumes_the_chunk_then_refuses(serve) -> None:
    server = serve(faults=[Fault(on="RCPT", reply="550 5.1.1 no")])
    client = greeted(server, serve)
    client.send(b"MAIL FROM:<s@x.test>\r\nRCPT TO:<r@x.test>\r\nBDAT 6 LAST\r\nNOOP\r\nNOOP\r\n")
    assert [client.reply()[0] for _ in range(4)] == [250, 550, 554, 250]
    assert server.messages == []


def test_size_limit_and_unsupported_parameters(serve) -> None:
    server = serve(max_size=100)
    client = greeted(server, serve)
    assert client.command("MAIL FROM:<s@x.test> SIZE=101")[0] == 552
    assert client.command("MAIL FROM:<s@x.test> FOO=1")[0] == 555
    assert client.command("MAIL FROM:<s@x.test>")[0] == 250
    assert client.command("RCPT TO:<r@x.test>")[0] == 250
    assert client.command("DATA")[0] == 354
    client.send(b"x" * 200 + b"\r\n")
    assert client.command(".")[0] == 552
    assert server.messages == []


def test_capabilities_option_limits_what_is_accepted(serve) -> None:
    server = serve(capabilities=["PIPELINING", "SIZE 500"])
    client = raw(server, serve)
    client.reply()
    _code, lines = client.command("EHLO client.test")
    assert lines == ["rawsmtp.test", "PIPELINING", "SIZE 500"]
    assert client.command("MAIL FROM:<s@x.test>") == (250, ["Ok"])  # no enhanced codes
    assert client.command("RCPT TO:<r@x.test> NOTIFY=NEVER")[0] == 555
    assert client.command("BDAT 1 LAST")[0] == 502
    assert client.command("STARTTLS")[0] == 502


def test_sequence_errors_and_overlong_line(serve) -> None:
    server = serve()
    client = raw(server, serve)
    client.reply()
    assert client.command("MAIL FROM:<s@x.test>")[0] == 503
    assert client.command("EHLO client.test")[0] == 250
    assert client.command("RCPT TO:<r@x.test>")[0] == 503
    assert client.command("DATA")[0] == 503
    assert client.command("WHAT")[0] == 500
    client.send(b"NOOP " + b"a" * 20000)
    assert client.reply()[0] == 500
    assert client.closed()


# -- TLS and AUTH -----------------------------------------------------------------------------


def test_starttls_with_the_shipped_certificate(serve) -> None:
    server = serve(tls=True)
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.starttls(context=tls_context())
        client.sendmail("s@example.test", ["r@example.test"], MESSAGE)
    [message] = server.wait_for_messages(1)
    assert message.tls


def test_plaintext_pipelined_after_starttls_is_discarded(serve) -> None:
    server = serve(tls=True)
    client = greeted(server, serve)
    client.send(b"STARTTLS\r\nMAIL FROM:<evil@x.test>\r\n")
    assert client.reply()[0] == 220
    time.sleep(0.1)  # let the injected line reach the server before the handshake
    client.starttls()
    assert client.command("EHLO client.test")[0] == 250
    assert client.command("RCPT TO:<r@x.test>")[0] == 503  # no MAIL happened
    assert not any("evil" in record.line for record in server.commands)


def test_implicit_tls(serve) -> None:
    server = serve(implicit_tls=True)
    with smtplib.SMTP_SSL(server.host, server.port, timeout=5, context=tls_context()) as client:
        code, text = client.ehlo()
        assert code == 250 and b"STARTTLS" not in text
        client.sendmail("s@example.test", ["r@example.test"], MESSAGE)
    assert server.wait_for_messages(1)[0].tls


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_auth_success_and_failure(serve, mechanism: str) -> None:
    server = serve(users={"alice": "secret"}, require_auth=True)
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.ehlo()
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail("s@x.test", ["r@x.test"], MESSAGE)
        assert refused.value.smtp_code == 530
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("alice", "wrong")
        client.user, client.password = "alice", "secret"
        auth = {"PLAIN": client.auth_plain, "LOGIN": client.auth_login}[mechanism]
        assert client.auth(mechanism, auth, initial_response_ok=False)[0] == 235
        client.sendmail("s@x.test", ["r@x.test"], MESSAGE)
    assert server.wait_for_messages(1)[0].auth_user == "alice"


def test_auth_cancel_and_initial_response(serve) -> None:
    server = serve(users={"alice": "secret"})
    client = greeted(server, serve)
    assert client.command("AUTH PLAIN")[0] == 334
    assert client.command("*")[0] == 501
    assert client.command("AUTH CRAM-MD5")[0] == 504
    token = base64.b64encode(b"\0alice\0secret").decode()
    assert client.command(f"AUTH PLAIN {token}")[0] == 235
    assert client.command(f"AUTH PLAIN {token}")[0] == 503


def test_xoauth2_failure_then_success(serve) -> None:
    server = serve(tokens={"alice@x.test": "good"})
    client = greeted(server, serve)
    bad = base64.b64encode(b"user=alice@x.test\x01auth=Bearer bad\x01\x01").decode()
    code, [challenge] = client.command(f"AUTH XOAUTH2 {bad}")
    assert code == 334
    assert json.loads(base64.b64decode(challenge))["status"] == "401"
    assert client.command("")[0] == 535
    good = base64.b64encode(b"user=alice@x.test\x01auth=Bearer good\x01\x01").decode()
    assert client.command(f"AUTH XOAUTH2 {good}")[0] == 235


# -- LMTP -------------------------------------------------------------------------------------


def test_lmtp_replies_once_per_recipient_after_the_data(serve) -> None:
    server = serve(
        lmtp=True, faults=[Fault(on="DATA_END", match="full@", reply="452 4.2.2 Mailbox full")]
    )
    client = raw(server, serve)
    assert client.reply()[0] == 220
    assert client.command("EHLO client.test")[0] == 500
    assert client.command("LHLO client.test")[0] == 250
    for line in (
        "MAIL FROM:<s@x.test>",
        "RCPT TO:<a@x.test>",
        "RCPT TO:<full@x.test>",
        "RCPT TO:<b@x.test>",
    ):
        assert client.command(line)[0] == 250
    assert client.command("DATA")[0] == 354
    client.send(MESSAGE + b".\r\n")
    assert [client.reply()[0] for _ in range(3)] == [250, 452, 250]
    [message] = server.wait_for_messages(1)
    assert message.rcpt_to == ("a@x.test", "b@x.test") and message.lmtp


# -- faults -----------------------------------------------------------------------------------


def test_fault_reply_per_recipient_and_temporary_failure(serve) -> None:
    server = serve(
        faults=[
            Fault(on="RCPT", match="bad@", reply="550 5.1.1 No such user"),
            Fault(on="RCPT", match="later@", reply="450 4.2.0 Try again"),
        ]
    )
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        refused = client.sendmail("s@x.test", ["ok@x.test", "bad@x.test", "later@x.test"], MESSAGE)
    assert refused == {
        "bad@x.test": (550, b"5.1.1 No such user"),
        "later@x.test": (450, b"4.2.0 Try again"),
    }
    assert server.wait_for_messages(1)[0].rcpt_to == ("ok@x.test",)


def test_fault_nth_message_and_reject_after_data(serve) -> None:
    server = serve(faults=[Fault(on="DATA_END", nth=2, reply="554 5.7.1 Rejected after DATA")])
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.sendmail("s@x.test", ["r@x.test"], b"one\r\n")
        with pytest.raises(smtplib.SMTPDataError) as error:
            client.sendmail("s@x.test", ["r@x.test"], b"two\r\n")
        assert error.value.smtp_code == 554
        client.sendmail("s@x.test", ["r@x.test"], b"three\r\n")
    assert [message.data for message in server.wait_for_messages(2)] == [b"one\r\n", b"three\r\n"]


def test_fault_success_reply_replaces_text_only(serve) -> None:
    server = serve(faults=[Fault(on="MAIL", reply="250 custom\n250 multi-line")])
    client = greeted(server, serve)
    assert client.command("MAIL FROM:<s@x.test>") == (250, ["custom", "multi-line"])
    assert client.command("RCPT TO:<r@x.test>")[0] == 250  # the MAIL took effect


def test_fault_delay_and_slow_greeting(serve) -> None:
    server = serve(faults=[Fault(on="CONNECT", delay=0.3), Fault(on="NOOP", delay=0.3)])
    start = time.monotonic()
    client = raw(server, serve)
    assert client.reply()[0] == 220
    assert time.monotonic() - start >= 0.3
    start = time.monotonic()
    assert client.command("NOOP")[0] == 250
    assert time.monotonic() - start >= 0.3


def test_fault_refused_greeting(serve) -> None:
    server = serve(faults=[Fault(on="CONNECT", reply="554 5.7.1 No service")])
    client = raw(server, serve)
    assert client.reply() == (554, ["5.7.1 No service"])
    assert client.command("EHLO client.test")[0] == 503
    assert client.command("QUIT")[0] == 221
    assert client.closed()


def test_fault_silent(serve) -> None:
    server = serve(faults=[Fault(on="MAIL", action="silent")])
    client = greeted(server, serve)
    client.sock.settimeout(0.3)
    with pytest.raises(TimeoutError):
        client.command("MAIL FROM:<s@x.test>")
    assert server.active_connections == 1


def test_fault_drop_on_one_connection_only(serve) -> None:
    server = serve(faults=[Fault(on="DATA_END", connection=1, action="drop")])
    first = greeted(server, serve)
    for line in ("MAIL FROM:<s@x.test>", "RCPT TO:<r@x.test>", "DATA"):
        first.command(line)
    first.send(b"hello\r\n.\r\n")
    assert first.closed()
    second = greeted(server, serve)
    for line in ("MAIL FROM:<s@x.test>", "RCPT TO:<r@x.test>", "DATA"):
        second.command(line)
    assert second.command("hello\r\n.")[0] == 250
    assert server.wait_for_messages(1)[0].connection == 2
    assert server.connections == 2


def test_fault_421_and_close(serve) -> None:
    server = serve(faults=[Fault(on="RCPT", action="close")])
    client = greeted(server, serve)
    client.command("MAIL FROM:<s@x.test>")
    assert client.command("RCPT TO:<r@x.test>")[0] == 421
    assert client.closed()


def test_fault_garbage(serve) -> None:
    server = serve(faults=[Fault(on="EHLO", action="garbage", payload=b"\x00\xffjunk\r\n")])
    client = raw(server, serve)
    client.reply()
    client.send(b"EHLO client.test\r\n")
    assert client.line() == b"\x00\xffjunk\r\n"


def test_fault_endless_line(serve) -> None:
    server = serve(faults=[Fault(on="EHLO", action="endless")])
    client = raw(server, serve)
    client.reply()
    client.send(b"EHLO client.test\r\n")
    received = b""
    while len(received) < 200_000:
        received += client.sock.recv(65536)
    assert b"\n" not in received


def test_fault_starttls_injection(serve) -> None:
    server = serve(tls=True, faults=[Fault(on="STARTTLS", inject=b"250 injected\r\n")])
    client = greeted(server, serve)
    client.send(b"STARTTLS\r\n")
    time.sleep(0.2)
    assert client.sock.recv(65536) == b"220 2.0.0 Ready to start TLS\r\n250 injected\r\n"


def test_callable_policy(serve) -> None:
    seen: list[FaultContext] = []

    def policy(context: FaultContext) -> Fault | None:
        seen.append(context)
        if context.point == "RCPT" and context.message == 1:
            return Fault(reply="451 4.3.0 first message deferred")
        return None

    server = serve(faults=policy)
    client = greeted(server, serve)
    assert client.command("MAIL FROM:<s@x.test>")[0] == 250
    assert client.command("RCPT TO:<r@x.test>")[0] == 451
    assert client.command("RSET")[0] == 250
    assert client.command("MAIL FROM:<s@x.test>")[0] == 250
    assert client.command("RCPT TO:<r@x.test>")[0] == 250
    assert [context.point for context in seen][:3] == ["CONNECT", "EHLO", "MAIL"]
    assert seen[0].connection == 1 and not seen[0].tls


def test_a_raising_policy_is_recorded_and_the_connection_closed() -> None:
    def policy(context: FaultContext) -> Fault | None:
        if context.point == "NOOP":
            raise RuntimeError("policy bug")
        return None

    with SMTPTestServer(faults=policy) as server:
        client = Raw(server)
        client.reply()
        client.send(b"NOOP\r\n")
        assert client.closed()
        client.close()
    assert [str(error) for error in server.errors] == ["policy bug"]


def test_fault_validation() -> None:
    with pytest.raises(ValueError):
        Fault(on="BOGUS", reply="550 x")
    with pytest.raises(ValueError):
        Fault(on="RCPT", reply="no code")
    with pytest.raises(ValueError):
        Fault(on="RCPT")  # does nothing


def test_option_validation() -> None:
    with pytest.raises(ValueError, match="tls_cert and tls_key go together"):
        SMTPTestServer(tls_cert=CA_FILE)
    with pytest.raises(ValueError, match="STARTTLS advertised without tls"):
        SMTPTestServer(capabilities=["PIPELINING", " starttls "])
    server = SMTPTestServer(capabilities=[" STARTTLS ", "SIZE 10"], tls=True)
    assert server.settings.keywords == {"STARTTLS", "SIZE"}


# -- lifecycle --------------------------------------------------------------------------------


def test_stop_leaves_no_thread_or_socket_with_connections_open() -> None:
    threads, sockets = threading.active_count(), open_sockets()
    server = SMTPTestServer(
        tls=True, faults=[Fault(on="NOOP", action="endless"), Fault(on="RSET", action="silent")]
    ).start()
    endless, silent, tls = Raw(server), Raw(server), Raw(server)
    for client in (endless, silent, tls):
        client.reply()
    endless.send(b"NOOP\r\n")
    silent.send(b"RSET\r\n")
    tls.command("STARTTLS")
    tls.starttls()
    time.sleep(0.1)
    assert server.active_connections == 3
    server.stop()
    for client in (endless, silent, tls):
        client.close()
    assert threading.active_count() == threads
    assert open_sockets() == sockets
    server.stop()  # idempotent


def test_wait_for_messages_times_out(serve) -> None:
    server = serve()
    with pytest.raises(TimeoutError):
        server.wait_for_messages(1, timeout=0.1)


def test_pytest_fixtures(smtp_server: SMTPTestServer, smtp_server_factory) -> None:
    lmtp = smtp_server_factory(lmtp=True)
    assert lmtp.port != smtp_server.port
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5) as client:
        client.sendmail("s@x.test", ["r@x.test"], b"fixture\r\n")
    assert smtp_server.wait_for_messages(1)[0].data == b"fixture\r\n"
    with smtplib.LMTP(lmtp.host, lmtp.port, timeout=5) as client:
        client.sendmail("s@x.test", ["r@x.test"], b"lmtp\r\n")
    assert lmtp.wait_for_messages(1)[0].lmtp
