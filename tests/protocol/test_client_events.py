"""The client's events checked three ways, as h11 checks its readers (tests/test_io.py ``tr``).

Each case's server bytes are fed whole, then one byte at a time (no event may come before the
last byte), then followed by the start of another reply, which must change nothing and be kept
intact: the server's close then reports it as its last words.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from rawsmtp.protocol import (
    ConnectionClosed,
    Event,
    Greeting,
    MessageAccepted,
    MessageFailed,
    Ready,
    SendBody,
    SMTPDisconnectedError,
    SMTPResponseError,
)
from tests.protocol.test_client import Session, tx

EHLO = b"250-mx.test\r\n250-PIPELINING\r\n250 SIZE 1000\r\n"


def fresh() -> Session:
    return Session()


def envelope_sent(**config: object) -> Session:
    session = Session(**config)
    session.server(b"220 mx.test\r\n")
    session.sent()  # EHLO or LHLO
    assert kinds(session.server(EHLO)) == [Ready]
    session.client.send_mail(tx("a@test", "b@test"))
    session.sent()
    return session


def body_sent(**config: object) -> Session:
    session = envelope_sent(**config)
    session.server(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n")
    session.body(session.last[0].transaction, b"hi\r\n")  # type: ignore[union-attr]
    session.sent()
    return session


def kinds(events: list[Event]) -> list[type]:
    return [type(event) for event in events]


def describe(events: list[Event]) -> list[tuple[object, ...]]:
    """Events as values (transactions and errors compare by identity)."""
    described: list[tuple[object, ...]] = []
    for event in events:
        if isinstance(event, MessageAccepted):
            rejected = {address: error.code for address, error in event.rejected.items()}
            described.append((MessageAccepted, event.reply, event.accepted, rejected))
        elif isinstance(event, MessageFailed):
            error = event.error
            described.append((MessageFailed, error.code, error.command, error.response))
        elif isinstance(event, SendBody):
            described.append((SendBody, event.transaction.recipients))
        else:
            described.append((event,))
    return described


CASES: dict[str, tuple[Callable[[], Session], bytes, list[type], bytes]] = {
    # name: (session at the right point, server bytes, events, what the client then wrote)
    "greeting": (fresh, b"220 mx.test ESMTP\r\n", [Greeting], b"EHLO client.test\r\n"),
    "greeting after an empty line": (fresh, b"\r\n220 mx\n", [Greeting], b"EHLO client.test\r\n"),
    "ehlo": (
        lambda: (s := fresh(), s.server(b"220 mx\r\n"), s.sent())[0],
        EHLO,
        [Ready],
        b"",
    ),
    "pipelined envelope": (
        envelope_sent,
        b"250 ok\r\n250 ok\r\n550 5.1.1 no\r\n354 go\r\n",
        [SendBody],
        b"",
    ),
    "refused envelope": (
        envelope_sent,
        b"550 no\r\n550 no\r\n550 no\r\n554 no valid recipients\r\n",
        [MessageFailed],
        b"RSET\r\n",
    ),
    "final reply": (body_sent, b"250 2.0.0 queued as X\r\n", [MessageAccepted], b""),
    "lmtp replies": (
        lambda: body_sent(lmtp=True),
        b"250 2.0.0 a ok\r\n452 4.2.2 b full\r\n",
        [MessageAccepted],
        b"",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_whole_byte_at_a_time_and_with_trailing_data(name: str) -> None:
    prepare, data, expected, written = CASES[name]

    session = prepare()
    assert kinds(session.server(data)) == expected
    assert session.sent() == written
    whole = describe(session.last)

    session = prepare()
    for index in range(len(data) - 1):
        assert session.server(data[index : index + 1]) == [], f"event before byte {index}"
    assert describe(session.server(data[-1:])) == whole
    assert session.sent() == written

    session = prepare()
    assert describe(session.server(data + "421 4.3.2 Прощай".encode())) == whole
    assert session.sent() == written
    [closed] = session.server(b"")
    assert isinstance(closed, ConnectionClosed)
    assert isinstance(closed.error, SMTPResponseError | SMTPDisconnectedError)
    assert closed.error.code == 421 and closed.error.response == "4.3.2 Прощай"
