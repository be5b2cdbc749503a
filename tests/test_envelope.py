"""Envelopes end to end: exactly the right recipients and bytes, whatever form the input takes.

Properties run against the sans-I/O serialisation (MAIL/RCPT bytes) and against
rawsmtp.testing.SMTPTestServer (what a server received), with and without SMTPUTF8 and CHUNKING.
"""

from __future__ import annotations

import email.header
import email.message
import email.policy
import email.utils
import io
import re
from collections.abc import Callable, Iterator
from email.mime.text import MIMEText
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rawsmtp
from rawsmtp import Envelope, LocalProtocolError
from rawsmtp._message import prepare_message
from rawsmtp.protocol._address import parse_address_list, parse_mailbox, validate_address
from rawsmtp.testing import SMTPTestServer

POLICIES = {
    "default": email.policy.default,
    "SMTP": email.policy.SMTP,
    "SMTPUTF8": email.policy.SMTPUTF8,
    "compat32": email.policy.compat32,
}
NO_UTF8 = ["PIPELINING", "SIZE 10485760", "8BITMIME", "CHUNKING", "ENHANCEDSTATUSCODES"]
NO_CHUNKING = ["PIPELINING", "SIZE 10485760", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES"]

# -- strategies ---------------------------------------------------------------------------------

ATEXT = "abcdefghijklmnopqrstuvwxyzABC0123456789!#$%&'*+/=?^_`{|}~-"
DOT_ATOM = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u00a0-\U0010ffff]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u00a0-\U0010ffff]+)*"
)
atom = st.text(alphabet=ATEXT + "äöüßéñ漢", min_size=1, max_size=8)
dot_atom = st.lists(atom, min_size=1, max_size=3).map(".".join)
# Quoted local parts: printable ASCII with the characters that force quoting.
quoted_content = st.text(alphabet='abc XYZ,;:@()[]."\\', min_size=1, max_size=10).filter(
    lambda s: not _is_dot_atom(s)
)
label = st.text(alphabet="abcxyz0189-", min_size=1, max_size=8).filter(
    lambda s: not s.startswith("-") and not s.endswith("-")
)
utf8_label = st.sampled_from(["bücher", "例え", "münchen", "ελλάδα"])
domain = st.lists(label | utf8_label, min_size=1, max_size=3).map(lambda labels: ".".join(labels))
display_name = st.text(alphabet='abc XYZ,;:<>@()."\\äöü漢', min_size=0, max_size=12).map(str.strip)


def _is_dot_atom(value: str) -> bool:
    return DOT_ATOM.fullmatch(value) is not None


def _canonical_local(value: str) -> str:
    if _is_dot_atom(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@st.composite
def mailboxes(draw: st.DrawFn) -> tuple[str, str]:
    """(header text, canonical addr-spec) of one mailbox."""
    local = draw(dot_atom | quoted_content)
    address = f"{_canonical_local(local)}@{draw(domain)}"
    name = draw(display_name)
    form = draw(st.sampled_from(["bare", "angle", "quoted", "encoded"]))
    if form == "bare" or not name:
        return address, address
    if form == "angle":
        return f"<{address}>", address
    if form == "quoted":
        quoted = '"' + email.utils.quote(name) + '"'
        return f"{quoted} <{address}>", address
    encoded = email.header.Header(name, "utf-8").encode()  # an RFC 2047 display name
    return f"{encoded} <{address}>", address


def _message(policy: Any, sender: str, to: list[str], cc: list[str]) -> email.message.Message:
    message = (
        email.message.EmailMessage(policy=policy)
        if policy is not email.policy.compat32
        else (email.message.Message(policy=policy))
    )
    message["From"] = sender
    message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    message["Subject"] = "test"
    message.set_payload("hello\n")
    return message


def _lines(prepared: Any, smtputf8: bool = True) -> tuple[bytes, tuple[bytes, ...]]:
    transaction = prepared.envelope.transaction(size=None, body=None, smtputf8=smtputf8)
    return transaction.mail_command(dsn=False), transaction.rcpt_commands(dsn=False)


def _body(prepared: Any) -> bytes:
    return b"".join(prepared.chunks())


def _headers(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b" ").replace(b"\r\n\t", b"\t")


# -- the grammar --------------------------------------------------------------------------------


@given(mailboxes())
def test_one_mailbox_string_yields_its_canonical_addr_spec(mailbox: tuple[str, str]) -> None:
    text, address = mailbox
    assert parse_mailbox(text) == address
    assert validate_address(address, smtputf8=True) == address
    assert parse_address_list(text) == [address]


@given(st.lists(mailboxes(), min_size=1, max_size=4), st.booleans())
def test_address_lists_and_groups(boxes: list[tuple[str, str]], group: bool) -> None:
    text = ", ".join(t for t, _ in boxes)
    if group:
        text = f"team: {text}; , (a comment) undisclosed:;"
    assert parse_address_list(text) == [a for _, a in boxes]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a@b.example", "a@b.example"),
        ("Ann <ann@x.example>", "ann@x.example"),
        ('"Doe, John" <j@x.example>', "j@x.example"),
        ("=?utf-8?q?Doe=2C_John?= <j@x.example>", "j@x.example"),
        ('"abc"@x.example', "abc@x.example"),  # quoted only when it must be
        ('"a b"@x.example', '"a b"@x.example'),
        ("a (comment) @ x . example", "a@x.example"),
        ("jürgen@bücher.example", "jürgen@bücher.example"),
        ("a@[192.0.2.1]", "a@[192.0.2.1]"),
        ("a@[IPv6:2001:db8::1]", "a@[IPv6:2001:db8::1]"),
    ],
)
def test_mailbox_forms(text: str, expected: str) -> None:
    assert parse_mailbox(text) == expected


BAD_MAILBOXES = [
    "a@example.com\r\nRCPT TO:<x@evil.test>",
    "victim@example.com <hijacker@example.com>",
    "a@x.example, b@x.example",
    "x@@h",
    '"unterminated@x.example',
    "<a@x.example",
    "a@x.example>",
    "evil",
    "a@",
    "@x.test",
    "a..b@x.example",
    "a@x..example",
    "a@-x.example",
    "a@[999.1.1.1]",
    "\udcff\udcfe@x.example",
    "a\x00b@x.example",
    "<@route.example:a@x.example>",
    "group: a@x.example;",
    '"a>b"@x.example',
    '""@x.example',
]


@pytest.mark.parametrize("text", BAD_MAILBOXES)
def test_bad_mailboxes_are_local_protocol_errors_naming_the_address(text: str) -> None:
    with pytest.raises(LocalProtocolError) as info:
        parse_mailbox(text)
    assert isinstance(info.value, ValueError) and repr(text) in str(info.value)


@pytest.mark.parametrize("text", ['x@@h, "unterminated', "evil", "a@", "@x.test", "a@b, <c@d"])
def test_bad_header_values(text: str) -> None:
    with pytest.raises(LocalProtocolError):
        parse_address_list(text)


# -- every envelope form refuses what is not exactly one mailbox --------------------------------

valid = st.sampled_from(["a@x.example", "jürgen@bücher.example", '"q r"@x.example'])
injected = st.builds(
    lambda address, cut, bad: address[:cut] + bad + address[cut:],
    valid,
    st.integers(0, 30),
    st.sampled_from(["\r", "\n", "\x00", "\r\n", "\r\nRCPT TO:<x@evil.test>"]),
)
two = st.builds(
    lambda a, b, sep: a + sep + b, valid, valid, st.sampled_from([", ", " ", " <", ";", "\t"])
)


def _forms(bad: str) -> list[Callable[[], object]]:
    """Every way an address string enters, each building and preparing a message."""
    head = b"Subject: x\r\n\r\nbody\r\n"
    return [
        lambda: prepare_message(head, Envelope(bad, "b@x.example")),
        lambda: prepare_message(head, Envelope("a@x.example", [bad])),
        lambda: prepare_message(head, Envelope(mail_from="a@x.example", rcpt_to=bad)),
        lambda: prepare_message(head, {"from": bad, "to": "b@x.example"}),
        lambda: prepare_message(head, {"from": "a@x.example", "to": [bad]}),
        lambda: prepare_message(head, {"from": "a@x.example", "to": "b@x.example", "cc": bad}),
        lambda: prepare_message(head, {"from": "a@x.example", "to": "b", "bcc": [bad]}),
    ]


@given(injected | two)
def test_control_characters_and_two_addresses_are_refused_in_every_form(bad: str) -> None:
    for form in _forms(bad):
        with pytest.raises(LocalProtocolError):
            form()


@given(injected)
def test_control_characters_in_header_fields_are_refused(bad: str) -> None:
    if "\n" in bad and bad[bad.index("\n") + 1 : bad.index("\n") + 2] in (" ", "\t"):
        return  # that is folding, which is white space
    message = email.message.Message()  # compat32 stores what it is given
    message["From"] = "a@x.example"
    message["To"] = bad
    with pytest.raises(LocalProtocolError):
        prepare_message(message, None)
    raw = f"From: a@x.example\r\nTo: {bad.replace(chr(13), chr(0)).replace(chr(10), chr(0))}\r\n"
    with pytest.raises(LocalProtocolError):
        prepare_message((raw + "\r\nx").encode(), None)


def test_undecodable_header_bytes_are_refused_not_replaced() -> None:
    with pytest.raises(LocalProtocolError, match="undecodable"):
        prepare_message(b"From: a@x.example\r\nTo: \xff\xfe@x.example\r\n\r\nx", None)


# -- envelopes from email.message.Message, every policy -----------------------------------------


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.sampled_from(sorted(POLICIES)),
    mailboxes(),
    st.lists(mailboxes(), min_size=1, max_size=4),
    st.lists(mailboxes(), max_size=2),
)
def test_message_addresses_reach_mail_and_rcpt_byte_for_byte(
    policy: str, sender: tuple[str, str], to: list[tuple[str, str]], cc: list[tuple[str, str]]
) -> None:
    message = _message(POLICIES[policy], sender[0], [t for t, _ in to], [t for t, _ in cc])
    prepared = prepare_message(message, None)
    expected = tuple(dict.fromkeys(a for _, a in to + cc))
    assert prepared.envelope.mail_from == sender[1]
    assert prepared.envelope.rcpt_to == expected
    mail, rcpts = _lines(prepared)
    assert mail.startswith(f"MAIL FROM:<{sender[1]}>".encode())
    assert rcpts == tuple(f"RCPT TO:<{a}>\r\n".encode() for a in expected)
    headers = _headers(_body(prepared))
    if prepared.smtputf8:  # UTF-8 headers stay UTF-8: the addresses appear as themselves
        for address in (sender[1], *expected):
            if not address.startswith('"'):  # a quoted string may be folded or re-escaped
                assert address.encode() in headers
    assert b"\n" not in _body(prepared).replace(b"\r\n", b"")


def test_non_ascii_addresses_are_sent_raw_with_smtputf8() -> None:
    message = email.message.EmailMessage()
    message["From"] = "Jörg <jörg@x.example>"
    message["To"] = "jürgen@example.test, user@bücher.example"
    message.set_content("hi\n")
    prepared = prepare_message(message, None)
    mail, rcpts = _lines(prepared, smtputf8=False)
    assert mail.startswith("MAIL FROM:<jörg@x.example>".encode()) and b" SMTPUTF8" in mail
    assert rcpts == (
        "RCPT TO:<jürgen@example.test>\r\n".encode(),
        "RCPT TO:<user@bücher.example>\r\n".encode(),
    )
    assert b"=?" not in _headers(_body(prepared))


def test_old_style_messages_are_sent() -> None:
    message = MIMEText("Grüße\n", "plain", "utf-8")
    message["From"] = email.header.Header("Jörg <jörg@x.example>", "utf-8")
    cc = email.header.Header("Doe, Jöhn", "utf-8")
    cc.append(" <j@x.example>")
    message["To"] = "b@x.example"
    message["Cc"] = cc
    prepared = prepare_message(message, None)
    assert prepared.envelope.mail_from == "jörg@x.example"
    assert prepared.envelope.rcpt_to == ("b@x.example", "j@x.example")
    headers = _headers(_body(prepared))
    assert "From: Jörg <jörg@x.example>".encode() in headers
    assert '"Doe, Jöhn" <j@x.example>'.encode() in headers
    ascii_only = MIMEText("hi")
    ascii_only["From"], ascii_only["To"] = "a@x.example", "b@x.example"
    ascii_only["Subject"] = email.header.Header("Grüße", "utf-8")
    prepared = prepare_message(ascii_only, None)
    assert not prepared.smtputf8 and b"Subject: =?utf-8?" in _body(prepared)


def test_header_object_defects_are_refused() -> None:
    message = email.message.EmailMessage()
    message["From"] = "a@x.example"
    message["To"] = 'x@@h, "unterminated'
    with pytest.raises(LocalProtocolError, match="To"):
        prepare_message(message, None)


def test_unserialisable_message_is_a_local_protocol_error() -> None:
    message = email.message.EmailMessage()
    message["From"], message["To"] = "a@x.example", "b@x.example"
    message.set_payload(object())  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="serialise"):
        prepare_message(message, None)


# -- Resent-, Bcc, null path, positional Envelope ------------------------------------------------

RESENT = (
    b"Resent-From: r@x.example\r\nResent-To: rt@x.example\r\nResent-Cc: rc@x.example\r\n"
    b"Resent-Bcc: rb@x.example\r\nResent-Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    b"Received: from a by b\r\n"
    b"Resent-From: old@x.example\r\nResent-To: old-to@x.example\r\n"
    b"Resent-Date: Sun, 31 Dec 2023 00:00:00 +0000\r\n"
    b"From: a@x.example\r\nTo: b@x.example\r\nBcc: c@x.example\r\n\r\nbody\r\n"
)


def test_the_most_recent_resent_block_gives_the_envelope() -> None:
    prepared = prepare_message(RESENT, None)
    assert prepared.envelope.mail_from == "r@x.example"
    assert prepared.envelope.rcpt_to == ("rt@x.example", "rc@x.example", "rb@x.example")
    sent = _body(prepared)
    assert b"Bcc:" not in sent and b"rb@" not in sent and b" c@x.example" not in sent
    assert b"Resent-To: old-to@x.example" in sent  # older blocks are kept as they are
    with pytest.raises(LocalProtocolError, match="Resent-To"):
        prepare_message(b"Resent-From: r@x.example\r\nTo: b@x.example\r\n\r\nx", None)


def test_resent_fields_of_a_message_object() -> None:
    message = email.message_from_bytes(RESENT, policy=email.policy.default)
    prepared = prepare_message(message, None)
    assert prepared.envelope.rcpt_to == ("rt@x.example", "rc@x.example", "rb@x.example")
    assert b"Bcc:" not in _body(prepared)


def test_null_reverse_path_and_positional_envelope() -> None:
    for null in ("", "<>", " <> "):
        assert Envelope(null, "b@x.example").mail_from == ""
        assert prepare_message(b"x", {"from": null, "to": "b@x.example"}).envelope.mail_from == ""
    envelope = Envelope("Ann <a@x.example>", ["Bob <b@x.example>", "c@x.example"], ret="HDRS")
    assert (envelope.mail_from, envelope.rcpt_to) == ("a@x.example", ("b@x.example", "c@x.example"))
    assert _lines(prepare_message(b"x", envelope))[0].startswith(b"MAIL FROM:<a@x.example>")
    with pytest.raises(LocalProtocolError):
        Envelope("a@x.example", "<>")


def test_ascii_form_uses_a_labels() -> None:
    envelope = Envelope("a@bücher.example", ["b@x.example"])
    assert envelope.ascii_form() == Envelope("a@xn--bcher-kva.example", ["b@x.example"])
    assert Envelope("jörg@x.example", "b@x.example").ascii_form() is None
    prepared = prepare_message(b"Subject: x\r\n\r\nx", envelope)
    fallback = prepared.without_smtputf8()
    assert fallback is not None and not fallback.smtputf8 and _body(fallback) == _body(prepared)


# -- SIZE -----------------------------------------------------------------------------------------

line_end = st.sampled_from([b"\r\n", b"\n", b"\r"])
text_lines = st.lists(
    st.tuples(
        st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")), line_end
    ),
    max_size=30,
)


def _mixed(lines: list[tuple[bytes, bytes]], end: bytes) -> bytes:
    return b"From: a@x.example\r\nTo: b@x.example\n\n" + b"".join(a + b for a, b in lines) + end


@given(text_lines, st.sampled_from([b"", b"tail", b".", b"\r"]))
def test_declared_size_is_what_the_encoders_send(
    lines: list[tuple[bytes, bytes]], end: bytes
) -> None:
    from rawsmtp.protocol import ChunkingEncoder, DataEncoder, decode_data

    raw = _mixed(lines, end)
    for message in (raw, io.BytesIO(raw)):
        prepared = prepare_message(message, None)
        data_encoder, chunking = DataEncoder(), ChunkingEncoder()
        stuffed = b"".join(data_encoder.encode(c) for c in prepared.chunks()) + data_encoder.end()
        assert len(decode_data(stuffed)) == prepared.size  # DATA: dot-stuffing not counted
        framed = b"".join(chunking.encode(c) for c in prepared.chunks()) + chunking.end()
        assert _bdat_payload(framed) == len(decode_data(stuffed))


def _bdat_payload(framed: bytes) -> int:
    total, index = 0, 0
    while index < len(framed):
        line_end = framed.index(b"\r\n", index)
        size = int(framed[index:line_end].split()[1])
        total, index = total + size, line_end + 2 + size
    return total


# -- against the test server ----------------------------------------------------------------------


def _outcome(pool: Any, message: Any, envelope: Any = None) -> Any:
    """The result, or the error, whether send() raised it or the future holds it."""
    try:
        return pool.send(message, envelope).result(timeout=20)
    except Exception as error:
        return error


@pytest.fixture(scope="module", params=["utf8+bdat", "utf8+data", "ascii-only"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[SMTPTestServer, rawsmtp.SMTPPool]]:
    capabilities = {"utf8+bdat": None, "utf8+data": NO_CHUNKING, "ascii-only": NO_UTF8}
    with SMTPTestServer(capabilities=capabilities[request.param]) as smtp:
        pool = rawsmtp.SMTPPool(host=smtp.host, port=smtp.port, ignore_tls=True, max_retries=0)
        with pool:
            yield smtp, pool


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.sampled_from(sorted(POLICIES)),
    mailboxes(),
    st.lists(mailboxes(), min_size=1, max_size=3),
)
def test_the_server_receives_exactly_the_addresses(
    server: tuple[SMTPTestServer, rawsmtp.SMTPPool],
    policy: str,
    sender: tuple[str, str],
    to: list[tuple[str, str]],
) -> None:
    smtp, pool = server
    message = _message(POLICIES[policy], sender[0], [t for t, _ in to], [])
    expected = tuple(dict.fromkeys(a for _, a in to))
    before = len(smtp.messages)
    outcome = _outcome(pool, message)
    needs_utf8 = not all(a.isascii() for a in (sender[1], *expected))
    if needs_utf8 and "SMTPUTF8" not in smtp.settings.session.keywords(tls=False):
        # Refused before MAIL, or (with the A-label fallback in the pool) sent as A-labels.
        if isinstance(outcome, rawsmtp.SMTPCapabilityError):
            assert len(smtp.messages) == before
            return
        ascii_form = Envelope(sender[1], expected).ascii_form()
        assert ascii_form is not None and not isinstance(outcome, Exception), outcome
        expected, sender = ascii_form.rcpt_to, ("", ascii_form.mail_from)
    assert isinstance(outcome, rawsmtp.SendResult), outcome
    received = smtp.messages[-1]
    assert (received.mail_from, received.rcpt_to) == (sender[1], expected)
    assert "SMTPUTF8" in received.params or not needs_utf8  # (UTF-8 headers ask for it too)
    assert int(received.params["SIZE"] or -1) == len(received.data)
    headers = _headers(received.data)
    for address in (sender[1], *expected):  # as themselves in the headers, never as RFC 2047
        assert address.startswith('"') or address.encode() in headers


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(text_lines, st.sampled_from([b"", b"tail", b".", b"..x", b"\r"]), st.booleans())
def test_declared_size_equals_received_size(
    server: tuple[SMTPTestServer, rawsmtp.SMTPPool],
    lines: list[tuple[bytes, bytes]],
    end: bytes,
    as_file: bool,
) -> None:
    smtp, pool = server
    raw = _mixed(lines, end)
    outcome = _outcome(pool, io.BytesIO(raw) if as_file else raw)
    assert isinstance(outcome, rawsmtp.SendResult), outcome
    received = smtp.messages[-1]
    assert int(received.params["SIZE"] or -1) == len(received.data) == outcome.message_size


def test_resent_message_goes_to_the_resent_recipients(
    server: tuple[SMTPTestServer, rawsmtp.SMTPPool],
) -> None:
    smtp, pool = server
    outcome = _outcome(pool, RESENT)
    assert isinstance(outcome, rawsmtp.SendResult), outcome
    received = smtp.messages[-1]
    assert received.mail_from == "r@x.example"
    assert received.rcpt_to == ("rt@x.example", "rc@x.example", "rb@x.example")
    assert b"Bcc" not in received.data.split(b"\r\n\r\n")[0]


def test_message_larger_than_size_is_refused_before_data() -> None:
    with SMTPTestServer(max_size=1000) as smtp:
        with rawsmtp.SMTPPool(host=smtp.host, port=smtp.port, ignore_tls=True) as pool:
            # 600 bare LFs: 1200 octets once sent, more than the limit the raw length is under.
            raw = b"From: a@x.example\r\nTo: b@x.example\r\n\r\n" + b"\n" * 600
            outcome = _outcome(pool, raw)
        assert isinstance(outcome, rawsmtp.SMTPCapabilityError), outcome
        assert not any(record.line.startswith("MAIL") for record in smtp.commands)


class _FailingFile(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        raise OSError("disk on fire")


@pytest.mark.parametrize("envelope", [None, Envelope("a@x.example", "b@x.example")])
def test_a_source_failing_on_its_first_read(
    server: tuple[SMTPTestServer, rawsmtp.SMTPPool], envelope: Envelope | None
) -> None:
    _, pool = server
    outcome = _outcome(pool, _FailingFile(), envelope)
    assert isinstance(outcome, rawsmtp.SMTPConnectionError), outcome
    assert isinstance(outcome.__cause__, OSError) and "disk on fire" in str(outcome.__cause__)


def test_transport_errors_are_os_errors() -> None:
    for error in (
        rawsmtp.SMTPConnectionError("x"),
        rawsmtp.SMTPProxyError("x", reply_code=91),
        rawsmtp.SMTPDisconnectedError("x"),
    ):
        assert isinstance(error, ConnectionError) and isinstance(error, rawsmtp.SMTPError)
    assert isinstance(rawsmtp.SMTPTimeoutError("x", phase="connect"), TimeoutError)
    assert not isinstance(rawsmtp.LocalProtocolError("x"), OSError)
    try:
        raise rawsmtp.SMTPProxyError("refused", reply_code=91)
    except OSError as caught:
        assert caught.reply_code == 91  # type: ignore[attr-defined]
