"""SMTPTestServer: an asyncio event loop in its own thread, serving 127.0.0.1 on a free port.

All protocol work happens on the loop thread; what the test thread reads (messages, commands,
counters) is guarded by one lock. ``stop()`` aborts every connection, closes the listening
socket and the loop, and joins the thread: nothing is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from ..protocol import ServerConfig
from ._config import (
    DEFAULT_MAX_LINE,
    DEFAULT_MAX_SIZE,
    Settings,
    capability_lines,
    mechanisms,
    tls_context,
)
from ._faults import Fault, FaultContext, FaultPolicy, ScriptedPolicy
from ._records import CommandRecord, ReceivedMessage
from ._session import Session

__all__ = ["SMTPTestServer"]


class _Hub:
    """What sessions share with the server: the policy, the records, the counters.

    Sessions call it on the loop thread; the server's properties read it from the test thread,
    so everything goes through one condition variable.
    """

    def __init__(self, policy: FaultPolicy) -> None:
        self._policy = policy
        self.lock = threading.Condition()
        self.messages: list[ReceivedMessage] = []
        self.commands: list[CommandRecord] = []
        self.errors: list[BaseException] = []
        self.connections = 0
        self.active = 0
        self.peak = 0
        self._message_numbers = 0

    def policy(self, context: FaultContext) -> Fault | None:
        return self._policy(context)

    def log_command(self, connection: int, line: str) -> None:
        with self.lock:
            self.commands.append(CommandRecord(connection, line, time.monotonic()))

    def new_message_number(self) -> int:
        with self.lock:
            self._message_numbers += 1
            return self._message_numbers

    def record(self, message: ReceivedMessage) -> None:
        with self.lock:
            self.messages.append(message)
            self.lock.notify_all()

    def error(self, error: BaseException) -> None:
        with self.lock:
            self.errors.append(error)

    def connected(self) -> int:
        with self.lock:
            self.connections += 1
            self.active += 1
            self.peak = max(self.peak, self.active)
            return self.connections

    def disconnected(self) -> None:
        with self.lock:
            self.active -= 1


class SMTPTestServer:
    """A real ESMTP (or LMTP) server for tests, with scripted faults.

    >>> with SMTPTestServer() as server:  # doctest: +SKIP
    ...     smtplib.SMTP(server.host, server.port).sendmail("a@x", ["b@y"], b"hi")
    ...     server.wait_for_messages(1)[0].data
    b'hi\\r\\n'

    Options:

    - ``capabilities``: EHLO lines to advertise, e.g. ``["PIPELINING", "SIZE 1000"]``. The
      default is PIPELINING, SIZE ``max_size``, 8BITMIME, SMTPUTF8, CHUNKING, DSN and
      ENHANCEDSTATUSCODES, plus STARTTLS when TLS is configured and ``AUTH PLAIN LOGIN``
      (and XOAUTH2) when ``users`` (``tokens``) are given. Commands of extensions not
      advertised are refused (502/555).
    - ``tls=True`` uses the certificate shipped in this package (trust it with ``CA_FILE``);
      ``tls_cert``/``tls_key`` (paths) or ``tls=<ssl.SSLContext>`` bring your own.
      ``implicit_tls=True`` wraps the connection in TLS from the first byte (port 465 style).
    - ``users={"alice": "secret"}`` for AUTH PLAIN/LOGIN; ``tokens={"alice": "token"}`` for
      XOAUTH2 (a bad token gets Gmail's ``334 <base64 JSON>`` and then 535);
      ``require_auth=True`` refuses MAIL before AUTH with 530.
    - ``lmtp=True``: LHLO instead of EHLO, one reply per recipient after the data.
    - ``max_size``: the SIZE limit (bytes; 0 for none announced); ``max_line``: command lines.
    - ``faults``: a list of :class:`Fault` rules, or a callable policy (see ``Fault``).
    - ``hostname``: the name in the greeting and EHLO reply; ``port``: 0 picks a free one.
    """

    def __init__(
        self,
        *,
        capabilities: Iterable[str] | None = None,
        tls: bool | ssl.SSLContext = False,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        implicit_tls: bool = False,
        users: Mapping[str, str] | None = None,
        tokens: Mapping[str, str] | None = None,
        lmtp: bool = False,
        max_size: int = DEFAULT_MAX_SIZE,
        max_line: int = DEFAULT_MAX_LINE,
        require_auth: bool = False,
        faults: Iterable[Fault] | FaultPolicy | None = None,
        hostname: str = "rawsmtp.test",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        context = tls_context(tls, tls_cert, tls_key, implicit=implicit_tls)
        lines = capability_lines(capabilities, context)
        users, tokens = dict(users or {}), dict(tokens or {})
        session = ServerConfig(
            hostname=hostname,
            capabilities=lines,
            lmtp=lmtp,
            starttls=context is not None and not implicit_tls,
            tls_active=implicit_tls,
            mechanisms=mechanisms(users, tokens, all_of_them=lines is not None),
            require_auth=require_auth,
            max_size=max_size,
            max_line=max_line,
            # The test server takes what a client under test sends, sloppy or not (unsynchronised
            # pipelining, bare LF, odd paths): how real servers treat those is probe()'s question.
            bare_lf="accept",
            sync="ignore",
            addresses="any",
        )
        self.settings = Settings(
            session=session,
            users=users,
            tokens=tokens,
            tls_context=context,
            implicit_tls=implicit_tls,
        )
        policy = faults if callable(faults) else ScriptedPolicy(faults or ())
        self._hub = _Hub(policy)
        self.host = host
        self.port = port
        self._start_errors: list[BaseException] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    # -- what tests read ----------------------------------------------------------------------

    @property
    def messages(self) -> list[ReceivedMessage]:
        """The messages received so far (a snapshot, in arrival order)."""
        with self._hub.lock:
            return list(self._hub.messages)

    @property
    def commands(self) -> list[CommandRecord]:
        """Every command line received, in order, with its connection's number."""
        with self._hub.lock:
            return list(self._hub.commands)

    @property
    def connections(self) -> int:
        """How many connections were accepted."""
        with self._hub.lock:
            return self._hub.connections

    @property
    def active_connections(self) -> int:
        """How many connections are open now."""
        with self._hub.lock:
            return self._hub.active

    @property
    def peak_connections(self) -> int:
        """The most connections open at once so far."""
        with self._hub.lock:
            return self._hub.peak

    @property
    def errors(self) -> list[BaseException]:
        """Unexpected exceptions inside the server (a bug, or a policy that raised)."""
        with self._hub.lock:
            return list(self._hub.errors)

    def wait_for_messages(self, count: int, timeout: float = 10.0) -> list[ReceivedMessage]:
        """The first ``count`` messages, once they have arrived; TimeoutError after ``timeout``."""
        deadline = time.monotonic() + timeout
        hub = self._hub
        with hub.lock:
            while len(hub.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(hub.messages)} of {count} messages arrived")
                hub.lock.wait(left)
            return hub.messages[:count]

    def clear(self) -> None:
        """Forget the messages and commands received so far."""
        with self._hub.lock:
            self._hub.messages.clear()
            self._hub.commands.clear()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> SMTPTestServer:
        if self._thread is not None:
            raise RuntimeError("server already started")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self.port))
            listener.listen(128)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self.port = listener.getsockname()[1]
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(listener, ready), name=f"SMTPTestServer:{self.port}"
        )
        self._thread.daemon = True
        self._thread.start()
        ready.wait()
        if self._start_errors:
            self._thread.join()
            self._thread = None
            raise RuntimeError("test server failed to start") from self._start_errors[0]
        return self

    def stop(self) -> None:
        """Abort every connection, close the listener and the loop, join the thread."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stopping.set)
        thread.join()
        self._thread = self._loop = self._stopping = None

    def __enter__(self) -> SMTPTestServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<SMTPTestServer {self.host}:{self.port} messages={len(self.messages)}>"

    # -- the loop thread ------------------------------------------------------------------------

    def _run(self, listener: socket.socket, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(self._loop_error)
        try:
            loop.run_until_complete(self._serve(loop, listener, ready))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        except BaseException as error:
            self._start_errors.append(error)
        finally:
            listener.close()
            loop.close()
            ready.set()

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # TLS handshakes that clients abandon on purpose and peers that vanish are test cases,
        # not errors worth printing.
        pass

    async def _serve(
        self, loop: asyncio.AbstractEventLoop, listener: socket.socket, ready: threading.Event
    ) -> None:
        sessions: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            sessions[task] = writer
            # asyncio only sets TCP_NODELAY when the listener was made with proto=IPPROTO_TCP;
            # without it, Nagle holds each pipelined reply for the client's delayed ACK (40 ms).
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            number = self._hub.connected()
            try:
                await Session(self.settings, self._hub, reader, writer, number).run()
            except Exception as error:
                self._hub.error(error)
            finally:
                self._hub.disconnected()
                sessions.pop(task, None)
                await _close(writer)

        server = await asyncio.start_server(
            handle, sock=listener, limit=self.settings.session.max_line
        )
        self._loop, self._stopping = loop, asyncio.Event()
        ready.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            for task, writer in list(sessions.items()):
                writer.transport.abort()
                task.cancel()
            await asyncio.gather(*sessions, return_exceptions=True)
            await server.wait_closed()


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close politely, but never wait long: a TLS peer may not answer close_notify."""
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 1.0)
    except (TimeoutError, OSError, ssl.SSLError, asyncio.CancelledError):
        writer.transport.abort()
