"""The client session state machine: :class:`ClientConnection`.

It owns the order of an SMTP session (greeting, EHLO or LHLO with HELO fallback, STARTTLS and
EHLO again, AUTH, transactions, QUIT) and RFC 2920 pipelining: every command written pushes what
its reply means onto a queue, and replies are matched to that queue in order. With PIPELINING a
transaction's MAIL, RCPTs and DATA go in one write, and the next transaction's commands follow
the previous message's final dot, so a busy connection costs about one round trip per message.

How a session moves is data: ``_REPLY_HANDLERS`` maps what a reply answers to its handler, and
``_ALLOWED`` says in which states each API call may be made.
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from .._errors import (
    LocalProtocolError,
    RemoteProtocolError,
    SMTPAuthenticationError,
    SMTPCapabilityError,
    SMTPDisconnectedError,
    SMTPError,
    SMTPRecipientsRefusedError,
    SMTPResponseError,
    SMTPTimeoutError,
    SMTPTLSError,
)
from . import _commands
from ._data import ChunkingEncoder, DataEncoder
from ._events import (
    NEED_DATA,
    Authenticated,
    AuthenticationFailed,
    ConnectionClosed,
    Event,
    Greeting,
    MessageAccepted,
    MessageFailed,
    NeedData,
    Ready,
    SendBody,
    StartTLS,
)
from ._extensions import Extensions, parse_ehlo
from ._replies import DEFAULT_MAX_LINE_LENGTH, DEFAULT_MAX_REPLY_LINES, Reply, ReplyParser
from ._sasl import MECHANISM_REFUSED, SASLMechanism
from ._transaction import Transaction

__all__ = ["ClientConfig", "ClientConnection", "State"]


class State(enum.Enum):
    # Members are singletons: identity hashing is correct and far cheaper than Enum's own.
    __hash__ = object.__hash__

    GREETING = "GREETING"  # connected, waiting for the server's 220
    EHLO = "EHLO"  # EHLO or LHLO sent
    HELO = "HELO"  # HELO sent after EHLO was refused
    STARTTLS = "STARTTLS"  # STARTTLS sent
    TLS_HANDSHAKE = "TLS_HANDSHAKE"  # the driver is doing the TLS handshake
    READY = "READY"  # transactions may run
    AUTH = "AUTH"  # an AUTH exchange is under way
    QUIT = "QUIT"  # QUIT sent
    CLOSED = "CLOSED"


# Which API calls are legal in which states; anything else is a LocalProtocolError.
_ALLOWED: dict[str, frozenset[State]] = {
    "send_mail": frozenset(
        {
            State.GREETING,
            State.EHLO,
            State.HELO,
            State.STARTTLS,
            State.TLS_HANDSHAKE,
            State.READY,
            State.AUTH,
        }
    ),
    "authenticate": frozenset({State.READY}),
    "start_tls_done": frozenset({State.TLS_HANDSHAKE}),
}

_NO_BODY_EXPECTED = "no message body is expected now (wait for SendBody)"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientConfig:
    """Settings of one client session.

    ``starttls``: ``"opportunistic"`` upgrades when offered, ``"required"`` closes the session
    with :class:`SMTPTLSError` when it is not, ``"never"`` does not try. ``tls_active`` says the
    link is already encrypted (implicit TLS). ``use_chunking`` sends messages with BDAT when the
    server offers CHUNKING. Timeouts are seconds of silence allowed while a reply is awaited
    (``data_timeout`` for the final reply to a message); None disables one.
    """

    local_hostname: str
    lmtp: bool = False
    starttls: Literal["opportunistic", "required", "never"] = "opportunistic"
    tls_active: bool = False
    use_chunking: bool = True
    greeting_timeout: float | None = 30.0
    command_timeout: float | None = 600.0
    data_timeout: float | None = 600.0
    max_line_length: int = DEFAULT_MAX_LINE_LENGTH
    max_reply_lines: int = DEFAULT_MAX_REPLY_LINES
    trace: bool = False

    def __post_init__(self) -> None:
        _commands.validate_hostname(self.local_hostname)
        if self.starttls not in ("opportunistic", "required", "never"):
            raise LocalProtocolError(f"invalid starttls policy: {self.starttls!r}")
        if self.max_line_length < 512 or self.max_reply_lines < 1:
            raise LocalProtocolError("reply limits too small (max_line_length >= 512)")


class _Expect(enum.Enum):
    """What an awaited reply answers."""

    __hash__ = object.__hash__  # see State

    GREETING = "greeting"
    EHLO = "EHLO"
    HELO = "HELO"
    STARTTLS = "STARTTLS"
    AUTH = "AUTH"
    MAIL = "MAIL"
    RCPT = "RCPT"
    DATA = "DATA"
    BDAT = "BDAT"
    DATA_END = "end of data"
    RSET = "RSET"
    QUIT = "QUIT"


@dataclass(slots=True, eq=False)
class _Message:
    """The client's bookkeeping for one transaction."""

    transaction: Transaction
    checked: bool  # capabilities already checked against the final EHLO
    # What to write, each command with what its reply answers; planned when the writing begins.
    commands: deque[tuple[bytes, _Pending]] = field(default_factory=deque)
    chunking: bool = False
    accepted: list[str] = field(default_factory=list)
    rejected: dict[str, SMTPResponseError] = field(default_factory=dict)
    error: SMTPResponseError | None = None
    end_sent: bool = False
    lmtp_replies: int = 0  # LMTP replies to the data received so far
    lmtp_success: Reply | None = None  # the last LMTP delivery reply that succeeded

    def failure(self) -> SMTPResponseError:
        if self.error is not None:
            return self.error
        return SMTPRecipientsRefusedError("all recipients were refused", rejected=self.rejected)


# An awaited reply: what it answers, and the transaction and recipient it concerns. A plain
# tuple, because several are made for every message and a tuple costs no Python-level call.
_Pending = tuple[_Expect, _Message | None, str | None]


def _command_text(line: bytes) -> str:
    return line.decode("utf-8", "replace").rstrip("\r\n")


def _response_error(reply: Reply, expect: _Expect, what: str) -> SMTPResponseError:
    return SMTPResponseError(
        f"{what} refused: {reply}",
        code=reply.code,
        enhanced_code=reply.enhanced_code,
        response=reply.text,
        command=expect.value,
    )


class ClientConnection:
    """One SMTP client session, without I/O.

    Feed received bytes to :meth:`receive_data` (``b""`` when the server closed), take events
    from :meth:`next_event` until it returns :data:`NEED_DATA`, and write what
    :meth:`data_to_send` returns. Pass ``now`` (any monotonic clock, in seconds) to those calls
    to have :meth:`get_timer` say when :meth:`handle_timer` must be called.
    """

    def __init__(self, config: ClientConfig, *, now: float | None = None) -> None:
        self.config = config
        self._state = State.GREETING
        self._tls = config.tls_active
        self._parser = self._new_parser()
        self._outgoing = bytearray()
        self._events: deque[Event] = deque()
        self._pending: deque[_Pending] = deque([(_Expect.GREETING, None, None)])
        self._queue: deque[_Message] = deque()
        self._writer: _Message | None = None  # the transaction whose commands/body go out now
        self._encoder: DataEncoder | ChunkingEncoder | None = None  # set while the body may go
        self._data_encoder = DataEncoder()  # every DATA message's, as it is reset by end()
        self._use_extensions(Extensions())
        self._mechanism: SASLMechanism | None = None
        self._fallbacks: tuple[SASLMechanism, ...] = ()
        self._auth_error: SMTPAuthenticationError | None = None
        self._initial_response_due: bytes | None = None
        self._quit_requested = False
        self._activity = now
        # Seconds of silence allowed while each kind of reply is awaited (None: no limit).
        self._timeouts: dict[_Expect, float | None] = {
            **dict.fromkeys(_Expect, config.command_timeout),
            _Expect.GREETING: config.greeting_timeout,
            _Expect.DATA_END: config.data_timeout,
        }
        self._trace: list[tuple[str, str]] | None = [] if config.trace else None

    # -- public surface -----------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def extensions(self) -> Extensions:
        """What the server's last EHLO advertised (empty until then, or after HELO)."""
        return self._extensions

    @property
    def tls(self) -> bool:
        return self._tls

    @property
    def transactions_in_progress(self) -> int:
        """Transactions handed to :meth:`send_mail` whose outcome has not been reported yet."""
        awaiting = {id(message) for _, message, _ in self._pending if message is not None}
        if self._writer is not None:
            awaiting.add(id(self._writer))
        return len(self._queue) + len(awaiting)

    def receive_data(self, data: bytes, now: float | None = None) -> None:
        """Bytes from the server; ``b""`` means it closed the connection."""
        if self._state is State.CLOSED:
            return
        if now is not None:
            self._activity = now
        if not data:
            error = (
                None
                if self._state is State.QUIT
                else SMTPDisconnectedError("the server closed the connection unexpectedly")
            )
            self._close(error)
            return
        if self._state is State.TLS_HANDSHAKE:
            self._close(RemoteProtocolError("unencrypted data received during TLS handshake"))
            return
        self._parser.feed(data)
        self._on_received()

    def next_event(self) -> Event | NeedData:
        return self._events.popleft() if self._events else NEED_DATA

    def data_to_send(self, now: float | None = None) -> bytes:
        """The bytes to write now (one buffer, so a pipelined group is one write)."""
        if not self._outgoing:
            return b""
        if now is not None:
            self._activity = now
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    def take_trace(self) -> list[tuple[str, str]]:
        """Protocol lines seen since the last call as ``("C"|"S", line)``, secrets redacted.

        Empty unless the session was configured with ``trace=True``.
        """
        if self._trace is None:
            return []
        lines, self._trace = self._trace, []
        return lines

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must be called, or None while no reply is awaited."""
        if not self._pending or self._activity is None or self._state is State.CLOSED:
            return None
        timeout = self._timeouts[self._pending[0][0]]
        return None if timeout is None else self._activity + timeout

    def handle_timer(self, now: float) -> None:
        deadline = self.get_timer()
        if deadline is not None and now >= deadline:
            expect = self._pending[0][0]
            phase = {_Expect.GREETING: "greeting", _Expect.DATA_END: "data"}.get(expect, "command")
            self._close(
                SMTPTimeoutError(
                    f"no reply to {expect.value} within the {phase} timeout",
                    phase=phase,
                    command=expect.value,
                )
            )

    def send_mail(self, transaction: Transaction) -> None:
        """Queue a transaction; its commands go out as soon as the session allows.

        Raises :class:`SMTPCapabilityError` at once (nothing written) when the server is known
        not to offer what the message needs.
        """
        checked = self._state is State.READY
        if checked:  # the capabilities are final: check once, here
            self._check_capabilities(transaction)
        else:  # READY allows it, so only the other states need the table
            self._require("send_mail")
        self._queue.append(_Message(transaction, checked))
        # A busy writer has already gone as far as it can: a message queued behind it changes
        # nothing for it (every reply that lets it go further pumps).
        if self._writer is None:
            self._pump()

    def send_body(self, chunk: bytes) -> None:
        """Part of the message announced by :class:`SendBody` (raw bytes; encoding is ours)."""
        encoder = self._encoder
        if encoder is None:
            raise LocalProtocolError(_NO_BODY_EXPECTED)
        data = encoder.encode(chunk)
        if data and isinstance(encoder, ChunkingEncoder):
            self._pending.append((_Expect.BDAT, self._writer, None))
        self._outgoing += data

    def end_body(self) -> None:
        """The message is complete: send the terminator (or the last BDAT)."""
        encoder, message = self._encoder, self._writer
        if encoder is None:
            raise LocalProtocolError(_NO_BODY_EXPECTED)
        assert message is not None
        self._outgoing += encoder.end()
        self._encoder = None
        message.end_sent = True
        self._pending.append((_Expect.DATA_END, message, None))
        if self._trace is not None:
            self._trace_line("C", "<message data>")
        if not message.chunking:
            # After the dot the next transaction may be pipelined; a BDAT transaction keeps
            # the writer until its final reply, because a failure must be followed by RSET.
            self._writer = None
            self._pump()

    def authenticate(self, mechanism: SASLMechanism, *fallbacks: SASLMechanism) -> None:
        """Start an AUTH exchange; :class:`Authenticated` or :class:`AuthenticationFailed` follows.

        ``fallbacks`` are tried in turn while the server refuses the mechanism itself
        (:data:`MECHANISM_REFUSED`), never after any other failure.
        """
        self._require("authenticate")
        if self._queue or self._writer is not None or self._pending:
            raise LocalProtocolError("AUTH must not overlap transactions")
        initial = mechanism.initial_response()
        try:
            line = _commands.auth(mechanism.name, initial)
            self._initial_response_due = None
        except LocalProtocolError:
            if initial is None:
                raise
            # Too long for the AUTH line: send it as the answer to the first, empty challenge.
            line = _commands.auth(mechanism.name, None)
            self._initial_response_due = initial
        self._mechanism, self._auth_error, self._fallbacks = mechanism, None, fallbacks
        self._state = State.AUTH
        self._write(line, (_Expect.AUTH, None, None), trace=f"AUTH {mechanism.name} <redacted>")

    def start_tls_done(self) -> None:
        """The driver finished the TLS handshake: say EHLO again over the encrypted link."""
        self._require("start_tls_done")
        self._tls = True
        self._parser = self._new_parser()
        self._use_extensions(Extensions())
        self._send_hello(State.EHLO)

    def quit(self) -> None:
        """Say QUIT once every queued transaction has been sent (pipelined after them)."""
        if self._state is State.CLOSED:
            return
        self._quit_requested = True
        if self._state is State.GREETING:
            self._close(None)
            return
        self._pump()

    def connection_lost(self, error: SMTPError | None = None) -> None:
        """The driver lost the connection (or gave up on it): end the session with ``error``."""
        if self._state is not State.CLOSED:
            self._close(error or SMTPDisconnectedError("connection lost"))

    # -- writing --------------------------------------------------------------------------------

    def _new_parser(self) -> ReplyParser:
        return ReplyParser(
            max_line_length=self.config.max_line_length, max_lines=self.config.max_reply_lines
        )

    def _write(self, line: bytes, pending: _Pending, *, trace: str | None = None) -> None:
        self._outgoing += line
        self._pending.append(pending)
        if self._trace is not None:
            self._trace_line("C", trace or _command_text(line))

    def _write_commands(self, commands: deque[tuple[bytes, _Pending]], count: int) -> None:
        """Write the first ``count`` planned commands of a transaction, in one buffer."""
        outgoing, pending = self._outgoing, self._pending
        for _ in range(count):
            line, awaited = commands.popleft()
            outgoing += line
            pending.append(awaited)
            if self._trace is not None:
                self._trace_line("C", _command_text(line))

    def _trace_line(self, direction: str, text: str) -> None:
        if self._trace is not None:
            self._trace.append((direction, text))

    def _send_hello(self, state: State) -> None:
        name = self.config.local_hostname
        if state is State.HELO:
            line, expect = _commands.helo(name), _Expect.HELO
        elif self.config.lmtp:
            line, expect = _commands.lhlo(name), _Expect.EHLO
        else:
            line, expect = _commands.ehlo(name), _Expect.EHLO
        self._state = state
        self._write(line, (expect, None, None))

    def _use_extensions(self, extensions: Extensions) -> None:
        """Take what the server offers, and the answers every transaction asks of it, once."""
        self._extensions = extensions
        self._pipelining = extensions.pipelining
        self._chunking = self.config.use_chunking and extensions.chunking
        self._dsn = extensions.dsn
        self._with_size = extensions.size is not None
        self._with_body_type = extensions.eightbitmime or extensions.binarymime

    def _check_capabilities(self, transaction: Transaction) -> None:
        ext, body = self._extensions, transaction.body
        # Most messages need no extension (a 7BIT body needs none): no list to build for them.
        if transaction.smtputf8 or body or transaction.requiretls:
            missing = [
                name
                for name, needed, offered in (
                    ("SMTPUTF8", transaction.smtputf8, ext.smtputf8),
                    ("8BITMIME", body == "8BITMIME", ext.eightbitmime),
                    ("BINARYMIME", body == "BINARYMIME", ext.binarymime and ext.chunking),
                    ("REQUIRETLS", transaction.requiretls, ext.requiretls and self._tls),
                )
                if needed and not offered
            ]
            if missing:
                raise SMTPCapabilityError(f"the message needs {', '.join(missing)}, not offered")
        if ext.size and transaction.size is not None and transaction.size > ext.size:
            raise SMTPCapabilityError(
                f"message of {transaction.size} bytes exceeds the server's SIZE {ext.size}"
            )

    def _pump(self) -> None:
        """Write whatever the session allows now, in as few round trips as it allows."""
        pipelining = self._pipelining
        while self._state is State.READY:
            message = self._writer
            if message is None:
                if not self._queue:
                    break
                self._start_next()
                continue
            if self._encoder is not None or (self._pending and not pipelining):
                break
            commands = message.commands
            if not commands and (not message.chunking or message.end_sent):
                break
            if not pipelining and self._must_abort(message):
                self._fail_writer(message.failure())
                continue
            if commands:
                # Pipelined, the whole envelope goes in this write; otherwise one command a reply.
                self._write_commands(commands, len(commands) if pipelining else 1)
                continue
            self._open_body(message, ChunkingEncoder())
            break
        if (
            self._quit_requested
            and self._state is State.READY
            and self._writer is None
            and not self._queue
        ):
            self._state = State.QUIT
            self._write(_commands.QUIT, (_Expect.QUIT, None, None))

    def _start_next(self) -> None:
        """Make the next queued transaction the writer, its commands planned for this server."""
        message = self._queue.popleft()
        transaction = message.transaction
        if not message.checked:
            try:
                self._check_capabilities(transaction)
            except SMTPCapabilityError as error:
                # Queued before EHLO told us what the server offers: refuse it, no byte sent.
                self._events.append(MessageFailed(transaction=transaction, error=error))
                return
        dsn, commands = self._dsn, message.commands
        mail = transaction.mail_command(
            dsn=dsn, with_size=self._with_size, with_body_type=self._with_body_type
        )
        commands.append((mail, (_Expect.MAIL, message, None)))
        rcpts = transaction.rcpt_commands(dsn=dsn)
        for recipient, rcpt in zip(transaction.recipients, rcpts, strict=True):
            commands.append((rcpt, (_Expect.RCPT, message, recipient)))
        message.chunking = self._chunking
        if not message.chunking:
            commands.append((_commands.DATA, (_Expect.DATA, message, None)))
        self._writer = message

    def _must_abort(self, message: _Message) -> bool:
        """Without pipelining we learn of a refusal before the next command: stop there."""
        if message.error is not None:
            return True
        next_is_body = not message.commands or message.commands[0][1][0] is _Expect.DATA
        return next_is_body and not message.accepted

    def _open_body(self, message: _Message, encoder: DataEncoder | ChunkingEncoder) -> None:
        self._encoder = encoder
        self._events.append(SendBody(transaction=message.transaction))

    def _fail_writer(self, error: SMTPResponseError) -> None:
        """The current transaction is over without delivery: report it, RSET, move on."""
        message = self._writer
        assert message is not None
        self._writer = None
        self._events.append(MessageFailed(transaction=message.transaction, error=error))
        self._write(_commands.RSET, (_Expect.RSET, None, None))

    # -- reading --------------------------------------------------------------------------------

    def _on_received(self) -> None:
        """Act on each complete reply received, until there are no more or the session ends."""
        parser = self._parser  # replaced by start_tls_done() only, never while replies are read
        awaited = self._pending
        try:
            while self._state is not State.CLOSED and (reply := parser.next_reply()) is not None:
                if self._trace is not None:
                    self._trace_line("S", str(reply))
                if not awaited:
                    if reply.code == 421:
                        self._close(_response_error(reply, _Expect.QUIT, "service"))
                        return
                    raise RemoteProtocolError(
                        f"unexpected reply with no command outstanding: {reply}"
                    )
                pending = awaited.popleft()
                expect = pending[0]
                if reply.code == 421 and expect is not _Expect.QUIT:
                    error = _response_error(reply, expect, "service closing:")
                    self._close(error, refused=pending[1])
                    return
                _REPLY_HANDLERS[expect](self, reply, pending)
        except RemoteProtocolError as error:
            self._close(error)

    def _on_greeting(self, reply: Reply, pending: _Pending) -> None:
        if reply.code != 220:
            self._close(_response_error(reply, pending[0], "connection"))
            return
        self._events.append(Greeting(reply=reply))
        self._send_hello(State.EHLO)

    def _on_ehlo(self, reply: Reply, pending: _Pending) -> None:
        if reply.code == 250:
            self._hello_done(reply, parse_ehlo(reply))
        elif reply.code >= 500 and not self.config.lmtp:
            self._send_hello(State.HELO)
        else:
            self._close(_response_error(reply, pending[0], "greeting"))

    def _on_helo(self, reply: Reply, pending: _Pending) -> None:
        if reply.code == 250:
            self._hello_done(reply, Extensions())
        else:
            self._close(_response_error(reply, pending[0], "greeting"))

    def _hello_done(self, reply: Reply, extensions: Extensions) -> None:
        self._use_extensions(extensions)
        if not self._tls and self.config.starttls != "never":
            if extensions.starttls:
                self._state = State.STARTTLS
                self._write(_commands.STARTTLS, (_Expect.STARTTLS, None, None))
                return
            if self.config.starttls == "required":
                self._close(SMTPTLSError("TLS is required but the server does not offer STARTTLS"))
                return
        self._become_ready(reply)

    def _become_ready(self, reply: Reply) -> None:
        self._state = State.READY
        self._events.append(Ready(extensions=self._extensions, tls=self._tls, reply=reply))
        self._pump()

    def _on_starttls(self, reply: Reply, pending: _Pending) -> None:
        if reply.code == 220:
            if self._parser.buffered:
                # Anything after the 220 was sent before TLS protects it: an injection attempt.
                raise RemoteProtocolError("data pipelined after the STARTTLS 220 reply")
            self._state = State.TLS_HANDSHAKE
            self._events.append(StartTLS())
        elif self.config.starttls == "required":
            self._close(
                SMTPTLSError(
                    f"STARTTLS refused: {reply}",
                    code=reply.code,
                    response=reply.text,
                    enhanced_code=reply.enhanced_code,
                    command="STARTTLS",
                )
            )
        else:
            self._become_ready(reply)

    def _on_auth(self, reply: Reply, pending: _Pending) -> None:
        mechanism = self._mechanism
        assert mechanism is not None
        if reply.code == 334 and self._auth_error is None:
            self._write(
                self._sasl_answer(mechanism, reply), (_Expect.AUTH, None, None), trace="<redacted>"
            )
            return
        self._state, self._mechanism = State.READY, None
        error = self._auth_error
        if error is None and reply.code in MECHANISM_REFUSED and self._fallbacks:
            self.authenticate(*self._fallbacks)
            return
        if reply.code == 235 and error is None:
            try:
                mechanism.complete()
            except SMTPAuthenticationError as failure:
                error = failure
            else:
                self._events.append(Authenticated(reply=reply))
                self._pump()
                return
        if error is None:
            error = SMTPAuthenticationError(
                f"authentication failed: {reply}",
                code=reply.code,
                response=reply.text,
                enhanced_code=reply.enhanced_code,
                detail=mechanism.failure_detail,
            )
        self._events.append(AuthenticationFailed(error=error))
        self._pump()

    def _sasl_answer(self, mechanism: SASLMechanism, reply: Reply) -> bytes:
        if self._initial_response_due is not None:
            response, self._initial_response_due = self._initial_response_due, None
            return _commands.sasl_response(response)
        try:
            challenge = base64.b64decode(reply.text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise RemoteProtocolError(f"334 challenge is not base64: {reply}") from None
        try:
            return _commands.sasl_response(mechanism.respond(challenge))
        except SMTPAuthenticationError as error:
            self._auth_error = error
            return _commands.AUTH_CANCEL

    def _on_mail(self, reply: Reply, pending: _Pending) -> None:
        expect, message, _ = pending
        assert message is not None
        if reply.code >= 400 and message.error is None:  # see _on_rcpt
            message.error = _response_error(reply, expect, "sender")
        # Pipelined, every envelope command is already written: such a reply releases nothing.
        if not self._pipelining:
            self._pump()

    def _on_rcpt(self, reply: Reply, pending: _Pending) -> None:
        expect, message, recipient = pending
        assert message is not None and recipient is not None
        # A parsed code is 200 to 599: below 400 is Reply.is_success, without a property call.
        if reply.code < 400:
            message.accepted.append(recipient)
        else:
            message.rejected[recipient] = _response_error(reply, expect, "recipient")
        if not self._pipelining:  # see _on_mail
            self._pump()

    def _on_data(self, reply: Reply, pending: _Pending) -> None:
        expect, message, _ = pending
        assert message is not None
        if reply.code != 354:
            if message.error is None and message.accepted:
                message.error = _response_error(reply, expect, "DATA")
            self._fail_writer(message.failure())
            self._pump()
        elif message.error is not None or not message.accepted:
            # A server that says 354 after refusing the envelope gets an empty message (RFC
            # 2920 section 3.1), whose reply is then ignored. end_body() pumps.
            self._encoder = self._data_encoder
            self.end_body()
        else:
            self._open_body(message, self._data_encoder)  # the writer waits for the body

    def _on_bdat(self, reply: Reply, pending: _Pending) -> None:
        expect, message, _ = pending
        assert message is not None
        if not reply.is_success and message.error is None and message.accepted:
            message.error = _response_error(reply, expect, "BDAT")

    def _on_data_end(self, reply: Reply, pending: _Pending) -> None:
        expect, message, _ = pending
        assert message is not None
        if self.config.lmtp and message.accepted and message.error is None:
            self._on_lmtp_reply(reply, pending, message)
            return
        if reply.code < 400 and message.error is None and message.accepted:  # see _on_rcpt
            self._report_accepted(message, reply)
        else:
            if message.error is None and message.accepted:
                message.error = _response_error(reply, expect, "message")
            self._report_failed(message)
        self._pump_after_outcome()

    def _on_lmtp_reply(self, reply: Reply, pending: _Pending, message: _Message) -> None:
        """LMTP answers the data once per accepted recipient, in RCPT order (RFC 2033)."""
        recipient = message.accepted[message.lmtp_replies]
        if reply.is_success:
            message.lmtp_success = reply
        else:
            message.rejected[recipient] = _response_error(reply, pending[0], "delivery")
        message.lmtp_replies += 1
        if message.lmtp_replies < len(message.accepted):
            self._pending.appendleft(pending)
            return
        delivered = tuple(r for r in message.accepted if r not in message.rejected)
        message.accepted = list(delivered)
        if delivered:
            self._report_accepted(message, message.lmtp_success or reply)
        else:
            message.error = message.rejected[recipient]
            self._report_failed(message)
        self._pump_after_outcome()

    def _pump_after_outcome(self) -> None:
        # Pipelined, a writer that is not the reported transaction is as far as it can go.
        if self._writer is None or not self._pipelining:
            self._pump()

    def _report_accepted(self, message: _Message, reply: Reply) -> None:
        if self._writer is message:
            self._writer = None
        # The transaction is over: its dict of refusals is handed over, not copied.
        self._events.append(
            MessageAccepted(
                transaction=message.transaction,
                reply=reply,
                accepted=tuple(message.accepted),
                rejected=message.rejected,
            )
        )

    def _report_failed(self, message: _Message) -> None:
        if self._writer is message:
            self._fail_writer(message.failure())  # BDAT: the server may hold state; RSET
        else:
            self._events.append(
                MessageFailed(transaction=message.transaction, error=message.failure())
            )

    def _on_rset(self, reply: Reply, pending: _Pending) -> None:
        if not reply.is_success:
            raise RemoteProtocolError(f"RSET refused: {reply}")
        self._pump()  # without pipelining, the next transaction's MAIL waited for this reply

    def _on_quit(self, reply: Reply, pending: _Pending) -> None:
        self._close(None)

    # -- the end --------------------------------------------------------------------------------

    def _close(self, error: SMTPError | None, *, refused: _Message | None = None) -> None:
        """End the session once, telling the driver which transactions may be sent again."""
        if self._state is State.CLOSED:
            return
        self._state = State.CLOSED
        unsent: list[Transaction] = []
        unconfirmed: list[Transaction] = []
        seen: set[int] = set()
        candidates = [refused, self._writer, *(message for _, message, _ in self._pending)]
        candidates += self._queue
        for message in candidates:
            if message is None or id(message) in seen:
                continue
            seen.add(id(message))
            target = unconfirmed if message.end_sent and message is not refused else unsent
            target.append(message.transaction)
        self._pending.clear()
        self._queue.clear()
        self._writer = self._encoder = None
        self._events.append(
            ConnectionClosed(error=error, unsent=tuple(unsent), unconfirmed=tuple(unconfirmed))
        )

    def _require(self, operation: str) -> None:
        if self._state not in _ALLOWED[operation]:
            raise LocalProtocolError(f"{operation}() is not allowed in state {self._state.name}")


_ReplyHandler = Callable[[ClientConnection, Reply, _Pending], None]

_REPLY_HANDLERS: dict[_Expect, _ReplyHandler] = {
    _Expect.GREETING: ClientConnection._on_greeting,
    _Expect.EHLO: ClientConnection._on_ehlo,
    _Expect.HELO: ClientConnection._on_helo,
    _Expect.STARTTLS: ClientConnection._on_starttls,
    _Expect.AUTH: ClientConnection._on_auth,
    _Expect.MAIL: ClientConnection._on_mail,
    _Expect.RCPT: ClientConnection._on_rcpt,
    _Expect.DATA: ClientConnection._on_data,
    _Expect.BDAT: ClientConnection._on_bdat,
    _Expect.DATA_END: ClientConnection._on_data_end,
    _Expect.RSET: ClientConnection._on_rset,
    _Expect.QUIT: ClientConnection._on_quit,
}
