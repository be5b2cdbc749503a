"""The queue id in final replies: one row per server form, and replies that carry none."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rawsmtp import SendResult
from rawsmtp.protocol._queue_id import _PREFIX, QUEUE_ID_FORMS, parse_queue_id
from rawsmtp.testing import Fault, SMTPTestServer

FORMS = [
    ("postfix", "250 2.0.0 Ok: queued as 4Xyz12AbCdF", "4Xyz12AbCdF"),
    ("postfix", "250 2.0.0 Ok: queued as 3F2A81C0B2", "3F2A81C0B2"),
    ("exim", "250 OK id=1rBw8C-00000000Ehx-1Y0M", "1rBw8C-00000000Ehx-1Y0M"),
    ("exim", "250 OK id=1abcDe-000Fgh-Ij", "1abcDe-000Fgh-Ij"),
    (
        "dovecot",
        "250 2.0.0 <ann@example.com> 2kvHMHuS2GIXJAAAwWz8mA Saved",
        "2kvHMHuS2GIXJAAAwWz8mA",
    ),
    ("sendmail", "250 2.0.0 x1ABCdef012345 Message accepted for delivery", "x1ABCdef012345"),
    (
        "haraka",
        "250 Message Queued (8A3F2C1E-0D4B-4E1A-9C3B-2F1E0D9C8B7A.1)",
        "8A3F2C1E-0D4B-4E1A-9C3B-2F1E0D9C8B7A.1",
    ),
    (
        "gmail",
        "250 2.0.0 OK  1700000000 x1-20020a05620a123400b00123abc.12 - gsmtp",
        "x1-20020a05620a123400b00123abc.12",
    ),
    (
        "microsoft",
        "250 2.6.0 <CAF1@mail.example.com> [InternalId=1236950581249, "
        "Hostname=AM0PR01MB1234.eurprd01.prod.exchangelabs.com] 10245 bytes in 0.108, "
        "92.480 KB/sec Queued mail for delivery",
        "1236950581249",
    ),
    (
        "ses",
        "250 Ok 0100018c1a2b3c4d-5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9-000000",
        "0100018c1a2b3c4d-5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9-000000",
    ),
    ("qmail", "250 ok 1700000000 qp 12345", "12345"),
]


@pytest.mark.parametrize(("server", "reply", "expected"), FORMS, ids=[f[0] for f in FORMS])
def test_each_server_form(server: str, reply: str, expected: str) -> None:
    assert parse_queue_id(reply) == expected
    assert parse_queue_id(reply.split(" ", 1)[1]) == expected  # the text alone, without the code
    text = _PREFIX.sub("", reply)
    assert next(name for name, pattern in QUEUE_ID_FORMS if pattern.search(text)) == server


@pytest.mark.parametrize(
    "reply",
    [
        "250 OK",
        "250 2.0.0 Ok",
        "250 2.0.0 <ann@example.com> Saved",  # Dovecot without an id
        "250 OK: message queued",  # Node's smtp-server
        "250 Great success",
        "250 2.0.0 OK  1700000000 - gsmtp",  # truncated Gmail reply: no id
        "",
    ],
)
def test_replies_without_an_id(reply: str) -> None:
    assert parse_queue_id(reply) is None


def test_a_later_line_of_a_multiline_reply() -> None:
    assert parse_queue_id("250 2.0.0 Accepted\nqueued as ABC123") == "ABC123"


@given(st.text(max_size=300))
def test_never_fails_and_any_id_is_in_the_text(text: str) -> None:
    found = parse_queue_id(text)
    assert found is None or (found and found in text and not any(c.isspace() for c in found))


@pytest.mark.parametrize(("server", "reply", "expected"), FORMS[:3], ids=[f[0] for f in FORMS[:3]])
def test_send_result_carries_queue_id_and_capabilities(
    server: str, reply: str, expected: str
) -> None:
    import rawsmtp

    faults = [Fault(on="DATA_END", reply=reply)]
    capabilities = ["PIPELINING", "SIZE 1000000", "DSN"]
    with (
        SMTPTestServer(faults=faults, capabilities=capabilities) as s,
        rawsmtp.SMTPPool(host=s.host, port=s.port, ignore_tls=True) as pool,
    ):
        result = pool.send(b"From: a@example.com\r\nTo: b@example.com\r\n\r\nx\r\n").result(10)
    assert isinstance(result, SendResult)
    assert result.response == reply and result.queue_id == expected
    assert dict(result.capabilities) == {"PIPELINING": (), "SIZE": ("1000000",), "DSN": ()}
    with pytest.raises(TypeError):
        result.capabilities["X"] = ()  # type: ignore[index]
