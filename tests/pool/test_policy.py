"""The failure policy, rule by rule, through the in-memory harness (fake clock, exact).

Set-up failures are the destination's health (nothing charged, the destination backs off);
permanent set-up failures fail the queue at once; every message has a deadline; a message's
own 4xx is retried with back-off; per-recipient 4xx are retried alone; throttling replies
slow the pool down; a server that refuses pipelining after the dot gets envelopes only.
"""

from __future__ import annotations

import io
import itertools
import logging
from pathlib import Path

import pytest
from helpers.harness import MESSAGE, FakeServer, PoolHarness

import rawsmtp
from rawsmtp.dkim import DKIMSigner

AUTH = {"auth": ("user", "secret")}


def connect_times(pool: PoolHarness) -> list[float]:
    """When each connection was accepted (its EHLO, or its drop at CONNECT)."""
    return [transport.opened_at for transport in pool.transports]


def test_refused_connections_charge_nothing_and_back_off() -> None:
    server = FakeServer()
    for number in (1, 2, 3):
        server.on("CONNECT", drop=True, connection=number)
    pool = PoolHarness(server, max_connections=4, max_retries=0, max_retry_delay=8)
    first = pool.send()
    pool.run()
    futures = [first, *(pool.send() for _ in range(3))]
    pool.run_until(lambda: all(f.done() for f in futures), limit=60)
    assert all(f.result().accepted == ("r@x.test",) for f in futures)  # max_retries=0 held
    times = connect_times(pool)[:4]  # one probe at a time while backing off
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(1.0 <= gap <= 8.0 for gap in gaps), gaps


@pytest.mark.parametrize(
    ("point", "reply"),
    [
        ("CONNECT", "421 4.3.2 not now"),
        ("EHLO", "451 4.3.0 not now"),
        ("AUTH", "454 4.7.0 temporary authentication failure"),
    ],
)
def test_temporary_setup_failures_are_retried_uncharged(point: str, reply: str) -> None:
    server = FakeServer(capabilities=("PIPELINING", "AUTH PLAIN"))
    for number in (1, 2, 3):
        server.on(point, reply=reply, connection=number)
    pool = PoolHarness(server, max_connections=2, max_retries=0, **AUTH)
    futures = [pool.send() for _ in range(5)]
    pool.run_until(lambda: all(f.done() for f in futures), limit=120)
    assert [f.result().accepted for f in futures] == [("r@x.test",)] * 5
    assert len(server.messages) == 5 and server.connections >= 4


@pytest.mark.parametrize(
    ("point", "reply", "error"),
    [
        ("CONNECT", "554 5.3.2 go away", rawsmtp.SMTPResponseError),
        ("EHLO", "550 5.7.1 not you", rawsmtp.SMTPResponseError),
        ("AUTH", "535 5.7.8 bad credentials", rawsmtp.SMTPAuthenticationError),
    ],
)
def test_permanent_setup_failures_fail_the_queue_at_once(
    point: str, reply: str, error: type[Exception]
) -> None:
    server = FakeServer(capabilities=("PIPELINING", "AUTH PLAIN"))
    server.on(point, reply=reply)
    if point == "EHLO":
        server.on("HELO", reply=reply)
    pool = PoolHarness(server, max_connections=2, **AUTH)
    futures = [pool.send() for _ in range(20)]
    started = pool.clock.now
    pool.run_until(lambda: all(f.done() for f in futures), limit=1)
    assert all(isinstance(f.exception(), error) for f in futures)
    assert pool.clock.now == started and server.connections <= 2


def test_without_a_usable_mechanism_the_queue_fails_at_once() -> None:
    server = FakeServer(capabilities=("PIPELINING", "AUTH GSSAPI"))
    pool = PoolHarness(server, **AUTH)
    futures = [pool.send() for _ in range(3)]
    pool.run_until(lambda: all(f.done() for f in futures), limit=1)
    assert all(isinstance(f.exception(), rawsmtp.SMTPAuthenticationError) for f in futures)
    assert server.connections <= 3  # those opened at once, no more


def test_the_deadline_fails_the_message_with_the_last_error_as_cause() -> None:
    server = FakeServer()
    server.on("CONNECT", drop=True)
    pool = PoolHarness(server, delivery_timeout=600)
    start = pool.clock.now
    short, default = pool.send(deadline=5), pool.send()
    pool.run_until(short.done, limit=10)
    error = short.exception()
    assert isinstance(error, rawsmtp.SMTPTimeoutError) and error.phase == "queue"
    assert isinstance(error.__cause__, rawsmtp.SMTPConnectionError)
    assert pool.clock.now - start == pytest.approx(5)
    assert not default.done()
    pool.run_until(default.done, limit=700)
    assert pool.clock.now - start == pytest.approx(600)
    assert server.connections <= 600 / 1 and server.messages == []


@pytest.mark.parametrize("point", ["MAIL", "DATA", "DATA_END"])
def test_a_4xx_to_one_message_is_retried_with_backoff(point: str) -> None:
    server = FakeServer()
    server.on(point, reply="451 4.3.0 try again", nth=1)
    pool = PoolHarness(server, max_connections=1)
    failing, other = pool.send(), pool.send()
    pool.run_until(lambda: failing.done() and other.done(), limit=60)
    assert failing.result().accepted == other.result().accepted == ("r@x.test",)
    mails = [at for _, _, at in server.verbs("MAIL")]
    assert len(mails) == 3 and mails[-1] - mails[0] >= 1.0  # retry_delay
    assert server.connections == 1  # the connection stays


def test_a_lost_final_reply_is_never_resent() -> None:
    server = FakeServer()
    server.on("DATA_END", drop=True, nth=1)
    pool = PoolHarness(server, max_connections=1)
    future, after = pool.send(), pool.send()
    pool.run_until(lambda: future.done() and after.done(), limit=60)
    assert isinstance(future.exception(), rawsmtp.SMTPDeliveryUnknownError)
    assert after.result().accepted == ("r@x.test",)
    assert len(server.verbs("DATA")) == 2  # the unknown one once, the other once


def test_deferred_recipients_are_retried_alone_and_reached_once() -> None:
    server = FakeServer()
    server.on("RCPT", reply="450 4.2.1 mailbox busy", nth=2)  # b@ on the first try
    pool = PoolHarness(server, max_connections=1)
    envelope = {"from": "s@x.test", "to": ["a@x.test", "b@x.test", "c@x.test"]}
    future = pool.send(MESSAGE, envelope)
    pool.run_until(future.done, limit=60)
    result = future.result()
    assert sorted(result.accepted) == ["a@x.test", "b@x.test", "c@x.test"]
    assert result.rejected == () and result.deferred == ("b@x.test",)
    assert [m.rcpt_to for m in server.messages] == [("a@x.test", "c@x.test"), ("b@x.test",)]
    assert server.messages[0].data == server.messages[1].data  # the same message bytes


def test_a_recipient_deferred_until_out_of_retries_ends_rejected() -> None:
    server = FakeServer()
    server.on("RCPT", reply="550 5.1.1 unknown", nth=1)
    server.on("RCPT", reply="450 4.2.1 busy")  # every later one: b@ is deferred each time
    pool = PoolHarness(server, max_connections=1, max_retries=2)
    future = pool.send(MESSAGE, {"from": "s@x.test", "to": ["a@x.test", "b@x.test"]})
    pool.run_until(future.done, limit=120)
    error = future.exception()
    assert isinstance(error, rawsmtp.SMTPRecipientsRefusedError)
    assert {address: e.code for address, e in error.rejected.items()} == {
        "a@x.test": 550,
        "b@x.test": 450,
    }
    assert len(server.verbs("MAIL")) == 3  # first try + 2 retries of b@ alone


@pytest.mark.parametrize(
    "reply",
    [
        "421 4.7.0 Try again later, closing connection",
        "451 4.7.1 too many messages, slow down",
        "454 4.7.0 Too many login attempts",
        "454 Throttling failure: Maximum sending rate exceeded",
        "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded",
        "421 4.3.2 System too busy",
        "421-4.7.28 Gmail has detected an unusual rate\n421 4.7.28 of unsolicited mail",
    ],
)
def test_throttling_lowers_concurrency_and_charges_nothing(
    reply: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = FakeServer()
    server.on("MAIL", reply=reply, nth=3)
    pool = PoolHarness(server, max_connections=4, max_retries=0)
    futures = [pool.send() for _ in range(12)]
    with caplog.at_level(logging.WARNING, logger="rawsmtp"):
        pool.run_until(lambda: all(f.done() for f in futures), limit=60)
    assert all(f.result().accepted == ("r@x.test",) for f in futures)  # max_retries=0 held
    assert pool.engine.scheduler.effective_connections == 2
    assert [r.levelname for r in caplog.records if "throttled" in r.message] == ["WARNING"]


def test_throttle_replies_extend_the_defaults() -> None:
    server = FakeServer()
    server.on("MAIL", reply="450 4.2.0 come back in a minute", nth=1)
    pool = PoolHarness(server, max_connections=4, throttle_replies=["COME BACK"])
    futures = [pool.send() for _ in range(4)]
    pool.run_until(lambda: all(f.done() for f in futures), limit=60)
    assert pool.engine.scheduler.effective_connections == 2
    assert all(f.result() for f in futures)


def test_a_session_ending_before_its_first_message_backs_off() -> None:
    """EHLO's reply and a 421 in one segment: each session is set up and gone at once."""
    server = FakeServer()
    server.on("EHLO", then="421 4.3.2 shutting down")
    pool = PoolHarness(server, max_connections=4, max_retry_delay=2)
    future = pool.send(deadline=5)
    pool.run_until(future.done, limit=10)
    assert isinstance(future.exception(), rawsmtp.SMTPTimeoutError)
    assert server.connections <= 6  # about one per back-off step, not thousands


def test_a_server_refusing_commands_after_the_dot_gets_envelopes_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = FakeServer(refuses_after_dot=True)
    pool = PoolHarness(server, max_connections=2, max_retries=0)
    futures = [pool.send() for _ in range(30)]
    with caplog.at_level(logging.WARNING, logger="rawsmtp"):
        pool.run_until(lambda: all(f.done() for f in futures), limit=60)
    assert all(f.result().accepted == ("r@x.test",) for f in futures)
    assert len(server.messages) == 30
    assert pool.engine.settings.pipelining == "envelope"
    assert sum("pipelining envelopes only" in r.message for r in caplog.records) == 1


def test_the_pipelining_option_reaches_the_core() -> None:
    server = FakeServer()
    pool = PoolHarness(server, pipelining="off", max_connections=1)
    futures = [pool.send() for _ in range(3)]
    pool.run_until(lambda: all(f.done() for f in futures), limit=10)
    (transport,) = pool.transports
    assert transport.user.core.window == 1 and transport.user.core.pipelining == "off"


def test_a_utf8_domain_goes_as_a_labels_to_a_server_without_smtputf8() -> None:
    server = FakeServer(capabilities=("PIPELINING", "8BITMIME"))
    pool = PoolHarness(server)
    future = pool.send(MESSAGE, {"from": "s@bücher.test", "to": "r@x.test"})
    local = pool.send(MESSAGE, {"from": "s@x.test", "to": "jürgen@x.test"})
    pool.run_until(lambda: future.done() and local.done(), limit=10)
    assert future.result().accepted == ("r@x.test",)
    assert server.messages[0].mail_from == "s@xn--bcher-kva.test"
    assert isinstance(local.exception(), rawsmtp.SMTPCapabilityError)  # no ASCII form


class _Failing(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: object) -> int:
        raise OSError("disk gone")


def test_a_source_that_fails_while_read_fails_the_future() -> None:
    pool = PoolHarness(FakeServer())
    future = pool.send(_Failing(), {"from": "s@x.test", "to": "r@x.test"})
    assert isinstance(future.exception(timeout=0), rawsmtp.SMTPConnectionError)
    with pytest.raises(rawsmtp.LocalProtocolError):
        pool.send(b"x", {"from": "a@x.test", "to": "b@x.test, c@x.test"})


KEY = (Path(__file__).parent.parent / "dkim" / "keys" / "ed25519.pem").read_text()
SIGNER = DKIMSigner("x.test", "ed", KEY)


def test_send_dkim_overrides_the_pool_option() -> None:
    server = FakeServer()
    pool = PoolHarness(server, dkim=SIGNER)
    futures = [pool.send(), pool.send(dkim=None), pool.send(dkim=[SIGNER, SIGNER])]
    pool.run_until(lambda: all(f.done() for f in futures), limit=10)
    counts = [m.data.count(b"DKIM-Signature:") for m in server.messages]
    assert counts == [1, 0, 2]
    plain = PoolHarness(FakeServer())
    signed = plain.send(dkim={"domain": "x.test", "selector": "ed", "private_key": KEY})
    plain.run_until(signed.done, limit=10)
    assert plain.server.messages[0].data.startswith(b"DKIM-Signature:")


def test_the_new_options_are_checked() -> None:
    from rawsmtp.config._options import make_options

    options = make_options(
        pipelining="envelope",
        retry_delay=0.5,
        max_retry_delay=5,
        delivery_timeout=None,
        throttle_replies="slow down",
        chunking_window=2,
        chunking_window_bytes=4096,
    )
    assert (options.pipelining, options.delivery_timeout, options.throttle_replies) == (
        "envelope",
        None,
        ("slow down",),
    )
    for bad in (
        {"pipelining": "on"},
        {"retry_delay": 0},
        {"throttle_replies": [3]},
        {"chunking_window": 0},
    ):
        with pytest.raises(rawsmtp.SMTPConfigError) as info:
            make_options(**bad)
        assert info.value.option == next(iter(bad))
