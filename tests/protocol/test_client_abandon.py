"""ClientConnection.abandon(): a transaction given up before its end, in every state it can be."""

from __future__ import annotations

import pytest
from test_client import EHLO_PIPELINING, Session, tx

from rawsmtp.protocol import (
    ConnectionClosed,
    LocalProtocolError,
    MessageAccepted,
    MessageFailed,
    SendBody,
    State,
)

EHLO_PLAIN = b"250-mx.test\r\n250 8BITMIME\r\n"
EHLO_CHUNKING = b"250-mx.test\r\n250-PIPELINING\r\n250 CHUNKING\r\n"
ENVELOPE = b"MAIL FROM:<from@test>\r\nRCPT TO:<to@test>\r\n"


def _abandoned(event: object, transaction: object) -> bool:
    return (
        isinstance(event, MessageFailed)
        and event.transaction is transaction
        and type(event.error) is LocalProtocolError
        and "abandoned" in str(event.error)
    )


def test_a_queued_transaction_is_dropped_unwritten_and_reported_at_once() -> None:
    session = Session()
    message = tx()
    session.client.send_mail(message)  # before the greeting: queued
    assert session.client.abandon(message)
    [failed] = session.events()
    assert _abandoned(failed, message)
    session.ready()
    session.client.quit()
    assert session.sent() == b"QUIT\r\n"
    assert session.client.transactions_in_progress == 0


def test_pipelined_data_awaiting_its_354_closes_the_connection_at_the_354() -> None:
    session = Session()
    session.ready()
    message, behind = tx(), tx("b@test")
    session.client.send_mail(message)
    assert session.sent() == ENVELOPE + b"DATA\r\n"
    session.client.send_mail(behind)
    assert session.client.abandon(message) and session.client.abandon(message)
    assert session.events() == []  # reported when the server is done with it
    events = session.server(b"250 ok\r\n250 ok\r\n354 go\r\n")
    assert session.sent() == b""  # no body, no dot
    assert _abandoned(events[0], message)
    closed = events[1]
    assert isinstance(closed, ConnectionClosed) and closed.unsent == (behind,)
    assert closed.unconfirmed == () and type(closed.error) is LocalProtocolError
    assert session.client.state is State.CLOSED and len(events) == 2


def test_pipelined_data_refused_costs_an_rset_and_the_session_goes_on() -> None:
    session = Session()
    session.ready()
    message, behind = tx(), tx("b@test")
    session.client.send_mail(message)
    session.sent()
    session.client.send_mail(behind)
    session.client.abandon(message)
    assert session.server(b"250 ok\r\n550 no\r\n554 no valid recipients\r\n") == []
    assert session.sent() == (b"RSET\r\nMAIL FROM:<from@test>\r\nRCPT TO:<b@test>\r\nDATA\r\n")
    [failed] = session.server(b"250 reset\r\n")
    assert _abandoned(failed, message)
    session.server(b"250 ok\r\n250 ok\r\n354 go\r\n")
    session.body(behind, b"x")
    assert session.sent() == b"x\r\n.\r\n"
    [accepted] = session.server(b"250 ok\r\n")
    assert isinstance(accepted, MessageAccepted) and accepted.transaction is behind


def test_without_pipelining_the_rest_of_the_envelope_is_not_written_and_rset_waits() -> None:
    session = Session()
    session.ready(EHLO_PLAIN)
    message = tx("a@test", "b@test")
    session.client.send_mail(message)
    assert session.sent() == b"MAIL FROM:<from@test>\r\n"
    assert session.client.abandon(message)
    assert session.sent() == b""  # one command per reply: the RSET waits for the MAIL's
    assert session.server(b"250 ok\r\n") == []
    assert session.sent() == b"RSET\r\n"
    session.client.quit()
    assert session.sent() == b""  # without pipelining, QUIT waits for the RSET's reply
    [failed] = session.server(b"250 reset\r\n")
    assert _abandoned(failed, message)
    assert session.sent() == b"QUIT\r\n"


def test_inside_data_the_connection_is_closed_without_the_dot() -> None:
    session = Session()
    session.ready()
    message = tx()
    session.client.send_mail(message)
    session.sent()
    [body] = session.server(b"250 ok\r\n250 ok\r\n354 go\r\n")
    assert isinstance(body, SendBody)
    session.client.send_body(b"half a message\r\n")
    assert session.client.abandon(message)
    events = session.events()
    assert _abandoned(events[0], message) and isinstance(events[1], ConnectionClosed)
    assert session.client.data_to_send(0.0) in (b"", b"half a message\r\n")  # never a dot
    with pytest.raises(LocalProtocolError):
        session.client.end_body()


def test_bdat_chunks_stop_before_the_last_and_an_rset_clears_them() -> None:
    session = Session(bdat_chunk_size=1)  # each send_body() its own chunk
    session.ready(EHLO_CHUNKING)
    message, behind = tx(), tx("b@test")
    session.client.send_mail(message)
    [body] = session.events()
    assert isinstance(body, SendBody)
    session.client.send_body(b"x" * 10)
    session.client.send_body(b"y" * 5)  # the first chunk goes once the next one came
    assert session.sent() == ENVELOPE + b"BDAT 10\r\n" + b"x" * 10
    session.client.send_mail(behind)
    assert session.client.abandon(message)
    assert session.sent() == b"RSET\r\nMAIL FROM:<from@test>\r\nRCPT TO:<b@test>\r\n"
    [next_body] = session.events()  # no BDAT LAST for the abandoned one: the next goes on
    assert isinstance(next_body, SendBody) and next_body.transaction is behind
    events = session.server(b"250 ok\r\n250 ok\r\n250 10 octets\r\n250 reset\r\n")
    assert len(events) == 1 and _abandoned(events[0], message)


def test_bdat_abandoned_after_its_envelope_was_answered_still_costs_an_rset() -> None:
    # No chunk out yet and every reply in: the server still holds the MAIL it accepted, and a
    # next MAIL without an RSET would be refused as nested.
    session = Session()
    session.ready(EHLO_CHUNKING)
    message, behind = tx(), tx("b@test")
    session.client.send_mail(message)
    [body] = session.events()
    assert isinstance(body, SendBody)
    session.client.send_body(b"short")  # held by the encoder until the LAST
    assert session.sent() == ENVELOPE
    assert session.server(b"250 ok\r\n250 ok\r\n") == []
    assert session.client.abandon(message)
    session.client.send_mail(behind)
    assert session.sent() == b"RSET\r\nMAIL FROM:<from@test>\r\nRCPT TO:<b@test>\r\n"
    [next_body] = session.events()
    assert isinstance(next_body, SendBody) and next_body.transaction is behind
    [failed] = session.server(b"250 reset\r\n")
    assert _abandoned(failed, message)


def test_after_the_end_it_is_too_late_and_the_outcome_comes_as_usual() -> None:
    session = Session()
    session.ready(EHLO_PIPELINING)
    message = tx()
    session.client.send_mail(message)
    session.sent()
    session.server(b"250 ok\r\n250 ok\r\n354 go\r\n")
    session.body(message, b"x")
    assert not session.client.abandon(message)
    assert not session.client.abandon(tx())  # never handed over
    [accepted] = session.server(b"250 ok\r\n")
    assert isinstance(accepted, MessageAccepted)
    assert not session.client.abandon(message)  # and after its outcome


def test_a_close_reports_an_abandoned_transaction_once_as_failed_never_unsent() -> None:
    session = Session()
    session.ready(EHLO_PLAIN)
    message = tx()
    session.client.send_mail(message)
    session.sent()
    session.client.abandon(message)
    events = session.server(b"421 bye\r\n")
    assert _abandoned(events[0], message)
    closed = events[1]
    assert isinstance(closed, ConnectionClosed) and closed.unsent == () == closed.unconfirmed
