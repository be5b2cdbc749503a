"""The transport's TLS and socket tuning, through both pool drivers: a pipelined group leaves
in one TLS record, an https:// proxy (TLS to the proxy, SMTP's TLS inside it), TCP_NODELAY and
keepalive on every pooled socket."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import rawsmtp
from rawsmtp.pool._transport import tune_socket
from rawsmtp.testing import CA_FILE, CERT_FILE, KEY_FILE, SMTPTestServer

MESSAGE = b"From: <s@x.test>\r\nTo: <r@x.test>\r\nSubject: t\r\n\r\nhello\r\n"


def _server_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(CERT_FILE, KEY_FILE)
    return context


# -- one record per write group -----------------------------------------------------------------


class _RecordServer:
    """Implicit TLS, PIPELINING and CHUNKING; keeps the plaintext of each TLS record it gets."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.records: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(10)
        conn, _ = self.listener.accept()
        conn.settimeout(10)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = _server_context().wrap_bio(incoming, outgoing, server_side=True)
        with conn:
            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    conn.sendall(outgoing.read())
                    incoming.write(conn.recv(65536))
            tls.write(b"220 records.test\r\n")
            conn.sendall(outgoing.read())
            raw, pending = b"", b""
            while data := conn.recv(65536):
                raw += data
                while len(raw) >= 5 and len(raw) >= 5 + int.from_bytes(raw[3:5], "big"):
                    size = 5 + int.from_bytes(raw[3:5], "big")
                    incoming.write(raw[:size])
                    raw = raw[size:]
                    with contextlib.suppress(ssl.SSLWantReadError):
                        if plain := tls.read(65536):
                            self.records.append(plain)
                            pending += plain
                replies, pending, done = _answer(pending)
                if replies:
                    tls.write(replies)
                    conn.sendall(outgoing.read())
                if done:
                    return


def _answer(pending: bytes) -> tuple[bytes, bytes, bool]:
    """Replies to the complete commands in ``pending`` (BDAT with its chunk), what is left."""
    replies = b""
    while b"\r\n" in pending:
        line, rest = pending.split(b"\r\n", 1)
        verb = line[:4].upper()
        if verb == b"BDAT":
            size = int(line.split()[1])
            if len(rest) < size:
                break
            rest = rest[size:]
        pending = rest
        if verb == b"EHLO":
            replies += b"250-records.test\r\n250-PIPELINING\r\n250 CHUNKING\r\n"
        elif verb == b"QUIT":
            return replies + b"221 bye\r\n", b"", True
        else:
            replies += b"250 ok\r\n"
    return replies, pending, False


def test_a_pipelined_group_is_one_tls_record(pool_factory: Callable[..., Any]) -> None:
    server = _RecordServer()
    pool = pool_factory(
        host="127.0.0.1", port=server.port, secure=True, tls={"ca_file": CA_FILE}, max_retries=0
    )
    try:
        for _ in range(3):
            assert pool.send(MESSAGE).result(timeout=10).accepted == ("r@x.test",)
    finally:
        pool.close(timeout=10)
    server.thread.join(10)
    groups = [record for record in server.records if b"MAIL FROM" in record]
    assert len(groups) == 3
    for record in groups:  # MAIL, RCPT, BDAT and the whole body, all in the one record
        assert record.startswith(b"MAIL FROM:<s@x.test>")
        assert b"RCPT TO:<r@x.test>" in record and b"BDAT " in record
        assert record.endswith(b"hello\r\n")


# -- https:// proxies ---------------------------------------------------------------------------


class _TLSProxy:
    """A CONNECT proxy that speaks TLS itself (the test certificate), on an asyncio thread."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _start(self) -> asyncio.Server:
        return await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=_server_context())

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.requests.append(head)
        host, _, port = head.split(b" ")[1].decode().rpartition(":")
        up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        with contextlib.suppress(OSError):
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        writer.close()
        up_writer.close()

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    with contextlib.suppress(OSError):
        writer.write_eof()


@pytest.fixture
def tls_proxy() -> Iterator[_TLSProxy]:
    proxy = _TLSProxy()
    yield proxy
    proxy.close()


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit-tls"])
def test_mail_through_an_https_proxy_is_tls_in_tls(
    pool_factory: Callable[..., Any], tls_proxy: _TLSProxy, implicit: bool
) -> None:
    with SMTPTestServer(tls=not implicit, implicit_tls=implicit) as server:
        pool = pool_factory(
            host="localhost",
            port=server.port,
            secure=implicit,
            require_tls=not implicit,
            tls={"ca_file": CA_FILE},
            proxy=f"https://proxyuser:proxypass@127.0.0.1:{tls_proxy.port}",
            proxy_tls={"ca_file": CA_FILE},
        )
        try:
            result = pool.send(MESSAGE).result(timeout=15)
        finally:
            pool.close(timeout=10)
        assert result.accepted == ("r@x.test",)
        [received] = server.wait_for_messages(1)
        assert received.data.endswith(b"hello\r\n")
    [request] = tls_proxy.requests
    assert request.startswith(f"CONNECT localhost:{server.port} HTTP/1.1\r\n".encode())
    assert b"Proxy-Authorization: Basic cHJveHl1c2VyOnByb3h5cGFzcw==\r\n" in request


def test_the_proxys_certificate_is_verified_by_default(
    pool_factory: Callable[..., Any], tls_proxy: _TLSProxy
) -> None:
    pool = pool_factory(
        host="localhost", port=25, proxy=f"https://127.0.0.1:{tls_proxy.port}", max_retries=0
    )
    try:
        error = pool.send(MESSAGE).exception(timeout=15)
    finally:
        pool.close(timeout=10)
    assert isinstance(error, rawsmtp.SMTPProxyError)
    assert "TLS to the proxy failed: certificate verification failed" in str(error)
    assert tls_proxy.requests == []  # no CONNECT was sent over the unverified connection


def test_connect_via_an_https_proxy(tls_proxy: _TLSProxy) -> None:
    context = ssl.create_default_context(cafile=CA_FILE)
    with SMTPTestServer(tls=True) as server:
        url = f"https://127.0.0.1:{tls_proxy.port}"
        with rawsmtp.proxy.connect_via_proxy(url, "localhost", server.port, tls=context) as sock:
            assert sock.recv(100).startswith(b"220 ")
        # The hook's socket is TLS to the proxy; the pool runs STARTTLS inside it.
        get_socket = rawsmtp.proxy.proxy_get_socket(url, tls=context)
        with rawsmtp.SMTPPool(
            host="localhost",
            port=server.port,
            require_tls=True,
            tls={"ca_file": CA_FILE},
            get_socket=get_socket,
        ) as pool:
            assert pool.send(MESSAGE).result(timeout=15).accepted == ("r@x.test",)
        server.wait_for_messages(1)


def test_connect_via_an_https_proxy_verifies_it(tls_proxy: _TLSProxy) -> None:
    with pytest.raises(rawsmtp.SMTPProxyError, match="certificate verify failed"):
        rawsmtp.proxy.connect_via_proxy(f"https://127.0.0.1:{tls_proxy.port}", "localhost", 25)


# -- socket options -----------------------------------------------------------------------------


def _options(sock: socket.socket) -> dict[str, int]:
    names = ["TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT"]
    found = {
        name: sock.getsockopt(socket.IPPROTO_TCP, getattr(socket, name))
        for name in names
        if hasattr(socket, name)
    }
    found["SO_KEEPALIVE"] = sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
    found["TCP_NODELAY"] = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    return found


def _pool_socket(pool: Any) -> socket.socket:
    engine = pool._pool._engine if hasattr(pool, "_pool") else pool._engine
    [session] = list(engine.sessions)
    sock: socket.socket = session.transport.sock
    return sock


@pytest.mark.parametrize(
    ("keepalive", "expected"),
    [
        (True, {"SO_KEEPALIVE": 1, "TCP_KEEPIDLE": 30, "TCP_KEEPINTVL": 10, "TCP_KEEPCNT": 3}),
        (7, {"SO_KEEPALIVE": 1, "TCP_KEEPIDLE": 7, "TCP_KEEPINTVL": 10, "TCP_KEEPCNT": 3}),
        (False, {"SO_KEEPALIVE": 0}),
    ],
)
def test_pooled_sockets_have_nodelay_and_keepalive(
    pool_factory: Callable[..., Any], keepalive: Any, expected: dict[str, int]
) -> None:
    with SMTPTestServer() as server:
        pool = pool_factory(
            host="127.0.0.1", port=server.port, ignore_tls=True, keepalive=keepalive
        )
        try:
            pool.send(MESSAGE).result(timeout=10)
            found = _options(_pool_socket(pool))
        finally:
            pool.close(timeout=10)
    assert found.pop("TCP_NODELAY") != 0
    found["SO_KEEPALIVE"] = int(found["SO_KEEPALIVE"] != 0)  # any non-zero value means on
    # The platform's options only (Linux has all three); unset ones are not compared when off.
    assert {name: found[name] for name in expected if name in found} == expected


def test_tune_socket_leaves_unix_sockets_alone() -> None:
    left, right = socket.socketpair()
    with left, right:
        tune_socket(left, 30.0)  # no TCP options on a Unix-domain socket: no error either
        assert left.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0


@pytest.mark.parametrize("value", [0, -1, "often", None])
def test_bad_keepalive_values_are_config_errors(value: Any) -> None:
    with pytest.raises(rawsmtp.SMTPConfigError) as info:
        rawsmtp.SMTPPool(host="127.0.0.1", keepalive=value)
    assert info.value.option == "keepalive"
