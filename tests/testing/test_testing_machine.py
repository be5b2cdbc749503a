"""SMTPTestServer on the sans-I/O ServerConnection: where its faults fire, what it logs, and the
leniencies it keeps (any path in brackets, unsynchronised pipelining, bare LF)."""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Callable

from rawsmtp.testing import Fault, FaultContext, SMTPTestServer

Factory = Callable[..., SMTPTestServer]


class Raw:
    def __init__(self, server: SMTPTestServer) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=5)
        self.file = self.sock.makefile("rb")

    def reply(self) -> tuple[int, list[str]]:
        lines = []
        while True:
            line = self.file.readline().decode().rstrip("\r\n")
            assert line, "the server closed"
            lines.append(line[4:])
            if line[3:4] != "-":
                return int(line[:3]), lines

    def command(self, line: bytes) -> int:
        self.sock.sendall(line + b"\r\n")
        return self.reply()[0]

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def test_an_auth_fault_refuses_before_the_exchange(smtp_server_factory: Factory) -> None:
    faults = [Fault(on="AUTH", nth=1, reply="454 4.7.0 Try again later")]
    server = smtp_server_factory(users={"alice": "secret"}, faults=faults)
    client = Raw(server)
    try:
        client.reply()
        assert client.command(b"EHLO client.test") == 250
        assert client.command(b"AUTH LOGIN") == 454  # no 334 first
        assert client.command(b"NOOP") == 250  # a command, not taken for a SASL response
        assert client.command(b"AUTH PLAIN " + b64(b"\0alice\0secret")) == 235
    finally:
        client.close()


def test_the_auth_point_is_asked_once_per_command_and_responses_are_no_commands(
    smtp_server_factory: Factory,
) -> None:
    seen: list[str] = []

    def policy(context: FaultContext) -> Fault | None:
        seen.append(context.point)
        return Fault(delay=0.3) if context.point == "AUTH" else None

    server = smtp_server_factory(users={"alice": "secret"}, faults=policy)
    client = Raw(server)
    try:
        client.reply()
        client.command(b"EHLO client.test")
        started = time.monotonic()
        assert client.command(b"AUTH LOGIN") == 334
        assert time.monotonic() - started >= 0.3  # the delay came before the challenge
        assert client.command(b64(b"alice")) == 334
        assert client.command(b64(b"wrong")) == 535
        assert client.command(b"NOOP") == 250
    finally:
        client.close()
    assert seen == ["CONNECT", "EHLO", "AUTH", "NOOP"]
    lines = [record.line for record in server.commands]
    assert lines == ["EHLO client.test", "AUTH LOGIN", "NOOP"]


def test_lenient_paths_unsynchronised_pipelining_and_bare_lf_are_taken(
    smtp_server_factory: Factory,
) -> None:
    server = smtp_server_factory(capabilities=["SIZE 1000"])  # no PIPELINING offered
    client = Raw(server)
    try:
        client.reply()
        client.sock.sendall(b"EHLO client.test\r\nMAIL FROM:<odd sender>\r\nRCPT TO:<r@x.test>\r\n")
        assert [client.reply()[0] for _ in range(3)] == [250, 250, 250]
        assert client.command(b"DATA") == 354
        assert client.command(b"one\ntwo\r\n.") == 250
    finally:
        client.close()
    [message] = server.wait_for_messages(1)
    assert (message.mail_from, message.data) == ("odd sender", b"one\ntwo\r\n")
