"""TLS set-up failures, permanent or temporary: a certificate that fails verification (or names
another host, or no protocol version or cipher in common) fails the queue at once; a handshake
broken off (a reset, a fatal internal_error alert) is retried with back-off like a connection
that failed, and the message is delivered once the server behaves; so is a 454 to STARTTLS."""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import rawsmtp
from rawsmtp.pool._tls_layer import TLSLayer, tls_error
from rawsmtp.testing import CA_FILE, CERT_FILE, KEY_FILE, Fault, SMTPTestServer

MESSAGE = b"From: <s@x.test>\r\nTo: <r@x.test>\r\nSubject: t\r\n\r\nhello\r\n"
# A fatal TLS alert, internal_error (80): the server's trouble, not a setting of either side.
INTERNAL_ERROR_ALERT = b"\x15\x03\x03\x00\x02\x02\x50"
TRUSTED = {"ca_file": CA_FILE}


def _server_context(**settings: Any) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(CERT_FILE, KEY_FILE)
    for name, value in settings.items():
        setattr(context, name, value)
    return context


def _client_context(**settings: Any) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=CA_FILE)
    for name, value in settings.items():
        setattr(context, name, value)
    return context


def _handshake_error(
    client: ssl.SSLContext, server: ssl.SSLContext | None, name: str = "localhost"
) -> rawsmtp.SMTPTLSError:
    """Run the client's TLSLayer against ``server`` in memory (or answer its ClientHello with an
    internal_error alert when ``server`` is None) until the layer fails."""
    layer = TLSLayer(client, name)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    peer = None if server is None else server.wrap_bio(incoming, outgoing, server_side=True)
    with pytest.raises(rawsmtp.SMTPTLSError) as info:
        for _ in range(10):
            layer.handshake()
            incoming.write(layer.take_outgoing())
            if peer is None:
                layer.receive(INTERNAL_ERROR_ALERT)
                continue
            with contextlib.suppress(ssl.SSLError):  # its alert goes out all the same
                peer.do_handshake()
            layer.receive(outgoing.read())
    return info.value


def test_a_certificate_that_fails_verification_is_permanent() -> None:
    error = _handshake_error(ssl.create_default_context(), _server_context())
    assert str(error).startswith("certificate verification failed: self-signed certificate")
    assert isinstance(error.__cause__, ssl.SSLCertVerificationError)
    assert type(error) is rawsmtp.SMTPTLSError and not error.is_temporary


def test_a_certificate_for_another_host_is_permanent() -> None:
    error = _handshake_error(_client_context(), _server_context(), name="wrong.test")
    assert str(error).startswith("certificate verification failed: Hostname mismatch")
    assert type(error) is rawsmtp.SMTPTLSError and not error.is_temporary


def test_no_protocol_version_or_cipher_in_common_is_permanent() -> None:
    version = _handshake_error(
        _client_context(minimum_version=ssl.TLSVersion.TLSv1_3),
        _server_context(maximum_version=ssl.TLSVersion.TLSv1_2),
    )
    assert "TLSV1_ALERT_PROTOCOL_VERSION" in str(version)
    assert type(version) is rawsmtp.SMTPTLSError and not version.is_temporary
    client = _client_context(maximum_version=ssl.TLSVersion.TLSv1_2)
    client.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256")
    server = _server_context(maximum_version=ssl.TLSVersion.TLSv1_2)
    server.set_ciphers("ECDHE-RSA-AES256-GCM-SHA384")
    cipher = _handshake_error(client, server)
    assert "HANDSHAKE_FAILURE" in str(cipher)
    assert type(cipher) is rawsmtp.SMTPTLSError and not cipher.is_temporary


def test_an_internal_error_alert_is_temporary() -> None:
    error = _handshake_error(_client_context(), None)
    assert "TLSV1_ALERT_INTERNAL_ERROR" in str(error)
    assert isinstance(error, rawsmtp.SMTPTLSInterruptedError) and error.is_temporary


@pytest.mark.parametrize(
    "failure",
    [
        ssl.SSLEOFError(8, "EOF occurred in violation of protocol"),
        ssl.SSLSyscallError(5, "Some I/O error occurred"),
        ssl.SSLError(1, "no reason known"),
    ],
)
def test_a_broken_tls_stream_is_temporary(failure: ssl.SSLError) -> None:
    error = tls_error(failure)
    assert isinstance(error, rawsmtp.SMTPTLSInterruptedError) and error.is_temporary


def test_starttls_refused_with_a_4xx_is_temporary() -> None:
    assert rawsmtp.SMTPTLSError("STARTTLS refused", code=454, command="STARTTLS").is_temporary
    assert not rawsmtp.SMTPTLSError("STARTTLS refused", code=554).is_temporary
    assert not rawsmtp.SMTPTLSError(
        "TLS is required but the server does not offer STARTTLS"
    ).is_temporary


def test_a_certificate_that_fails_verification_fails_the_queue_at_once(
    pool_factory: Callable[..., Any],
) -> None:
    with SMTPTestServer(implicit_tls=True) as server:  # its certificate: in no system store
        options = {"host": "127.0.0.1", "port": server.port, "secure": True}
        with pool_factory(**options, delivery_timeout=600, max_connections=1) as pool:
            futures = [pool.send(MESSAGE) for _ in range(3)]
            # A retry would wait out the 600 s deadline: these time out instead.
            errors = [future.exception(timeout=30) for future in futures]
        assert all(type(error) is rawsmtp.SMTPTLSError for error in errors), errors
        assert all(str(error).startswith("certificate verification failed") for error in errors)
        assert server.messages == []


class _FlakyFront:
    """A loopback front for a test server. Its first ``bad`` connections break off the TLS
    handshake after the ClientHello (``how``: a TCP reset, or an internal_error alert), after
    the plaintext greeting, EHLO and STARTTLS with ``starttls``; later ones are relayed to the
    server byte for byte."""

    def __init__(self, backend: int, *, bad: int, how: str, starttls: bool) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self._backend, self._bad, self._how, self._starttls = backend, bad, how, starttls
        self._threads = [threading.Thread(target=self._serve, daemon=True)]
        self._threads[0].start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:  # closed: the test is over
                return
            conn.settimeout(10)
            self.connections += 1
            if self.connections <= self._bad:
                self._break_off(conn)
            else:
                relay = threading.Thread(target=self._relay, args=(conn,), daemon=True)
                self._threads.append(relay)
                relay.start()

    def _break_off(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            if self._starttls:
                conn.sendall(b"220 front.test ESMTP\r\n")
                _read_line(conn)  # EHLO
                conn.sendall(b"250-front.test\r\n250 STARTTLS\r\n")
                _read_line(conn)  # STARTTLS
                conn.sendall(b"220 go ahead\r\n")
            conn.recv(65536)  # the ClientHello
            if self._how == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                conn.sendall(INTERNAL_ERROR_ALERT)

    def _relay(self, conn: socket.socket) -> None:
        with conn, socket.create_connection(("127.0.0.1", self._backend), timeout=10) as upstream:
            back = threading.Thread(target=_pump, args=(upstream, conn), daemon=True)
            back.start()
            _pump(conn, upstream)
            back.join(10)

    def close(self) -> None:
        with contextlib.suppress(OSError):  # wakes the accept() that close() alone would not
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for thread in self._threads:
            thread.join(10)


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(1024)
        if not chunk:
            break
        data += chunk
    return data


def _pump(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def _flaky(*, bad: int, how: str, starttls: bool) -> Iterator[tuple[SMTPTestServer, _FlakyFront]]:
    with SMTPTestServer(tls=starttls, implicit_tls=not starttls) as server:
        front = _FlakyFront(server.port, bad=bad, how=how, starttls=starttls)
        try:
            yield server, front
        finally:
            front.close()


def _flaky_options(front: _FlakyFront, *, starttls: bool) -> dict[str, Any]:
    how = {"require_tls": True} if starttls else {"secure": True}
    return {"host": "127.0.0.1", "port": front.port, "tls": TRUSTED, **how}


@pytest.mark.parametrize("starttls", [False, True], ids=["implicit", "starttls"])
@pytest.mark.parametrize("how", ["reset", "alert"])
def test_a_handshake_broken_off_is_retried_until_the_server_behaves(
    pool_factory: Callable[..., Any], how: str, starttls: bool
) -> None:
    with _flaky(bad=2, how=how, starttls=starttls) as (server, front):
        options = _flaky_options(front, starttls=starttls)
        retry = {"retry_delay": 0.05, "max_retry_delay": 0.2, "max_retries": 0}
        with pool_factory(**options, **retry, delivery_timeout=60, max_connections=1) as pool:
            result = pool.send(MESSAGE).result(timeout=30)
        assert result.accepted == ("r@x.test",)
        assert len(server.messages) == 1 and front.connections == 3


def test_a_handshake_always_broken_off_defers_the_message_to_its_deadline(
    pool_factory: Callable[..., Any],
) -> None:
    with _flaky(bad=1000, how="alert", starttls=False) as (server, front):
        options = _flaky_options(front, starttls=False)
        with pool_factory(**options, retry_delay=0.05, max_retry_delay=0.2) as pool:
            error = pool.send(MESSAGE, deadline=1.0).exception(timeout=30)
        assert isinstance(error, rawsmtp.SMTPTimeoutError) and error.phase == "queue"
        cause = error.__cause__
        assert isinstance(cause, rawsmtp.SMTPTLSInterruptedError)
        assert "TLSV1_ALERT_INTERNAL_ERROR" in str(cause)
        assert front.connections >= 2 and server.messages == []


def test_starttls_refused_with_a_454_is_retried(pool_factory: Callable[..., Any]) -> None:
    """RFC 3207: 454 is "TLS not available due to temporary reason"; require_tls waits for it."""
    faults = [Fault(on="STARTTLS", reply="454 4.7.0 TLS not available", connection=1)]
    with SMTPTestServer(tls=True, faults=faults) as server:
        options = {"host": "127.0.0.1", "port": server.port, "require_tls": True, "tls": TRUSTED}
        with pool_factory(**options, retry_delay=0.05, max_retries=0) as pool:
            result = pool.send(MESSAGE).result(timeout=30)
        assert result.accepted == ("r@x.test",)
        assert len(server.messages) == 1 and server.connections == 2
