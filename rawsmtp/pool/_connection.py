"""One pooled SMTP connection as the selectors loop drives it: socket, TLS, core, message bodies.

A :class:`Connection` moves through set-up stages (a socket from the resolver or the
``get_socket`` hook, non-blocking connect over every address, proxy handshake, implicit TLS)
and then hands every byte to the sans-I/O :class:`~rawsmtp.protocol.ClientConnection`. It
reports to its owner (the pool) through the :class:`Owner` protocol and never blocks: name
resolution, the ``get_socket`` hook and token providers run in the owner's worker threads.
"""

from __future__ import annotations

import errno
import logging
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

from .._errors import SMTPConnectionError, SMTPProxyError
from ..protocol import (
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
    SendBody,
    SMTPAuthenticationError,
    SMTPError,
    SMTPTimeoutError,
    StartTLS,
    State,
    Transaction,
)
from ..protocol._sasl import SASLMechanism
from ..proxy import ProxyHandshake

if TYPE_CHECKING:
    import ssl

    from ._tls_layer import TLSLayer

__all__ = ["Connection", "ConnectionSettings", "Owner", "SocketPlan", "ehlo_name"]

# Stop pulling message chunks while this much is waiting to be written: memory stays bounded
# however large the message.
_HIGH_WATER = 256 * 1024
# Below glibc's mmap threshold (128 KiB): a bigger recv() buffer is mapped, shrunk and unmapped
# on every call, three system calls more per read. Replies are small; TLS records, 16 KiB.
_RECV_SIZE = 64 * 1024


@dataclass(frozen=True, slots=True)
class SocketPlan:
    """What the worker thread prepared: a ready socket, or addresses to connect to."""

    sock: socket.socket | None
    secured: bool
    addresses: tuple[tuple[Any, ...], ...]  # getaddrinfo entries
    local_hostname: str | None  # the machine's FQDN when it has a dot
    proxy: ProxyHandshake | None = None  # run first when the addresses are a proxy's


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionSettings:
    """What a connection needs to know, derived once from the pool's options."""

    host: str
    port: int
    secure: bool
    starttls: str  # "opportunistic" | "required" | "never"
    ssl_context: ssl.SSLContext | None  # None when TLS is never used (ignore_tls, plain port)
    server_hostname: str
    name: str | None
    local_address: str | None
    lmtp: bool
    connection_timeout: float
    greeting_timeout: float
    socket_timeout: float
    debug: bool
    logger: logging.Logger
    # Builds the SASL mechanisms for an attempt, the first and its fallbacks (None: no
    # credentials), from the core, the host, ``renew`` (ask for a fresh token) and the server's
    # DER certificate when TLS is active (for channel binding). Runs in a worker thread: token
    # providers may block.
    authenticator: (
        Callable[[ClientConnection, str, bool, bytes | None], tuple[SASLMechanism, ...]] | None
    )
    renewable: bool  # a failed token may be renewed and tried once more


class Owner(Protocol):
    """What a connection reports to (the pool) and borrows from it."""

    def run_blocking(
        self, func: Callable[[], Any], done: Callable[[Any, BaseException | None], None]
    ) -> None: ...

    def connection_ready(self, connection: Connection, window: int) -> None: ...

    def message_done(
        self, connection: Connection, event: MessageAccepted | MessageFailed
    ) -> None: ...

    def connection_closed(
        self, connection: Connection, event: ConnectionClosed, *, setup_failed: bool
    ) -> None: ...

    def watch(self, connection: Connection) -> None: ...

    def flush_soon(self, connection: Connection) -> None:
        """Output is waiting: :meth:`Connection.flush` it before the loop next waits, together
        with the other connections' (see PoolEngine.flush_output)."""
        ...


def ehlo_name(configured: str | None, fqdn: str | None, sock: socket.socket) -> str:
    """The name to greet with: the ``name`` option, else the machine's FQDN (when it has a
    dot), else the address literal of our end of the connection (RFC 5321 section 4.1.3)."""
    if configured:
        return configured
    if fqdn:
        return fqdn
    try:
        address = str(sock.getsockname()[0])
    except OSError:
        return "[127.0.0.1]"
    return f"[IPv6:{address}]" if ":" in address else f"[{address}]"


class Connection:
    """One connection of the pool; every method runs on the loop thread."""

    _ids = 0

    def __init__(self, owner: Owner, settings: ConnectionSettings, now: float) -> None:
        Connection._ids += 1
        self.id = Connection._ids
        self.owner = owner
        self.settings = settings
        self.sock: socket.socket | None = None
        self.core: ClientConnection | None = None
        self.slot: object = None  # the scheduler's handle
        self._tls: TLSLayer | None = None
        self._ssl_socket = False  # get_socket returned an already-secured SSLSocket
        self._addresses: list[tuple[Any, ...]] = []
        self._proxy: ProxyHandshake | None = None  # until the proxy's tunnel is open
        self._local_hostname: str | None = None
        self._sendbuf = bytearray()
        self._setup_deadline: float | None = now + settings.connection_timeout
        self._last_progress = now
        self._connecting = False
        self._body: Iterator[bytes] | None = None
        self._body_error: tuple[Transaction, BaseException] | None = None
        self._retried_auth = False
        self._setup_error: SMTPError | None = None  # reported when the polite QUIT completes
        self._ready = False
        self._closed = False
        self.log = settings.logger

    # -- set-up ---------------------------------------------------------------------------------

    def start(self, plan: SocketPlan, now: float) -> None:
        """Called with what the worker prepared (or an error)."""
        if self._closed:  # the pool gave up on this connection while the worker ran
            if plan.sock is not None:
                plan.sock.close()
            return
        self._local_hostname = plan.local_hostname
        if plan.sock is not None:
            plan.sock.setblocking(False)
            self.sock = plan.sock
            self._ssl_socket = plan.secured and _is_ssl_socket(plan.sock)
            self._connected(now, secured=plan.secured)
            return
        self._addresses = list(plan.addresses)
        self._proxy = plan.proxy
        self._connect_next(None)

    def _connect_next(self, error: OSError | None) -> None:
        if not self._addresses:
            reason = f": {error.strerror or error}" if error else ""
            target = f"{self.settings.host}:{self.settings.port}"
            if self._proxy is not None:  # the addresses tried were the proxy's
                self.fail_setup(SMTPProxyError(f"could not reach the proxy for {target}{reason}"))
            else:
                self.fail_setup(SMTPConnectionError(f"could not connect to {target}{reason}"))
            return
        family, kind, proto, _, address = self._addresses.pop(0)
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            if self.settings.local_address:
                sock.bind((self.settings.local_address, 0))
            code = sock.connect_ex(address)
        except OSError as exc:
            sock.close()
            self._connect_next(exc)
            return
        if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            sock.close()
            self._connect_next(OSError(code, errno.errorcode.get(code, str(code))))
            return
        self.sock, self._connecting = sock, True
        self.owner.watch(self)

    def _finish_connect(self, now: float) -> None:
        assert self.sock is not None
        code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        self._connecting = False
        if code:
            self.sock.close()
            self.sock = None
            self._connect_next(OSError(code, errno.errorcode.get(code, str(code))))
            return
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._proxy is not None:
            self._sendbuf += self._proxy.data_to_send()
            return
        self._connected(now, secured=False)

    def _on_proxy_bytes(self, data: bytes, now: float) -> None:
        proxy = self._proxy
        assert proxy is not None
        try:
            proxy.receive_data(data)
        except SMTPError as error:
            self.fail_setup(error)
            return
        self._sendbuf += proxy.data_to_send()
        if proxy.done:
            # The tunnel is open; what came with the proxy's reply is the server's first bytes.
            self._proxy = None
            self._connected(now, secured=False)
            if proxy.leftover:
                self._on_bytes(proxy.leftover, now)

    def _connected(self, now: float, *, secured: bool) -> None:
        if self.settings.secure and not secured:
            self._tls = self._new_tls_layer()
            self._advance_tls(now)
        else:
            self._start_session(now, tls=secured)
        self.owner.watch(self)

    def _advance_tls(self, now: float) -> None:
        assert self._tls is not None
        done = self._tls.handshake()
        self._sendbuf += self._tls.take_outgoing()
        if not done:
            return
        if self.core is None:
            self._start_session(now, tls=True)
        else:
            self.core.start_tls_done()
        # Application data may have arrived together with the end of the handshake.
        self._receive_plaintext(self._tls.receive(b""), now)

    def _start_session(self, now: float, *, tls: bool) -> None:
        settings = self.settings
        self._setup_deadline = None
        self.core = ClientConnection(
            ClientConfig(
                local_hostname=self._ehlo_name(),
                lmtp=settings.lmtp,
                starttls="never" if tls else settings.starttls,  # type: ignore[arg-type]
                tls_active=tls,
                greeting_timeout=settings.greeting_timeout,
                command_timeout=settings.socket_timeout,
                data_timeout=settings.socket_timeout,
                trace=settings.debug,
            ),
            now=now,
        )

    def _ehlo_name(self) -> str:
        assert self.sock is not None
        return ehlo_name(self.settings.name, self._local_hostname, self.sock)

    # -- the loop's calls -----------------------------------------------------------------------

    def fileno(self) -> int:
        return self.sock.fileno() if self.sock is not None else -1

    def wants_write(self) -> bool:
        # A body still being streamed needs a wake-up even when the buffer has just drained.
        return self._connecting or bool(self._sendbuf) or self._body is not None

    def deadline(self) -> float | None:
        soonest = self._setup_deadline
        for candidate in (
            self._write_deadline(),
            self.core.get_timer() if self.core is not None else None,
        ):
            if candidate is not None and (soonest is None or candidate < soonest):
                soonest = candidate
        return soonest

    def _write_deadline(self) -> float | None:
        return self._last_progress + self.settings.socket_timeout if self._sendbuf else None

    def on_timer(self, now: float) -> None:
        if self._setup_deadline is not None and now >= self._setup_deadline:
            phase = "tls" if self._tls else "proxy" if self._proxy and self.sock else "connect"
            self.fail_setup(SMTPTimeoutError(f"{phase} timed out", phase=phase))
        elif (deadline := self._write_deadline()) is not None and now >= deadline:
            self._lose(SMTPTimeoutError("the server stopped reading", phase="send"))
        elif self.core is not None:
            self.core.handle_timer(now)
            self._process(now)

    def on_writable(self, now: float) -> None:
        if self._connecting:
            self._finish_connect(now)
            return
        self.flush(now)
        if self._body is not None:
            self._process(now)

    def on_readable(self, now: float) -> None:
        assert self.sock is not None
        if self._connecting:
            # A loop may report "readable" (the greeting is in) before "writable": finish the
            # connect; the bytes stay in the socket for the next readiness report.
            self._finish_connect(now)
            return
        try:
            data = self.sock.recv(_RECV_SIZE)
        except OSError as error:
            self._on_socket_error(error)
            return
        self._last_progress = now
        if self._proxy is not None:
            self._on_proxy_bytes(data, now)
        else:
            self._on_bytes(data, now)

    def _on_bytes(self, data: bytes, now: float) -> None:
        """Received bytes (b"": end of stream), through TLS when it is active."""
        if not data or self._tls is None or self._ssl_socket:
            self._receive_plaintext(data, now, eof=not data)
            return
        try:
            plaintext = self._tls.receive(data)
            if not self._tls.handshake_done:
                self._advance_tls(now)
            else:
                self._receive_plaintext(plaintext, now)
        except SMTPError as error:
            self._lose(error) if self.core is not None else self.fail_setup(error)

    def _receive_plaintext(self, data: bytes, now: float, *, eof: bool = False) -> None:
        if self.core is None:
            if eof:
                self.fail_setup(SMTPConnectionError("connection closed during set-up"))
            return
        if data or eof:
            self.core.receive_data(data, now)
        self._process(now)

    # -- sessions -------------------------------------------------------------------------------

    def send(self, transaction: Transaction, now: float) -> None:
        assert self.core is not None
        self.core.send_mail(transaction)
        self._process(now)

    def quit(self, now: float) -> None:
        if self.core is None:
            self.fail_setup(None)
            return
        self.core.quit()
        self._process(now)

    def _process(self, now: float) -> None:
        """Act on every pending core event, feed message bodies, and write."""
        core = self.core
        assert core is not None
        while True:
            while (event := core.next_event()) is not NEED_DATA:
                self._on_event(event, now)
                if self._closed:
                    return
            # Move output along before measuring it: the high-water mark bounds the memory a
            # streamed body may occupy between the caller's file and the socket.
            if output := core.data_to_send(now):
                self._queue_output(output)
            if self._body is None or len(self._sendbuf) >= _HIGH_WATER:
                break
            self._feed_body()
        if self.settings.debug:
            self._trace()
        if self._sendbuf and self.sock is not None:
            self.owner.flush_soon(self)

    def _feed_body(self) -> None:
        assert self.core is not None and self._body is not None
        try:
            chunk = next(self._body, None)
        except Exception as error:  # the caller's file or iterable failed: the message is lost
            transaction = self._body_transaction
            self._body = None
            self._body_error = (transaction, error)
            self.core.connection_lost(SMTPConnectionError(f"reading the message failed: {error}"))
            return
        if chunk is None:
            self._body = None
            self.core.end_body()
        else:
            self.core.send_body(chunk)

    def _on_event(self, event: Event, now: float) -> None:
        if isinstance(event, SendBody):
            job: Any = event.transaction.tag
            self._body_transaction = event.transaction
            self._body = iter(job.chunks())
        elif isinstance(event, MessageAccepted | MessageFailed):
            self.owner.message_done(self, event)
        elif isinstance(event, Ready):
            self._on_ready(event)
        elif isinstance(event, Authenticated):
            self._become_ready()
        elif isinstance(event, AuthenticationFailed):
            self._on_auth_failed(event)
        elif isinstance(event, StartTLS):
            self._tls = self._new_tls_layer()
            self._setup_deadline = now + self.settings.connection_timeout
            self._advance_tls(now)
        elif isinstance(event, ConnectionClosed):
            self._on_closed(event)
        elif isinstance(event, Greeting):
            self.log.debug("[%d] greeting: %s", self.id, event.reply)

    def _on_ready(self, event: Ready) -> None:
        self._setup_deadline = None
        if self.settings.authenticator is None:
            self._become_ready()
        else:
            self._authenticate(renew=False)

    def _authenticate(self, *, renew: bool) -> None:
        authenticator, core = self.settings.authenticator, self.core
        assert authenticator is not None and core is not None
        host = self.settings.host

        def done(mechanisms: Any, error: BaseException | None) -> None:
            # While the worker ran, the pool may have begun to close this session (QUIT sent).
            if self._closed or self.core is None or self.core.state is not State.READY:
                return
            if error is not None:
                failure = (
                    error
                    if isinstance(error, SMTPError)
                    else SMTPAuthenticationError(f"could not prepare authentication: {error}")
                )
                self.fail_setup(failure)
                return
            self.core.authenticate(*mechanisms)
            self._process(self._last_progress)

        certificate = self.peer_certificate()
        self.owner.run_blocking(lambda: authenticator(core, host, renew, certificate), done)

    def peer_certificate(self) -> bytes | None:
        """The server's DER certificate once TLS is up (None without TLS or when unknown)."""
        if self._tls is not None and self._tls.handshake_done:
            return self._tls.object.getpeercert(binary_form=True)
        if self._ssl_socket and self.sock is not None:
            return cast("ssl.SSLSocket", self.sock).getpeercert(binary_form=True)
        return None

    def _new_tls_layer(self) -> TLSLayer:
        from ._tls_layer import TLSLayer  # with ssl: only pools that use TLS load OpenSSL

        assert self.settings.ssl_context is not None  # made whenever TLS may be used
        return TLSLayer(self.settings.ssl_context, self.settings.server_hostname)

    def _on_auth_failed(self, event: AuthenticationFailed) -> None:
        if self.settings.renewable and not self._retried_auth and event.error.code is not None:
            self._retried_auth = True
            self.log.info("[%d] authentication failed, renewing the token", self.id)
            self._authenticate(renew=True)
            return
        # The server is fine, only our credentials are not: say QUIT rather than hang up.
        assert self.core is not None
        self._setup_error = event.error
        self.core.quit()
        self._process(self._last_progress)

    def _become_ready(self) -> None:
        assert self.core is not None
        self._ready = True
        # Three in flight let a pipelining server see each body's dot and the next message's
        # commands in one write: one round trip per message (the next is queued in the core).
        window = 3 if self.core.extensions.pipelining else 1
        self.owner.connection_ready(self, window)

    def _on_closed(self, event: ConnectionClosed) -> None:
        self._closed = True
        self._close_socket()
        if self._body_error is not None:
            # The caller's file or iterable failed mid-message: the server never saw the end,
            # so the message is not delivered, and not retried either.
            transaction, error = self._body_error
            failed = SMTPConnectionError(f"reading the message failed: {error}")
            failed.__cause__ = error
            self.owner.message_done(self, MessageFailed(transaction=transaction, error=failed))
            event = ConnectionClosed(
                error=event.error,
                unsent=tuple(t for t in event.unsent if t is not transaction),
                unconfirmed=tuple(t for t in event.unconfirmed if t is not transaction),
            )
        if self._setup_error is not None:  # closed politely (QUIT) after a failed set-up step
            event = ConnectionClosed(
                error=self._setup_error, unsent=event.unsent, unconfirmed=event.unconfirmed
            )
        self.owner.connection_closed(self, event, setup_failed=not self._ready)

    # -- failures -------------------------------------------------------------------------------

    def fail_setup(self, error: SMTPError | None) -> None:
        """End a connection that never became ready (or is being shut before it did)."""
        if self._closed:
            return
        if self.core is not None:
            self.core.connection_lost(error)
            self._process(self._last_progress)
            return
        self._closed = True
        self._close_socket()
        self.owner.connection_closed(self, ConnectionClosed(error=error), setup_failed=True)

    def _lose(self, error: SMTPError) -> None:
        if self.core is None:
            self.fail_setup(error)
        else:
            self.core.connection_lost(error)
            self._process(self._last_progress)

    def close_now(self, error: SMTPError) -> None:
        """Abandon the connection (the pool is shutting down and waited long enough)."""
        self._lose(error)

    def _close_socket(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    # -- output ---------------------------------------------------------------------------------

    def _queue_output(self, data: bytes) -> None:
        if self._tls is not None and not self._ssl_socket:
            self._tls.send(data)
            self._sendbuf += self._tls.take_outgoing()
        else:
            self._sendbuf += data

    def flush(self, now: float) -> None:
        """Write what the socket takes of the output now."""
        if not self._sendbuf or self.sock is None:
            return
        try:
            sent = self.sock.send(self._sendbuf)
        except OSError as error:
            self._on_socket_error(error)
            return
        if sent:
            del self._sendbuf[:sent]
            self._last_progress = now

    def _on_socket_error(self, error: OSError) -> None:
        """A recv() or send() failed; "not now" (the socket would block) is no failure."""
        if isinstance(error, BlockingIOError):
            return
        if self._ssl_socket:  # a secured socket from get_socket raises ssl's own errors
            import ssl

            from ._tls_layer import tls_error

            if isinstance(error, ssl.SSLWantReadError | ssl.SSLWantWriteError):
                return
            if isinstance(error, ssl.SSLError):
                self._lose(tls_error(error))
                return
        self._lose(SMTPConnectionError(f"connection error: {error}"))

    def _trace(self) -> None:
        if self.core is None:
            return
        for direction, line in self.core.take_trace():
            self.log.debug("[%d] %s: %s", self.id, direction, line)


def _is_ssl_socket(sock: socket.socket) -> bool:
    ssl = sys.modules.get("ssl")  # an SSLSocket cannot exist before ssl is imported
    return ssl is not None and isinstance(sock, ssl.SSLSocket)


def protocol_error_of(error: BaseException) -> SMTPError:
    """Wrap an unexpected exception from user code (hooks, providers) as an SMTPError."""
    if isinstance(error, SMTPError):
        return error
    if isinstance(error, ValueError):
        return LocalProtocolError(str(error))
    return SMTPConnectionError(f"{type(error).__name__}: {error}")
