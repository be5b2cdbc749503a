"""Pool behaviour through the in-memory harness (tests/helpers/harness.py): the real engine,
scheduler, sessions and core over a scripted server and a fake clock; exact and instant."""

from __future__ import annotations

import re

import pytest
from helpers.harness import FakeServer, PoolHarness

import rawsmtp


def test_a_drop_before_the_dot_is_retried_on_a_new_connection() -> None:
    server = FakeServer()
    server.on("DATA", drop=True, nth=1)  # instead of the 354: no body sent
    pool = PoolHarness(server, max_connections=1)
    future = pool.send()
    pool.run_until(future.done, limit=60)
    assert future.result().accepted == ("r@x.test",)
    assert server.connections == 2
    assert [m.connection for m in server.messages] == [2]  # delivered once, by the second
    assert len(server.verbs("MAIL")) == 2


def test_a_4xx_to_the_dot_is_not_retried_past_max_retries() -> None:
    server = FakeServer()
    server.on("DATA_END", reply="451 4.3.0 try later")
    pool = PoolHarness(server, max_connections=1, max_retries=2)
    future = pool.send()
    pool.run_until(future.done, limit=600)
    error = future.exception()
    assert isinstance(error, rawsmtp.SMTPResponseError) and error.code == 451
    assert server.connections == 1 and len(server.verbs("MAIL")) == 3  # first try + 2 retries


def test_a_drop_on_every_first_message_is_bounded_by_the_deadline() -> None:
    """Sessions that end before carrying a message are the destination's health: nothing is
    charged, the destination backs off, and the deadline bounds the message."""
    server = FakeServer()
    server.on("DATA", drop=True)
    pool = PoolHarness(server, max_connections=1, delivery_timeout=60, max_retry_delay=8)
    future = pool.send()
    pool.run_until(future.done, limit=600)
    error = future.exception()
    assert isinstance(error, rawsmtp.SMTPTimeoutError) and error.phase == "queue"
    assert isinstance(error.__cause__, rawsmtp.SMTPDisconnectedError)
    assert 5 <= server.connections <= 60 and server.messages == []


def test_connections_are_recycled_after_max_messages() -> None:
    server = FakeServer()
    pool = PoolHarness(server, max_connections=1, max_messages=2)
    futures = [pool.send() for _ in range(5)]
    pool.run_until(lambda: all(f.done() for f in futures))
    assert all(f.result().accepted == ("r@x.test",) for f in futures)
    assert [m.connection for m in server.messages] == [1, 1, 2, 2, 3]
    assert [c for c, _, _ in server.verbs("QUIT")] == [1, 2]  # the third is still open
    pool.close()
    pool.run()
    assert [c for c, _, _ in server.verbs("QUIT")] == [1, 2, 3]


def test_idle_timeout_retires_the_connection_politely() -> None:
    server = FakeServer()
    pool = PoolHarness(server, idle_timeout=30)
    pool.send()
    pool.run()
    assert repr(pool) == "<PoolHarness queued=0 | 1 ready, 0 opening>"
    pool.advance(29.9)
    assert server.verbs("QUIT") == []
    started = pool.clock.now
    pool.advance(0.2)
    assert [(c, at) for c, _, at in server.verbs("QUIT")] == [(1, started + 0.1)]
    assert repr(pool) == "<PoolHarness queued=0 | 0 ready, 0 opening>"


def test_the_rate_limit_spaces_message_starts_exactly() -> None:
    server = FakeServer()
    pool = PoolHarness(server, max_connections=2, rate_limit=2, rate_delta=10.0)
    start = pool.clock.now
    futures = [pool.send() for _ in range(5)]
    pool.run()
    assert repr(pool) == "<PoolHarness queued=3 | 2 ready, 0 opening>"
    pool.run_until(lambda: all(f.done() for f in futures))
    starts = [at - start for _, _, at in server.verbs("MAIL")]
    assert starts == [0.0, 0.0, 10.0, 10.0, 20.0]


def test_a_5xx_for_one_message_costs_one_rset_and_no_connection() -> None:
    server = FakeServer()
    server.on("RCPT", reply="550 5.1.1 no such user", nth=2)
    pool = PoolHarness(server, max_connections=1)
    futures = [pool.send() for _ in range(3)]
    pool.run_until(lambda: all(f.done() for f in futures))
    error = futures[1].exception()
    assert isinstance(error, rawsmtp.SMTPRecipientsRefusedError), error
    assert futures[0].result() and futures[2].result()
    assert len(server.verbs("RSET")) == 1
    assert server.connections == 1 and len(server.messages) == 2


def test_a_5xx_greeting_fails_the_queue_at_once() -> None:
    server = FakeServer()
    server.on("CONNECT", reply="554 5.3.2 go away")
    pool = PoolHarness(server, max_connections=1)
    futures = [pool.send() for _ in range(3)]
    pool.run_until(lambda: all(f.done() for f in futures), limit=5)
    assert all(isinstance(f.exception(), rawsmtp.SMTPResponseError) for f in futures)
    assert server.connections == 1


@pytest.mark.parametrize("count", [1, 7])
def test_close_quits_every_connection_and_fails_nothing_sent(count: int) -> None:
    server = FakeServer()
    pool = PoolHarness(server, max_connections=3)
    futures = [pool.send() for _ in range(count)]
    pool.run()
    pool.close()
    pool.run()
    assert all(f.result().accepted == ("r@x.test",) for f in futures)
    assert len(server.verbs("QUIT")) == server.connections == min(count, 3)
    assert repr(pool) == "<PoolHarness queued=0 | 0 ready, 0 opening, closed>"


def test_session_repr_follows_its_life() -> None:
    server = FakeServer()
    pool = PoolHarness(server, max_connections=1)
    future = pool.send()
    pool.engine.decide(pool.clock.now)
    (session,) = pool.engine.sessions
    assert re.fullmatch(r"<Session #\d+ opening \(connecting\)>", repr(session))
    pool.run()
    assert future.done() and re.fullmatch(r"<Session #\d+ idle>", repr(session))
    assert repr(pool) == "<PoolHarness queued=0 | 1 ready, 0 opening>"
    pool.close()
    pool.run()
    assert re.fullmatch(r"<Session #\d+ closed>", repr(session))
