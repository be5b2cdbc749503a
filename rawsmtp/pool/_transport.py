"""The byte pipe under one pooled session: socket, connect, proxy, TLS, send buffer, deadlines.

A :class:`Transport` turns a :class:`SocketPlan` (made by a worker thread) into a plaintext
stream for its :class:`TransportUser` (the session): a non-blocking connect over every address,
the proxy handshake when the addresses are a proxy's, implicit TLS or a later STARTTLS through
:class:`~rawsmtp.pool._tls_layer.TLSLayer`, and a send buffer the driver flushes in batches
(:class:`WriteBatch`). It never blocks and knows nothing of SMTP.

Two deadlines live here: the set-up deadline (connect, proxy, TLS handshakes) runs from the
moment the connect starts; the write deadline runs whenever anything remains to send, bytes in
the buffer or a body still being streamed, so a server that stops reading cannot hold a
message (or ``close()``) forever. Every socket is unregistered from the driver before it is
closed, in :meth:`Transport._drop_socket` only.
"""

from __future__ import annotations

import errno
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

from .._errors import SMTPConnectionError, SMTPProxyError
from ..protocol import SMTPError, SMTPTimeoutError
from ..proxy import ProxyHandshake

if TYPE_CHECKING:
    import ssl

    from ._tls_layer import TLSLayer

__all__ = [
    "IOServices",
    "SocketPlan",
    "Transport",
    "TransportSettings",
    "TransportUser",
    "WriteBatch",
    "ehlo_name",
    "tune_socket",
]

# Below glibc's mmap threshold (128 KiB): a bigger recv() buffer is mapped, shrunk and unmapped
# on every call, three system calls more per read. Replies are small; TLS records, 16 KiB.
_RECV_SIZE = 64 * 1024
_LAST_WORDS_READS = 16  # at most 1 MiB read after a failed send (see _read_last_words)


@dataclass(frozen=True, slots=True)
class SocketPlan:
    """What the worker thread prepared: a ready socket, or addresses to connect to."""

    sock: socket.socket | None
    secured: bool
    addresses: tuple[tuple[Any, ...], ...]  # getaddrinfo entries
    local_hostname: str | None  # the machine's FQDN when it has a dot
    proxy: ProxyHandshake | None = None  # run first when the addresses are a proxy's


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportSettings:
    """The part of the pool's options a transport uses."""

    host: str
    port: int
    secure: bool  # implicit TLS
    ssl_context: ssl.SSLContext | None  # None when TLS is never used (ignore_tls, plain port)
    server_hostname: str
    name: str | None  # the ``name`` option (EHLO)
    local_address: str | None
    connection_timeout: float
    socket_timeout: float
    keepalive: float | None = 30.0  # idle seconds before TCP keepalive probes; None: off
    proxy_ssl_context: ssl.SSLContext | None = None  # an https:// proxy: TLS to the proxy
    proxy_hostname: str | None = None  # the name its certificate is checked against


class IOServices(Protocol):
    """The I/O services a driver lends to the sessions and transports on its loop."""

    def run_blocking(
        self, func: Callable[[], Any], done: Callable[[Any, BaseException | None, float], None]
    ) -> None:
        """Run ``func`` in a worker; call ``done(result, error, now)`` back on the loop."""
        ...

    def watch(self, transport: Transport) -> None:
        """The transport's socket is new: register it."""
        ...

    def forget(self, transport: Transport) -> None:
        """Unregister the transport's socket (called while it is still open)."""
        ...

    def flush_soon(self, transport: Transport) -> None:
        """Output is waiting: :meth:`Transport.flush` it before the loop next waits."""
        ...


class TransportUser(Protocol):
    """What a transport reports to (its session)."""

    def transport_open(self, now: float, *, tls: bool) -> None:
        """Connected (through the proxy, with implicit TLS when asked): the SMTP session starts."""
        ...

    def tls_established(self, now: float) -> None:
        """The STARTTLS handshake asked for with :meth:`Transport.start_tls` is complete."""
        ...

    def data_received(self, data: bytes, now: float) -> None:
        """Plaintext from the server; b"" is the end of the stream."""
        ...

    def send_more(self, now: float) -> None:
        """The socket is writable while a body is streaming (``streaming``): feed it."""
        ...

    def transport_failed(self, error: SMTPError, now: float) -> None:
        """The transport cannot go on (connect, proxy, TLS, socket error, a deadline)."""
        ...


class _Detached:
    """The user of a closed transport: what still arrives is nobody's. A session and its
    transport refer to each other, and that cycle would keep a closed session (its core, the
    reply buffer, its last message) until a full garbage collection, which a long queue makes
    rare: 13 MB at 100,000 messages (bench/run.py, the queued rows; 1,000 sessions)."""

    __slots__ = ()

    def transport_open(self, now: float, *, tls: bool) -> None:
        pass

    def tls_established(self, now: float) -> None:
        pass

    def data_received(self, data: bytes, now: float) -> None:
        pass

    def send_more(self, now: float) -> None:
        pass

    def transport_failed(self, error: SMTPError, now: float) -> None:
        pass


_DETACHED = _Detached()


def ehlo_name(configured: str | None, fqdn: str | None, sock: socket.socket | None) -> str:
    """The name to greet with: the ``name`` option, else the machine's FQDN (when it has a
    dot), else the address literal of our end of the connection (RFC 5321 section 4.1.3);
    "[127.0.0.1]" when that end has no IP address (a Unix-domain socket, an unbound socket)."""
    if configured:
        return configured
    if fqdn:
        return fqdn
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return "[127.0.0.1]"
    try:
        address = str(sock.getsockname()[0])
    except (OSError, IndexError):
        return "[127.0.0.1]"
    return f"[IPv6:{address}]" if ":" in address else f"[{address}]"


class WriteBatch:
    """Transports with output waiting, written back to back by :meth:`flush` (driver-owned).

    The drivers flush before they wait for events (the selectors pool also right after handling
    them, so answers to replies leave at once). Writing each connection's output as soon as it
    was made left time between writes for a loopback server to fall asleep, and a write that
    must wake its reader costs several times one that finds it running: written together, 40%
    more messages a second and half the system time. Output made during a flush waits for the
    next round (the driver then also watches the socket for writability, so nothing blocks).
    """

    __slots__ = ("_waiting",)

    def __init__(self) -> None:
        self._waiting: dict[Transport, None] = {}  # in order

    def add(self, transport: Transport) -> None:
        self._waiting[transport] = None

    def flush(self, now: float) -> None:
        waiting, self._waiting = self._waiting, {}
        for transport in waiting:
            transport.flush(now)


class Transport:
    """One connection's socket and byte stream; every method runs on the loop."""

    def __init__(
        self, user: TransportUser, services: IOServices, settings: TransportSettings, now: float
    ) -> None:
        self.user = user
        self.services = services
        self.settings = settings
        self.sock: socket.socket | None = None
        self.streaming = False  # the session has a body still to send (see deadline)
        self._tls: TLSLayer | None = None  # SMTP's TLS (implicit or STARTTLS)
        self._proxy_tls: TLSLayer | None = None  # an https:// proxy's, under SMTP's own
        self._ssl_socket = False  # get_socket returned an already-secured SSLSocket
        self._addresses: list[tuple[Any, ...]] = []
        self._proxy: ProxyHandshake | None = None  # until the proxy's tunnel is open
        self._local_hostname: str | None = None
        self._sendbuf = bytearray()  # bytes for the socket, ciphertext under TLS
        self._plain = bytearray()  # plaintext waiting for the TLS layer (see flush)
        self._setup_deadline: float | None = None  # set when the connect starts
        self._last_progress = now
        self._connecting = False
        self._open = False  # transport_open was reported
        self._closed = False

    def __repr__(self) -> str:
        return f"<Transport {self.phase}>"

    @property
    def phase(self) -> str:
        """Where the transport is: planning, connecting, proxy, tls, open, closed."""
        if self._closed:
            return "closed"
        if self._open and (self._tls is None or self._tls.handshake_done):
            return "open"
        if self._tls is not None:
            return "tls"
        if self._proxy is not None and self.sock is not None and not self._connecting:
            return "proxy"
        return "connecting" if self.sock is not None else "planning"

    # -- set-up ---------------------------------------------------------------------------------

    def start(self, plan: SocketPlan, now: float) -> None:
        """Called with what the worker prepared; the set-up deadline starts now."""
        if self._closed:  # the session ended while the worker ran
            if plan.sock is not None:
                plan.sock.close()
            return
        self._setup_deadline = now + self.settings.connection_timeout
        self._last_progress = now
        self._local_hostname = plan.local_hostname
        if plan.sock is not None:
            plan.sock.setblocking(False)
            tune_socket(plan.sock, self.settings.keepalive)
            self.sock = plan.sock
            self._ssl_socket = plan.secured and _is_ssl_socket(plan.sock)
            self.services.watch(self)
            self._connected(now, secured=plan.secured)
            return
        self._addresses = list(plan.addresses)
        self._proxy = plan.proxy
        self._connect_next(None, now)

    def _connect_next(self, error: OSError | None, now: float) -> None:
        if not self._addresses:
            reason = f": {error.strerror or error}" if error else ""
            target = f"{self.settings.host}:{self.settings.port}"
            if self._proxy is not None:  # the addresses tried were the proxy's
                self._fail(SMTPProxyError(f"could not reach the proxy for {target}{reason}"), now)
            else:
                self._fail(SMTPConnectionError(f"could not connect to {target}{reason}"), now)
            return
        family, kind, proto, _, address = self._addresses.pop(0)
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            if self.settings.local_address:
                sock.bind((self.settings.local_address, 0))
            code = sock.connect_ex(address)
        except OSError as exc:
            sock.close()  # never registered
            self._connect_next(exc, now)
            return
        if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            sock.close()
            self._connect_next(OSError(code, errno.errorcode.get(code, str(code))), now)
            return
        self.sock, self._connecting = sock, True
        self.services.watch(self)

    def _finish_connect(self, now: float) -> None:
        assert self.sock is not None
        code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        self._connecting = False
        if code:
            self._drop_socket()
            self._connect_next(OSError(code, errno.errorcode.get(code, str(code))), now)
            return
        tune_socket(self.sock, self.settings.keepalive)
        if self._proxy is None:
            self._connected(now, secured=False)
        elif self.settings.proxy_ssl_context is not None:
            from ._tls_layer import TLSLayer

            context, name = self.settings.proxy_ssl_context, self.settings.proxy_hostname
            self._proxy_tls = TLSLayer(context, name)
            self._advance_proxy_tls(now)
        else:
            self._to_wire(self._proxy.data_to_send())

    def _advance_proxy_tls(self, now: float) -> None:
        """The TLS handshake with an https:// proxy; once done, the CONNECT request follows."""
        layer, proxy = self._proxy_tls, self._proxy
        assert layer is not None and proxy is not None
        try:
            done = layer.handshake()
        except SMTPError as error:
            self._fail(_proxy_tls_failed(error), now)
            return
        self._sendbuf += layer.take_outgoing()
        if done:
            self._to_wire(proxy.data_to_send())

    def _on_proxy_bytes(self, data: bytes, now: float) -> None:
        proxy = self._proxy
        assert proxy is not None
        try:
            proxy.receive_data(data)
        except SMTPError as error:
            self._fail(error, now)
            return
        self._to_wire(proxy.data_to_send())
        if proxy.done:
            # The tunnel is open; what came with the proxy's reply is the server's first bytes.
            self._proxy = None
            self._connected(now, secured=False)
            if proxy.leftover and not self._closed:
                self._on_bytes(proxy.leftover, now)

    def _connected(self, now: float, *, secured: bool) -> None:
        if self.settings.secure and not secured:
            self._tls = self._new_tls_layer()
            self._advance_tls(now)
        else:
            self._become_open(now, tls=secured)

    def _become_open(self, now: float, *, tls: bool) -> None:
        self._setup_deadline = None
        self._open = True
        self.user.transport_open(now, tls=tls)

    def start_tls(self, now: float) -> None:
        """Begin the STARTTLS handshake (reported with ``tls_established``)."""
        self._seal()  # what was written before STARTTLS is not for the new layer
        self._tls = self._new_tls_layer()
        self._setup_deadline = now + self.settings.connection_timeout
        self._advance_tls(now)

    def _advance_tls(self, now: float) -> None:
        assert self._tls is not None
        done = self._tls.handshake()
        self._to_wire(self._tls.take_outgoing())
        if not done:
            return
        if self._open:
            self._setup_deadline = None
            self.user.tls_established(now)
        else:
            self._become_open(now, tls=True)
        # Application data may have arrived together with the end of the handshake.
        if not self._closed and (data := self._tls.receive(b"")):
            self.user.data_received(data, now)

    def _new_tls_layer(self) -> TLSLayer:
        from ._tls_layer import TLSLayer  # with ssl: only pools that use TLS load OpenSSL

        assert self.settings.ssl_context is not None  # made whenever TLS may be used
        return TLSLayer(self.settings.ssl_context, self.settings.server_hostname)

    def ehlo_name(self) -> str:
        return ehlo_name(self.settings.name, self._local_hostname, self.sock)

    def peer_certificate(self) -> bytes | None:
        """The server's DER certificate once TLS is up (None without TLS or when unknown)."""
        if self._tls is not None and self._tls.handshake_done:
            return self._tls.object.getpeercert(binary_form=True)
        if self._ssl_socket and self.sock is not None:
            return cast("ssl.SSLSocket", self.sock).getpeercert(binary_form=True)
        return None

    # -- the loop's calls -----------------------------------------------------------------------

    def fileno(self) -> int:
        return self.sock.fileno() if self.sock is not None else -1

    def wants_write(self) -> bool:
        # A body still being streamed needs a wake-up even when the buffer has just drained.
        return self._connecting or bool(self._sendbuf or self._plain) or self.streaming

    def deadline(self) -> float | None:
        """The set-up's deadline while it runs, then the write deadline while output waits."""
        # One function for both (on_timer tells them apart): the loop asks every transport
        # this on every round.
        if self._setup_deadline is not None:
            return self._setup_deadline
        # Also while a body is being streamed with the buffer empty: the last write may have
        # filled the socket exactly, and a server that stops reading then never makes it
        # writable again.
        if self._sendbuf or self._plain or self.streaming:
            return self._last_progress + self.settings.socket_timeout
        return None

    def on_timer(self, now: float) -> bool:
        """Fail the transport when one of its deadlines has come; True when one had."""
        if self._setup_deadline is not None:
            if now < self._setup_deadline:
                return False
            phase = "tls" if self._tls else "proxy" if self._proxy and self.sock else "connect"
            self._fail(SMTPTimeoutError(f"{phase} timed out", phase=phase), now)
            return True
        deadline = self.deadline()  # the write deadline: there is no set-up deadline now
        if deadline is None or now < deadline:
            return False
        self._fail(SMTPTimeoutError("the server stopped reading", phase="send"), now)
        return True

    def on_writable(self, now: float) -> None:
        if self._connecting:
            self._finish_connect(now)
            return
        self.flush(now)
        if self.streaming:
            self.user.send_more(now)

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
            self._on_socket_error(error, now)
            return
        self._last_progress = now
        direct = self._proxy is None and self._proxy_tls is None
        if data and self._open and direct and (self._tls is None or self._ssl_socket):
            # Bytes of an open session, the usual read: straight to it, without the two calls
            # of the general way (_received, _on_bytes), once per batch of replies.
            self.user.data_received(data, now)
            return
        self._received(data, now)

    def _received(self, data: bytes, now: float) -> None:
        """Bytes from the socket (b"": end of stream), to whichever layer reads them now."""
        if self._proxy_tls is not None and data:
            data = self._from_proxy_tls(data, now)
            if not data:
                return
        if self._proxy is not None:
            self._on_proxy_bytes(data, now)
        else:
            self._on_bytes(data, now)

    def _from_proxy_tls(self, data: bytes, now: float) -> bytes:
        """Ciphertext from an https:// proxy in, its plaintext out (b"" while there is none)."""
        layer = self._proxy_tls
        assert layer is not None
        try:
            if layer.handshake_done:
                return layer.receive(data)
            layer.receive(data)
        except SMTPError as error:
            self._fail(_proxy_tls_failed(error), now)
            return b""
        self._advance_proxy_tls(now)
        return b""

    def _on_bytes(self, data: bytes, now: float) -> None:
        """Received bytes (b"": end of stream), through TLS when it is active."""
        if not data:
            if self._open:
                self.user.data_received(b"", now)
            else:
                self._fail(SMTPConnectionError("connection closed during set-up"), now)
            return
        if self._tls is None or self._ssl_socket:
            if self._open:
                self.user.data_received(data, now)
            return
        try:
            plaintext = self._tls.receive(data)
            if not self._tls.handshake_done:
                self._advance_tls(now)
            elif plaintext:
                self.user.data_received(plaintext, now)
        except SMTPError as error:
            self._fail(error, now)

    # -- output ---------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue ``data`` for the server; the driver flushes it with the next batch.

        Under TLS the plaintext is only encrypted at the flush, all of it at once: a pipelined
        group (MAIL, RCPT, BDAT and its chunk) then travels in one TLS record (up to 16 KiB
        each) rather than one per write. A server reads a record at a time and answers when
        none is left; with two records Postfix answered MAIL+RCPT at once and its BDAT reply
        then waited for our delayed ACK (about 40 ms per message).
        """
        if self._tls is not None or self._proxy_tls is not None:
            self._plain += data
        else:
            self._sendbuf += data
        if self.sock is not None:
            self.services.flush_soon(self)

    def buffered(self) -> int:
        return len(self._sendbuf) + len(self._plain)

    def flush(self, now: float) -> None:
        """Write what the socket takes of the output now."""
        if self._plain:
            self._seal()
        if not self._sendbuf or self.sock is None:
            return
        try:
            sent = self.sock.send(self._sendbuf)
        except OSError as error:
            if not isinstance(error, BlockingIOError):
                self._read_last_words(now)
            self._on_socket_error(error, now)
            return
        if sent:
            del self._sendbuf[:sent]
            self._last_progress = now

    def _read_last_words(self, now: float) -> None:
        """Before a failed send is reported, take what the server said before it went away.

        A server that answers and then closes with our pipelined commands still unread resets
        the connection; the replies it wrote first (a message's 250, then its 421) are still in
        our receive buffer. Reporting the send error first would turn that delivered message
        into an unknown outcome.
        """
        for _ in range(_LAST_WORDS_READS):
            if self.sock is None or self._closed:
                return
            try:
                data = self.sock.recv(_RECV_SIZE)
            except OSError:
                return
            self._received(data, now)
            if not data:
                return

    def _seal(self) -> None:
        """Encrypt the plaintext waiting, in one go (see :meth:`write`), through every layer."""
        if self._tls is not None:
            self._tls.send(self._plain)
            self._plain.clear()
            self._to_wire(self._tls.take_outgoing())
        elif self._plain:
            self._to_wire(self._plain)
            self._plain.clear()

    def _to_wire(self, data: bytes | bytearray) -> None:
        """Bytes for the socket: through the https:// proxy's TLS when there is one."""
        if self._proxy_tls is not None:
            self._proxy_tls.send(data)
            data = self._proxy_tls.take_outgoing()
        self._sendbuf += data

    def _on_socket_error(self, error: OSError, now: float) -> None:
        """A recv() or send() failed; "not now" (the socket would block) is no failure."""
        if isinstance(error, BlockingIOError):
            return
        if _is_ssl_socket(self.sock):  # an SSLSocket from get_socket raises ssl's own errors
            import ssl

            from ._tls_layer import tls_error

            if isinstance(error, ssl.SSLWantReadError | ssl.SSLWantWriteError):
                return
            if isinstance(error, ssl.SSLError):
                self._fail(tls_error(error), now)
                return
        self._fail(SMTPConnectionError(f"connection error: {error}"), now)

    # -- the end --------------------------------------------------------------------------------

    def _fail(self, error: SMTPError, now: float) -> None:
        if not self._closed:
            self.user.transport_failed(error, now)

    def close(self) -> None:
        """Release the socket (unregistered first) and the user; later calls do nothing."""
        self._closed = True
        self.streaming = False
        self._sendbuf.clear()
        self._plain.clear()
        self._drop_socket()
        self.user = _DETACHED

    def _drop_socket(self) -> None:
        """The one place a registered socket is closed: the driver forgets it while it is open
        (asyncio's remove_reader on a closed descriptor raises EBADF)."""
        sock = self.sock
        if sock is None:
            return
        try:
            self.services.forget(self)
        finally:
            self.sock = None
            sock.close()


# TCP keepalive probes after ``keepalive`` idle seconds, then every 10 s; the connection is dead
# after 3 unanswered: a pooled connection idles for minutes, and a NAT or firewall on the way
# may forget it silently. Each option where the platform has it (macOS names the idle time
# TCP_KEEPALIVE).
_KEEPALIVE_INTERVAL, _KEEPALIVE_COUNT = 10, 3


def tune_socket(sock: socket.socket, keepalive: float | None) -> None:
    """TCP_NODELAY (a pipelined group is never held back waiting for an ACK) and keepalive, on
    TCP sockets; others (a Unix-domain socket from get_socket) are left as they are."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if keepalive is None:
            return
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        idle = getattr(socket, "TCP_KEEPIDLE", None) or getattr(socket, "TCP_KEEPALIVE", None)
        for option, value in (
            (idle, max(1, round(keepalive))),
            (getattr(socket, "TCP_KEEPINTVL", None), _KEEPALIVE_INTERVAL),
            (getattr(socket, "TCP_KEEPCNT", None), _KEEPALIVE_COUNT),
        ):
            if option is not None:
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
    except OSError:  # a socket the platform will not tune still works
        pass


def _is_ssl_socket(sock: socket.socket | None) -> bool:
    ssl = sys.modules.get("ssl")  # an SSLSocket cannot exist before ssl is imported
    return ssl is not None and isinstance(sock, ssl.SSLSocket)


def _proxy_tls_failed(error: SMTPError) -> SMTPProxyError:
    """The proxy's TLS failed: a proxy error, caused by the TLS one (a verification failure
    stays permanent for the failure policy)."""
    failure = SMTPProxyError(f"TLS to the proxy failed: {error}")
    failure.__cause__ = error
    return failure
