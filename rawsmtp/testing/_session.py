"""One SMTP/LMTP server session over asyncio streams, with the fault policy consulted at each point.

Commands are looked up in a table by verb; each handler answers with :meth:`Session.reply`, the
one place where a pending fault's replacement text or injected bytes are applied. A fault that
ends the session raises :class:`_End`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import ssl
import uuid
from collections.abc import Awaitable, Callable
from typing import Protocol

from ..protocol import decode_data
from ..protocol._server_auth import decode_response
from ._config import Settings
from ._faults import DEFAULT_CLOSE_REPLY, Fault, FaultContext
from ._input import Input, LineTooLong
from ._records import ReceivedMessage

__all__ = ["Hub", "Session"]

_MAIL = re.compile(r"FROM:\s?<([^<>]*)>(.*)", re.IGNORECASE | re.DOTALL)
_RCPT = re.compile(r"TO:\s?<([^<>]*)>(.*)", re.IGNORECASE | re.DOTALL)
_BDAT = re.compile(r"(\d{1,12})( +LAST)? *", re.IGNORECASE)
_ENHANCED = re.compile(r"^(\d{3}[ -])[245]\.\d{1,3}\.\d{1,3}(?: |$)")
_MAX_RECIPIENTS = 1000
_MAX_ERRORS = 20
_UNLIMITED_SIZE = 256 * 1024 * 1024
# Gmail's XOAUTH2 failure challenge.
_XOAUTH2_ERROR = base64.b64encode(
    json.dumps({"status": "401", "schemes": "Bearer", "scope": "https://mail.google.com/"}).encode()
).decode()


class Hub(Protocol):
    """What a session needs from its server: the policy and the records."""

    def policy(self, context: FaultContext) -> Fault | None: ...
    def log_command(self, connection: int, line: str) -> None: ...
    def new_message_number(self) -> int: ...
    def record(self, message: ReceivedMessage) -> None: ...


class _End(Exception):
    """The session is over (QUIT, a fault, or the peer went away)."""


def _format(reply: str) -> bytes:
    """``"250 a\\n250 b"`` -> ``250-a CRLF 250 b CRLF``."""
    lines = reply.split("\n")
    out = [line[:3] + "-" + line[4:] for line in lines[:-1]]
    return "".join(line + "\r\n" for line in [*out, lines[-1]]).encode("utf-8")


def _params(text: str) -> dict[str, str | None] | None:
    """``" SIZE=10 SMTPUTF8"`` -> ``{"SIZE": "10", "SMTPUTF8": None}``; None if malformed."""
    if text and not text.startswith(" "):
        return None
    params: dict[str, str | None] = {}
    for word in text.split():
        key, sep, value = word.partition("=")
        if not key.replace("-", "").isalnum() or (sep and not value):
            return None
        params[key.upper()] = value if sep else None
    return params


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
        self.input = Input(reader)
        self.reader, self.writer = reader, writer
        self.tls = False
        self.helo: str | None = None
        self.auth_user: str | None = None
        self.refused = False  # the greeting was a refusal: 503 to all but QUIT
        self.errors = 0
        self.verb = ""
        self.message_number = 0
        self.pending: Fault | None = None  # replaces the text of / appends to the next reply
        self._reset()
        self.handlers: dict[str, Callable[[str], Awaitable[None]]] = {
            "EHLO": self._ehlo,
            "HELO": self._ehlo,
            "LHLO": self._ehlo,
            "STARTTLS": self._starttls,
            "AUTH": self._auth,
            "MAIL": self._mail,
            "RCPT": self._rcpt,
            "DATA": self._data,
            "BDAT": self._bdat,
            "RSET": self._rset,
            "NOOP": self._noop,
            "VRFY": self._vrfy,
            "HELP": self._help,
            "QUIT": self._quit,
        }

    def _reset(self) -> None:
        self.mail_from: str | None = None
        self.mail_params: dict[str, str | None] = {}
        self.rcpts: list[str] = []
        self.rcpt_params: dict[str, dict[str, str | None]] = {}
        self.chunks: bytearray | None = None
        self.chunks_too_big = False

    # -- plumbing ---------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            if self.settings.implicit_tls:
                await self._start_tls()
            await self._greet()
            while True:
                line = await self.input.line(self.settings.max_line)
                if line is None:
                    return
                await self._command(line.rstrip(b"\r\n").decode("utf-8", "replace"))
        except LineTooLong:
            await self._try_send(b"500 5.5.6 Line too long\r\n")
        except (_End, ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            return

    async def _try_send(self, data: bytes) -> None:
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass

    async def send(self, data: bytes) -> None:
        if self.writer.transport.is_closing():
            raise _End
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self, text: str) -> None:
        """Send a normal reply (a pending fault may replace its text or add injected bytes)."""
        pending, self.pending = self.pending, None
        if pending is not None and pending.reply is not None:
            text = pending.reply
        elif "ENHANCEDSTATUSCODES" not in self.settings.keywords:
            text = "\n".join(_ENHANCED.sub(r"\1", line) for line in text.split("\n"))
        await self.send(_format(text) + (pending.inject if pending is not None else b""))

    def _context(self, point: str, argument: str) -> FaultContext:
        return FaultContext(
            point=point,
            argument=argument,
            connection=self.number,
            message=self.message_number,
            tls=self.tls,
            auth_user=self.auth_user,
        )

    async def checkpoint(self, point: str, argument: str) -> bool:
        """Apply the policy's fault at ``point``; True when the fault answered instead."""
        fault = self.hub.policy(self._context(point, argument))
        if fault is None:
            return False
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.action == "drop":
            raise _End
        if fault.action == "close":
            await self.send(_format(fault.reply or DEFAULT_CLOSE_REPLY))
            raise _End
        if fault.action in ("silent", "garbage"):
            if fault.action == "garbage":
                await self.send(fault.payload)
            while await self.reader.read(65536):
                pass
            raise _End
        if fault.action == "endless":
            await self._endless()
        if fault.refuses:
            assert fault.reply is not None
            await self.send(_format(fault.reply) + fault.inject)
            return True
        self.pending = fault
        return False

    async def _endless(self) -> None:
        await self.send(b"250 ")
        filler = b"x" * 16384
        while not self.writer.transport.is_closing():
            await self.send(filler)
            await asyncio.sleep(0)
        raise _End

    async def _start_tls(self) -> None:
        context = self.settings.tls_context
        assert context is not None
        self.input.discard()  # plaintext sent before the handshake must never count as commands
        await self.writer.start_tls(context)
        self.tls = True

    async def _greet(self) -> None:
        if await self.checkpoint("CONNECT", self._peer()):
            self.refused = True
            return
        kind = "LMTP" if self.settings.lmtp else "ESMTP"
        await self.reply(f"220 {self.settings.hostname} {kind} rawsmtp test server")

    def _peer(self) -> str:
        peer = self.writer.get_extra_info("peername")
        return str(peer[0]) if isinstance(peer, tuple) else ""

    async def _command(self, line: str) -> None:
        self.hub.log_command(self.number, line)
        verb, _, argument = line.partition(" ")
        verb = self.verb = verb.upper()
        if self.refused and verb != "QUIT":
            await self.reply("503 5.5.1 Bad sequence of commands (service refused)")
            return
        if verb == "MAIL":
            self.message_number = self.hub.new_message_number()
        handler = self.handlers.get(verb)
        # BDAT consults the policy itself, once its chunk has been read off the wire.
        if verb != "BDAT" and await self.checkpoint(verb, argument):
            return
        if handler is None:
            await self._error("500 5.5.2 Error: command not recognized")
        else:
            await handler(argument)

    async def _error(self, text: str) -> None:
        self.errors += 1
        if self.errors > _MAX_ERRORS:
            await self.send(b"421 4.7.0 Too many errors\r\n")
            raise _End
        await self.reply(text)

    # -- session commands -------------------------------------------------------------------

    async def _ehlo(self, argument: str) -> None:
        verb = "LHLO" if self.settings.lmtp else None
        name = argument.strip()
        if verb is not None and self.verb != verb:
            await self._error("500 5.5.1 LMTP: use LHLO")
        elif verb is None and self.verb == "LHLO":
            await self._error("500 5.5.2 Error: command not recognized")
        elif not name or " " in name:
            await self._error(f"501 5.5.4 Syntax: {self.verb} hostname")
        else:
            self._reset()
            self.helo = name
            lines = [f"250 {self.settings.hostname}"]
            if self.verb != "HELO":
                lines += [f"250 {line}" for line in self.settings.ehlo_lines(tls=self.tls)]
            await self.reply("\n".join(lines))

    async def _starttls(self, argument: str) -> None:
        if "STARTTLS" not in self.settings.keywords or self.settings.tls_context is None:
            await self._error("502 5.5.1 Error: command not implemented")
        elif self.tls:
            await self._error("503 5.5.1 Error: TLS already active")
        elif argument.strip():
            await self._error("501 5.5.4 Syntax: STARTTLS")
        else:
            await self.reply("220 2.0.0 Ready to start TLS")
            await self._start_tls()
            self._reset()
            self.helo = self.auth_user = None

    async def _rset(self, argument: str) -> None:
        self._reset()
        await self.reply("250 2.0.0 Ok")

    async def _noop(self, argument: str) -> None:
        await self.reply("250 2.0.0 Ok")

    async def _vrfy(self, argument: str) -> None:
        await self.reply("252 2.0.0 Cannot VRFY user, but will accept message")

    async def _help(self, argument: str) -> None:
        await self.reply("214 2.0.0 See RFC 5321")

    async def _quit(self, argument: str) -> None:
        await self.reply("221 2.0.0 Bye")
        raise _End

    # -- AUTH -------------------------------------------------------------------------------

    async def _auth(self, argument: str) -> None:
        words = argument.split()
        mechanism = words[0].upper() if words else ""
        exchanges = {"PLAIN": self._plain, "LOGIN": self._login, "XOAUTH2": self._xoauth2}
        if "AUTH" not in self.settings.keywords:
            await self._error("502 5.5.1 Error: command not implemented")
        elif self.auth_user is not None:
            await self._error("503 5.5.1 Error: already authenticated")
        elif self.mail_from is not None:
            await self._error("503 5.5.1 Error: MAIL transaction in progress")
        elif len(words) not in (1, 2):
            await self._error("501 5.5.4 Syntax: AUTH mechanism [initial-response]")
        elif mechanism not in self.settings.mechanisms or mechanism not in exchanges:
            await self._error("504 5.5.4 Unsupported authentication mechanism")
        else:
            initial = decode_response(words[1]) if len(words) == 2 else None
            if len(words) == 2 and initial is None:
                await self._error("501 5.5.2 Cannot decode initial response")
                return
            user = await exchanges[mechanism](initial)
            if user is not None:
                self.auth_user = user
                await self.reply("235 2.7.0 Authentication successful")

    async def _challenge(self, text: str) -> bytes | None:
        """One 334 round; None when the client cancelled or sent junk (already answered)."""
        await self.reply(f"334 {text}")
        line = await self.input.line(self.settings.max_line)
        if line is None:
            raise _End
        answer = line.rstrip(b"\r\n").decode("ascii", "replace")
        if answer == "*":
            await self._error("501 5.7.0 Authentication aborted")
            return None
        decoded = decode_response(answer)
        if decoded is None:
            await self._error("501 5.5.2 Cannot decode response")
        return decoded

    async def _check(self, user: str, password: str) -> bool:
        if self.settings.users.get(user) == password:
            return True
        await self._error("535 5.7.8 Error: authentication failed")
        return False

    async def _plain(self, initial: bytes | None) -> str | None:
        response = initial if initial is not None else await self._challenge("")
        if response is None:
            return None
        parts = response.decode("utf-8", "replace").split("\0")
        if len(parts) != 3:
            await self._error("501 5.5.2 Malformed PLAIN response")
            return None
        return parts[1] if await self._check(parts[1], parts[2]) else None

    async def _login(self, initial: bytes | None) -> str | None:
        user = initial if initial is not None else await self._challenge("VXNlcm5hbWU6")
        if user is None:
            return None
        password = await self._challenge("UGFzc3dvcmQ6")
        if password is None:
            return None
        name = user.decode("utf-8", "replace")
        return name if await self._check(name, password.decode("utf-8", "replace")) else None

    async def _xoauth2(self, initial: bytes | None) -> str | None:
        response = initial if initial is not None else await self._challenge("")
        if response is None:
            return None
        fields = dict(
            part.partition("=")[::2] for part in response.decode("utf-8", "replace").split("\1")
        )
        user, token = fields.get("user", ""), fields.get("auth", "").removeprefix("Bearer ")
        if user and self.settings.tokens.get(user) == token:
            return user
        # Like Gmail: a 334 carrying the error as JSON; the client answers with an empty line.
        if await self._challenge(_XOAUTH2_ERROR) is not None:
            await self._error("535 5.7.8 Username and Password not accepted")
        return None

    # -- the mail transaction ---------------------------------------------------------------

    async def _mail(self, argument: str) -> None:
        match = _MAIL.fullmatch(argument)
        params = _params(match.group(2)) if match else None
        if self.helo is None:
            await self._error("503 5.5.1 Error: send HELO/EHLO first")
        elif self.settings.require_auth and self.auth_user is None:
            await self._error("530 5.7.0 Authentication required")
        elif self.mail_from is not None:
            await self._error("503 5.5.1 Error: nested MAIL command")
        elif match is None or params is None:
            await self._error("501 5.5.4 Syntax: MAIL FROM:<address>")
        elif problem := self._mail_problem(match.group(1), params):
            await self._error(problem)
        else:
            self.mail_from, self.mail_params = match.group(1), params
            await self.reply("250 2.1.0 Ok")

    def _mail_problem(self, address: str, params: dict[str, str | None]) -> str | None:
        keywords = self.settings.keywords
        bodies = {"7BIT"} | {kind for kind in ("8BITMIME", "BINARYMIME") if kind in keywords}
        allowed: dict[str, Callable[[str | None], bool]] = {
            "SIZE": lambda v: "SIZE" in keywords and v is not None and v.isdigit(),
            "BODY": lambda v: v is not None and v.upper() in bodies,
            "SMTPUTF8": lambda v: "SMTPUTF8" in keywords and v is None,
            "RET": lambda v: "DSN" in keywords and v is not None and v.upper() in ("FULL", "HDRS"),
            "ENVID": lambda v: "DSN" in keywords and v is not None,
            "AUTH": lambda v: "AUTH" in keywords and v is not None,
            "REQUIRETLS": lambda v: "REQUIRETLS" in keywords and self.tls and v is None,
        }
        for key, value in params.items():
            check = allowed.get(key)
            if check is None or not check(value):
                return f"555 5.5.4 Unsupported option: {key}"
        size = params.get("SIZE")
        if size is not None and self.settings.max_size and int(size) > self.settings.max_size:
            return "552 5.3.4 Message size exceeds fixed limit"
        if not address.isascii() and "SMTPUTF8" not in params:
            return "553 5.6.7 Non-ASCII sender address without SMTPUTF8"
        return None

    async def _rcpt(self, argument: str) -> None:
        match = _RCPT.fullmatch(argument)
        params = _params(match.group(2)) if match else None
        dsn = "DSN" in self.settings.keywords
        if self.mail_from is None:
            await self._error("503 5.5.1 Error: need MAIL command")
        elif match is None or params is None or not match.group(1):
            await self._error("501 5.5.4 Syntax: RCPT TO:<address>")
        elif any(key not in ("NOTIFY", "ORCPT") or not dsn for key in params):
            await self._error("555 5.5.4 Unsupported option")
        elif not match.group(1).isascii() and "SMTPUTF8" not in self.mail_params:
            await self._error("553 5.6.7 Non-ASCII recipient address without SMTPUTF8")
        elif len(self.rcpts) >= _MAX_RECIPIENTS:
            await self.reply("452 4.5.3 Error: too many recipients")
        else:
            self.rcpts.append(match.group(1))
            self.rcpt_params[match.group(1)] = params
            await self.reply("250 2.1.5 Ok")

    def _cap(self) -> int:
        return self.settings.max_size or _UNLIMITED_SIZE

    async def _data(self, argument: str) -> None:
        if argument.strip():
            await self._error("501 5.5.4 Syntax: DATA")
        elif self.mail_from is None or self.chunks is not None:
            await self._error("503 5.5.1 Error: need RCPT command")
        elif not self.rcpts:
            await self._error("554 5.5.1 Error: no valid recipients")
        else:
            await self.reply("354 End data with <CR><LF>.<CR><LF>")
            result = await self.input.data(2 * self._cap() + 65536)
            if result is None:
                raise _End
            payload, too_big = result
            data = decode_data(payload)
            await self._deliver(data, too_big or len(data) > self._cap(), chunked=False)

    async def _bdat(self, argument: str) -> None:
        match = _BDAT.fullmatch(argument)
        if "CHUNKING" not in self.settings.keywords:
            await self._error("502 5.5.1 Error: command not implemented")
            return
        if match is None:
            await self.send(b"501 5.5.4 Syntax: BDAT size [LAST]\r\n")
            raise _End  # the chunk's length is unknown: no way to find the next command
        size, last = int(match.group(1)), match.group(2) is not None
        room = self._cap() - len(self.chunks or b"")
        result = await self.input.exactly(size, max(0, room))
        if result is None:
            raise _End
        if await self.checkpoint("BDAT", argument):
            self._reset()
        elif self.mail_from is None:
            await self._error("503 5.5.1 Error: need MAIL command")
        elif not self.rcpts:
            await self._error("554 5.5.1 Error: no valid recipients")
        else:
            chunk, too_big = result
            self.chunks = (self.chunks or bytearray()) + chunk
            self.chunks_too_big |= too_big
            if last:
                await self._deliver(bytes(self.chunks), self.chunks_too_big, chunked=True)
            else:
                await self.reply(f"250 2.0.0 {size} octets received")

    async def _deliver(self, data: bytes, too_big: bool, *, chunked: bool) -> None:
        recipients = tuple(self.rcpts)
        delivered: list[str] = []
        try:
            if not self.settings.lmtp:
                if await self.checkpoint("DATA_END", " ".join(recipients)):
                    return
                if too_big:
                    await self.reply("552 5.3.4 Message size exceeds fixed limit")
                    return
                delivered = list(recipients)
                self.hub.record(self._received(data, recipients, chunked))
                await self.reply(f"250 2.0.0 Ok: queued as {uuid.uuid4().hex[:12].upper()}")
                return
            for rcpt in recipients:
                if await self.checkpoint("DATA_END", rcpt):
                    continue
                if too_big:
                    await self.reply(f"552 5.3.4 <{rcpt}> Message size exceeds fixed limit")
                    continue
                delivered.append(rcpt)
                await self.reply(f"250 2.1.5 <{rcpt}> Ok: delivered")
        finally:
            if self.settings.lmtp and delivered:
                self.hub.record(self._received(data, tuple(delivered), chunked))
            self._reset()

    def _received(self, data: bytes, recipients: tuple[str, ...], chunked: bool) -> ReceivedMessage:
        assert self.mail_from is not None
        return ReceivedMessage(
            mail_from=self.mail_from,
            rcpt_to=recipients,
            data=data,
            params=dict(self.mail_params),
            rcpt_params={rcpt: self.rcpt_params.get(rcpt, {}) for rcpt in recipients},
            tls=self.tls,
            auth_user=self.auth_user,
            helo=self.helo,
            lmtp=self.settings.lmtp,
            chunked=chunked,
            connection=self.number,
        )
