"""The client session state machine: :class:`ClientConnection`.

It owns the order of an SMTP session (greeting, EHLO or LHLO with HELO fallback, STARTTLS and
EHLO again, AUTH, transactions, QUIT) and RFC 2920 pipelining. Where the session is and which
moves are legal live in ``_state``; what each reply means for a transaction lives in
``_mailflow``; this module connects the two to bytes.

Theory of operation
-------------------
Four attributes carry a session's traffic:

- ``_queue``: transactions handed to :meth:`ClientConnection.send_mail` and not started yet.
- ``_writer``: the one transaction whose commands or body are being written. Its commands are
  planned (``MailFlow.commands``) when it leaves the queue, against the final EHLO. It is
  released at the end of its body (the dot, or ``BDAT n LAST``).
- ``_encoder``: set while the writer's body may be sent (after a 354, or at once for BDAT);
  :meth:`~ClientConnection.send_body` fails without it.
- ``_pending``: one entry per command written, in order, saying what its reply answers
  (:class:`~._state._Awaiting`) and which transaction and recipient it concerns. Each reply
  received pops the head; ``_REPLY_HANDLERS`` acts on it. Replies can only match commands in
  order, so this queue is the whole of the matching.

``_pump`` is the only place that moves a transaction forward, and is called whenever something
may let it: a transaction queued, a reply, the end of a body. It guarantees (RFC 2920):

- Nothing is written outside READY (transactions queued earlier wait for it).
- With PIPELINING, a transaction's MAIL, RCPTs and DATA go in one write: DATA ends a group
  (RFC 2920 section 3.1), so the body waits for the 354. Without PIPELINING (or with
  ``pipelining="off"``), one command is written per reply, and a refusal seen before DATA stops
  the transaction there (RSET).
- Whether the next transaction may start while final replies are awaited is ``_may_start``'s
  call: in ``"full"`` mode its commands follow the previous end in the same write (with DATA,
  its body then waits for its 354; with CHUNKING, whose body follows the envelope at once, up to
  ``chunking_window`` messages and ``chunking_window_bytes`` go before their replies); in
  ``"envelope"`` mode nothing is written after an end until its reply.
- A transaction's MAIL written while an end was awaited records that end's transaction
  (``MailFlow.ahead``). If it is then refused with 503, the refusal is about the pipelining
  (or about the failed message ahead), not about it: it is reported ``pipelining_refused``,
  and when the message ahead was accepted the session falls back to ``"envelope"``.
- After a failed BDAT transaction the server may hold its state (RFC 3030), so an RSET is due
  before the next MAIL not yet written; one RSET written after several failed ends serves all.
  Transactions already written behind it answer for themselves: replies match in order.
- A server that answers DATA with 354 after refusing every recipient gets an empty message,
  whose reply is ignored (RFC 2920 section 3.1).
- A body handed over in small pieces goes in BDAT chunks of at least ``bdat_chunk_size``.
  Without pipelining each BDAT waits for the reply to the one before (``_held_chunks``); after
  a refused chunk no further segment goes (RFC 3030 section 2): the rest of the body is taken
  and dropped, and the transaction is reported once the driver ended it and no chunk's reply
  is still due.
- ``authenticate()`` may be called from the start: its AUTH goes once READY with nothing in
  flight, and ``_auth_hold`` keeps every transaction queued until the server accepts it.
- QUIT goes out once the queue is empty (or held by a failed AUTH) and no writer is left,
  pipelined after them when the server pipelines, else after the last reply.

:meth:`~ClientConnection.abandon` gives a transaction up before its end is handed out, by the
least the protocol allows: dropped from ``_queue`` unseen; the rest of its envelope not written
and an RSET after what was (``_rset_due``); BDAT chunks stopped before the last and an RSET,
which clears their data (RFC 3030 section 2); inside DATA, where nothing but the dot ends a
message, the connection closed, which makes the server discard it (RFC 5321 section 3.8); a
DATA already written, awaiting its reply, decides at the reply (a 354 closes, a refusal only
needs the RSET). Replies still due for it are read and ignored; it is reported (MessageFailed)
once the server is done with it, at the reply to its RSET (``_abandoned_reset`` rides on that
RSET's ``_pending`` entry), at once when none of it was written, or at the close.

At the end (``_close``), each transaction without an outcome is reported by what the server
said: refused already (MessageFailed), its end handed out and no 421 (unconfirmed), or else
unsent; a 421 declines every command awaiting a reply, so after one nothing is unconfirmed.

Timers: each awaited reply has a deadline counted from when it became awaited (the command was
handed to the driver, or the previous reply completed), never extended by a partial reply, so
a server that dribbles bytes cannot hold a session forever (RFC 5321 section 4.5.3.2).
"""

from __future__ import annotations

import base64
import binascii
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal

from .._errors import (
    LocalProtocolError,
    RemoteProtocolError,
    SMTPAuthenticationError,
    SMTPDisconnectedError,
    SMTPError,
    SMTPResponseError,
    SMTPTimeoutError,
    SMTPTLSError,
)
from . import _commands
from ._data import BDAT_CHUNK_SIZE, ChunkingEncoder, DataEncoder
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
from ._mailflow import (
    DataVerdict,
    MailFlow,
    Outcome,
    Pending,
    bdat_reply,
    data_reply,
    doomed,
    final_reply,
    mail_reply,
    missing_capability,
    must_abort,
    rcpt_reply,
    refused_for_sequence,
    response_error,
)
from ._replies import (
    DEFAULT_MAX_LINE_LENGTH,
    DEFAULT_MAX_REPLY_LINES,
    Reply,
    ReplyParser,
    reply_fields,
)
from ._sasl import MECHANISM_REFUSED, SASLMechanism
from ._state import _ALLOWED, State, _Awaiting, _check_transition
from ._transaction import TagT, Transaction

__all__ = ["ClientConfig", "ClientConnection", "State"]


_NO_BODY_EXPECTED = "no message body is expected now (wait for SendBody)"
_ABANDONED = "the transaction was abandoned before its end"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientConfig:
    """Settings of one client session.

    ``starttls``: ``"opportunistic"`` upgrades when offered, ``"required"`` closes the session
    with :class:`SMTPTLSError` when it is not, ``"never"`` does not try. ``tls_active`` says the
    link is already encrypted (implicit TLS). ``use_chunking`` sends messages with BDAT when the
    server offers CHUNKING.

    ``pipelining`` applies when the server offers PIPELINING: ``"full"`` writes the next
    transaction right after a message's end, ``"envelope"`` pipelines a transaction's own
    commands but writes nothing after a message's end until its reply (for servers that answer
    503 to anything arriving with the final dot), ``"off"`` writes one command per reply. In full
    mode with CHUNKING up to ``chunking_window`` messages, whose BDAT bytes total at most
    ``chunking_window_bytes`` (a message of unknown size takes whatever is left), are sent before
    their replies. A body handed over in small pieces goes in BDAT chunks of at least
    ``bdat_chunk_size`` bytes (the last may be smaller). Timeouts are the seconds each reply may take to arrive complete,
    counted from when it became awaited, not from its last byte (``greeting_timeout`` from the
    start, ``data_timeout`` for the final reply to a message); None disables one.
    """

    local_hostname: str
    lmtp: bool = False
    starttls: Literal["opportunistic", "required", "never"] = "opportunistic"
    tls_active: bool = False
    use_chunking: bool = True
    pipelining: Literal["full", "envelope", "off"] = "full"
    chunking_window: int = 8
    chunking_window_bytes: int = 1 << 20
    bdat_chunk_size: int = BDAT_CHUNK_SIZE
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
        if self.pipelining not in ("full", "envelope", "off"):
            raise LocalProtocolError(f"invalid pipelining mode: {self.pipelining!r}")
        if self.chunking_window < 1 or self.chunking_window_bytes < 1 or self.bdat_chunk_size < 1:
            raise LocalProtocolError(
                "chunking_window, chunking_window_bytes, bdat_chunk_size: >= 1"
            )
        if self.max_line_length < 512 or self.max_reply_lines < 1:
            raise LocalProtocolError("reply limits too small (max_line_length >= 512)")


@dataclass(frozen=True, slots=True)
class _AuthRequest:
    """An AUTH asked for by :meth:`ClientConnection.authenticate`, sent once nothing is in flight."""

    line: bytes
    mechanism: SASLMechanism
    fallbacks: tuple[SASLMechanism, ...]
    initial_due: bytes | None  # an initial response too long for the AUTH line


def _command_text(line: bytes) -> str:
    return line.decode("utf-8", "replace").rstrip("\r\n")


class ClientConnection(Generic[TagT]):
    """One SMTP client session, without I/O.

    Feed received bytes to :meth:`receive_data` (``b""`` when the server closed), take events
    from :meth:`next_event` until it returns :data:`NEED_DATA`, and write what
    :meth:`data_to_send` returns; :meth:`get_timer` says when :meth:`handle_timer` is due.

    The core reads no clock: the constructor, :meth:`receive_data`, :meth:`data_to_send` and
    :meth:`handle_timer` each take ``now``, required, in seconds on any monotonic clock
    (``time.monotonic()``, ``trio.current_time()``, an asyncio loop's ``time()``) as long as
    every call uses the same one; :meth:`get_timer` answers on that clock.

    ``ClientConnection[Job]`` takes ``Transaction[Job]`` and reports events whose
    ``transaction.tag`` is a ``Job``; a bare ``ClientConnection`` is ``ClientConnection[object]``.
    """

    def __init__(self, config: ClientConfig, *, now: float) -> None:
        self.config = config
        self._state = State.GREETING  # the one assignment outside _enter()
        self._tls = config.tls_active
        self._parser = self._new_parser()
        self._outgoing = bytearray()
        self._events: deque[Event[TagT]] = deque()
        self._pending: deque[Pending[TagT]] = deque([(_Awaiting.GREETING, None, None)])
        self._queue: deque[MailFlow[TagT]] = deque()
        self._writer: MailFlow[TagT] | None = None  # whose commands or body go out now
        self._encoder: DataEncoder | ChunkingEncoder | None = None  # set while the body may go
        self._data_encoder = DataEncoder()  # every DATA message's, as it is reset by end()
        # "envelope" from the config, or once the server refused what followed an accepted end.
        self._mode = config.pipelining
        self._use_extensions(Extensions())
        # Final replies (to a dot or a BDAT LAST) awaited, their BDAT bytes, and the latest
        # end written: what the next MAIL would be pipelined behind.
        self._ends_awaited = 0
        self._bytes_awaited = 0
        self._last_end: MailFlow[TagT] | None = None
        self._rset_due = False  # a BDAT transaction failed: RSET before the next MAIL
        self._abandoned_reset: MailFlow[TagT] | None = None  # see abandon()
        # BDAT ends written, and how many of them an RSET written since follows (one RSET
        # after several failed transactions resets them all).
        self._bdat_ends = 0
        self._reset_through = 0
        self._mechanism: SASLMechanism | None = None
        self._auth_due: _AuthRequest | None = None  # asked for, not yet written
        # authenticate() was called and the server has not accepted the credentials yet: no
        # transaction starts meanwhile (nor after a failure, until the next success).
        self._auth_hold = False
        self._fallbacks: tuple[SASLMechanism, ...] = ()
        self._auth_error: SMTPAuthenticationError | None = None
        self._initial_response_due: bytes | None = None
        self._quit_requested = False
        # When the reply at the head of _pending became awaited; None while none is. Only a
        # complete reply moves it, so a dribbling server cannot.
        self._awaited_since: float | None = now
        self._unsent = 0  # entries at the tail of _pending whose command is not handed out yet
        self._now = now  # the latest time a driver passed in
        # Without pipelining, the writer's BDAT segments (data, is it the LAST) waiting for the
        # reply to the one before: one command per reply (RFC 3030 section 4.2).
        self._held_chunks: deque[tuple[bytes, bool]] = deque()
        # Capability failures found inside send_mail(), reported from the next receive_data()
        # or handle_timer() (get_timer() is due at once meanwhile), never from inside the call.
        self._refused_early: list[MessageFailed[TagT]] = []
        # Seconds each kind of reply may take to arrive complete (None: no limit).
        self._timeouts: dict[_Awaiting, float | None] = {
            **dict.fromkeys(_Awaiting, config.command_timeout),
            _Awaiting.GREETING: config.greeting_timeout,
            _Awaiting.DATA_END: config.data_timeout,
        }
        self._trace: list[tuple[str, str]] | None = [] if config.trace else None

    def __repr__(self) -> str:
        return (
            f"<ClientConnection state={self._state.name} pending={len(self._pending)}"
            f" queued={len(self._queue)}>"
        )

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
    def pipelining(self) -> Literal["full", "envelope", "off"]:
        """How the session pipelines now: ``"off"`` without PIPELINING (or before EHLO), else
        the configured mode, ``"envelope"`` once the server refused commands after an end."""
        if not self._pipelining:
            return "off"
        return "full" if self._after_end else "envelope"

    @property
    def window(self) -> int:
        """How many transactions to hand over at once to keep this session busy.

        One without pipelining; with envelope pipelining one on the wire and the next waiting;
        in full mode with DATA the next message's commands ride with a message's dot (and a
        third waits); with pipelined CHUNKING ``chunking_window`` on the wire and one waiting.
        """
        if not self._pipelining:
            return 1
        if not self._after_end:
            return 2
        return self.config.chunking_window + 1 if self._chunking else 3

    @property
    def transactions_in_progress(self) -> int:
        """Transactions handed to :meth:`send_mail` whose outcome has not been reported yet."""
        awaiting = {id(message) for _, message, _ in self._pending if message is not None}
        if self._writer is not None:
            awaiting.add(id(self._writer))
        return len(self._queue) + len(awaiting)

    def receive_data(self, data: bytes, now: float) -> None:
        """Bytes from the server; ``b""`` means it closed the connection."""
        if self._state is State.CLOSED:
            return
        self._now = now
        if self._refused_early:
            self._report_refused_early()
        if not data:
            self._on_server_closed()
            return
        if self._state is State.TLS_HANDSHAKE:
            self._close(RemoteProtocolError("unencrypted data received during TLS handshake"))
            return
        self._parser.feed(data)
        self._on_received(now)

    def _on_server_closed(self) -> None:
        if self._state is State.QUIT:
            self._close(None)
            return
        last = self._parser.last_words()  # "421 Bye" and FIN, no CR LF: keep what it said
        if last is None:
            self._close(SMTPDisconnectedError("the server closed the connection unexpectedly"))
        elif last.code == 421 and self._pending:  # as good as a complete 421
            error = response_error(last, self._pending[0][0], "service closing:")
            self._close(error, declined=True)
        else:
            self._close(
                SMTPDisconnectedError(
                    f"the server closed the connection after: {last}",
                    command=self._pending[0][0].value if self._pending else None,
                    **reply_fields(last),
                )
            )

    def next_event(self) -> Event[TagT] | NeedData:
        return self._events.popleft() if self._events else NEED_DATA

    def data_to_send(self, now: float) -> bytes:
        """The bytes to write now (one buffer, so a pipelined group is one write).

        Their replies' timeouts count from ``now``: call it when the bytes are handed to the
        network, not long before.
        """
        if not self._outgoing:
            return b""
        self._now = now
        if self._awaited_since is None and self._pending:  # the head goes out: its clock
            self._awaited_since = now
        self._unsent = 0
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
        """When :meth:`handle_timer` must be called, or None while nothing is due.

        The awaited reply must be complete by then: its timeout counts from when it became
        awaited (its command handed out, or the reply before it complete), whatever trickles
        in meanwhile (RFC 5321 section 4.5.3.2 sets the timeouts per reply).
        """
        if self._refused_early:
            return self._now  # due at once
        since = self._awaited_since
        if since is None or not self._pending or self._state is State.CLOSED:
            return None
        timeout = self._timeouts[self._pending[0][0]]
        return None if timeout is None else since + timeout

    def handle_timer(self, now: float) -> None:
        self._now = now
        if self._refused_early:
            self._report_refused_early()
            return
        deadline = self.get_timer()
        if deadline is not None and now >= deadline:
            awaiting = self._pending[0][0]
            phase = _TIMEOUT_PHASES.get(awaiting, "command")
            self._close(
                SMTPTimeoutError(
                    f"no complete reply to {awaiting.value} within the {phase} timeout",
                    phase=phase,
                    command=awaiting.value,
                )
            )

    def send_mail(self, transaction: Transaction[TagT]) -> None:
        """Queue a transaction; its commands go out as soon as the session allows.

        When the server is known not to offer what the message needs, nothing is written and
        :class:`MessageFailed` with an :class:`SMTPCapabilityError` follows: not from this call
        but from the next :meth:`receive_data` or :meth:`handle_timer`, which
        :meth:`get_timer` says is due at once. A driver that assigns work in a pass over its
        connections thus learns of the free connection after that pass, not inside it (where
        the failure would go unnoticed until some other event).
        """
        checked = self._state is State.READY
        if checked:  # the capabilities are final: check once, here
            error = missing_capability(transaction, self._extensions, tls=self._tls)
            if error is not None:
                self._refused_early.append(MessageFailed(transaction=transaction, error=error))
                return
        else:  # READY allows it, so only the other states need the table
            self._require("send_mail")
        self._queue.append(MailFlow(transaction, checked))
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
        if not data:
            return
        if encoder is self._data_encoder:
            self._outgoing += data
        else:
            self._send_chunk(data, last=False)

    def end_body(self) -> None:
        """The message is complete: send the terminator (or the last BDAT)."""
        encoder, message = self._encoder, self._writer
        if encoder is None:
            raise LocalProtocolError(_NO_BODY_EXPECTED)
        assert message is not None
        self._encoder = None
        message.end_sent = True
        data = encoder.end()
        if encoder is self._data_encoder:
            self._outgoing += data
            self._unsent += 1
            self._end_written(message)
        else:
            self._send_chunk(data, last=True)
            if message.body_refused:
                self._settle_refused_body(message)
        self._pump()

    def abandon(self, transaction: Transaction[TagT]) -> bool:
        """Give up a transaction whose end (the dot, or ``BDAT LAST``) is not handed out yet.

        Returns True when it will not be delivered: nothing of it that the server could deliver
        is written, and :class:`MessageFailed` (with a :class:`LocalProtocolError`) follows once
        the server is done with it. Not started, it is dropped (reported at once); with envelope
        commands out, the rest are not written and an RSET follows them; with BDAT chunks out,
        no more are and an RSET clears them (reported at the RSET's reply). Inside DATA (after
        the 354, or at a 354 still awaited) only closing the connection aborts a message: the
        session then ends, the transactions behind it ``unsent`` in :class:`ConnectionClosed`.
        Returns False when it is too late or the transaction is unknown (its end was handed
        out, or its outcome reported): nothing changes, and its outcome follows as usual.
        """
        if self._state is State.CLOSED:
            return False
        for message in self._queue:
            if message.transaction is transaction:
                self._queue.remove(message)
                self._events.append(self._abandoned(message))
                self._pump()
                return True
        if any(failed.transaction is transaction for failed in self._refused_early):
            return True  # it fails anyway, unwritten
        writer = self._writer
        if writer is None or writer.transaction is not transaction:
            return False
        if not writer.abandoned:  # else: once is enough
            self._abandon_writer(writer)
        return True

    def _abandon_writer(self, message: MailFlow[TagT]) -> None:
        message.abandoned = True
        if self._encoder is not None and not message.chunking:
            self._close(LocalProtocolError(f"{_ABANDONED}: closed inside its DATA"))
            return
        commands = message.commands
        if not commands and not message.chunking:
            return  # DATA is out: its reply decides (_on_data)
        # Once its MAIL is written the server may hold the transaction, even when every reply
        # to what was written has come: only an RSET ends it.
        mail_written = not commands or commands[0][1][0] is not _Awaiting.MAIL
        commands.clear()
        self._writer = self._encoder = None
        self._bytes_awaited -= message.body_bytes
        if mail_written:
            self._abandoned_reset = message  # reported at the reply to the RSET
            self._rset_due = True
        else:
            self._events.append(self._abandoned(message))
        self._pump()

    @staticmethod
    def _abandoned(message: MailFlow[TagT]) -> MessageFailed[TagT]:
        return MessageFailed(transaction=message.transaction, error=LocalProtocolError(_ABANDONED))

    def authenticate(self, mechanism: SASLMechanism, *fallbacks: SASLMechanism) -> None:
        """Authenticate before any further transaction; :class:`Authenticated` or
        :class:`AuthenticationFailed` follows.

        Allowed from the start, so a driver may call it, queue its transactions and
        :meth:`quit` at once. AUTH goes out once the session is READY (after STARTTLS) and
        every transaction already written has its outcome; from this call on no transaction
        starts until the server accepts the credentials. After :class:`AuthenticationFailed`
        the queued transactions stay held: call ``authenticate()`` again, or :meth:`quit`, which
        then says QUIT at once and reports them in ``ConnectionClosed.unsent``.

        ``fallbacks`` are tried in turn while the server refuses the mechanism itself
        (:data:`MECHANISM_REFUSED`), never after any other failure.
        """
        self._require("authenticate")
        if self._auth_due is not None:
            raise LocalProtocolError("authenticate() was already called; its AUTH is not sent yet")
        initial = mechanism.initial_response()
        try:
            line, initial_due = _commands.auth(mechanism.name, initial), None
        except LocalProtocolError:
            if initial is None:
                raise
            # Too long for the AUTH line: send it as the answer to the first, empty challenge.
            line, initial_due = _commands.auth(mechanism.name, None), initial
        self._auth_due = _AuthRequest(line, mechanism, fallbacks, initial_due)
        self._auth_hold = True
        self._pump()

    def _start_auth(self, request: _AuthRequest) -> None:
        self._auth_due = None
        mechanism = request.mechanism
        self._mechanism, self._auth_error = mechanism, None
        self._fallbacks, self._initial_response_due = request.fallbacks, request.initial_due
        self._enter(State.AUTH)
        self._write(
            request.line, (_Awaiting.AUTH, None, None), trace=f"AUTH {mechanism.name} <redacted>"
        )

    def start_tls_done(self) -> None:
        """The driver finished the TLS handshake: say EHLO again over the encrypted link."""
        self._require("start_tls_done")
        self._tls = True
        self._parser = self._new_parser()
        self._use_extensions(Extensions())
        self._send_hello(State.EHLO)

    def quit(self) -> None:
        """End the session politely, in any state: QUIT once everything asked for is done.

        The session is set up first if need be, an AUTH asked for goes first, every
        transaction queued so far is sent, and QUIT is pipelined after the last of them;
        :class:`ConnectionClosed` follows its reply. So a driver may queue a batch and call
        ``quit()`` at once. Transactions held by a failed AUTH cannot go: QUIT goes without
        them (they are ``unsent``). Called before the greeting with nothing asked for, there is
        no session to end: it is over at once (``ConnectionClosed(error=None)``). To hang up
        without QUIT, call :meth:`connection_lost`.
        """
        if self._state is State.CLOSED:
            return
        self._quit_requested = True
        if self._state is State.GREETING and not self._queue and self._auth_due is None:
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

    def _write(self, line: bytes, pending: Pending[TagT], *, trace: str | None = None) -> None:
        self._outgoing += line
        self._pending.append(pending)
        self._unsent += 1
        if self._trace is not None:
            self._trace_line("C", trace or _command_text(line))

    def _write_commands(self, commands: deque[tuple[bytes, Pending[TagT]]], count: int) -> None:
        """Write the first ``count`` planned commands of a transaction, in one buffer."""
        outgoing, pending = self._outgoing, self._pending
        self._unsent += count
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
            line, expect = _commands.helo(name), _Awaiting.HELO
        elif self.config.lmtp:
            line, expect = _commands.lhlo(name), _Awaiting.EHLO
        else:
            line, expect = _commands.ehlo(name), _Awaiting.EHLO
        self._enter(state)
        self._write(line, (expect, None, None))

    def _use_extensions(self, extensions: Extensions) -> None:
        """Take what the server offers, and the answers every transaction asks of it, once."""
        self._extensions = extensions
        self._pipelining = extensions.pipelining and self._mode != "off"
        self._after_end = self._pipelining and self._mode == "full"
        self._chunking = self.config.use_chunking and extensions.chunking
        self._dsn = extensions.dsn
        self._with_size = extensions.size is not None
        self._with_body_type = extensions.eightbitmime or extensions.binarymime

    def _report_refused_early(self) -> None:
        self._events.extend(self._refused_early)
        self._refused_early.clear()
        self._pump()  # a QUIT requested meanwhile may go now

    def _pump(self) -> None:
        """Write whatever the session allows now, in as few round trips as it allows."""
        pipelining = self._pipelining
        while self._state is State.READY:
            message = self._writer
            if message is None:
                if self._rset_due:  # before any MAIL not yet written (RFC 3030 section 2)
                    if self._pending and not pipelining:
                        break  # one command per reply
                    self._write_rset()
                    continue
                if self._auth_hold:
                    # AUTH goes when nothing is in flight; transactions wait for its success.
                    if self._auth_due is not None and not self._pending:
                        self._start_auth(self._auth_due)
                    break
                if not self._queue or (self._ends_awaited and not self._may_start()):
                    break
                self._start_next()
                continue
            if self._encoder is not None or (self._pending and not pipelining):
                break
            commands = message.commands
            if not commands and (not message.chunking or message.end_sent):
                break
            if not pipelining and must_abort(message):
                self._fail_writer(message.failure())
                continue
            if commands:
                # Pipelined, the whole envelope goes in this write; otherwise one command a reply.
                self._write_commands(commands, len(commands) if pipelining else 1)
                continue
            self._open_body(message, ChunkingEncoder(self.config.bdat_chunk_size))
            break
        if (
            self._quit_requested
            and self._state is State.READY
            and self._writer is None
            and self._auth_due is None
            and (pipelining or not self._pending)  # without pipelining, one command a reply
            # Nothing queued, or what is queued is held by a failed AUTH and cannot go.
            and (not self._queue or self._auth_hold)
            and not self._rset_due
        ):
            self._enter(State.QUIT)
            self._write(_commands.QUIT, (_Awaiting.QUIT, None, None))

    def _may_start(self) -> bool:
        """May the next transaction go out while final replies are awaited?"""
        if not self._after_end:
            return False
        if not self._chunking:
            return True  # its body waits for the 354, which waits for the final reply ahead
        if self._ends_awaited >= self.config.chunking_window:
            return False
        left = self.config.chunking_window_bytes - self._bytes_awaited
        size = self._queue[0].transaction.size
        return left > 0 if size is None else size <= left  # unknown: it takes what is left

    def _start_next(self) -> None:
        """Make the next queued transaction the writer, its commands planned for this server."""
        message = self._queue.popleft()
        transaction = message.transaction
        if not message.checked:
            error = missing_capability(transaction, self._extensions, tls=self._tls)
            if error is not None:
                # Queued before EHLO told us what the server offers: refuse it, no byte sent.
                self._events.append(MessageFailed(transaction=transaction, error=error))
                return
        dsn, commands = self._dsn, message.commands
        mail = transaction.mail_command(
            dsn=dsn, with_size=self._with_size, with_body_type=self._with_body_type
        )
        commands.append((mail, (_Awaiting.MAIL, message, None)))
        rcpts = transaction.rcpt_commands(dsn=dsn)
        for recipient, rcpt in zip(transaction.recipients, rcpts, strict=True):
            commands.append((rcpt, (_Awaiting.RCPT, message, recipient)))
        message.chunking = self._chunking
        if not message.chunking:
            commands.append((_commands.DATA, (_Awaiting.DATA, message, None)))
        if self._ends_awaited:
            message.ahead = self._last_end
        self._writer = message

    def _open_body(self, message: MailFlow[TagT], encoder: DataEncoder | ChunkingEncoder) -> None:
        self._encoder = encoder
        self._events.append(SendBody(transaction=message.transaction))

    def _send_chunk(self, data: bytes, *, last: bool) -> None:
        """Write one BDAT segment of the writer's body, or hold it for the previous reply."""
        message = self._writer
        assert message is not None
        if message.body_refused:
            return  # RFC 3030 section 2: no additional segment after a refused one
        if self._held_chunks or (message.bdat_awaited and not self._pipelining):
            self._held_chunks.append((data, last))
            return
        self._write_chunk(message, data, last=last)

    def _write_chunk(self, message: MailFlow[TagT], data: bytes, *, last: bool) -> None:
        self._outgoing += data
        self._unsent += 1
        message.body_bytes += len(data)
        self._bytes_awaited += len(data)
        if last:
            self._bdat_ends += 1
            message.end_number = self._bdat_ends
            self._end_written(message)
        else:
            message.bdat_awaited += 1
            self._pending.append((_Awaiting.BDAT, message, None))

    def _end_written(self, message: MailFlow[TagT]) -> None:
        """The message's end (dot or BDAT LAST) is in the output: its final reply is awaited."""
        self._pending.append((_Awaiting.DATA_END, message, None))
        self._ends_awaited += 1
        self._last_end = message
        if self._trace is not None:
            self._trace_line("C", "<message data>")
        # Whether the next transaction may follow before this end's reply is _may_start's call.
        self._writer = None

    def _settle_refused_body(self, message: MailFlow[TagT]) -> None:
        """A body the server refused part of is over once the driver ended it (no LAST was
        written) and no reply to its chunks is awaited: report it, RSET before the next MAIL."""
        if not message.end_sent or message.end_number or message.bdat_awaited:
            return
        if self._writer is message:
            self._writer = None
        self._events.append(self._failure(message))
        message.ahead = None
        self._rset_due = True

    def _fail_writer(self, error: SMTPResponseError) -> None:
        """The current transaction is over without delivery: report it, RSET, move on."""
        message = self._writer
        assert message is not None
        self._writer = None
        self._events.append(self._failure(message, error))
        message.ahead = None  # see _on_data_end
        self._write_rset()

    def _write_rset(self) -> None:
        self._rset_due = False
        self._reset_through = self._bdat_ends
        # An abandoned transaction's outcome is reported at this RSET's reply.
        self._write(_commands.RSET, (_Awaiting.RSET, self._abandoned_reset, None))
        self._abandoned_reset = None

    def _failure(
        self, message: MailFlow[TagT], error: SMTPResponseError | None = None
    ) -> MessageFailed[TagT]:
        """The event for a refused transaction, flagged when pipelining was what was refused."""
        ahead = message.ahead
        refused = ahead is not None and refused_for_sequence(message)
        if refused and ahead is not None and ahead.success is not None:
            # The server took the message ahead and refused what followed its end: pipeline
            # nothing after an end on this session any more.
            self._mode = "envelope"
            self._after_end = False
        return MessageFailed(
            transaction=message.transaction,
            error=message.failure() if error is None else error,
            pipelining_refused=refused,
        )

    # -- reading --------------------------------------------------------------------------------

    def _on_received(self, now: float | None) -> None:
        """Act on each complete reply received, until there are no more or the session ends."""
        parser = self._parser  # replaced by start_tls_done() only, never while replies are read
        awaited = self._pending
        completed = False
        try:
            while self._state is not State.CLOSED and (reply := parser.next_reply()) is not None:
                if self._trace is not None:
                    self._trace_line("S", str(reply))
                if not awaited:
                    if reply.code == 421:
                        self._close(response_error(reply, _Awaiting.QUIT, "service"), declined=True)
                        return
                    raise RemoteProtocolError(
                        f"unexpected reply with no command outstanding: {reply}"
                    )
                pending = awaited.popleft()
                completed = True
                expect = pending[0]
                if reply.code == 421 and expect is not _Awaiting.QUIT:
                    awaited.appendleft(pending)  # still unanswered: it is what 421 declines
                    self._close(response_error(reply, expect, "service closing:"), declined=True)
                    return
                _REPLY_HANDLERS[expect](self, reply, pending)
        except RemoteProtocolError as error:
            self._close(error)
            return
        if completed:
            # The next reply's clock starts now if its command is out, else when it goes out.
            self._awaited_since = now if len(awaited) > self._unsent else None

    def _on_greeting(self, reply: Reply, pending: Pending[TagT]) -> None:
        if reply.code != 220:
            self._close(response_error(reply, pending[0], "connection"))
            return
        self._events.append(Greeting(reply=reply))
        self._send_hello(State.EHLO)

    def _on_ehlo(self, reply: Reply, pending: Pending[TagT]) -> None:
        if reply.code == 250:
            self._hello_done(reply, parse_ehlo(reply))
        elif reply.code >= 500 and not self.config.lmtp:
            self._send_hello(State.HELO)
        else:
            self._close(response_error(reply, pending[0], "greeting"))

    def _on_helo(self, reply: Reply, pending: Pending[TagT]) -> None:
        if reply.code == 250:
            self._hello_done(reply, Extensions())
        else:
            self._close(response_error(reply, pending[0], "greeting"))

    def _hello_done(self, reply: Reply, extensions: Extensions) -> None:
        self._use_extensions(extensions)
        if not self._tls and self.config.starttls != "never":
            if extensions.starttls:
                self._enter(State.STARTTLS)
                self._write(_commands.STARTTLS, (_Awaiting.STARTTLS, None, None))
                return
            if self.config.starttls == "required":
                self._close(SMTPTLSError("TLS is required but the server does not offer STARTTLS"))
                return
        self._become_ready(reply)

    def _become_ready(self, reply: Reply) -> None:
        self._enter(State.READY)
        self._events.append(Ready(extensions=self._extensions, tls=self._tls, reply=reply))
        self._pump()

    def _on_starttls(self, reply: Reply, pending: Pending[TagT]) -> None:
        if reply.code == 220:
            if self._parser.buffered:
                # Anything after the 220 was sent before TLS protects it: an injection attempt.
                raise RemoteProtocolError("data pipelined after the STARTTLS 220 reply")
            self._enter(State.TLS_HANDSHAKE)
            self._events.append(StartTLS())
        elif self.config.starttls == "required":
            self._close(
                SMTPTLSError(
                    f"STARTTLS refused: {reply}", command="STARTTLS", **reply_fields(reply)
                )
            )
        else:
            self._become_ready(reply)

    def _on_auth(self, reply: Reply, pending: Pending[TagT]) -> None:
        mechanism = self._mechanism
        assert mechanism is not None
        if reply.code == 334 and self._auth_error is None:
            self._write(
                self._sasl_answer(mechanism, reply),
                (_Awaiting.AUTH, None, None),
                trace="<redacted>",
            )
            return
        self._mechanism = None
        self._enter(State.READY)
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
                self._auth_hold = False
                self._events.append(Authenticated(reply=reply))
                self._pump()
                return
        if error is None:
            error = SMTPAuthenticationError(
                f"authentication failed: {reply}",
                detail=mechanism.failure_detail,
                **reply_fields(reply),
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

    def _on_mail(self, reply: Reply, pending: Pending[TagT]) -> None:
        message = pending[1]
        assert message is not None
        mail_reply(message, reply)
        # Pipelined, every envelope command is already written: such a reply releases nothing.
        if not self._pipelining:
            self._pump()

    def _on_rcpt(self, reply: Reply, pending: Pending[TagT]) -> None:
        _, message, recipient = pending
        assert message is not None and recipient is not None
        rcpt_reply(message, reply, recipient)
        if not self._pipelining:  # see _on_mail
            self._pump()

    def _on_data(self, reply: Reply, pending: Pending[TagT]) -> None:
        message = pending[1]
        assert message is not None
        if message.abandoned:  # see abandon()
            if reply.code == 354:  # the server reads a message now: only closing aborts it
                self._close(LocalProtocolError(f"{_ABANDONED}: closed at its DATA's 354"))
                return
            self._writer, self._abandoned_reset = None, message
            self._write_rset()
            self._pump()
            return
        verdict = data_reply(message, reply)
        if verdict is DataVerdict.BODY:
            self._open_body(message, self._data_encoder)  # the writer waits for the body
        elif verdict is DataVerdict.EMPTY_BODY:
            self._encoder = self._data_encoder
            self.end_body()  # which pumps
        else:
            self._fail_writer(message.failure())
            self._pump()

    def _on_bdat(self, reply: Reply, pending: Pending[TagT]) -> None:
        message = pending[1]
        assert message is not None
        message.bdat_awaited -= 1
        bdat_reply(message, reply)
        if message.body_refused:
            if message is self._writer:
                self._held_chunks.clear()  # RFC 3030: no segment after a refused one
            self._settle_refused_body(message)
            self._pump_after_outcome()
        elif self._held_chunks and not message.abandoned:
            # Without pipelining, the next segment waited for this reply.
            data, last = self._held_chunks.popleft()
            self._write_chunk(message, data, last=last)
            if last:
                self._pump()
        elif not self._pipelining:  # see _on_mail (an RSET may wait for this reply)
            self._held_chunks.clear()  # an abandoned message's segments never go
            self._pump()

    def _on_data_end(self, reply: Reply, pending: Pending[TagT]) -> None:
        message = pending[1]
        assert message is not None
        outcome = final_reply(message, reply, lmtp=self.config.lmtp)
        if outcome is Outcome.MORE:
            self._pending.appendleft(pending)  # the next reply answers the same data
            return
        self._ends_awaited -= 1
        self._bytes_awaited -= message.body_bytes
        if outcome is Outcome.ACCEPTED:
            self._report_accepted(message)
        else:
            self._report_failed(message)
        message.ahead = None  # no chain of every transaction of the session kept alive
        self._pump_after_outcome()

    def _pump_after_outcome(self) -> None:
        # A writer (always another transaction: it is released at its end) is as far as it
        # can go when pipelined; its end pumps.
        if self._writer is None or not self._pipelining:
            self._pump()

    def _report_accepted(self, message: MailFlow[TagT]) -> None:
        reply = message.success
        assert reply is not None
        # The transaction is over: its dict of refusals is handed over, not copied.
        self._events.append(
            MessageAccepted(
                transaction=message.transaction,
                reply=reply,
                accepted=tuple(message.accepted),
                rejected=message.rejected,
            )
        )

    def _report_failed(self, message: MailFlow[TagT]) -> None:
        self._events.append(self._failure(message))
        if message.chunking and message.end_number > self._reset_through:
            # After a failed BDAT the server may hold the message's state: RSET before the
            # next MAIL not yet written (those already written answer for themselves).
            self._rset_due = True

    def _on_rset(self, reply: Reply, pending: Pending[TagT]) -> None:
        if not reply.is_success:
            raise RemoteProtocolError(f"RSET refused: {reply}")
        if pending[1] is not None:  # the RSET that ended an abandoned transaction
            self._events.append(self._abandoned(pending[1]))
        self._pump()  # without pipelining, the next transaction's MAIL waited for this reply

    def _on_quit(self, reply: Reply, pending: Pending[TagT]) -> None:
        self._close(None)

    # -- the end --------------------------------------------------------------------------------

    def _close(self, error: SMTPError | None, *, declined: bool = False) -> None:
        """End the session once, telling the driver which transactions may be sent again.

        ``declined``: the server said 421, so it processed none of the commands awaiting a
        reply. Otherwise a transaction whose end was handed out may have been delivered.
        """
        if self._state is State.CLOSED:
            return
        self._enter(State.CLOSED)
        pending = self._pending
        handed_out = len(pending) - self._unsent
        ended = {
            id(message)
            for index, (awaiting, message, _) in enumerate(pending)
            if awaiting is _Awaiting.DATA_END and index < handed_out
        }
        refused = self._pipelining_refused_at_close(error)
        self._events.extend(self._refused_early)  # these were never sent: no retry
        self._refused_early.clear()
        unsent: list[Transaction[TagT]] = []
        unconfirmed: list[Transaction[TagT]] = []
        for message in self._in_progress():
            if message.abandoned:
                self._events.append(self._abandoned(message))
            elif doomed(message):  # the server already said no: that is its outcome
                self._events.append(self._failure(message))
            elif id(message) in ended and not declined:
                unconfirmed.append(message.transaction)
            else:
                unsent.append(message.transaction)
        pending.clear()
        self._queue.clear()
        self._writer = self._encoder = None
        self._held_chunks.clear()
        self._events.append(
            ConnectionClosed(
                error=error,
                unsent=tuple(unsent),
                unconfirmed=tuple(unconfirmed),
                pipelining_refused=refused,
            )
        )

    def _in_progress(self) -> list[MailFlow[TagT]]:
        """Every transaction without an outcome, in the order they were handed over."""
        seen: set[int] = set()
        flows: list[MailFlow[TagT]] = []
        pending = (message for _, message, _ in self._pending)
        for message in (*pending, self._writer, self._abandoned_reset):
            if message is not None and id(message) not in seen:
                seen.add(id(message))
                flows.append(message)
        return flows + list(self._queue)

    def _pipelining_refused_at_close(self, error: SMTPError | None) -> bool:
        """Did the server go away at a MAIL pipelined after a message it had just accepted?"""
        if error is None or not self._pending:
            return False
        awaiting, message, _ = self._pending[0]
        if awaiting is not _Awaiting.MAIL or message is None or message.ahead is None:
            return False
        return message.ahead.success is not None

    def _enter(self, state: State) -> None:
        """Every change of state goes through here, checked against ``_TRANSITIONS``."""
        _check_transition(self._state, state)
        self._state = state

    def _require(self, operation: str) -> None:
        if self._state not in _ALLOWED[operation]:
            raise LocalProtocolError(f"{operation}() is not allowed in state {self._state.name}")


_TIMEOUT_PHASES = {_Awaiting.GREETING: "greeting", _Awaiting.DATA_END: "data"}

_ReplyHandler = Callable[[ClientConnection[Any], Reply, Pending[Any]], None]

_REPLY_HANDLERS: dict[_Awaiting, _ReplyHandler] = {
    _Awaiting.GREETING: ClientConnection._on_greeting,
    _Awaiting.EHLO: ClientConnection._on_ehlo,
    _Awaiting.HELO: ClientConnection._on_helo,
    _Awaiting.STARTTLS: ClientConnection._on_starttls,
    _Awaiting.AUTH: ClientConnection._on_auth,
    _Awaiting.MAIL: ClientConnection._on_mail,
    _Awaiting.RCPT: ClientConnection._on_rcpt,
    _Awaiting.DATA: ClientConnection._on_data,
    _Awaiting.BDAT: ClientConnection._on_bdat,
    _Awaiting.DATA_END: ClientConnection._on_data_end,
    _Awaiting.RSET: ClientConnection._on_rset,
    _Awaiting.QUIT: ClientConnection._on_quit,
}
