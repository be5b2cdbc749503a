"""The server session state machine: :class:`ServerConnection`.

Bytes in, events out, replies out, as :class:`ClientConnection` does for the client. Each
command line becomes one :class:`Command` event that waits for the driver's answer
(``accept()`` or ``respond(text)``); the next command is parsed only then, so replies leave in
command order and a pipelined group (RFC 2920) is answered in one buffer. The machine checks
syntax, sequence, advertised extensions and limits itself, and reports its own refusals as
:class:`CommandRejected` events, so a driver may still replace any reply.

How input is read is data: ``_READERS`` maps the state to the reader of that phase (command
lines, SASL responses, DATA content, BDAT chunks), ``_VERBS`` maps a verb to its handler.
"""

from __future__ import annotations

import base64
import enum
from collections import deque
from collections.abc import Callable

from .._errors import LocalProtocolError, RemoteProtocolError, SMTPDisconnectedError, SMTPError
from ._data import decode_data
from ._events import NEED_DATA, NeedData
from ._server_auth import SASLCredentials, SASLRefusal, ServerMechanism, Step, decode_response
from ._server_commands import (
    Envelope,
    parse_bdat,
    parse_mail,
    parse_notify,
    parse_orcpt,
    parse_rcpt,
    xtext_decode,
)
from ._server_config import ServerConfig, format_reply, strip_enhanced
from ._server_events import (
    Authenticate,
    AuthRequested,
    Command,
    CommandRejected,
    DataRequested,
    Hello,
    MailFrom,
    MessageReceived,
    OtherCommand,
    Params,
    Quit,
    RcptTo,
    Reset,
    ServerClosed,
    ServerEvent,
    TLSRequested,
    TLSStart,
)

__all__ = ["ServerConnection", "ServerState"]


class ServerState(enum.Enum):
    """Where a server session is: what it is waiting for next."""

    GREETING = "GREETING"  # greet() not called yet
    COMMAND = "COMMAND"  # reading a command line
    ANSWER = "ANSWER"  # a Command event awaits accept() or respond()
    AUTH = "AUTH"  # reading a SASL response line
    DATA = "DATA"  # reading message content up to CR LF . CR LF
    CHUNK = "CHUNK"  # reading a BDAT chunk's octets
    TLS_HANDSHAKE = "TLS_HANDSHAKE"  # the driver does the handshake
    CLOSED = "CLOSED"


_TERMINATOR = b"\r\n.\r\n"
_UNLIMITED = 256 * 1024 * 1024
# RFC 2920 section 3.1 (and RFC 4954): these may only end a pipelined group. STARTTLS too (RFC
# 3207), but what follows it is thrown away at the 220 instead, the answer to injection.
_GROUP_ENDERS = frozenset({"EHLO", "HELO", "LHLO", "DATA", "AUTH", "NOOP", "VRFY"})
_REFUSED_SERVICE = "503 5.5.1 Bad sequence of commands (service refused)"
_Effect = Callable[[], None]


def _nothing() -> None:
    pass


def _bare_line_end(data: bytes | bytearray) -> bool:
    """Whether a CR or LF appears other than as CR LF."""
    pairs = data.count(b"\r\n")
    return data.count(b"\n") != pairs or data.count(b"\r") != pairs


class ServerConnection:
    """One SMTP/LMTP server session, without I/O.

    Call :meth:`greet`, then loop: :meth:`receive_data` (``b""`` when the client closed),
    :meth:`next_event` until :data:`NEED_DATA`, answering each :class:`Command` with
    :meth:`accept` or :meth:`respond`, and write :meth:`data_to_send`. On :class:`TLSStart` do
    the handshake and call :meth:`start_tls_done`; on :class:`ServerClosed` close the socket.
    """

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self._state = ServerState.GREETING
        self.tls = config.tls_active
        self.helo: str | None = None
        self.auth_user: str | None = None
        self.discarded = 0  # plaintext bytes thrown away at STARTTLS
        self._refused = False  # the greeting refused service: 503 to all but QUIT
        self._errors = 0
        self._buffer = bytearray()
        self._searched = 0  # how far the buffer has no line end
        self._eof = False
        self._outgoing = bytearray()
        self._events: deque[ServerEvent] = deque()
        self._answer: tuple[Command, _Effect, _Effect] | None = None
        self._mechanism: tuple[str, ServerMechanism] | None = None
        self._body = bytearray()
        self._too_big = False
        self._chunk: tuple[int, bool, str] = (0, False, "")  # octets left, LAST, the BDAT line
        self._deliveries: deque[MessageReceived] = deque()  # LMTP: the recipients' events
        self._reset()

    # -- public surface -----------------------------------------------------------------------

    @property
    def state(self) -> ServerState:
        return self._state

    @property
    def mail_from(self) -> str | None:
        return self._envelope.address if self._envelope is not None else None

    @property
    def recipients(self) -> tuple[str, ...]:
        return tuple(rcpt.address for rcpt in self._rcpts)

    @property
    def envelope(self) -> tuple[MailFrom, tuple[RcptTo, ...]] | None:
        """The accepted MAIL FROM and RCPT TO commands of the transaction in progress."""
        return None if self._envelope is None else (self._envelope, tuple(self._rcpts))

    def greet(self, reply: str | None = None) -> None:
        """Send the greeting; a refusal (554) leaves a session answering 503 to all but QUIT."""
        if self._state is not ServerState.GREETING:
            raise LocalProtocolError("greet() once, first")
        kind = "LMTP" if self.config.lmtp else "ESMTP"
        text = reply or f"220 {self.config.hostname} {kind} rawsmtp"
        self._outgoing += format_reply(text)
        self._refused = text[0] != "2"
        self._state = ServerState.COMMAND

    def receive_data(self, data: bytes) -> None:
        """Bytes from the client; ``b""`` means it closed the connection."""
        if not data:
            self._eof = True
        elif self._state is ServerState.TLS_HANDSHAKE:
            self.discarded += len(data)  # plaintext after STARTTLS: never read
        elif self._state is not ServerState.CLOSED:
            self._buffer += data

    def next_event(self) -> ServerEvent | NeedData:
        while not self._events:
            reader = _READERS.get(self._state)
            if reader is None:
                if self._state is ServerState.ANSWER:
                    raise LocalProtocolError("answer the last command (accept or respond) first")
                break
            if not reader(self):
                if self._eof:
                    self._close(SMTPDisconnectedError("the client closed the connection"))
                break
        return self._events.popleft() if self._events else NEED_DATA

    def data_to_send(self) -> bytes:
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    def accept(self) -> None:
        """Answer the pending command with its default reply (and apply it if positive)."""
        reply = self._pending_command().reply
        self.respond(reply if "ENHANCEDSTATUSCODES" in self._keywords else strip_enhanced(reply))

    def respond(self, reply: str) -> None:
        """Answer the pending command with ``reply``; 4xx/5xx refuse it (no effect).

        Several lines separated by ``"\\n"`` make a multi-line reply.
        """
        command = self._pending_command()
        assert self._answer is not None
        _, on_success, on_failure = self._answer
        data = format_reply(reply)
        self._answer = None
        self._state = ServerState.COMMAND
        if isinstance(command, CommandRejected | Authenticate) and reply[0] in "45":
            self._errors += 1
            if self._errors > self.config.max_errors:
                self._outgoing += b"421 4.7.0 Too many errors\r\n"
                self._close(RemoteProtocolError("too many errors"))
                return
        self._outgoing += data
        (on_success if reply[0] in "23" else on_failure)()

    def start_tls_done(self) -> None:
        """The driver finished the handshake: the session starts over (RFC 3207)."""
        if self._state is not ServerState.TLS_HANDSHAKE:
            raise LocalProtocolError("start_tls_done() only after TLSStart")
        self.tls, self.helo, self.auth_user = True, None, None
        self._reset()
        self._state = ServerState.COMMAND

    def close(self) -> None:
        """The driver ends the session (its own decision, e.g. a fault): no more output."""
        self._close(None)

    # -- answering ------------------------------------------------------------------------------

    def _pending_command(self) -> Command:
        if self._answer is None:
            raise LocalProtocolError("no command awaits an answer")
        return self._answer[0]

    @property
    def _keywords(self) -> frozenset[str]:
        return self.config.keywords(tls=self.tls)

    def _ask(
        self, command: Command, on_success: _Effect = _nothing, on_failure: _Effect = _nothing
    ) -> None:
        self._events.append(command)
        self._answer = (command, on_success, on_failure)
        self._state = ServerState.ANSWER

    def _reject(self, verb: str, argument: str, reply: str) -> None:
        self._ask(CommandRejected(verb=verb, argument=argument, reply=reply))

    def _reset(self) -> None:
        self._envelope: MailFrom | None = None
        self._rcpts: list[RcptTo] = []
        self._chunks: bytearray | None = None
        self._chunks_too_big = False

    def _close(self, error: SMTPError | None) -> None:
        if self._state is not ServerState.CLOSED:
            self._state = ServerState.CLOSED
            self._answer = None
            self._events.append(ServerClosed(error=error))

    # -- reading --------------------------------------------------------------------------------

    def _take_line(self) -> bytes | None:
        """The next line, line end included; None until it is complete."""
        end = self._buffer.find(b"\n", self._searched)
        limit = self.config.max_line
        if end < 0:
            self._searched = len(self._buffer)
            if self._searched > limit:
                self._line_too_long()
            return None
        if end + 1 > limit:
            self._line_too_long()
            return None
        line = bytes(self._buffer[: end + 1])
        del self._buffer[: end + 1]
        self._searched = 0
        return line

    def _line_too_long(self) -> None:
        self._outgoing += b"500 5.5.6 Line too long\r\n"
        self._close(RemoteProtocolError("command line too long"))

    def _read_command(self) -> bool:
        raw = self._take_line()
        if raw is None:
            return False
        line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
        verb, _, argument = line.partition(" ")
        verb = verb.upper()
        if self._refused and verb != "QUIT":
            self._reject(verb, argument, _REFUSED_SERVICE)
        elif self.config.bare_lf == "reject" and _bare_line_end(raw):
            self._reject(verb, argument, "500 5.5.2 Error: bare <CR> or <LF> received")
        elif self._out_of_sync(verb):
            self._reject(verb, argument, "503 5.5.0 Error: improper command pipelining")
        else:
            _VERBS.get(verb, ServerConnection._unknown)(self, verb, argument)
        return True

    def _out_of_sync(self, verb: str) -> bool:
        """Input already follows a command that must wait for its reply (RFC 2920)."""
        if self.config.sync != "reject" or not self._buffer or verb in ("QUIT", "STARTTLS"):
            return False
        pipelining = self.helo is not None and "PIPELINING" in self._keywords
        return verb in _GROUP_ENDERS or not pipelining

    def _read_auth(self) -> bool:
        raw = self._take_line()
        if raw is None:
            return False
        assert self._mechanism is not None
        name, mechanism = self._mechanism
        answer = raw.rstrip(b"\r\n").decode("ascii", "replace")
        if answer == "*":
            self._reject("AUTH", name, "501 5.7.0 Authentication aborted")
        elif (decoded := decode_response(answer)) is None:
            self._reject("AUTH", name, "501 5.5.2 Cannot decode response")
        else:
            self._auth_step(name, mechanism.step(decoded), name)
        return True

    def _read_data(self) -> bool:
        body, cap = self._body, 2 * self._cap() + 65536
        searched = max(0, len(body) - len(_TERMINATOR) + 1)
        body += self._buffer
        self._buffer.clear()
        self._searched = 0
        end = body.find(_TERMINATOR, searched)
        if end < 0:
            if len(body) > cap:  # counted, not kept: only the tail may hold the terminator
                self._too_big = True
                del body[: len(body) - len(_TERMINATOR)]
            return False
        self._buffer += body[end + len(_TERMINATOR) :]
        payload = bytes(body[2 : end + len(_TERMINATOR)])
        self._body = bytearray()
        data = b"" if self._too_big else decode_data(payload)
        bare = self.config.bare_lf == "reject" and _bare_line_end(payload)
        self._message(data, "DATA", "", too_big=self._too_big or len(data) > self._cap(), bare=bare)
        return True

    def _read_chunk(self) -> bool:
        left, last, argument = self._chunk
        take = min(left, len(self._buffer))
        room = self._cap() - len(self._body)
        if room > 0:
            self._body += self._buffer[: min(take, room)]
        self._too_big |= take > room
        del self._buffer[:take]
        self._searched = 0
        self._chunk = (left - take, last, argument)
        if left - take:
            return False
        self._state = ServerState.COMMAND
        self._chunk_done(argument, last)
        return True

    # -- commands -------------------------------------------------------------------------------

    def _unknown(self, verb: str, argument: str) -> None:
        self._reject(verb, argument, "500 5.5.2 Error: command not recognized")

    def _hello(self, verb: str, argument: str) -> None:
        name, lmtp = argument.strip(), self.config.lmtp
        if lmtp != (verb == "LHLO"):
            self._reject(verb, argument, "500 5.5.1 LMTP: use LHLO" if lmtp else _UNRECOGNISED)
        elif not name or " " in name:
            self._reject(verb, argument, f"501 5.5.4 Syntax: {verb} hostname")
        else:
            lines = [f"250 {self.config.hostname}"]
            if verb != "HELO":
                lines += [f"250 {line}" for line in self.config.ehlo_lines(tls=self.tls)]
            self._ask(
                Hello(verb=verb, argument=argument, reply="\n".join(lines), name=name),
                lambda: self._hello_done(name),
            )

    def _hello_done(self, name: str) -> None:
        self.helo = name
        self._reset()

    def _starttls(self, verb: str, argument: str) -> None:
        if "STARTTLS" not in self._keywords:
            self._reject(verb, argument, _NOT_IMPLEMENTED)
        elif argument.strip():
            self._reject(verb, argument, "501 5.5.4 Syntax: STARTTLS")
        else:
            reply = "220 2.0.0 Ready to start TLS"
            self._ask(TLSRequested(verb=verb, argument=argument, reply=reply), self._tls_now)

    def _tls_now(self) -> None:
        discarded = len(self._buffer)
        self.discarded += discarded
        self._buffer.clear()
        self._searched = 0
        self._state = ServerState.TLS_HANDSHAKE
        self._events.append(TLSStart(discarded=discarded))

    def _auth(self, verb: str, argument: str) -> None:
        words = argument.split()
        name = words[0].upper() if words else ""
        factory = self.config.mechanisms.get(name)
        initial = decode_response(words[1]) if len(words) == 2 else None
        if "AUTH" not in self._keywords:
            self._reject(verb, argument, _NOT_IMPLEMENTED)
        elif self.auth_user is not None:
            self._reject(verb, argument, "503 5.5.1 Error: already authenticated")
        elif self._envelope is not None:
            self._reject(verb, argument, "503 5.5.1 Error: MAIL transaction in progress")
        elif len(words) not in (1, 2):
            self._reject(verb, argument, "501 5.5.4 Syntax: AUTH mechanism [initial-response]")
        elif factory is None or name not in self.config.auth_names(tls=self.tls):
            self._reject(verb, argument, "504 5.5.4 Unsupported authentication mechanism")
        elif len(words) == 2 and initial is None:
            self._reject(verb, argument, "501 5.5.2 Cannot decode initial response")
        else:
            mechanism = factory()
            step = mechanism.step(initial)
            if not isinstance(step, bytes):
                self._auth_step(name, step, argument)
                return
            # The driver hears of the exchange before its first challenge goes out.
            self._mechanism = (name, mechanism)
            event = AuthRequested(
                verb=verb, argument=argument, reply=_challenge(step), mechanism=name
            )
            self._ask(event, self._read_sasl, self._end_sasl)

    def _read_sasl(self) -> None:
        self._state = ServerState.AUTH

    def _end_sasl(self) -> None:
        self._mechanism = None

    def _auth_step(self, name: str, step: Step, argument: str) -> None:
        """Go on with the exchange; ``argument`` is the AUTH line's (or the mechanism name)."""
        if isinstance(step, bytes):
            self._outgoing += format_reply(_challenge(step))
            return
        self._end_sasl()
        self._state = ServerState.COMMAND
        if isinstance(step, SASLRefusal):
            self._reject("AUTH", argument, step.reply)
            return
        assert isinstance(step, SASLCredentials)
        event = Authenticate(
            verb="AUTH",
            argument=argument,
            reply="235 2.7.0 Authentication successful",
            mechanism=name,
            username=step.username,
            password=step.password,
            authzid=step.authzid,
        )
        self._ask(event, lambda: setattr(self, "auth_user", step.username))

    def _mail(self, verb: str, argument: str) -> None:
        parsed = parse_mail(argument, strict=self.config.addresses == "check")
        if self.helo is None:
            self._reject(verb, argument, "503 5.5.1 Error: send HELO/EHLO first")
        elif self.config.require_auth and self.auth_user is None:
            self._reject(verb, argument, "530 5.7.0 Authentication required")
        elif self._envelope is not None:
            self._reject(verb, argument, "503 5.5.1 Error: nested MAIL command")
        elif isinstance(parsed, str):
            self._reject(verb, argument, parsed)
        elif isinstance(event := self._mail_event(argument, parsed), str):
            self._reject(verb, argument, event)
        else:
            self._ask(event, lambda: setattr(self, "_envelope", event))

    def _mail_event(self, argument: str, envelope: Envelope) -> MailFrom | str:
        """The MAIL event, or the refusal of a parameter the server does not take."""
        keywords, params = self._keywords, envelope.params
        bodies = {"7BIT"} | {kind for kind in ("8BITMIME", "BINARYMIME") if kind in keywords}
        for key, value in params.items():
            check = _MAIL_PARAMS.get(key)
            if check is None or not check(self, value):
                return f"555 5.5.4 Unsupported option: {key}"
        body = params.get("BODY")
        if body is not None and body.upper() not in bodies:
            return "555 5.5.4 Unsupported option: BODY"
        size = int(params["SIZE"] or 0) if "SIZE" in params else None
        if size is not None and self.config.max_size and size > self.config.max_size:
            return "552 5.3.4 Message size exceeds fixed limit"
        if not envelope.address.isascii() and "SMTPUTF8" not in params:
            return "553 5.6.7 Non-ASCII sender address without SMTPUTF8"
        return MailFrom(
            verb="MAIL",
            argument=argument,
            reply="250 2.1.0 Ok",
            address=envelope.address,
            params=params,
            size=size,
            body=body.upper() if body else None,
            smtputf8="SMTPUTF8" in params,
            ret=(params.get("RET") or "").upper() or None,
            envid=xtext_decode(params["ENVID"] or "") if "ENVID" in params else None,
        )

    def _rcpt(self, verb: str, argument: str) -> None:
        parsed = parse_rcpt(argument, strict=self.config.addresses == "check")
        dsn = "DSN" in self._keywords
        if self._envelope is None:
            self._reject(verb, argument, "503 5.5.1 Error: need MAIL command")
        elif isinstance(parsed, str):
            self._reject(verb, argument, parsed)
        elif any(key not in ("NOTIFY", "ORCPT") or not dsn for key in parsed.params):
            self._reject(verb, argument, "555 5.5.4 Unsupported option")
        elif not parsed.address.isascii() and not self._envelope.smtputf8:
            self._reject(verb, argument, "553 5.6.7 Non-ASCII recipient address without SMTPUTF8")
        elif len(self._rcpts) >= self.config.max_recipients:
            self._reject(verb, argument, "452 4.5.3 Error: too many recipients")
        elif isinstance(event := _rcpt_event(argument, parsed), str):
            self._reject(verb, argument, event)
        else:
            self._ask(event, lambda: self._rcpts.append(event))

    def _data(self, verb: str, argument: str) -> None:
        if argument.strip():
            self._reject(verb, argument, "501 5.5.4 Syntax: DATA")
        elif self._envelope is None or self._chunks is not None:
            self._reject(verb, argument, "503 5.5.1 Error: need RCPT command")
        elif not self._rcpts:
            self._reject(verb, argument, "554 5.5.1 Error: no valid recipients")
        else:
            reply = "354 End data with <CR><LF>.<CR><LF>"
            self._ask(DataRequested(verb=verb, argument=argument, reply=reply), self._open_data)

    def _open_data(self) -> None:
        self._body, self._too_big = bytearray(b"\r\n"), False  # the content starts a line
        self._state = ServerState.DATA

    def _bdat(self, verb: str, argument: str) -> None:
        parsed = parse_bdat(argument)
        if "CHUNKING" not in self._keywords:
            # Not offered, so not known: like any server without CHUNKING, the octets that
            # follow are read as commands.
            self._reject(verb, argument, _NOT_IMPLEMENTED)
        elif parsed is None:
            # The chunk's length is unknown: there is no way to find the next command.
            self._outgoing += b"501 5.5.4 Syntax: BDAT size [LAST]\r\n"
            self._close(RemoteProtocolError(f"malformed BDAT: {argument!r}"))
        else:
            # The octets are read off the wire whatever the verdict, so none is taken for a
            # command.
            self._body = self._chunks if self._chunks is not None else bytearray()
            self._too_big = self._chunks_too_big
            self._chunk = (parsed[0], parsed[1], argument)
            self._state = ServerState.CHUNK

    def _chunk_done(self, argument: str, last: bool) -> None:
        if self._envelope is None:
            self._reject("BDAT", argument, "503 5.5.1 Error: need MAIL command")
        elif not self._rcpts:
            # RFC 3030: a refused chunk ends the transaction, so a MAIL pipelined behind it
            # starts the next one (the reply is a refusal whatever the driver says).
            refused = CommandRejected(
                verb="BDAT", argument=argument, reply="554 5.5.1 Error: no valid recipients"
            )
            self._ask(refused, self._reset, self._reset)
        elif last:
            self._message(bytes(self._body), "BDAT", argument, too_big=self._too_big, bare=False)
        else:
            size = argument.split()[0]
            reply = f"250 2.0.0 {int(size)} octets received"
            self._ask(
                OtherCommand(verb="BDAT", argument=argument, reply=reply),
                self._keep_chunks,
                self._reset,  # RFC 3030: a refused chunk ends the transaction
            )

    def _keep_chunks(self) -> None:
        self._chunks, self._chunks_too_big = self._body, self._too_big

    def _message(self, data: bytes, verb: str, argument: str, *, too_big: bool, bare: bool) -> None:
        """The content is complete: one event (SMTP) or one per recipient (LMTP)."""
        assert self._envelope is not None
        sender, recipients = self._envelope.address, self.recipients
        if too_big:
            reply, data = "552 5.3.4 Message size exceeds fixed limit", b""
        elif bare:
            reply = "550 5.5.2 Message contains bare <CR> or <LF>"
        else:
            reply = "250 2.0.0 Ok: queued"
        targets = recipients if self.config.lmtp else (None,)
        for rcpt in targets:
            text = reply if rcpt is None else f"{reply[:10]}<{rcpt}> {reply[10:]}"
            self._deliveries.append(
                MessageReceived(
                    verb=verb,
                    argument=argument,
                    reply=text,
                    mail_from=sender,
                    recipients=recipients,
                    data=data,
                    chunked=verb == "BDAT",
                    too_big=too_big,
                    recipient=rcpt,
                )
            )
        self._state = ServerState.COMMAND
        self._next_delivery()

    def _next_delivery(self) -> None:
        if self._deliveries:
            event = self._deliveries.popleft()
            self._ask(event, self._next_delivery, self._next_delivery)
        else:
            self._reset()

    def _rset(self, verb: str, argument: str) -> None:
        self._ask(Reset(verb=verb, argument=argument, reply="250 2.0.0 Ok"), self._reset)

    def _simple(self, verb: str, argument: str) -> None:
        self._ask(OtherCommand(verb=verb, argument=argument, reply=_SIMPLE_REPLIES[verb]))

    def _quit(self, verb: str, argument: str) -> None:
        def bye() -> None:
            self._close(None)

        self._ask(Quit(verb=verb, argument=argument, reply="221 2.0.0 Bye"), bye, bye)

    def _cap(self) -> int:
        return self.config.max_size or _UNLIMITED


def _challenge(step: bytes) -> str:
    return "334 " + base64.b64encode(step).decode("ascii")


_UNRECOGNISED = "500 5.5.2 Error: command not recognized"
_NOT_IMPLEMENTED = "502 5.5.1 Error: command not implemented"
_SIMPLE_REPLIES = {
    "NOOP": "250 2.0.0 Ok",
    "VRFY": "252 2.0.0 Cannot VRFY user, but will accept message",
    "HELP": "214 2.0.0 See RFC 5321",
}


def _rcpt_event(argument: str, envelope: Envelope) -> RcptTo | str:
    params: Params = envelope.params
    notify = parse_notify(params["NOTIFY"]) if "NOTIFY" in params else None
    orcpt = parse_orcpt(params["ORCPT"]) if "ORCPT" in params else None
    if "NOTIFY" in params and notify is None:
        return "501 5.5.4 Invalid NOTIFY parameter"
    if "ORCPT" in params and orcpt is None:
        return "501 5.5.4 Invalid ORCPT parameter"
    return RcptTo(
        verb="RCPT",
        argument=argument,
        reply="250 2.1.5 Ok",
        address=envelope.address,
        params=params,
        notify=notify,
        orcpt=orcpt,
    )


# Which MAIL parameters are taken, and when (an advertised extension, a well-formed value).
_MAIL_PARAMS: dict[str, Callable[[ServerConnection, str | None], bool]] = {
    "SIZE": lambda s, v: "SIZE" in s._keywords and v is not None and v.isdigit(),
    "BODY": lambda s, v: v is not None,
    "SMTPUTF8": lambda s, v: "SMTPUTF8" in s._keywords and v is None,
    "RET": lambda s, v: "DSN" in s._keywords and (v or "").upper() in ("FULL", "HDRS"),
    "ENVID": lambda s, v: "DSN" in s._keywords and v is not None and xtext_decode(v) is not None,
    "AUTH": lambda s, v: "AUTH" in s._keywords and v is not None,
    "REQUIRETLS": lambda s, v: "REQUIRETLS" in s._keywords and s.tls and v is None,
}

_Handler = Callable[[ServerConnection, str, str], None]
_VERBS: dict[str, _Handler] = {
    "EHLO": ServerConnection._hello,
    "HELO": ServerConnection._hello,
    "LHLO": ServerConnection._hello,
    "STARTTLS": ServerConnection._starttls,
    "AUTH": ServerConnection._auth,
    "MAIL": ServerConnection._mail,
    "RCPT": ServerConnection._rcpt,
    "DATA": ServerConnection._data,
    "BDAT": ServerConnection._bdat,
    "RSET": ServerConnection._rset,
    "NOOP": ServerConnection._simple,
    "VRFY": ServerConnection._simple,
    "HELP": ServerConnection._simple,
    "QUIT": ServerConnection._quit,
}

_READERS: dict[ServerState, Callable[[ServerConnection], bool]] = {
    ServerState.COMMAND: ServerConnection._read_command,
    ServerState.AUTH: ServerConnection._read_auth,
    ServerState.DATA: ServerConnection._read_data,
    ServerState.CHUNK: ServerConnection._read_chunk,
}
