"""One test-server session: a :class:`ServerConnection` driven over asyncio streams, with faults.

The machine does all of SMTP; this driver moves bytes, judges passwords, records messages and
asks the fault policy at each point before answering an event. A point is the event's verb
(``AUTH`` at :class:`AuthRequested`, before the SASL exchange), ``CONNECT`` before the greeting
and ``DATA_END`` at each :class:`MessageReceived`. A fault replaces or delays the answer, or
ends the session in one of the ways only a driver can (silent, drop, close, garbage, endless).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Protocol

from ..protocol._events import NEED_DATA
from ..protocol._server import ServerConnection
from ..protocol._server_config import format_reply, strip_enhanced
from ..protocol._server_events import (
    Authenticate,
    AuthRequested,
    Command,
    MailFrom,
    MessageReceived,
    RcptTo,
    ServerClosed,
    ServerEvent,
    TLSStart,
)
from ._config import Settings
from ._faults import DEFAULT_CLOSE_REPLY, Fault, FaultContext
from ._records import ReceivedMessage

__all__ = ["Hub", "Session"]

_READ_SIZE = 65536
_Envelope = tuple[MailFrom, tuple[RcptTo, ...]]
_BAD_PASSWORD = "535 5.7.8 Error: authentication failed"


class Hub(Protocol):
    """What a session needs from its server: the policy and the records."""

    def policy(self, context: FaultContext) -> Fault | None: ...
    def log_command(self, connection: int, line: str) -> None: ...
    def new_message_number(self) -> int: ...
    def record(self, message: ReceivedMessage) -> None: ...


class _End(Exception):
    """The session is over (QUIT, a fault, or the peer went away)."""


class Session:
    def __init__(
        self,
        settings: Settings,
        hub: Hub,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        number: int,
    ) -> None:
        self.settings, self.hub, self.number = settings, hub, number
        self.reader, self.writer = reader, writer
        self.machine = ServerConnection(settings.session)
        self.out = bytearray()  # replies (and injected bytes) not written yet
        self.refused = False  # a fault refused the greeting: the 503s ask no policy
        self.exchange = False  # inside a SASL exchange: its events are no command lines
        self.message_number = 0
        self.answered = 0  # LMTP: recipients of this message answered so far
        self.delivered: list[str] = []  # LMTP: those answered 250
        self.reads = 0  # segments read so far
        self.refusing: tuple[int, str] | None = None  # (segment, reply): see Fault.then_refuse

    async def run(self) -> None:
        try:
            if self.settings.implicit_tls:
                await self._start_tls()
            await self._greet()
            while True:
                event = self.machine.next_event()
                if event is NEED_DATA:
                    await self._flush()
                    self.machine.receive_data(await self.reader.read(_READ_SIZE))
                    self.reads += 1
                else:
                    await self._handle(event)
        except (_End, ConnectionError, ssl.SSLError):
            return

    # -- plumbing -------------------------------------------------------------------------------

    async def send(self, data: bytes) -> None:
        if self.writer.transport.is_closing():
            raise _End
        self.writer.write(data)
        await self.writer.drain()

    async def _flush(self) -> None:
        self.out += self.machine.data_to_send()
        if self.out:
            data = bytes(self.out)
            self.out.clear()
            await self.send(data)

    async def _start_tls(self) -> None:
        context = self.settings.tls_context
        assert context is not None
        # Plaintext that asyncio's reader already holds came before the handshake, too.
        pending = getattr(self.reader, "_buffer", None)
        if isinstance(pending, bytearray):
            pending.clear()
        await self.writer.start_tls(context)

    def _context(self, point: str, argument: str) -> FaultContext:
        return FaultContext(
            point=point,
            argument=argument,
            connection=self.number,
            message=self.message_number,
            tls=self.machine.tls,
            auth_user=self.machine.auth_user,
        )

    async def checkpoint(self, point: str, argument: str) -> Fault | None:
        """The policy's fault at ``point``, after its delay; a session-ending one acts here."""
        fault = self.hub.policy(self._context(point, argument))
        if fault is None:
            return None
        await self._flush()  # what was answered before the fault leaves before it acts
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.action == "drop":
            raise _End
        if fault.action == "close":
            await self.send(format_reply(fault.reply or DEFAULT_CLOSE_REPLY))
            raise _End
        if fault.action in ("silent", "garbage"):
            if fault.action == "garbage":
                await self.send(fault.payload)
            while await self.reader.read(_READ_SIZE):
                pass
            raise _End
        if fault.action == "endless":
            await self._endless()
        return fault

    async def _endless(self) -> None:
        await self.send(b"250 ")
        filler = b"x" * 16384
        while not self.writer.transport.is_closing():
            await self.send(filler)
            await asyncio.sleep(0)
        raise _End

    # -- events ---------------------------------------------------------------------------------

    async def _greet(self) -> None:
        peer = self.writer.get_extra_info("peername")
        fault = await self.checkpoint("CONNECT", str(peer[0]) if isinstance(peer, tuple) else "")
        self.refused = fault is not None and fault.refuses
        self.machine.greet(fault.reply if fault is not None else None)
        self._collect(fault)

    async def _handle(self, event: ServerEvent) -> None:
        if isinstance(event, TLSStart):
            await self._flush()
            await self._start_tls()
            self.machine.start_tls_done()
        elif isinstance(event, ServerClosed):
            await self._flush()
            raise _End
        else:
            await self._answer(event)

    def _line(self, event: Command) -> str | None:
        """The command line ``event`` answers, if it is that line's first event."""
        if isinstance(event, MessageReceived) and not (event.chunked and self.answered == 0):
            return None  # the end of DATA content, or LMTP's next recipient
        if self.exchange:
            return None  # a SASL response ended the exchange
        return f"{event.verb} {event.argument}" if event.argument else event.verb

    def _points(self, event: Command, line: str | None) -> list[tuple[str, str]]:
        """Where the policy is asked before ``event`` is answered, and about what."""
        if isinstance(event, MessageReceived):
            end = ("DATA_END", event.recipient or " ".join(event.recipients))
            return [("BDAT", event.argument), end] if line is not None else [end]
        if line is None or (self.refused and event.verb != "QUIT"):
            return []
        return [(event.verb, event.argument)]

    async def _answer(self, event: Command) -> None:
        line = self._line(event)
        if line is not None:
            self.hub.log_command(self.number, line)
        points = self._points(event, line)
        if line is not None and self.refusing is not None and self.refusing[0] == self.reads:
            self._reply(event, self.refusing[1], None)
            return
        if event.verb == "MAIL" and points:
            self.message_number = self.hub.new_message_number()
        pending: Fault | None = None
        for point, argument in points:
            fault = await self.checkpoint(point, argument)
            if fault is not None and fault.then_refuse is not None:
                self.refusing = (self.reads, fault.then_refuse)
            if fault is not None and fault.refuses:
                assert fault.reply is not None
                self._reply(event, fault.reply, fault)
                return
            pending = fault or pending
        reply = pending.reply if pending is not None else None
        self._reply(event, reply or self._verdict(event), pending)

    def _verdict(self, event: Command) -> str | None:
        """The driver's own answer where it differs from the machine's (None: accept)."""
        if isinstance(event, MessageReceived) and event.reply == "250 2.0.0 Ok: queued":
            # A queue id, as Postfix gives one, so clients' queue-id parsing has one to find.
            return f"{event.reply} as {self.message_number:010X}"
        if not isinstance(event, Authenticate) or event.password is None:
            return None  # XOAUTH2 checked its token itself
        if self.settings.users.get(event.username) == event.password:
            return None
        keywords = self.settings.session.keywords(tls=self.machine.tls)
        return _BAD_PASSWORD if "ENHANCEDSTATUSCODES" in keywords else strip_enhanced(_BAD_PASSWORD)

    def _reply(self, event: Command, reply: str | None, fault: Fault | None) -> None:
        """Answer ``event`` (``reply`` None: the machine's own) and note what that did."""
        envelope = self.machine.envelope  # answering the message's last event resets it
        if reply is None:
            self.machine.accept()
        else:
            self.machine.respond(reply)
        self._collect(fault)
        positive = (reply or event.reply)[0] in "23"
        if isinstance(event, AuthRequested):
            self.exchange = positive
        elif event.verb == "AUTH":
            self.exchange = False
        elif isinstance(event, MessageReceived) and envelope is not None:
            self._delivered(event, positive and not event.too_big, envelope)

    def _collect(self, fault: Fault | None) -> None:
        """The machine's output, then the fault's injected bytes: in one write."""
        self.out += self.machine.data_to_send()
        if fault is not None:
            self.out += fault.inject

    def _delivered(self, event: MessageReceived, accepted: bool, envelope: _Envelope) -> None:
        """Record the message once its recipients are answered (LMTP: one event each)."""
        if event.recipient is None:
            recipients = event.recipients if accepted else ()
        else:
            self.delivered += [event.recipient] if accepted else []
            self.answered += 1
            if self.answered < len(event.recipients):
                return
            recipients, self.delivered, self.answered = tuple(self.delivered), [], 0
        if recipients:
            self.hub.record(self._received(event, recipients, envelope))

    def _received(
        self, event: MessageReceived, recipients: tuple[str, ...], envelope: _Envelope
    ) -> ReceivedMessage:
        mail, rcpts = envelope
        return ReceivedMessage(
            mail_from=event.mail_from,
            rcpt_to=recipients,
            data=event.data,
            params=dict(mail.params),
            rcpt_params={rcpt.address: rcpt.params for rcpt in rcpts if rcpt.address in recipients},
            tls=self.machine.tls,
            auth_user=self.machine.auth_user,
            helo=self.machine.helo,
            lmtp=self.settings.session.lmtp,
            chunked=event.chunked,
            connection=self.number,
        )
