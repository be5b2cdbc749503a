"""The transport's deadlines and socket life, through both pool drivers: a server that stops
reading mid-body, refused and timed-out connects (the pool survives them), and the EHLO name
of sockets with no IP address."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import rawsmtp
from rawsmtp.pool._transport import SocketPlan, Transport, TransportSettings, ehlo_name
from rawsmtp.testing import SMTPTestServer

MESSAGE = b"From: <s@x.test>\r\nTo: <r@x.test>\r\nSubject: t\r\n\r\nhello\r\n"
BIG = b"From: <s@x.test>\r\nTo: <r@x.test>\r\n\r\n" + (b"x" * 998 + b"\r\n") * 32_000  # 32 MB


def _stop_reading_after_354(listener: socket.socket, stop: threading.Event) -> None:
    """Answer up to DATA's 354 (one command at a time, no PIPELINING), then never read again."""
    conn, _ = listener.accept()
    with conn, conn.makefile("rb") as lines:
        conn.sendall(b"220 stall.test\r\n")
        while line := lines.readline():
            if line[:4].upper() == b"DATA":
                conn.sendall(b"354 go on\r\n")
                break
            conn.sendall(b"250 ok\r\n")
        stop.wait(30)


@pytest.fixture
def stalling_server() -> Iterator[int]:
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    thread = threading.Thread(target=_stop_reading_after_354, args=(listener, stop), daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(5)
    listener.close()


def test_a_server_that_stops_reading_mid_body_times_out(
    pool_factory: Callable[..., Any], stalling_server: int
) -> None:
    pool = pool_factory(host="127.0.0.1", port=stalling_server, ignore_tls=True, socket_timeout=1)
    started = time.monotonic()
    try:
        # The first message of a session: its failure is the destination's, bounded by the
        # deadline (see README, Failure policy).
        error = pool.send(BIG, deadline=1.5).exception(timeout=10)
    finally:
        closer = threading.Thread(target=pool.close, daemon=True)
        closer.start()
        closer.join(10)
    assert isinstance(error, rawsmtp.SMTPTimeoutError) and error.phase == "queue"
    cause = error.__cause__
    assert isinstance(cause, rawsmtp.SMTPTimeoutError) and cause.phase == "send"
    assert time.monotonic() - started < 8
    assert not closer.is_alive()  # close() did not hang on the stalled session


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again: nothing listens there


def _full_backlog(port: int) -> list[socket.socket]:
    """A listener whose backlog is full: further connects to it hang (SYN dropped, on Linux)."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(0)
    held = [listener]
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        held.append(filler)
    time.sleep(0.1)
    return held


def test_refused_connect_fails_the_message_and_the_pool_goes_on(
    pool_factory: Callable[..., Any],
) -> None:
    port = _free_port()
    options = {"host": "127.0.0.1", "port": port, "ignore_tls": True, "max_retry_delay": 1}
    with pool_factory(**options) as pool:
        error = pool.send(MESSAGE, deadline=0.5).exception(timeout=10)
        assert isinstance(error, rawsmtp.SMTPTimeoutError) and error.phase == "queue", error
        assert isinstance(error.__cause__, rawsmtp.SMTPConnectionError)
        assert "could not connect" in str(error.__cause__)
        with SMTPTestServer(port=port) as server:
            assert pool.send(MESSAGE).result(timeout=10).accepted == ("r@x.test",)
            assert len(server.messages) == 1


def test_timed_out_connect_fails_the_message_and_the_pool_goes_on(
    pool_factory: Callable[..., Any],
) -> None:
    port = _free_port()
    held = _full_backlog(port)
    options = {"host": "127.0.0.1", "port": port, "ignore_tls": True, "max_retry_delay": 1}
    with pool_factory(**options, connection_timeout=0.5) as pool:
        try:
            error = pool.send(MESSAGE, deadline=0.8).exception(timeout=10)
        finally:
            for sock in held:
                sock.close()
        assert isinstance(error, rawsmtp.SMTPTimeoutError) and error.phase == "queue", error
        cause = error.__cause__
        assert isinstance(cause, rawsmtp.SMTPTimeoutError) and cause.phase == "connect"
        with SMTPTestServer(port=port) as server:
            assert pool.send(MESSAGE).result(timeout=10).accepted == ("r@x.test",)
            assert len(server.messages) == 1


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: socket.socketpair()[0], "[127.0.0.1]"),
        (lambda: socket.socket(socket.AF_UNIX), "[127.0.0.1]"),
        (lambda: socket.socket(socket.AF_INET6), "[IPv6:::]"),
        (lambda: None, "[127.0.0.1]"),
    ],
)
def test_ehlo_name_of_sockets_without_an_ip_address(
    make: Callable[[], socket.socket | None], expected: str
) -> None:
    sock = make()
    try:
        assert ehlo_name(None, None, sock) == expected
        assert ehlo_name("mx.example", None, sock) == "mx.example"
    finally:
        if sock is not None:
            sock.close()


class _Recorder:
    """A transport user and driver stand-in that records what the transport reports."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def transport_open(self, now: float, *, tls: bool) -> None:
        self.events.append(("open", tls))

    def tls_established(self, now: float) -> None:
        self.events.append(("tls", None))

    def data_received(self, data: bytes, now: float) -> None:
        self.events.append(("data", data))

    def send_more(self, now: float) -> None:
        pass

    def transport_failed(self, error: rawsmtp.SMTPError, now: float) -> None:
        self.events.append(("failed", type(error)))

    def run_blocking(self, func: Callable[[], Any], done: Callable[..., None]) -> None:
        raise AssertionError("not used")

    def watch(self, transport: Transport) -> None:
        pass

    def forget(self, transport: Transport) -> None:
        pass

    def flush_soon(self, transport: Transport) -> None:
        pass


def test_a_failed_send_first_delivers_the_replies_the_server_sent_before_its_reset() -> None:
    # The server answers (a message's 250, then a 421) and closes with our pipelined commands
    # unread, which resets the connection. A send() that then fails must not hide the 250.
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    recorder = _Recorder()
    settings = TransportSettings(
        host="127.0.0.1",
        port=listener.getsockname()[1],
        secure=False,
        ssl_context=None,
        server_hostname="127.0.0.1",
        name=None,
        local_address=None,
        connection_timeout=5,
        socket_timeout=5,
    )
    transport = Transport(recorder, recorder, settings, 0.0)
    try:
        transport.start(SocketPlan(client, False, (), None), 0.0)
        client.sendall(b"MAIL FROM:<s@x.test>\r\n")  # unread by the server: its close resets
        server.sendall(b"250 2.0.0 queued\r\n421 4.7.0 slow down\r\n")
        server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        server.close()
        time.sleep(0.2)  # the reset has arrived
        transport.write(b"RCPT TO:<r@x.test>\r\n")
        transport.flush(1.0)
    finally:
        transport.close()
        listener.close()
    received = b"".join(d for kind, d in recorder.events if kind == "data" and isinstance(d, bytes))
    assert received == b"250 2.0.0 queued\r\n421 4.7.0 slow down\r\n"
    assert recorder.events[0] == ("open", False)
    assert recorder.events[-1] == ("failed", rawsmtp.SMTPConnectionError)
