"""Test helpers: a blocking-socket driver for the sans-I/O core, and maildir readers.

The driver is the smallest correct use of :class:`rawsmtp.protocol.ClientConnection`: it shows
the core works over a real socket against a real server without any of rawsmtp's I/O code.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import socket
import ssl
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rawsmtp.protocol import (
    NEED_DATA,
    Authenticated,
    AuthenticationFailed,
    ClientConfig,
    ClientConnection,
    ConnectionClosed,
    Event,
    MessageAccepted,
    MessageFailed,
    Ready,
    SASLMechanism,
    SendBody,
    StartTLS,
    Transaction,
)


def unique(prefix: str = "m") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@dataclass
class CoreRun:
    events: list[Event] = field(default_factory=list)

    def of(self, kind: type) -> list[Event]:
        return [event for event in self.events if isinstance(event, kind)]


def run_core(
    host: str,
    port: int,
    messages: Sequence[tuple[Transaction, bytes]],
    *,
    config: ClientConfig,
    ssl_context: ssl.SSLContext | None = None,
    implicit_tls: bool = False,
    mechanism: SASLMechanism | None = None,
    queue_early: bool = False,
    timeout: float = 20.0,
) -> CoreRun:
    """Run one session: optional STARTTLS/AUTH, send every message, QUIT; return the events.

    ``queue_early`` hands the transactions to the core before the greeting (it sends them when
    the session allows); otherwise they are queued on Ready (or after AUTH).
    """
    bodies = {id(tx): body for tx, body in messages}
    sock: socket.socket = socket.create_connection((host, port), timeout=timeout)
    if implicit_tls:
        assert ssl_context is not None
        sock = ssl_context.wrap_socket(sock, server_hostname="localhost")
    client = ClientConnection(config, now=time.monotonic())
    run = CoreRun()
    if queue_early:
        for tx, _ in messages:
            client.send_mail(tx)
    outcomes = 0
    try:
        while True:
            if data := client.data_to_send(time.monotonic()):
                sock.sendall(data)
            event = client.next_event()
            if event is NEED_DATA:
                client.receive_data(sock.recv(65536), time.monotonic())
                continue
            run.events.append(event)
            if isinstance(event, StartTLS):
                assert ssl_context is not None
                sock = ssl_context.wrap_socket(sock, server_hostname="localhost")
                client.start_tls_done()
            elif isinstance(event, Ready) and mechanism is not None:
                client.authenticate(mechanism)
            elif isinstance(event, Ready | Authenticated | AuthenticationFailed):
                if isinstance(event, AuthenticationFailed):
                    client.quit()
                elif not queue_early:
                    for tx, _ in messages:
                        client.send_mail(tx)
                if not messages:
                    client.quit()
            elif isinstance(event, SendBody):
                client.send_body(bodies[id(event.transaction)])
                client.end_body()
            elif isinstance(event, MessageAccepted | MessageFailed):
                outcomes += 1
                if outcomes == len(messages):
                    client.quit()
            elif isinstance(event, ConnectionClosed):
                return run
    finally:
        sock.close()


class MailStore:
    """Reads messages delivered into ``root/<localpart>/new/`` maildirs."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def wait(self, localpart: str, count: int = 1, timeout: float = 15.0) -> list[bytes]:
        """The raw files delivered to ``localpart``, once ``count`` have arrived (or fail)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages(localpart)
            if len(found) >= count or time.monotonic() > deadline:
                assert len(found) >= count, f"{len(found)} of {count} messages for {localpart}"
                return found
            time.sleep(0.05)

    def messages(self, localpart: str) -> list[bytes]:
        folder = self.root / localpart / "new"
        if not folder.is_dir():
            return []
        return [path.read_bytes() for path in sorted(folder.iterdir())]

    def wait_parsed(self, localpart: str, count: int = 1) -> list[email.message.EmailMessage]:
        return [
            email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[misc]
            for raw in self.wait(localpart, count)
        ]


def body_of(raw: bytes) -> bytes:
    """The message body as stored (after the header block), CRLF-normalised."""
    text = raw.replace(b"\r\n", b"\n")
    return text.split(b"\n\n", 1)[1].replace(b"\n", b"\r\n")
