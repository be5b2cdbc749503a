"""Pipelined CHUNKING and the pipelining modes, against scripted servers that parse what the
client wrote and answer each command from a script (so every reply's command is known)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rawsmtp.protocol import (
    ConnectionClosed,
    Event,
    MessageAccepted,
    MessageFailed,
    SendBody,
    SMTPRecipientsRefusedError,
    State,
    Transaction,
)
from tests.protocol.test_client import Session

EHLO_CHUNKING = b"250-mx.test\r\n250-PIPELINING\r\n250 CHUNKING\r\n"
_BDAT = re.compile(rb"BDAT (\d+)( LAST)?\r\n")


def tx(index: int, *recipients: str, size: int | None = None) -> Transaction:
    """Transaction ``index``: its sender names it, so a server can tell whose MAIL it reads."""
    return Transaction(
        mail_from=f"t{index}@test", recipients=recipients or (f"r{index}@test",), size=size
    )


@dataclass
class Command:
    verb: str  # MAIL, RCPT, BDAT, LAST (a BDAT ... LAST), DATA, DOT (end of data), RSET, QUIT
    owner: int | None  # the transaction (by sender) it belongs to
    reply: int | None = None  # the code the server answered, once it has
    read: int = 0  # which read of the server's brought it


@dataclass
class ScriptedServer:
    """Splits the client's bytes into commands (BDAT data and DATA bodies skipped), in order.

    ``answer(code)`` replies to the oldest unanswered command. A DATA answered 354 makes the
    following bytes a body until its dot.
    """

    commands: list[Command] = field(default_factory=list)
    buffer: bytes = b""
    answered: int = 0
    reads: int = 0
    in_body: bool = False
    owner: int | None = None

    def feed(self, data: bytes) -> None:
        if not data:
            return
        self.reads += 1
        self.buffer += data
        while self._next_command():
            pass

    def _next_command(self) -> bool:
        if self.in_body:
            if self.buffer.startswith(b".\r\n"):
                end = 3
            elif (found := self.buffer.find(b"\r\n.\r\n")) != -1:
                end = found + 5
            else:
                return False
            self.buffer = self.buffer[end:]
            self.in_body = False
            self._add("DOT")
            return True
        line_end = self.buffer.find(b"\r\n")
        if line_end == -1:
            return False
        line = self.buffer[: line_end + 2]
        if bdat := _BDAT.fullmatch(line):
            size = int(bdat.group(1))
            if len(self.buffer) < line_end + 2 + size:
                return False
            self.buffer = self.buffer[line_end + 2 + size :]
            self._add("LAST" if bdat.group(2) else "BDAT")
            return True
        self.buffer = self.buffer[line_end + 2 :]
        verb = line[:4].decode()
        if verb == "MAIL":
            self.owner = int(line.split(b"<t")[1].split(b"@")[0])
        self._add(verb)
        return True

    def _add(self, verb: str) -> None:
        owner = self.owner if verb in ("MAIL", "RCPT", "BDAT", "LAST", "DATA", "DOT") else None
        self.commands.append(Command(verb, owner, read=self.reads))

    def unanswered(self) -> list[Command]:
        return self.commands[self.answered :]

    def answer(self, code: int) -> bytes:
        command = self.commands[self.answered]
        self.answered += 1
        command.reply = code
        if command.verb == "DATA" and code == 354:
            self.in_body = True
        return b"%d %s\r\n" % (code, b"ok" if code < 400 else b"no")

    def of(self, owner: int) -> list[Command]:
        return [command for command in self.commands if command.owner == owner]


@dataclass
class Outcomes:
    """Every outcome the client reported, by transaction index."""

    by_index: dict[int, list[str]] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    closed: ConnectionClosed | None = None

    def add(self, event: Event) -> None:
        self.events.append(event)
        if isinstance(event, MessageAccepted):
            self._record(event.transaction, "accepted")
        elif isinstance(event, MessageFailed):
            flag = "refused-pipelining" if event.pipelining_refused else "failed"
            self._record(event.transaction, flag)
        elif isinstance(event, ConnectionClosed):
            self.closed = event
            for transaction in event.unsent:
                self._record(transaction, "unsent")
            for transaction in event.unconfirmed:
                self._record(transaction, "unconfirmed")

    def _record(self, transaction: Transaction, outcome: str) -> None:
        index = int(transaction.mail_from[1:].split("@")[0])
        self.by_index.setdefault(index, []).append(outcome)

    def of(self, index: int) -> str:
        [outcome] = self.by_index[index]
        return outcome


class Pipeline:
    """A session on a CHUNKING + PIPELINING server, the scripted server and the outcomes."""

    def __init__(self, *, ehlo: bytes = EHLO_CHUNKING, pieces: int = 1, **config: object) -> None:
        # One BDAT per send_body() call, so that ``pieces`` says how many chunks a body takes.
        config.setdefault("bdat_chunk_size", 1)
        self.session = Session(**config)
        self.session.ready(ehlo)
        self.client = self.session.client
        self.server = ScriptedServer()
        self.outcomes = Outcomes()
        self.pieces = pieces  # send_body calls per message
        self.writes: list[bytes] = []

    def send(self, *transactions: Transaction) -> None:
        for transaction in transactions:
            self.client.send_mail(transaction)
        self.pump()

    def pump(self) -> None:
        """Act on the client's events (feeding bodies), then hand its bytes to the server."""
        while True:
            events = self.session.events()
            for event in events:
                self.outcomes.add(event)
                if isinstance(event, SendBody) and self.client.state is not State.CLOSED:
                    body = b"line of the message\r\n" * 3
                    step = -(-len(body) // self.pieces)
                    for start in range(0, len(body), step):
                        self.client.send_body(body[start : start + step])
                    self.client.end_body()
            if not events:
                break
        if data := self.session.sent():
            self.writes.append(data)
            self.server.feed(data)

    def reply(self, *codes: int, byte_at_a_time: bool = False) -> None:
        data = b"".join(self.server.answer(code) for code in codes)
        chunks: Iterable[bytes] = (
            [data[i : i + 1] for i in range(len(data))] if byte_at_a_time else [data]
        )
        for chunk in chunks:
            self.client.receive_data(chunk, now=0.0)
            self.pump()

    def drop(self) -> None:
        self.client.receive_data(b"", now=0.0)
        self.pump()

    def verbs(self) -> list[tuple[str, int | None]]:
        return [(command.verb, command.owner) for command in self.server.commands]


def written(*transactions: int, rset: bool = False) -> list[tuple[str, int | None]]:
    verbs = [("RSET", None)] if rset else []
    for index in transactions:
        verbs += [("MAIL", index), ("RCPT", index), ("LAST", index)]
    return verbs


def test_a_window_of_bdat_transactions_goes_in_one_write_and_each_gets_its_own_reply() -> None:
    pipeline = Pipeline()
    pipeline.send(tx(0), tx(1), tx(2))
    assert pipeline.writes == [pipeline.writes[0]]  # one write: three whole transactions
    assert pipeline.writes[0].count(b"MAIL FROM") == 3
    assert b"BDAT 63 LAST\r\n" in pipeline.writes[0]
    assert pipeline.verbs() == written(0, 1, 2)
    pipeline.reply(*[250] * 9)
    assert [pipeline.outcomes.of(i) for i in range(3)] == ["accepted"] * 3
    accepted = [e for e in pipeline.outcomes.events if isinstance(e, MessageAccepted)]
    assert [event.transaction.mail_from for event in accepted] == ["t0@test", "t1@test", "t2@test"]
    assert pipeline.client.window == 9 and pipeline.client.pipelining == "full"


def test_byte_at_a_time_replies_give_the_same_outcomes() -> None:
    pipeline = Pipeline(pieces=4)
    pipeline.send(tx(0), tx(1), tx(2))
    assert [verb for verb, owner in pipeline.verbs() if owner == 0] == [
        *("MAIL", "RCPT"),
        *("BDAT", "BDAT", "BDAT", "LAST"),
    ]
    codes = [550 if (c.verb, c.owner) == ("RCPT", 1) else 250 for c in pipeline.server.commands]
    pipeline.reply(*codes, byte_at_a_time=True)
    assert [pipeline.outcomes.of(i) for i in range(3)] == ["accepted", "failed", "accepted"]
    assert pipeline.server.unanswered()[0].verb == "RSET"


def test_the_window_bounds_transactions_in_flight() -> None:
    pipeline = Pipeline(chunking_window=2)
    assert pipeline.client.window == 3
    pipeline.send(tx(0), tx(1), tx(2))
    assert pipeline.verbs() == written(0, 1)
    pipeline.reply(250, 250)
    assert pipeline.verbs() == written(0, 1)  # t0's final reply frees the place, not its MAIL
    pipeline.reply(250)
    assert pipeline.verbs() == written(0, 1, 2)


def test_the_byte_budget_bounds_bodies_in_flight() -> None:
    # 77 bytes a message: BDAT 63 LAST and its data. Two fit in 160, not three.
    pipeline = Pipeline(chunking_window_bytes=160)
    pipeline.send(tx(0, size=63), tx(1, size=63), tx(2, size=63))
    assert pipeline.verbs() == written(0, 1)
    pipeline.reply(250, 250, 250)
    assert pipeline.verbs() == written(0, 1, 2)


def test_a_message_of_unknown_size_takes_the_rest_of_the_budget() -> None:
    pipeline = Pipeline(chunking_window_bytes=80)
    pipeline.send(tx(0), tx(1), tx(2))
    assert pipeline.verbs() == written(0, 1)  # some budget was left for t1, none for t2
    pipeline.reply(250, 250, 250)
    assert pipeline.verbs() == written(0, 1, 2)


def test_a_message_larger_than_the_budget_still_goes_alone() -> None:
    pipeline = Pipeline(chunking_window_bytes=10)
    pipeline.send(tx(0, size=63), tx(1, size=63))
    assert pipeline.verbs() == written(0)
    pipeline.reply(250, 250, 250)
    assert pipeline.verbs() == written(0, 1)


FAILING_REPLIES = {
    # (the failing transaction's replies, the code its failure must carry)
    ("MAIL", 550): ((550, 503, 503), 550),
    ("MAIL", 451): ((451, 503, 503), 451),
    ("RCPT", 550): ((250, 550, 554), 550),
    ("RCPT", 452): ((250, 452, 554), 452),
    ("BDAT", 554): ((250, 250, 554), 554),
    ("BDAT", 451): ((250, 250, 451), 451),
}


@pytest.mark.parametrize("stage", list(FAILING_REPLIES), ids=str)
@pytest.mark.parametrize("k", [0, 1, 2])
def test_the_kth_of_the_window_failing_fails_alone(stage: tuple[str, int], k: int) -> None:
    replies, code = FAILING_REPLIES[stage]
    pipeline = Pipeline()
    pipeline.send(tx(0), tx(1), tx(2))
    script = [250] * 9
    script[3 * k : 3 * k + 3] = replies
    pipeline.reply(*script)
    assert [pipeline.outcomes.of(i) for i in range(3)] == [
        "failed" if i == k else "accepted" for i in range(3)
    ]
    [failed] = [e for e in pipeline.outcomes.events if isinstance(e, MessageFailed)]
    assert failed.error.code == code  # type: ignore[attr-defined]
    if stage[0] == "RCPT":
        assert isinstance(failed.error, SMTPRecipientsRefusedError)
    # RFC 3030: RSET after a failed BDAT transaction, before any MAIL not yet written.
    assert [command.verb for command in pipeline.server.unanswered()] == ["RSET"]
    pipeline.reply(250)
    pipeline.send(tx(3))
    assert pipeline.verbs()[-3:] == written(3)


def test_503s_behind_a_failed_bdat_are_collateral_and_the_mode_stays() -> None:
    """RFC 3030: after a failed BDAT the server may refuse what follows until RSET."""
    pipeline = Pipeline()
    pipeline.send(tx(0), tx(1), tx(2))
    pipeline.reply(250, 250, 554, 503, 503, 503, 503, 503, 503)
    assert [pipeline.outcomes.of(i) for i in range(3)] == [
        "failed",
        "refused-pipelining",
        "refused-pipelining",
    ]
    assert pipeline.client.pipelining == "full"  # not the pipelining's fault
    # One RSET, written after all three: it resets whatever each of them left.
    assert [command.verb for command in pipeline.server.unanswered()] == ["RSET"]
    pipeline.reply(250)
    pipeline.send(tx(1), tx(2))  # resent: uncharged, on the same session
    pipeline.reply(*[250] * 6)
    assert pipeline.outcomes.by_index[1][-1] == pipeline.outcomes.by_index[2][-1] == "accepted"


def test_a_250_to_the_data_of_a_refused_envelope_is_not_its_delivery() -> None:
    pipeline = Pipeline()
    pipeline.send(tx(0), tx(1))
    pipeline.reply(250, 250, 451, 503, 503, 250)  # a confused server's 250 to t1's BDAT LAST
    assert [pipeline.outcomes.of(i) for i in range(2)] == ["failed", "refused-pipelining"]


def test_refusing_what_follows_an_accepted_end_switches_the_session_to_envelope() -> None:
    pipeline = Pipeline()
    pipeline.send(tx(0), tx(1))
    pipeline.reply(250, 250, 250, 503, 503, 503)
    assert [pipeline.outcomes.of(i) for i in range(2)] == ["accepted", "refused-pipelining"]
    assert pipeline.client.pipelining == "envelope" and pipeline.client.window == 2
    pipeline.reply(250)  # RSET
    pipeline.send(tx(1), tx(2))
    assert pipeline.verbs()[-3:] == written(1)  # t2 waits for t1's final reply
    pipeline.reply(250, 250, 250)
    assert pipeline.verbs()[-3:] == written(2)


def test_421_mid_window_makes_everything_unanswered_unsent() -> None:
    pipeline = Pipeline()
    pipeline.send(tx(0), tx(1), tx(2))
    pipeline.reply(250, 250, 421)  # to t0's BDAT LAST: nothing after it was processed
    closed = pipeline.outcomes.closed
    assert closed is not None and closed.error.code == 421  # type: ignore[union-attr]
    assert [pipeline.outcomes.of(i) for i in range(3)] == ["unsent"] * 3
    assert not closed.pipelining_refused


def test_421_at_the_mail_after_an_accepted_end_is_flagged() -> None:
    pipeline = Pipeline()
    pipeline.send(tx(0), tx(1), tx(2))
    pipeline.reply(250, 250, 250, 421)
    assert [pipeline.outcomes.of(i) for i in range(3)] == ["accepted", "unsent", "unsent"]
    assert pipeline.outcomes.closed is not None and pipeline.outcomes.closed.pipelining_refused


def test_a_drop_mid_window_leaves_written_ends_unconfirmed() -> None:
    pipeline = Pipeline()
    pipeline.send(tx(0), tx(1), tx(2))
    pipeline.reply(250, 250, 250, 250, 250)
    pipeline.drop()
    assert [pipeline.outcomes.of(i) for i in range(3)] == ["accepted", "unconfirmed", "unconfirmed"]
    closed = pipeline.outcomes.closed
    assert closed is not None and not closed.pipelining_refused  # t1's MAIL was answered


def test_a_drop_reports_what_the_server_already_refused_as_failed() -> None:
    pipeline = Pipeline()
    pipeline.send(tx(0), tx(1))
    pipeline.reply(250, 250, 250, 550)
    pipeline.drop()
    assert [pipeline.outcomes.of(i) for i in range(2)] == ["accepted", "failed"]


def test_a_drop_before_a_body_ends_leaves_it_unsent() -> None:
    session = Session()
    session.ready(EHLO_CHUNKING)
    first, second = tx(0), tx(1)
    session.client.send_mail(first)
    session.client.send_mail(second)
    session.body(first, b"one")
    [send_second] = session.events()
    assert isinstance(send_second, SendBody) and send_second.transaction is second
    session.client.send_body(b"part of two")  # held back: no end written yet
    session.sent()
    [closed] = session.server(b"")
    assert isinstance(closed, ConnectionClosed)
    assert closed.unconfirmed == (first,) and closed.unsent == (second,)


def test_an_end_not_yet_handed_out_is_unsent() -> None:
    session = Session()
    session.ready(EHLO_CHUNKING)
    message = tx(0)
    session.client.send_mail(message)
    session.body(message, b"x")  # the BDAT LAST is buffered, never taken by data_to_send()
    session.client.connection_lost()
    [closed] = session.events()
    assert isinstance(closed, ConnectionClosed) and closed.unsent == (message,)


# -- hypothesis: random reply scripts, checked against what the server saw ----------------------

CODES = [250, 250, 250, 250, 503, 550, 451, 421]


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 5),
    st.integers(1, 4),
    st.sampled_from([1, 3]),
    st.sampled_from([50, 1 << 20]),
    st.data(),
)
def test_random_reply_scripts_keep_the_outcome_invariants(
    count: int, window: int, pieces: int, budget: int, data: st.DataObject
) -> None:
    pipeline = Pipeline(pieces=pieces, chunking_window=window, chunking_window_bytes=budget)
    server, outcomes = pipeline.server, pipeline.outcomes
    pipeline.send(*(tx(i) for i in range(count)))
    said_421 = False
    for _ in range(200):  # a guard: the session must end well before this
        if pipeline.client.state is State.CLOSED:
            break
        if len(outcomes.by_index) == count:
            pipeline.client.quit()
            pipeline.pump()
        waiting = server.unanswered()
        if not waiting or data.draw(st.integers(0, 9)) == 0:
            pipeline.drop()
            continue
        codes = []
        for command in waiting[: data.draw(st.integers(1, len(waiting)))]:
            if command.verb == "QUIT":
                codes.append(221)
            elif command.verb == "RSET":
                codes.append(data.draw(st.sampled_from([250, 250, 421])))
            else:
                codes.append(data.draw(st.sampled_from(CODES)))
            if codes[-1] == 421:
                said_421 = True
                break
        pipeline.reply(*codes, byte_at_a_time=data.draw(st.booleans()))
    assert pipeline.client.state is State.CLOSED
    for index in range(count):
        outcome = outcomes.of(index)  # exactly one each
        commands = server.of(index)
        replies = [command.reply for command in commands if command.reply is not None]
        last_written = any(command.verb == "LAST" for command in commands)
        [last_reply] = [c.reply for c in commands if c.verb == "LAST"] or [None]
        if outcome == "accepted":  # on its own replies only: MAIL, a RCPT and every BDAT
            by_verb = {command.verb: command.reply for command in commands}
            assert by_verb["MAIL"] == 250 and by_verb["LAST"] == 250
            assert all(c.reply == 250 for c in commands if c.verb in ("BDAT", "LAST"))
            assert any(c.reply == 250 for c in commands if c.verb == "RCPT")
        elif outcome == "unconfirmed":
            assert last_written and last_reply is None
        elif outcome == "unsent":
            # A 421 declines every command it answers or follows: none was processed.
            assert not last_written or (said_421 and last_reply in (None, 421))
        elif outcome == "refused-pipelining":
            assert 503 in replies
        else:
            assert any(code >= 400 for code in replies)


# -- the pipelining modes against a server that refuses what follows a dot -----------------------


def haraka_session(mode: str, count: int, *, chunking: bool = False) -> Pipeline:
    """Haraka 3.3.4's rule: 503 to any command that came in the same read as an end of data."""
    ehlo = EHLO_CHUNKING if chunking else b"250-mx.test\r\n250 PIPELINING\r\n"
    pipeline = Pipeline(ehlo=ehlo, pipelining=mode)
    pipeline.send(*(tx(i) for i in range(count)))
    for _ in range(100):
        waiting = pipeline.server.unanswered()
        if not waiting:
            break
        command = waiting[0]
        ends = [
            c.read
            for c in pipeline.server.commands[: pipeline.server.commands.index(command)]
            if c.verb in ("DOT", "LAST")
        ]
        after_end = bool(ends) and ends[-1] == command.read
        if after_end and command.verb != "QUIT":
            code = 503
        else:
            code = {"DATA": 354, "QUIT": 221}.get(command.verb, 250)
        pipeline.reply(code)
    return pipeline


@pytest.mark.parametrize("chunking", [False, True])
def test_full_mode_on_a_haraka_like_server_flags_the_refused_and_no_false_failures(
    chunking: bool,
) -> None:
    pipeline = haraka_session("full", 4, chunking=chunking)
    outcomes = {i: pipeline.outcomes.of(i) for i in range(4)}
    assert outcomes[0] == "accepted"
    assert set(outcomes.values()) <= {"accepted", "refused-pipelining"}
    assert "refused-pipelining" in outcomes.values()
    assert pipeline.client.pipelining == "envelope"  # the rest of the session is safe
    refused = [i for i, outcome in outcomes.items() if outcome == "refused-pipelining"]
    pipeline.send(*(tx(i) for i in refused))
    for _ in range(50):
        waiting = pipeline.server.unanswered()
        if not waiting:
            break
        pipeline.reply({"DATA": 354}.get(waiting[0].verb, 250))
    assert all(pipeline.outcomes.by_index[i][-1] == "accepted" for i in refused)


@pytest.mark.parametrize("chunking", [False, True])
def test_envelope_mode_on_a_haraka_like_server_delivers_everything(chunking: bool) -> None:
    pipeline = haraka_session("envelope", 4, chunking=chunking)
    assert [pipeline.outcomes.of(i) for i in range(4)] == ["accepted"] * 4
    # Each transaction's envelope in one write, nothing after its end.
    assert all(write.count(b"MAIL FROM") <= 1 for write in pipeline.writes)


@pytest.mark.parametrize("chunking", [False, True])
def test_off_mode_writes_one_command_per_reply(chunking: bool) -> None:
    pipeline = haraka_session("off", 3, chunking=chunking)
    assert [pipeline.outcomes.of(i) for i in range(3)] == ["accepted"] * 3
    assert pipeline.client.window == 1 and pipeline.client.pipelining == "off"
    for write in pipeline.writes:
        commands = ScriptedServer()
        commands.in_body = not write.startswith((b"MAIL", b"RCPT", b"DATA", b"BDAT", b"RSET"))
        commands.feed(write)
        assert len(commands.commands) == 1, write


def test_a_close_right_after_an_accepted_dot_flags_the_pipelined_rest() -> None:
    pipeline = Pipeline(ehlo=b"250-mx.test\r\n250 PIPELINING\r\n")
    pipeline.send(tx(0), tx(1))
    pipeline.reply(250, 250, 354)
    assert pipeline.verbs()[-3:] == [("MAIL", 1), ("RCPT", 1), ("DATA", 1)]  # after the dot
    pipeline.reply(250)
    pipeline.drop()
    closed = pipeline.outcomes.closed
    assert closed is not None and closed.pipelining_refused
    assert [pipeline.outcomes.of(i) for i in range(2)] == ["accepted", "unsent"]


def test_outcomes_release_the_transaction_ahead() -> None:
    """A long session must not keep a chain of all its transactions alive."""
    pipeline = Pipeline()
    pipeline.send(tx(0), tx(1))
    flows = [message for _, message, _ in pipeline.client._pending if message is not None]
    assert flows[-1].ahead is flows[0]
    pipeline.reply(*[250] * 6)
    assert flows[-1].ahead is None
