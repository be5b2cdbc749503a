"""Message intake: accepted types, envelopes from headers or dicts, Bcc removal, streaming."""

from __future__ import annotations

import email.message
import io
import re
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rawsmtp import Envelope, LocalProtocolError
from rawsmtp._message import CHUNK_SIZE, _blank_line, prepare_message

RAW = (
    b"From: Ann <ann@example.org>\r\nTo: bob@example.com, Carl <carl@example.com>\r\n"
    b"Cc: dee@example.com\r\nBcc: eve@example.com,\r\n  fay@example.com\r\n"
    b"Message-ID: <id-1@example.org>\r\nSubject: hi\r\n\r\nBcc: not a header\r\n"
)


def body(prepared: object) -> bytes:
    return b"".join(prepared.chunks())  # type: ignore[attr-defined]


def test_envelope_from_headers_and_bcc_removed() -> None:
    prepared = prepare_message(RAW, None)
    assert prepared.envelope.mail_from == "ann@example.org"
    assert prepared.envelope.rcpt_to == (
        "bob@example.com",
        "carl@example.com",
        "dee@example.com",
        "eve@example.com",
        "fay@example.com",
    )
    sent = body(prepared)
    assert b"Bcc: eve" not in sent and b"fay@" not in sent
    assert sent.endswith(b"\r\n\r\nBcc: not a header\r\n")  # the body is untouched
    assert prepared.message_id == "<id-1@example.org>"
    assert prepared.size == len(sent) and prepared.restartable and not prepared.eight_bit


def test_sender_header_wins_and_duplicates_collapse() -> None:
    raw = b"From: a@x.org\r\nSender: s@x.org\r\nTo: b@x.org\r\nCc: B@x.org, b@x.org\r\n\r\nx"
    prepared = prepare_message(raw, None)
    assert prepared.envelope.mail_from == "s@x.org"
    assert prepared.envelope.rcpt_to == ("b@x.org", "B@x.org")


def test_email_message_gets_message_id_and_date() -> None:
    message = email.message.EmailMessage()
    message["From"] = "ann@example.org"
    message["To"] = "bob@example.com"
    message["Bcc"] = "hidden@example.com"
    message.set_content("Grüße\n")
    prepared = prepare_message(message, None)
    sent = body(prepared)
    assert prepared.message_id is not None and prepared.message_id.endswith("@example.org>")
    assert f"Message-ID: {prepared.message_id}\r\n".encode() in sent
    assert b"\r\nDate: " in sent or sent.startswith(b"Date: ") or b"Date: " in sent
    assert b"hidden@" not in sent and "hidden@example.com" in prepared.envelope.rcpt_to
    assert b"\n" not in sent.replace(b"\r\n", b"")  # CRLF throughout
    assert "Bcc" in message  # the caller's object is not modified


def test_dict_envelope_nodemailer_shape() -> None:
    prepared = prepare_message(
        b"Subject: x\r\n\r\nx",
        {
            "from": "Ann <ann@example.org>",
            "to": ["bob@example.com"],
            "cc": "c@example.com",
            "bcc": ["d@example.com"],
            "dsn": {"ret": "hdrs", "envid": "E1", "notify": ["success", "failure"], "orcpt": True},
        },
    )
    envelope = prepared.envelope
    assert envelope.mail_from == "ann@example.org"
    assert envelope.rcpt_to == ("bob@example.com", "c@example.com", "d@example.com")
    assert (envelope.ret, envelope.envid, envelope.orcpt) == ("HDRS", "E1", True)
    assert envelope.notify == frozenset({"SUCCESS", "FAILURE"})


@pytest.mark.parametrize(
    "envelope",
    [
        {"from": "a@x.org", "to": ["b@x.org>\r\nRCPT TO:<evil@x.org"]},
        {"from": "a@x.org> SIZE=1", "to": ["b@x.org"]},
        {"from": "a@x.org", "to": []},
        {"from": "a@x.org", "to": ['"unbalanced@x.org']},
        {"from": "a@x.org", "to": ["b@x.org"], "colour": "red"},
        {"to": ["b@x.org"]},
    ],
)
def test_bad_envelopes_are_value_errors(envelope: dict[str, object]) -> None:
    with pytest.raises(LocalProtocolError) as info:
        prepare_message(b"Subject: x\r\n\r\nx", envelope)
    assert isinstance(info.value, ValueError)


def test_missing_addresses_in_headers() -> None:
    with pytest.raises(ValueError, match="no To"):
        prepare_message(b"From: a@x.org\r\n\r\nbody", None)
    with pytest.raises(ValueError, match="no From"):
        prepare_message(b"To: a@x.org\r\n\r\nbody", None)


def test_non_ascii_address_needs_smtputf8_and_utf8_headers_are_noticed() -> None:
    prepared = prepare_message("From: jörg@x.org\r\nTo: b@x.org\r\n\r\nx", None)
    assert prepared.smtputf8 and prepared.utf8_headers
    prepared = prepare_message("From: a@x.org\r\nTo: b@x.org\r\nSubject: é\r\n\r\nx", None)
    assert not prepared.smtputf8 and prepared.utf8_headers and prepared.eight_bit


def test_seekable_file_streams_and_restarts() -> None:
    data = b"From: a@x.org\r\nTo: b@x.org\r\n\r\n" + b"y" * (3 * CHUNK_SIZE + 5)
    file = io.BytesIO(data)
    prepared = prepare_message(file, None)
    # Measured as sent: the final line end DATA would add is part of the content, for BDAT too.
    assert prepared.size == len(data) + 2 and prepared.restartable
    assert body(prepared) == data + b"\r\n"
    assert body(prepared) == data + b"\r\n"  # rewound for a second attempt
    assert max(len(chunk) for chunk in prepare_message(io.BytesIO(data), None).chunks()) <= (
        CHUNK_SIZE * 2
    )


def test_iterable_streams_once_and_bcc_is_stripped_from_its_head() -> None:
    def chunks() -> Iterator[bytes]:
        yield b"From: a@x.org\r\nTo: b@x.org\r\nBcc: c@x.org\r\n"
        yield b"\r\nbody\r\n"
        yield b"more\r\n"

    prepared = prepare_message(chunks(), None)
    assert prepared.envelope.rcpt_to == ("b@x.org", "c@x.org")
    assert not prepared.restartable and prepared.size is None
    assert body(prepared) == b"From: a@x.org\r\nTo: b@x.org\r\n\r\nbody\r\nmore\r\n"


def test_stream_with_given_envelope_is_not_read_early() -> None:
    consumed = []

    def chunks() -> Iterator[bytes]:
        consumed.append(True)
        yield b"x"

    prepared = prepare_message(chunks(), Envelope(mail_from="", rcpt_to=("b@x.org",)))
    assert consumed == [] and prepared.envelope.mail_from == ""
    assert body(prepared) == b"x\r\n"


def test_wrong_types() -> None:
    with pytest.raises(LocalProtocolError):
        prepare_message(12, None)
    with pytest.raises(LocalProtocolError):
        body(prepare_message(iter(["text"]), Envelope(mail_from="a@x.org", rcpt_to="b@x.org")))
    with pytest.raises(LocalProtocolError):
        prepare_message(io.StringIO("From: a@x.org\r\n\r\n"), None)


local = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz0123456789.+-_", min_size=1, max_size=10
).filter(lambda s: not s.startswith(".") and not s.endswith(".") and ".." not in s)
label = st.text(alphabet="abcxyz0189-", min_size=1, max_size=8).filter(
    lambda s: not s.startswith("-") and not s.endswith("-")
)
addresses = st.builds(lambda a, d: f"{a}@{d}.example", local, label)


@given(addresses, st.lists(addresses, min_size=1, max_size=5), st.lists(addresses, max_size=3))
def test_envelope_derivation_property(sender: str, to: list[str], bcc: list[str]) -> None:
    head = f"From: Someone <{sender}>\r\nTo: {', '.join(to)}\r\n"
    if bcc:
        head += f"Bcc: {', '.join(bcc)}\r\n"
    prepared = prepare_message((head + "\r\nbody\r\n").encode(), None)
    assert prepared.envelope.mail_from == sender
    assert prepared.envelope.rcpt_to == tuple(dict.fromkeys(to + bcc))
    sent = body(prepared)
    assert b"Bcc:" not in sent and sent.endswith(b"\r\n\r\nbody\r\n")


@given(st.lists(st.sampled_from([b"a", b":", b" ", b"\r", b"\n", b"\r\n", b"x: y"]), max_size=40))
def test_blank_line_finds_what_the_header_end_pattern_finds(parts: list[bytes]) -> None:
    data = b"".join(parts)
    match = re.search(rb"\r?\n(\r?\n)", data)
    expected = (match.start(1), match.end()) if match else None
    assert _blank_line(data) == expected
    assert _blank_line(bytearray(data)) == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"a: b\r\n\r\nbody", (6, 8)),
        (b"a: b\n\nbody", (5, 6)),
        (b"a\n\n\r\n", (2, 3)),  # LF LF right before a CR LF blank line comes first
        (b"a\r\n\n\r\n", (3, 4)),
        (b"a: b\r\nc: d\r\n", None),
    ],
)
def test_blank_line_edge_cases(data: bytes, expected: tuple[int, int] | None) -> None:
    assert _blank_line(data) == expected


@pytest.mark.parametrize(
    ("head", "message_id"),
    [
        (b"Message-ID: <id-1@example.org>\r\n", "<id-1@example.org>"),
        (b"MESSAGE-id :\r\n <folded@example.org>\r\n", "<folded@example.org>"),
        (b"Message-ID:\r\nMessage-ID: <second@example.org>\r\n", "<second@example.org>"),
        (b"X-Message-ID: <other@example.org>\r\n", None),
        (b"Subject: no id\r\n", None),
        (b"Subject: id in the body\r\n\r\nMessage-ID: <body@example.org>\r\n", None),
    ],
)
def test_a_given_envelope_reads_the_same_message_id(head: bytes, message_id: str | None) -> None:
    """With the envelope given only the Message-ID is looked for: it is the one the header
    scan finds when the envelope comes from the headers."""
    raw = b"From: a@x.org\r\nTo: b@x.org\r\n" + head + b"\r\nbody\r\n"
    given = prepare_message(raw, Envelope(mail_from="a@x.org", rcpt_to=("b@x.org",)))
    assert given.message_id == prepare_message(raw, None).message_id == message_id
