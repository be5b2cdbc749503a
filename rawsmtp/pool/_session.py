"""One pooled SMTP session: the sans-I/O core driven over a :class:`~rawsmtp.pool._transport.Transport`.

A :class:`Session` creates the :class:`~rawsmtp.protocol.ClientConnection` once its transport
is open, hands it every received byte, acts on its events (message bodies fed in bounded
steps, STARTTLS, authentication with one token renewal, a polite QUIT after a failed set-up
step) and reports to the engine through :class:`SessionReports`. Blocking work (token
providers, a message's ``before_commit`` hook) runs through the driver's
:class:`~rawsmtp.pool._transport.IOServices`.

The commit hold: a message sent with ``before_commit`` has its end of data (the dot, or
``BDAT ... LAST``) held once the rest of its body is fed: nothing more of this session is
written (the core keeps the message its writer) until the hook has returned in a worker. Then
the end goes; or, when the hook raised, the core abandons the message (an RSET after BDAT
chunks; inside DATA the connection is closed, the only end that is not a delivery) and its
failure is reported as :class:`~rawsmtp.SMTPCommitError`.

Both drivers run sessions the same way; the transport is injected (``transport_factory``) so
tests can run a session over a scripted, in-memory one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from .._errors import SMTPCommitError, SMTPConnectionError
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
    StartTLS,
    State,
    Transaction,
)
from ..protocol._sasl import SASLMechanism
from ._transport import IOServices, SocketPlan, Transport, TransportSettings

__all__ = [
    "Session",
    "SessionReports",
    "SessionSettings",
    "SessionTransport",
    "as_smtp_error",
]

# Stop pulling message chunks while this much is waiting to be written: memory stays bounded
# however large the message.
_HIGH_WATER = 256 * 1024
_DATA_LINE = "<message data>"  # how the core's transcript shows a message's content


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionSettings(TransportSettings):
    """What a session needs to know, derived once from the pool's options."""

    starttls: Literal["opportunistic", "required", "never"]
    lmtp: bool
    greeting_timeout: float
    debug: bool
    logger: logging.Logger
    # Builds the SASL mechanisms for an attempt, the first and its fallbacks (None: no
    # credentials), from the core, the host,
    # ``renew`` (ask for a fresh token) and the server's DER certificate when TLS is active (for
    # channel binding). Runs in a worker thread: token providers may block.
    authenticator: (
        Callable[[ClientConnection, str, bool, bytes | None], tuple[SASLMechanism, ...]] | None
    )
    renewable: bool  # a failed token may be renewed and tried once more
    pipelining: Literal["full", "envelope", "off"] = "full"
    chunking_window: int = 8
    chunking_window_bytes: int = 1 << 20


class SessionReports(Protocol):
    """What a session reports to (the engine); ``now`` is the driver's clock."""

    def session_ready(self, session: Session, window: int, now: float) -> None: ...

    def message_started(self, session: Session, transaction: Transaction, now: float) -> None:
        """The transaction's MAIL FROM has been handed to the transport (its body is asked
        for, which comes after its MAIL on the wire)."""
        ...

    def message_done(
        self, session: Session, event: MessageAccepted | MessageFailed, now: float
    ) -> None: ...

    def session_closed(
        self, session: Session, event: ConnectionClosed, now: float, *, setup_failed: bool
    ) -> None: ...


class SessionTransport(Protocol):
    """What a session uses of its transport (:class:`Transport`, or a test's scripted one)."""

    streaming: bool

    def start(self, plan: SocketPlan, now: float) -> None: ...
    def start_tls(self, now: float) -> None: ...
    def write(self, data: bytes) -> None: ...
    def buffered(self) -> int: ...
    def deadline(self) -> float | None: ...
    def on_timer(self, now: float) -> bool: ...
    def ehlo_name(self) -> str: ...
    def peer_certificate(self) -> bytes | None: ...
    def close(self) -> None: ...

    @property
    def phase(self) -> str: ...


TransportFactory = Callable[[Any, IOServices, SessionSettings, float], SessionTransport]


class Session:
    """One connection of the pool; every method runs on the loop."""

    _ids = 0

    def __init__(
        self,
        reports: SessionReports,
        services: IOServices,
        settings: SessionSettings,
        now: float,
        *,
        transport_factory: TransportFactory = Transport,
    ) -> None:
        Session._ids += 1
        self.id = Session._ids
        self.reports = reports
        self.services = services
        self.settings = settings
        self.transport: SessionTransport = transport_factory(self, services, settings, now)
        self.core: ClientConnection | None = None
        self.slot: object = None  # the scheduler's handle (None for verify())
        self.log = settings.logger
        self._body: Iterator[bytes] | None = None
        self._body_transaction: Transaction | None = None
        self._body_crlf = False  # the body's chunks are in CR LF form already
        # The body's exact size when it is in memory (then its chunks sum to it), else -1.
        self._body_size = -1
        self._body_error: tuple[Transaction, BaseException] | None = None
        self._holding: Transaction | None = None  # its end held for its before_commit hook
        self._commit_errors: dict[int, SMTPCommitError] = {}  # by id(transaction), till reported
        self._retried_auth = False
        self._setup_error: SMTPError | None = None  # reported when the polite QUIT completes
        self._ready = False
        self._closed = False

    def __repr__(self) -> str:
        core = self.core
        if self._closed:
            state = "closed"
        elif self._ready and core is not None:
            busy = core.transactions_in_progress
            state = f"ready, {busy} in flight" if busy else "idle"
        else:
            state = f"opening ({self.transport.phase})"
        return f"<Session #{self.id} {state}>"

    @property
    def ready(self) -> bool:
        return self._ready and not self._closed

    # -- what the transport reports -------------------------------------------------------------

    def start(self, plan: SocketPlan, now: float) -> None:
        """Called with what the worker prepared."""
        self.transport.start(plan, now)

    def transport_open(self, now: float, *, tls: bool) -> None:
        settings = self.settings
        self.core = ClientConnection(
            ClientConfig(
                local_hostname=self.transport.ehlo_name(),
                lmtp=settings.lmtp,
                pipelining=settings.pipelining,
                chunking_window=settings.chunking_window,
                chunking_window_bytes=settings.chunking_window_bytes,
                starttls="never" if tls else settings.starttls,
                tls_active=tls,
                greeting_timeout=settings.greeting_timeout,
                command_timeout=settings.socket_timeout,
                data_timeout=settings.socket_timeout,
                trace=settings.debug,
            ),
            now=now,
        )
        self._process(now)

    def tls_established(self, now: float) -> None:
        assert self.core is not None
        self.core.start_tls_done()
        self._process(now)

    def data_received(self, data: bytes, now: float) -> None:
        core = self.core
        assert core is not None
        core.receive_data(data, now)
        self._process(now)

    def transport_failed(self, error: SMTPError, now: float) -> None:
        if self.core is None:
            self._close_unopened(error, now)
        else:
            self._lose(error, now)

    # -- the engine's and the loop's calls ------------------------------------------------------

    def deadline(self) -> float | None:
        soonest = self.transport.deadline()
        timer = self.core.get_timer() if self.core is not None else None
        if timer is not None and (soonest is None or timer < soonest):
            return timer
        return soonest

    def on_timer(self, now: float) -> None:
        if self.transport.on_timer(now) or self._closed or self.core is None:
            return
        self.core.handle_timer(now)
        self._process(now)

    def send(self, transaction: Transaction, now: float) -> None:
        assert self.core is not None
        self.core.send_mail(transaction)
        self._process(now)

    def abandon(self, transaction: Transaction, now: float) -> None:
        """The caller cancelled a message before its final dot: stop its body, let the core give
        it up (:meth:`ClientConnection.abandon`; its MessageFailed frees the slot)."""
        if self._closed or self.core is None:
            return
        if self._body is not None and self._body_transaction is transaction:
            self._end_body()
        self.core.abandon(transaction)
        self._process(now)

    def quit(self, now: float) -> None:
        """End politely: QUIT once the in-flight messages are done (at once before set-up)."""
        if self.core is None:
            self._close_unopened(None, now)
            return
        self.core.quit()
        self._process(now)

    def close_now(self, error: SMTPError, now: float) -> None:
        """Abandon the session at once (the pool is shutting down, or its set-up step failed)."""
        self.transport_failed(error, now)

    # -- the core's events ----------------------------------------------------------------------

    def _process(self, now: float) -> None:
        """Act on every pending core event, feed message bodies, and write."""
        core = self.core
        assert core is not None
        transport = self.transport
        while True:
            while (event := core.next_event()) is not NEED_DATA:
                self._on_event(event, now)
                if self._closed:
                    return
            # The high-water mark bounds the memory a streamed body may occupy between the
            # caller's file and the socket; what the core holds counts, so output moves once
            # (a message's commands, body and end used to make three writes).
            if self._body is None or transport.buffered() + core.bytes_to_send >= _HIGH_WATER:
                break
            self._feed_body()
        if output := core.data_to_send(now):
            transport.write(output)
        if self.settings.debug:
            self._trace()

    def send_more(self, now: float) -> None:
        """The socket took output: stream more of the body."""
        if self._body is not None and not self._closed:
            self._process(now)

    def _feed_body(self) -> None:
        assert self.core is not None and self._body is not None
        try:
            chunk = next(self._body, None)
        except Exception as error:  # the caller's file or iterable failed: the message is lost
            assert self._body_transaction is not None
            self._end_body()
            self._body_error = (self._body_transaction, error)
            self.core.connection_lost(SMTPConnectionError(f"reading the message failed: {error}"))
            return
        if chunk is not None:
            self.core.send_body(chunk, crlf=self._body_crlf)
            if len(chunk) != self._body_size:
                return
            # All of an in-memory body in one chunk (the usual message): nothing can follow,
            # so it ends now rather than after another round of this loop.
        self._end_body()
        transaction = self._body_transaction
        assert transaction is not None
        # The point of no return: a cancel() that came first abandons the message instead.
        job: Any = transaction.tag
        if not job.commit():
            self.core.abandon(transaction)
        elif job.before_commit is None:
            self.core.end_body()
        else:
            self._hold(transaction, job.before_commit)

    def _hold(self, transaction: Transaction, hook: Callable[[], object]) -> None:
        """Run the message's commit hook in a worker; its end is written once it returned."""
        self._holding = transaction

        def done(_: object, error: BaseException | None, now: float) -> None:
            if self._holding is not transaction:  # the session ended meanwhile
                return
            self._holding = None
            assert self.core is not None
            if error is None:
                self.core.end_body()
            else:
                failure = SMTPCommitError(f"before_commit raised {type(error).__name__}: {error}")
                failure.__cause__ = error
                self._commit_errors[id(transaction)] = failure
                self.core.abandon(transaction)  # reported as the core's MessageFailed
            self._process(now)

        self.services.run_blocking(hook, done)

    def _end_body(self) -> None:
        self._body = None
        self.transport.streaming = False

    def _on_event(self, event: Event, now: float) -> None:
        if isinstance(event, SendBody):
            if self.settings.debug:  # the lines so far, with the previous body's Message-ID
                self._trace()
            job: Any = event.transaction.tag
            self._body_transaction = event.transaction
            self._body = iter(job.chunks(now))
            prepared = job.prepared
            self._body_crlf = crlf = prepared.crlf
            self._body_size = prepared.size if crlf and prepared.size is not None else -1
            self.transport.streaming = True
            self.reports.message_started(self, event.transaction, now)
        elif isinstance(event, MessageAccepted):
            self.reports.message_done(self, event, now)
        elif isinstance(event, MessageFailed):
            commit_error = self._commit_errors.pop(id(event.transaction), None)
            if commit_error is not None:  # abandoned because its hook raised: say so
                event = MessageFailed(transaction=event.transaction, error=commit_error)
            self.reports.message_done(self, event, now)
        elif isinstance(event, Ready):
            self._on_ready(now)
        elif isinstance(event, Authenticated):
            self._become_ready(now)
        elif isinstance(event, AuthenticationFailed):
            self._on_auth_failed(event, now)
        elif isinstance(event, StartTLS):
            self.transport.start_tls(now)
        elif isinstance(event, ConnectionClosed):
            self._on_closed(event, now)
        elif isinstance(event, Greeting):
            self.log.debug("[%d] greeting: %s", self.id, event.reply)

    def _on_ready(self, now: float) -> None:
        if self.settings.authenticator is None:
            self._become_ready(now)
        else:
            self._authenticate(renew=False)

    def _authenticate(self, *, renew: bool) -> None:
        authenticator, core = self.settings.authenticator, self.core
        assert authenticator is not None and core is not None
        host = self.settings.host

        def done(mechanisms: Any, error: BaseException | None, now: float) -> None:
            # While the worker ran, the pool may have begun to close this session (QUIT sent).
            if self._closed or self.core is None or self.core.state is not State.READY:
                return
            if error is not None:
                failure = (
                    error
                    if isinstance(error, SMTPError)
                    else SMTPAuthenticationError(f"could not prepare authentication: {error}")
                )
                self._lose(failure, now)
                return
            self.core.authenticate(*mechanisms)
            self._process(now)

        certificate = self.transport.peer_certificate()
        self.services.run_blocking(lambda: authenticator(core, host, renew, certificate), done)

    def _on_auth_failed(self, event: AuthenticationFailed, now: float) -> None:
        if self.settings.renewable and not self._retried_auth and event.error.code is not None:
            self._retried_auth = True
            self.log.info("[%d] authentication failed, renewing the token", self.id)
            self._authenticate(renew=True)
            return
        # The server is fine, only our credentials are not: say QUIT rather than hang up.
        assert self.core is not None
        self._setup_error = event.error
        self.core.quit()
        self._process(now)

    def _become_ready(self, now: float) -> None:
        assert self.core is not None
        self._ready = True
        self.reports.session_ready(self, self.core.window, now)

    def _on_closed(self, event: ConnectionClosed, now: float) -> None:
        self._closed = True
        self._body = None
        self._holding = None  # its hook's answer changes nothing now: the message is unsent
        self.transport.close()
        if self._body_error is not None:
            # The caller's file or iterable failed mid-message: the server never saw the end,
            # so the message is not delivered, and not retried either.
            transaction, error = self._body_error
            failed = SMTPConnectionError(f"reading the message failed: {error}")
            failed.__cause__ = error
            self.reports.message_done(
                self, MessageFailed(transaction=transaction, error=failed), now
            )
            event = ConnectionClosed(
                error=event.error,
                unsent=tuple(t for t in event.unsent if t is not transaction),
                unconfirmed=tuple(t for t in event.unconfirmed if t is not transaction),
            )
        if self._setup_error is not None:  # closed politely (QUIT) after a failed set-up step
            event = ConnectionClosed(
                error=self._setup_error, unsent=event.unsent, unconfirmed=event.unconfirmed
            )
        self.reports.session_closed(self, event, now, setup_failed=not self._ready)

    # -- failures -------------------------------------------------------------------------------

    def _close_unopened(self, error: SMTPError | None, now: float) -> None:
        """End a session whose core never started: ``error`` None is a clean close."""
        if self._closed:
            return
        self._closed = True
        self.transport.close()
        self.reports.session_closed(self, ConnectionClosed(error=error), now, setup_failed=True)

    def _lose(self, error: SMTPError, now: float) -> None:
        if self._closed:
            return
        assert self.core is not None
        self._end_body()
        self.core.connection_lost(error)
        self._process(now)

    def _trace(self) -> None:
        """Log the protocol lines the core recorded (secrets already redacted there): a
        multi-line reply as its lines, a message body as one line naming its Message-ID."""
        if self.core is None:
            return
        transaction = self._body_transaction  # the last body started, so the one that ended
        tag: Any = transaction.tag if transaction is not None else None
        message_id = tag.prepared.message_id if tag is not None else None
        for direction, text in self.core.take_trace():
            for line in _trace_lines(direction, text, message_id):
                self.log.debug("[%d] %s: %s", self.id, direction, line)


def _trace_lines(direction: str, text: str, message_id: str | None) -> list[str]:
    if direction == "S" and "\n" in text:  # "250 a\nb": the core joins a reply's lines
        code, _, rest = text.partition(" ")
        lines = rest.split("\n")
        return [f"{code}-{line}" for line in lines[:-1]] + [f"{code} {lines[-1]}"]
    if text == _DATA_LINE and message_id is not None:
        return [f"{_DATA_LINE} {message_id}"]
    return [text]


def as_smtp_error(error: BaseException) -> SMTPError:
    """Wrap an unexpected exception from user code (hooks, providers) as an SMTPError."""
    if isinstance(error, SMTPError):
        return error
    if isinstance(error, ValueError):
        return LocalProtocolError(str(error))
    return SMTPConnectionError(f"{type(error).__name__}: {error}")
