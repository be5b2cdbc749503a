"""An in-memory pool: engine, scheduler, sessions and the real protocol core, with no sockets,
no threads and a fake clock, so pool behaviour can be tested step by step and exactly.

The pieces are the production ones (:class:`~rawsmtp.pool._engine.PoolEngine`, its
:class:`~rawsmtp.pool._scheduler.Scheduler`, :class:`~rawsmtp.pool._session.Session`,
:class:`~rawsmtp.protocol.ClientConnection`); only the transport and the driver are replaced:
:class:`MemoryTransport` carries bytes straight to a :class:`FakeServer` (a small rule-driven
SMTP server), and :class:`PoolHarness` is the driver, its loop run by hand.

API, in the order a test uses it::

    server = FakeServer(capabilities=("PIPELINING",))        # EHLO keywords offered
    server.on("RCPT", reply="550 5.1.1 no such user", nth=2)  # rules: see FakeServer.on
    pool = PoolHarness(server, max_connections=1)             # any SMTPPool option
    future = pool.send(b"Subject: x\\r\\n\\r\\nhi\\r\\n")         # a concurrent.futures.Future
    pool.run()                  # run until nothing more happens at this instant
    pool.advance(30)            # move the clock on (firing timers on the way), then run()
    pool.run_until(future.done, limit=60)   # advance deadline by deadline until true
    server.commands             # [(connection, "MAIL FROM:<s@x.test>", at), ...]
    server.messages             # [Received(connection, mail_from, rcpt_to, data, at)]
    server.connections          # connections accepted so far
    pool.clock.now; repr(pool)  # "<PoolHarness queued=0 | 1 ready, 0 opening>"
    pool.close(); pool.run()    # graceful close, as SMTPPool.close()

Rule points are ``CONNECT`` (before the greeting), a command verb (``EHLO``, ``MAIL``, ``RCPT``,
``DATA``, ``RSET``, ``QUIT``...), ``BODY`` (the first bytes of a message's content: dropping
here loses the connection before the final dot) and ``DATA_END`` (the final reply). To add a
failure-policy test: script the server with ``on()``, send, drive with ``run``/``advance``/
``run_until``, then assert on futures, ``server.commands`` and ``repr(pool)``.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from rawsmtp import SendResult, SMTPConnectionError
from rawsmtp.pool._engine import PoolEngine, Submission
from rawsmtp.pool._session import Session, SessionSettings
from rawsmtp.pool._transport import IOServices, SocketPlan

__all__ = ["FakeClock", "FakeServer", "MemoryTransport", "PoolHarness", "Received", "Rule"]

MESSAGE = b"From: <s@x.test>\r\nTo: <r@x.test>\r\nSubject: harness\r\n\r\nhello\r\n"


class FakeClock:
    """The only clock the harness knows; it moves when a test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start


@dataclass(frozen=True, slots=True)
class Received:
    connection: int
    mail_from: str
    rcpt_to: tuple[str, ...]
    data: bytes
    at: float


@dataclass(slots=True)
class Rule:
    """At ``point``: send ``reply`` instead of the normal reply, or ``drop`` the connection;
    ``then`` is a further reply in the same segment, after which the server closes (an EHLO
    answer and a 421 read at once). ``nth`` fires on the n-th match only (counted from 1),
    ``connection`` on that one only."""

    point: str
    reply: str | None = None
    drop: bool = False
    then: str | None = None
    nth: int | None = None
    connection: int | None = None
    seen: int = 0

    def matches(self, point: str, connection: int) -> bool:
        if point != self.point or self.connection not in (None, connection):
            return False
        self.seen += 1
        return self.nth is None or self.seen == self.nth


@dataclass(slots=True)
class _Peer:
    """The server's side of one connection."""

    number: int
    buffer: bytearray = field(default_factory=bytearray)
    output: bytearray = field(default_factory=bytearray)
    in_data: bool = False
    body_seen: bool = False
    body: bytearray = field(default_factory=bytearray)
    mail_from: str | None = None
    rcpt_to: list[str] = field(default_factory=list)
    closed: bool = False
    after_dot: bool = False  # in the segment that carried a dot (see refuses_after_dot)


class FakeServer:
    """A small SMTP server over bytes: normal replies, unless a :class:`Rule` says otherwise."""

    def __init__(
        self,
        capabilities: tuple[str, ...] = ("PIPELINING", "8BITMIME"),
        *,
        refuses_after_dot: bool = False,
    ) -> None:
        self.capabilities = capabilities
        # Haraka-like: 503 to every command read in the same segment as a message's dot.
        self.refuses_after_dot = refuses_after_dot
        self.rules: list[Rule] = []
        self.commands: list[tuple[int, str, float]] = []
        self.messages: list[Received] = []
        self.connections = 0
        self.clock = FakeClock()

    def on(
        self,
        point: str,
        *,
        reply: str | None = None,
        drop: bool = False,
        then: str | None = None,
        nth: int | None = None,
        connection: int | None = None,
    ) -> Rule:
        rule = Rule(point, reply=reply, drop=drop, then=then, nth=nth, connection=connection)
        self.rules.append(rule)
        return rule

    def verbs(self, verb: str) -> list[tuple[int, str, float]]:
        return [c for c in self.commands if c[1].split(" ", 1)[0].upper() == verb]

    # -- what MemoryTransport calls -------------------------------------------------------------

    def accept(self) -> _Peer:
        self.connections += 1
        peer = _Peer(self.connections)
        self._answer(peer, "CONNECT", "220 fake.test ready")
        return peer

    def receive(self, peer: _Peer, data: bytes) -> None:
        peer.buffer += data
        peer.after_dot = False
        while not peer.closed:
            if peer.in_data:
                if not self._take_body(peer):
                    return
                peer.after_dot = self.refuses_after_dot
                continue
            end = peer.buffer.find(b"\r\n")
            if end < 0:
                return
            line = peer.buffer[:end].decode()
            del peer.buffer[: end + 2]
            self.commands.append((peer.number, line, self.clock.now))
            if peer.after_dot:
                self._write(peer, "503 5.5.1 pipelined after the end of data")
                continue
            self._command(peer, line)

    # -- the protocol ---------------------------------------------------------------------------

    def _command(self, peer: _Peer, line: str) -> None:
        verb, _, argument = line.partition(" ")
        verb = verb.upper()
        normal = "250 ok"
        if verb in ("EHLO", "LHLO"):
            normal = "\n".join(["250-fake.test", *(f"250-{c}" for c in self.capabilities)])
            normal = normal[: normal.rfind("250-")] + "250 " + normal[normal.rfind("250-") + 4 :]
        elif verb == "MAIL":
            peer.mail_from, peer.rcpt_to = None, []
            if self._answer(peer, verb, normal):
                peer.mail_from = argument.partition(":")[2].split(" ")[0][1:-1]
            return
        elif verb == "RCPT":
            if peer.mail_from is None:  # as real servers do: no transaction, no recipient
                self._write(peer, "503 5.5.1 need MAIL first")
            elif self._answer(peer, verb, normal):
                peer.rcpt_to.append(argument.partition(":")[2].split(" ")[0][1:-1])
            return
        elif verb == "AUTH":
            normal = "235 2.7.0 authenticated"
        elif verb == "DATA":
            normal = "354 go ahead" if peer.rcpt_to else "554 no valid recipients"
            if self._answer(peer, verb, normal) and peer.rcpt_to:
                peer.in_data, peer.body_seen = True, False
            return
        elif verb == "RSET":
            peer.mail_from, peer.rcpt_to = None, []
        elif verb == "QUIT":
            self._answer(peer, verb, "221 bye")
            peer.closed = True
            return
        self._answer(peer, verb, normal)

    def _take_body(self, peer: _Peer) -> bool:
        if not peer.body_seen and peer.buffer:
            peer.body_seen = True
            if not self._answer(peer, "BODY", None):
                return False
        end = peer.buffer.find(b"\r\n.\r\n")
        if end < 0:
            return False
        peer.body += peer.buffer[: end + 2]
        del peer.buffer[: end + 5]
        peer.in_data = False
        if self._answer(peer, "DATA_END", "250 2.0.0 queued"):
            assert peer.mail_from is not None
            self.messages.append(
                Received(
                    peer.number,
                    peer.mail_from,
                    tuple(peer.rcpt_to),
                    bytes(peer.body),
                    self.clock.now,
                )
            )
        peer.body.clear()
        peer.mail_from, peer.rcpt_to = None, []
        return True

    def _answer(self, peer: _Peer, point: str, normal: str | None) -> bool:
        """Reply (by rule or normally); True when the normal (successful) reply went out."""
        rule = next((rule for rule in self.rules if rule.matches(point, peer.number)), None)
        if rule is not None and rule.drop:
            peer.closed = True
            return False
        reply = rule.reply if rule is not None and rule.reply is not None else normal
        if reply is not None:
            self._write(peer, reply)
        if rule is not None and rule.then is not None:
            self._write(peer, rule.then)
            peer.closed = True
        return rule is None or rule.reply is None or rule.reply[0] in "23"

    @staticmethod
    def _write(peer: _Peer, reply: str) -> None:
        lines = reply.split("\n")
        for index, line in enumerate(lines):
            if index < len(lines) - 1 and line[3:4] == " ":
                line = line[:3] + "-" + line[4:]
            peer.output += line.encode() + b"\r\n"


class MemoryTransport:
    """A :class:`~rawsmtp.pool._session.SessionTransport` whose other end is a FakeServer."""

    def __init__(self, harness: PoolHarness, user: Any, settings: SessionSettings) -> None:
        self.harness = harness
        self.user = user
        self.settings = settings
        self.streaming = False
        self.peer: _Peer | None = None
        self.outbox = bytearray()
        self._closed = False
        self._eof_told = False
        self.opened_at: float | None = None  # when the server accepted it

    @property
    def phase(self) -> str:
        if self._closed:
            return "closed"
        return "open" if self.peer is not None else "connecting"

    def start(self, plan: SocketPlan, now: float) -> None:
        self.harness.later(self._connect)

    def _connect(self, now: float) -> None:
        if self._closed:
            return
        self.peer = self.harness.server.accept()
        self.opened_at = now
        self.harness.transports.append(self)
        if self.peer.closed and not self.peer.output:  # dropped at CONNECT
            self._closed = True
            self.user.transport_failed(SMTPConnectionError("connection refused"), now)
            return
        self.user.transport_open(now, tls=False)

    def start_tls(self, now: float) -> None:
        raise AssertionError("the fake server offers no STARTTLS")

    def write(self, data: bytes) -> None:
        self.outbox += data

    def buffered(self) -> int:
        return len(self.outbox)

    def deadline(self) -> float | None:
        return None

    def on_timer(self, now: float) -> bool:
        return False

    def ehlo_name(self) -> str:
        return "client.test"

    def peer_certificate(self) -> bytes | None:
        return None

    def close(self) -> None:
        self._closed = True
        self.streaming = False

    def pump(self, now: float) -> bool:
        """Move bytes both ways once; True when anything moved."""
        peer, moved = self.peer, False
        if peer is None or self._closed:
            return False
        if self.outbox and not peer.closed:
            data, self.outbox = bytes(self.outbox), bytearray()
            self.harness.server.receive(peer, data)
            moved = True
        elif self.outbox:
            self.outbox.clear()  # written into a closed connection: lost
        if peer.output:
            data = bytes(peer.output)
            peer.output.clear()
            self.user.data_received(data, now)
            moved = True
        elif peer.closed and not self._eof_told and not self._closed:
            self._eof_told = True
            self.user.data_received(b"", now)
            moved = True
        if self.streaming and not self._closed:
            self.user.send_more(now)
            moved = True
        return moved


class PoolHarness:
    """The driver of an in-memory pool (see the module docstring)."""

    def __init__(self, server: FakeServer, **options: Any) -> None:
        self.server = server
        self.clock = server.clock
        self.transports: list[MemoryTransport] = []
        self._callbacks: deque[Callable[[float], None]] = deque()
        options = {"host": "127.0.0.1", "port": 25, "ignore_tls": True, **options}

        def transport(
            user: Any, services: IOServices, settings: SessionSettings, now: float
        ) -> MemoryTransport:
            return MemoryTransport(self, user, settings)

        self.engine = PoolEngine(
            options, self, session_factory=functools.partial(Session, transport_factory=transport)
        )

    def __repr__(self) -> str:
        return f"<PoolHarness {self.engine.describe()}>"

    # -- the test's calls -----------------------------------------------------------------------

    def send(
        self, message: Any = MESSAGE, envelope: Any = None, **keywords: Any
    ) -> Future[SendResult]:
        """As SMTPPool.send (``deadline=``, ``dkim=`` too)."""
        submission = self.engine.submit(
            message, envelope, block=False, timeout=0, on_loop=True, **keywords
        )
        if isinstance(submission, Submission):
            self.engine.enqueue(submission, self.clock.now)
            return submission.future
        return submission

    def close(self) -> None:
        if self.engine.mark_closed():
            self.engine.begin_close(self.clock.now)

    def run(self) -> None:
        """Run until nothing more happens without the clock moving."""
        engine = self.engine
        for _ in range(100_000):
            now = self.clock.now
            moved = False
            while self._callbacks:
                self._callbacks.popleft()(now)
                moved = True
            engine.decide(now)
            for transport in list(self.transports):
                moved = transport.pump(now) or moved
            if not moved and not self._callbacks:
                engine.decide(now)
                if not self._callbacks:
                    return
        raise AssertionError("the pool did not settle")  # pragma: no cover - a livelock

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` on, firing every deadline met on the way."""
        target = self.clock.now + seconds
        self.run_until(lambda: self._next_deadline() > target, limit=seconds)
        self.clock.now = target
        self.engine.fire_timers(target)
        self.run()

    def run_until(self, condition: Callable[[], bool], *, limit: float = 600.0) -> None:
        """Run, jumping from deadline to deadline, until ``condition()``; at most ``limit`` s."""
        end = self.clock.now + limit
        self.run()
        for _ in range(100_000):
            if condition():
                return
            deadline = self._next_deadline()
            if deadline > end:
                raise AssertionError(f"not true after {limit} s (fake clock): {self!r}")
            self.clock.now = max(self.clock.now, deadline)
            self.engine.fire_timers(self.clock.now)
            self.run()
        raise AssertionError("deadlines that never pass")  # pragma: no cover - a bug

    def _next_deadline(self) -> float:
        deadline = self.engine.next_deadline(self.clock.now)
        return float("inf") if deadline is None else deadline

    # -- Driver ---------------------------------------------------------------------------------

    def later(self, action: Callable[[float], None]) -> None:
        self._callbacks.append(action)

    def run_blocking(
        self, func: Callable[[], Any], done: Callable[[Any, BaseException | None, float], None]
    ) -> None:
        try:
            result, error = func(), None
        except Exception as exc:
            result, error = None, exc
        self.later(lambda now: done(result, error, now))

    def watch(self, transport: Any) -> None:
        pass  # no sockets

    def forget(self, transport: Any) -> None:
        pass

    def flush_soon(self, transport: Any) -> None:
        pass  # run() moves every transport's bytes

    def withdraw(self, future: Future[SendResult]) -> None:
        self.later(lambda now: self.engine.cancel_future(future, now))
