"""What a driver relies on: quit() and authenticate() up front, the clock contract, BDAT bodies.

Each scripted session is played with the server's bytes of a round fed whole and a byte at a
time: the client must write and report the same either way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest

from rawsmtp.protocol import (
    NEED_DATA,
    Authenticated,
    AuthenticationFailed,
    ClientConfig,
    ClientConnection,
    ConnectionClosed,
    Event,
    Greeting,
    MessageAccepted,
    MessageFailed,
    Ready,
    SendBody,
    SMTPResponseError,
    Transaction,
)
from tests.protocol.test_client import FakeMechanism

EHLO_CHUNKING = b"250-mx.test\r\n250-PIPELINING\r\n250 CHUNKING\r\n"
SPLITS = ["whole", "bytewise"]


class Driver:
    """Feeds the server's rounds, answers SendBody with the body in the tag, records it all."""

    def __init__(self, split: str = "whole", pieces: int = 1, **config: object) -> None:
        config.setdefault("starttls", "never")
        self.client: ClientConnection[bytes] = ClientConnection(
            ClientConfig(local_hostname="client.test", **config),  # type: ignore[arg-type]
            now=0.0,
        )
        self.split, self.pieces = split, pieces
        self.events: list[Event[bytes]] = []

    def round(self, data: bytes) -> bytes:
        """The server's bytes (fed whole or a byte at a time); what the client wrote then."""
        pieces = [data] if self.split == "whole" else [data[i : i + 1] for i in range(len(data))]
        for piece in pieces:
            self.client.receive_data(piece, 0.0)
            self.drain()
        return self.client.data_to_send(0.0)

    def drain(self) -> None:
        while (event := self.client.next_event()) is not NEED_DATA:
            self.events.append(event)
            if isinstance(event, SendBody):
                body = event.transaction.tag  # typed: ClientConnection[bytes]
                step = -(-len(body) // self.pieces)
                for start in range(0, len(body), step):
                    self.client.send_body(body[start : start + step])
                self.client.end_body()

    def kinds(self) -> list[str]:
        return [type(event).__name__ for event in self.events]


def mail(body: bytes = b"hello\r\n", *recipients: str) -> Transaction[bytes]:
    return Transaction(mail_from="from@test", recipients=recipients or ("to@test",), tag=body)


# -- quit() ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("split", SPLITS)
def test_a_batch_and_quit_queued_before_the_greeting_all_go_then_quit(split: str) -> None:
    driver = Driver(split)
    first, second = mail(b"one\r\n"), mail(b"two\r\n")
    driver.client.send_mail(first)
    driver.client.send_mail(second)
    driver.client.quit()
    assert driver.events == [] and driver.client.data_to_send(0.0) == b""
    assert driver.round(b"220 mx.test\r\n") == b"EHLO client.test\r\n"
    # Both pipelined after the EHLO reply, QUIT right behind the last BDAT.
    assert driver.round(EHLO_CHUNKING) == (
        b"MAIL FROM:<from@test>\r\nRCPT TO:<to@test>\r\nBDAT 5 LAST\r\none\r\n"
        b"MAIL FROM:<from@test>\r\nRCPT TO:<to@test>\r\nBDAT 5 LAST\r\ntwo\r\nQUIT\r\n"
    )
    driver.round(b"250 ok\r\n250 ok\r\n250 one\r\n250 ok\r\n250 ok\r\n250 two\r\n221 bye\r\n")
    assert driver.kinds() == [
        "Greeting",
        "Ready",
        "SendBody",
        "SendBody",
        "MessageAccepted",
        "MessageAccepted",
        "ConnectionClosed",
    ]
    assert driver.events[-1] == ConnectionClosed(error=None)


def test_quit_before_a_refused_greeting_reports_the_queued_batch_unsent() -> None:
    driver = Driver()
    batch = (mail(), mail())
    for transaction in batch:
        driver.client.send_mail(transaction)
    driver.client.quit()
    driver.round(b"554 no service\r\n")
    [closed] = driver.events
    assert isinstance(closed, ConnectionClosed) and closed.unsent == batch
    assert isinstance(closed.error, SMTPResponseError) and closed.error.code == 554


def test_quit_before_the_greeting_with_nothing_asked_for_ends_at_once() -> None:
    driver = Driver()
    driver.client.quit()
    driver.drain()
    assert driver.events == [ConnectionClosed(error=None)]
    assert driver.client.data_to_send(0.0) == b""


# -- authenticate() -------------------------------------------------------------------------------


@pytest.mark.parametrize("split", SPLITS)
def test_auth_asked_for_up_front_goes_first_and_the_batch_waits_for_235(split: str) -> None:
    driver = Driver(split)
    mechanism = FakeMechanism()
    driver.client.authenticate(mechanism)
    message = mail()
    driver.client.send_mail(message)
    driver.client.quit()
    driver.round(b"220 mx.test\r\n")
    assert driver.round(EHLO_CHUNKING) == b"AUTH PLAIN AHVzZXIAc2VjcmV0\r\n"  # AUTH alone
    assert driver.round(b"235 ok\r\n") == (
        b"MAIL FROM:<from@test>\r\nRCPT TO:<to@test>\r\nBDAT 7 LAST\r\nhello\r\nQUIT\r\n"
    )
    driver.round(b"250 ok\r\n250 ok\r\n250 queued\r\n221 bye\r\n")
    assert driver.kinds() == [
        "Greeting",
        "Ready",
        "Authenticated",
        "SendBody",
        "MessageAccepted",
        "ConnectionClosed",
    ]
    assert mechanism.completed


@pytest.mark.parametrize("split", SPLITS)
def test_after_a_failed_auth_the_held_batch_is_unsent_and_quit_goes_at_once(split: str) -> None:
    driver = Driver(split)
    driver.client.authenticate(FakeMechanism())
    batch = (mail(), mail())
    for transaction in batch:
        driver.client.send_mail(transaction)
    driver.client.quit()
    driver.round(b"220 mx.test\r\n")
    driver.round(EHLO_CHUNKING)
    assert driver.round(b"535 5.7.8 bad credentials\r\n") == b"QUIT\r\n"  # never a MAIL
    driver.round(b"221 bye\r\n")
    failed, closed = driver.events[-2:]
    assert isinstance(failed, AuthenticationFailed) and failed.error.code == 535
    assert closed == ConnectionClosed(error=None, unsent=batch)


def test_held_transactions_go_after_a_second_attempt_succeeds() -> None:
    driver = Driver()
    driver.client.authenticate(FakeMechanism())
    message = mail()
    driver.client.send_mail(message)
    driver.round(b"220 mx.test\r\n")
    driver.round(EHLO_CHUNKING)
    assert driver.round(b"535 no\r\n") == b""  # held: no quit() asked for, nothing goes
    driver.client.authenticate(FakeMechanism())
    assert driver.client.data_to_send(0.0).startswith(b"AUTH PLAIN ")
    assert driver.round(b"235 ok\r\n").startswith(b"MAIL FROM:<from@test>")
    assert [type(e) for e in driver.events[-3:]] == [AuthenticationFailed, Authenticated, SendBody]


def test_auth_asked_for_mid_session_waits_for_the_transaction_in_flight() -> None:
    driver = Driver()
    driver.round(b"220 mx.test\r\n")
    driver.round(EHLO_CHUNKING)
    first, second = mail(), mail()
    driver.client.send_mail(first)
    driver.client.authenticate(FakeMechanism())
    driver.client.send_mail(second)
    driver.drain()
    assert driver.client.data_to_send(0.0).count(b"MAIL FROM") == 1  # the second waits
    assert driver.round(b"250 ok\r\n250 ok\r\n") == b""
    assert driver.round(b"250 queued\r\n").startswith(b"AUTH PLAIN ")
    assert driver.round(b"235 ok\r\n").startswith(b"MAIL FROM:<from@test>")


def test_authenticate_checks_the_mechanism_name_when_called() -> None:
    driver = Driver()
    bad = FakeMechanism()
    bad.name = "NOT VALID"  # type: ignore[misc]
    with pytest.raises(ValueError, match="invalid SASL mechanism"):
        driver.client.authenticate(bad)


# -- the clock ------------------------------------------------------------------------------------


def test_now_is_required_and_the_greeting_clock_starts_at_construction() -> None:
    config = ClientConfig(local_hostname="client.test", greeting_timeout=5.0)
    with pytest.raises(TypeError):
        ClientConnection(config)  # type: ignore[call-arg]
    client = ClientConnection(config, now=100.0)
    assert client.get_timer() == 105.0
    with pytest.raises(TypeError):
        client.receive_data(b"220 hi\r\n")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        client.data_to_send()  # type: ignore[call-arg]


def test_any_monotonic_clock_works_even_one_far_from_zero() -> None:
    config = ClientConfig(local_hostname="client.test", starttls="never", command_timeout=2.0)
    client = ClientConnection(config, now=-50.0)  # trio.current_time() may be anything
    client.receive_data(b"220 hi\r\n", -49.0)
    client.data_to_send(-48.0)
    assert client.get_timer() == -46.0
    client.handle_timer(-46.5)
    assert client.next_event() is not NEED_DATA  # the Greeting
    assert client.next_event() is NEED_DATA
    client.handle_timer(-46.0)
    [closed] = list(iter(client.next_event, NEED_DATA))
    assert isinstance(closed, ConnectionClosed) and closed.error is not None
    assert closed.error.command == "EHLO"  # type: ignore[attr-defined]


# -- bodies ---------------------------------------------------------------------------------------


def test_many_small_send_body_calls_make_few_bdat_chunks() -> None:
    driver = Driver(pieces=200)
    driver.round(b"220 mx.test\r\n")
    driver.round(EHLO_CHUNKING)
    driver.client.send_mail(mail(b"x" * 199_998 + b"\r\n"))
    driver.drain()
    sent = driver.client.data_to_send(0.0)
    sizes = [int(size) for size in re.findall(rb"BDAT (\d+)", sent)]
    assert sum(sizes) == 200_000 and len(sizes) == 4  # 200 calls of 1,000 bytes
    assert all(size >= 65_536 for size in sizes[:-1])
    assert sent.count(b" LAST\r\n") == 1


@pytest.mark.parametrize(
    ("ehlo", "mode"),
    [(b"250-mx.test\r\n250 CHUNKING\r\n", "full"), (EHLO_CHUNKING, "off")],
)
@pytest.mark.parametrize("split", SPLITS)
def test_without_pipelining_each_bdat_waits_for_the_reply_before_it(
    ehlo: bytes, mode: str, split: str
) -> None:
    driver = Driver(split, pieces=3, bdat_chunk_size=1, pipelining=mode)
    driver.round(b"220 mx.test\r\n")
    driver.round(ehlo)
    driver.client.send_mail(mail(b"aa\r\nbb\r\ncc\r\n"))
    driver.client.quit()
    assert driver.client.data_to_send(0.0) == b"MAIL FROM:<from@test>\r\n"
    assert driver.round(b"250 ok\r\n") == b"RCPT TO:<to@test>\r\n"
    assert driver.round(b"250 ok\r\n") == b"BDAT 4\r\naa\r\n"  # the rest is held
    assert driver.round(b"250 ok\r\n") == b"BDAT 4\r\nbb\r\n"
    assert driver.round(b"250 ok\r\n") == b"BDAT 4 LAST\r\ncc\r\n"
    assert driver.round(b"250 queued\r\n") == b"QUIT\r\n"
    assert isinstance(driver.events[-1], MessageAccepted)


def test_without_pipelining_a_refused_chunk_drops_the_held_rest() -> None:
    driver = Driver(pieces=3, bdat_chunk_size=1)
    driver.round(b"220 mx.test\r\n")
    driver.round(b"250-mx.test\r\n250 CHUNKING\r\n")
    message, after = mail(b"aa\r\nbb\r\ncc\r\n"), mail()
    driver.client.send_mail(message)
    driver.client.send_mail(after)
    driver.client.data_to_send(0.0)
    driver.round(b"250 ok\r\n")
    assert driver.round(b"250 ok\r\n") == b"BDAT 4\r\naa\r\n"
    assert driver.round(b"552 5.3.4 too big\r\n") == b"RSET\r\n"  # no further segment
    [failed] = [e for e in driver.events if isinstance(e, MessageFailed)]
    assert failed.transaction is message and failed.error.code == 552  # type: ignore[attr-defined]
    assert driver.round(b"250 reset\r\n") == b"MAIL FROM:<from@test>\r\n"


@pytest.mark.parametrize("split", SPLITS)
def test_pipelined_a_refused_chunk_stops_the_body_mid_stream(split: str) -> None:
    driver = Driver(split, bdat_chunk_size=1)
    driver.round(b"220 mx.test\r\n")
    driver.round(EHLO_CHUNKING)
    message, after = mail(), mail(b"next\r\n")
    driver.client.send_mail(message)
    driver.client.send_mail(after)
    [body] = [e for e in iter(driver.client.next_event, NEED_DATA)]
    assert isinstance(body, SendBody)
    client = driver.client
    client.send_body(b"first\r\n")
    client.send_body(b"second\r\n")
    assert client.data_to_send(0.0).endswith(b"BDAT 7\r\nfirst\r\n")
    assert driver.round(b"250 ok\r\n250 ok\r\n554 5.6.0 bad content\r\n") == b""
    client.send_body(b"third\r\n")  # taken and dropped: the driver may finish its loop
    client.end_body()
    driver.drain()
    # No BDAT LAST for a refused body; RSET before the next MAIL (RFC 3030).
    assert client.data_to_send(0.0) == (
        b"RSET\r\nMAIL FROM:<from@test>\r\nRCPT TO:<to@test>\r\nBDAT 6 LAST\r\nnext\r\n"
    )
    failed = driver.events[-2]
    assert isinstance(failed, MessageFailed) and failed.transaction is message


def test_a_refused_chunk_with_more_chunks_in_flight_is_reported_after_their_replies() -> None:
    driver = Driver(bdat_chunk_size=1)
    driver.round(b"220 mx.test\r\n")
    driver.round(EHLO_CHUNKING)
    message = mail()
    driver.client.send_mail(message)
    driver.client.quit()
    list(iter(driver.client.next_event, NEED_DATA))
    for piece in (b"a\r\n", b"b\r\n", b"c\r\n"):
        driver.client.send_body(piece)
    driver.client.data_to_send(0.0)  # MAIL, RCPT, BDAT a, BDAT b
    assert driver.round(b"250 ok\r\n250 ok\r\n554 no\r\n") == b""
    driver.client.end_body()
    driver.drain()
    assert not [e for e in driver.events if isinstance(e, MessageFailed)]  # b's reply is due
    assert driver.round(b"554 no\r\n") == b"RSET\r\nQUIT\r\n"
    failed = driver.events[-1]
    assert isinstance(failed, MessageFailed) and failed.transaction is message


def test_a_typed_tag_carries_the_body() -> None:
    transactions: Sequence[Transaction[bytes]] = [mail(b"typed\r\n")]
    driver = Driver()
    driver.client.send_mail(transactions[0])
    driver.client.quit()
    driver.round(b"220 mx.test\r\n")
    assert driver.round(EHLO_CHUNKING).endswith(b"BDAT 7 LAST\r\ntyped\r\nQUIT\r\n")
    assert isinstance(driver.events[1], Ready) and isinstance(driver.events[0], Greeting)
