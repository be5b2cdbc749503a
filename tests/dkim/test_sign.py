"""Signatures as verifiers see them: RFC 6376 and RFC 8463's examples byte for byte, and every
signature made here checked by dkimpy, for every key size, both canonicalizations and awkward
messages."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from helpers.dkim import dkimpy_verify, records
from hypothesis import given, settings
from hypothesis import strategies as st

from rawsmtp import SMTPConfigError
from rawsmtp.dkim import DKIMSigner, signatures
from rawsmtp.dkim._canon import BodyHash, canonical_header, digest, header_fields
from rawsmtp.dkim._keys import load_private_key, sign
from rawsmtp.protocol import LocalProtocolError

pytest.importorskip("dkim")

KEYS = Path(__file__).with_name("keys")
KEY_NAMES = ["rsa1024", "rsa2048", "rsa4096", "ed25519"]
CANONICALIZATIONS = ["relaxed/relaxed", "simple/simple", "relaxed/simple", "simple/relaxed"]

# RFC 8463 appendix A: its RSA key (A.2) and its signed example message (A.3).
RFC8463_RSA = """-----BEGIN RSA PRIVATE KEY-----
MIICXQIBAAKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQi
Y/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqM
KrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB
AoGAH0cxOhFZDgzXWhDhnAJDw5s4roOXN4OhjiXa8W7Y3rhX3FJqmJSPuC8N9vQm
6SVbaLAE4SG5mLMueHlh4KXffEpuLEiNp9Ss3O4YfLiQpbRqE7Tm5SxKjvvQoZZe
zHorimOaChRL2it47iuWxzxSiRMv4c+j70GiWdxXnxe4UoECQQDzJB/0U58W7RZy
6enGVj2kWF732CoWFZWzi1FicudrBFoy63QwcowpoCazKtvZGMNlPWnC7x/6o8Gc
uSe0ga2xAkEA8C7PipPm1/1fTRQvj1o/dDmZp243044ZNyxjg+/OPN0oWCbXIGxy
WvmZbXriOWoSALJTjExEgraHEgnXssuk7QJBALl5ICsYMu6hMxO73gnfNayNgPxd
WFV6Z7ULnKyV7HSVYF0hgYOHjeYe9gaMtiJYoo0zGN+L3AAtNP9huqkWlzECQE1a
licIeVlo1e+qJ6Mgqr0Q7Aa7falZ448ccbSFYEPD6oFxiOl9Y9se9iYHZKKfIcst
o7DUw1/hz2Ck4N5JrgUCQQCyKveNvjzkkd8HjYs0SwM0fPjK16//5qDZ2UiDGnOe
uEzxBDAr518Z8VFbR41in3W4Y3yCDgQlLlcETrS+zYcL
-----END RSA PRIVATE KEY-----"""
RFC8463_SEED = base64.b64decode("nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=")
RFC8463_MESSAGE = "\r\n".join([
    "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;",
    " d=football.example.com; i=@football.example.com;",
    " q=dns/txt; s=brisbane; t=1528637909; h=from : to :",
    " subject : date : message-id : from : subject : date;",
    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;",
    " b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus",
    " Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==",
    "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;",
    " d=football.example.com; i=@football.example.com;",
    " q=dns/txt; s=test; t=1528637909; h=from : to : subject :",
    " date : message-id : from : subject : date;",
    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;",
    " b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3",
    " DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz",
    " dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=",
    "From: Joe SixPack <joe@football.example.com>",
    "To: Suzie Q <suzie@shopping.example.net>",
    "Subject: Is dinner ready?",
    "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)",
    "Message-ID: <20030712040037.46341.5F8J@football.example.com>",
    "", "Hi.", "", "We lost the game.  Are you hungry yet?", "", "Joe.", "",
]).encode()  # fmt: skip


def signer(key: str = "rsa2048", **options: object) -> DKIMSigner:
    return DKIMSigner("example.com", key, (KEYS / f"{key}.pem").read_text(), **options)  # type: ignore[arg-type]


def verified(message: bytes, *signers: DKIMSigner) -> list[bool]:
    return dkimpy_verify(message, records(signers))


@pytest.mark.parametrize("index", [0, 1], ids=["ed25519", "rsa"])
def test_rfc8463_signatures_are_reproduced_byte_for_byte(index: int) -> None:
    keys = [load_private_key(bytes.fromhex("302e020100300506032b657004220420") + RFC8463_SEED)]
    keys.append(load_private_key(RFC8463_RSA))
    block, bodies = digest(iter([RFC8463_MESSAGE]), ["relaxed"])
    assert base64.b64encode(bodies["relaxed"]) == b"2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8="
    fields = header_fields(block)
    signature = [raw for name, raw in fields if name == b"dkim-signature"][index]
    signed = [name.encode() for name in ("from", "to", "subject", "date", "message-id")]
    data = b"".join(
        canonical_header(raw, True) for want in signed for name, raw in fields if name == want
    )
    unsigned = signature[: signature.rindex(b"b=") + 2] + b"\r\n"
    data += canonical_header(unsigned, True)[:-2]
    published = re.sub(rb"\s", b"", signature[signature.rindex(b"b=") + 2 :])
    assert base64.b64encode(sign(keys[index], data)) == published


def test_rfc6376_canonicalization_example() -> None:
    # RFC 6376 section 3.4.6.
    message = b"A: X\r\nB : Y\t\r\n\tZ  \r\n\r\n C \r\nD \t E\r\n\r\n\r\n"
    block, bodies = digest(iter([message]), ["relaxed", "simple"])
    fields = header_fields(block)
    assert b"".join(canonical_header(raw, True) for _, raw in fields) == b"a:X\r\nb:Y Z\r\n"
    assert b"".join(canonical_header(raw, False) for _, raw in fields) == block
    relaxed, simple = BodyHash("relaxed"), BodyHash("simple")
    import hashlib

    assert bodies["relaxed"] == hashlib.sha256(b" C\r\nD E\r\n").digest()
    assert bodies["simple"] == hashlib.sha256(b" C \r\nD \t E\r\n").digest()
    # Empty bodies (RFC 6376 sections 3.4.3 and 3.4.4, erratum 3192).
    assert relaxed.digest() == hashlib.sha256(b"").digest()
    assert simple.digest() == hashlib.sha256(b"\r\n").digest()


BODIES = {
    "mixed-line-ends": b"one\ntwo\r\nthree\rfour\r\n\rfive",
    "trailing-blank-lines": b"text  \t \r\n\r\n \r\n\t\r\n\r\n",
    "no-final-line-end": b"last line   ",
    "empty": b"",
    "dots": b".\r\n..\r\n.leading dot\r\n",
    "long-line": b"x" * 66_000 + b"   \r\n" + b" " * 66_000 + b"y\r\n",  # past the 64 KiB held
}
HEADERS = {
    "plain": b"From: Alice <alice@example.com>\r\nTo: bob@example.org\r\nSubject: hi\r\n",
    "long-folded": (
        b"From: alice@example.com\r\nTo: "
        + b",\r\n ".join(b"user%d@example.org" % i for i in range(60))
        + b"\r\nSubject: "
        + b"word " * 120
        + b"\r\n"
    ),
    "utf8": "From: Zoë <zoe@example.com>\nTo: Jürgen <j@example.org>\nSubject: Grüße — ünïcödé\n".encode(),
    "bare-lf": b"From: a@example.com\nSubject:   spaced\t out \n",
}


@pytest.mark.parametrize("key", KEY_NAMES)
@pytest.mark.parametrize("canonicalization", CANONICALIZATIONS)
def test_every_key_and_canonicalization_verifies(key: str, canonicalization: str) -> None:
    one = signer(key, canonicalization=canonicalization, oversign=True, expiration=3600)
    message = HEADERS["plain"] + b"\r\n" + BODIES["mixed-line-ends"]
    signed = one.sign(message)
    assert signed.startswith(b"DKIM-Signature: v=1; a=" + one.algorithm.encode())
    assert verified(signed, one) == [True]
    assert verified(signed.replace(b"four", b"f0ur"), one) == [False]


# dkimpy takes seconds over a long line of whitespace: that body goes with one header block.
COMBINATIONS = [(h, b) for h in HEADERS for b in BODIES if b != "long-line" or h == "plain"]


@pytest.mark.parametrize(("head", "body"), COMBINATIONS, ids=[f"{h}-{b}" for h, b in COMBINATIONS])
@pytest.mark.parametrize("canonicalization", ["relaxed/relaxed", "simple/simple"])
def test_awkward_messages_verify(head: str, body: str, canonicalization: str) -> None:
    rsa, ed = (
        signer("rsa2048", canonicalization=canonicalization),
        signer("ed25519", canonicalization=canonicalization),
    )
    message = HEADERS[head] + (b"\r\n" if head != "bare-lf" else b"\n") + BODIES[body]
    signed = ed.sign(rsa.sign(message))
    assert verified(signed, rsa, ed) == [True, True]


def test_oversigning_blocks_an_added_field() -> None:
    over, plain = signer(oversign=True), signer("ed25519")
    signed = plain.sign(over.sign(HEADERS["plain"] + b"\r\nbody\r\n"))
    assert b"h=from:from:" in signed.replace(b"\r\n\t", b"")
    # A verifier takes instances bottom up: a field added above the signed one passes unless the
    # name was oversigned. The Ed25519 signature (top) did not oversign, the RSA one did.
    forged = signed.replace(b"\r\nSubject: hi", b"\r\nSubject: bought\r\nSubject: hi")
    assert verified(forged, over, plain) == [True, False]
    forged = signed.replace(b"\r\nFrom:", b"\r\nFrom: mallory@example.net\r\nFrom:")
    assert verified(forged, over, plain)[1] is False  # (dkimpy fails any second From anyway)


def test_timestamp_and_expiration_tags() -> None:
    field = (
        signer(expiration=600).signature(HEADERS["plain"] + b"\r\nx\r\n").replace(b"\r\n\t", b" ")
    )
    t, x = (int(re.search(rb" %s=(\d+);" % tag, field).group(1)) for tag in (b"t", b"x"))  # type: ignore[union-attr]
    assert x - t == 600
    assert b" t=" not in signer().signature(HEADERS["plain"] + b"\r\nx\r\n")


def test_no_line_of_the_field_is_longer_than_78() -> None:
    field = signer("rsa4096", oversign=True, expiration=1).signature(
        HEADERS["long-folded"] + b"\r\n"
    )
    assert all(len(line) <= 78 for line in field.split(b"\r\n"))


def test_a_message_without_from_is_refused() -> None:
    with pytest.raises(LocalProtocolError, match="needs a From"):
        signer().sign(b"Subject: x\r\n\r\nbody\r\n")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"domain": "exa mple.com"}, "domain: 'exa mple.com' is not a domain name"),
        ({"selector": "s;x=1"}, "selector: 's;x=1' is not a domain name"),
        ({"private_key": "nope"}, "private_key: no '-----BEGIN"),
        ({"private_key": (KEYS / "rsa512.pem").read_text()}, "at least 1024 bits"),
        ({"canonicalization": "loose"}, "canonicalization: must be"),
        ({"headers": ["to", "subject"]}, "From must be signed"),
        ({"headers": ["from", "bad name"]}, "not a header field name"),
        ({"expiration": 0}, "expiration: must be"),
        ({"max_buffer": -1}, "max_buffer: must be"),
    ],
)
def test_invalid_settings_raise_config_errors_naming_dkim(
    options: dict[str, object], message: str
) -> None:
    arguments = {
        "domain": "example.com",
        "selector": "s",
        "private_key": (KEYS / "ed25519.pem").read_text(),
    }
    with pytest.raises(SMTPConfigError, match=re.escape(message)) as error:
        DKIMSigner(**{**arguments, **options})  # type: ignore[arg-type]
    assert error.value.option == "dkim"


def test_the_option_accepts_signers_dicts_and_nodemailer_names() -> None:
    key = (KEYS / "ed25519.pem").read_text()
    got = signatures(
        [{"domainName": "Example.COM", "keySelector": "k", "privateKey": key}, signer()]
    )
    assert [(s.domain, s.selector) for s in got.signers] == [
        ("example.com", "k"),
        ("example.com", "rsa2048"),
    ]
    with pytest.raises(SMTPConfigError, match="dkim: got an unexpected keyword argument 'nope'"):
        signatures({"domain": "example.com", "selector": "k", "private_key": key, "nope": 1})
    with pytest.raises(SMTPConfigError, match="empty list"):
        signatures([])
    with pytest.raises(SMTPConfigError, match="must be a DKIMSigner"):
        signatures("example.com")


def test_dns_record_and_name() -> None:
    ed = signer("ed25519")
    assert ed.dns_name == "ed25519._domainkey.example.com"
    assert re.fullmatch(r"v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=", ed.dns_record())
    assert (
        signer().dns_record().startswith("v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIB")
    )


_LINE = st.text(st.sampled_from("ab \t.:é"), max_size=12).map(lambda s: s.encode())
_END = st.sampled_from([b"\r\n", b"\n", b"\r", b""])


@settings(max_examples=60, deadline=None)
@given(
    # RFC 5322 field bodies: no control characters (dkimpy would take FF or VT for whitespace).
    subject=st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), max_size=40),
    lines=st.lists(st.tuples(_LINE, _END), max_size=12),
    canonicalization=st.sampled_from(CANONICALIZATIONS),
    key=st.sampled_from(["rsa1024", "ed25519"]),
)
def test_any_signed_message_verifies(
    subject: str, lines: list[tuple[bytes, bytes]], canonicalization: str, key: str
) -> None:
    one = signer(key, canonicalization=canonicalization)
    body = b"".join(text + end for text, end in lines)
    message = b"From: a@example.com\r\nSubject: " + subject.encode() + b"\r\n\r\n" + body
    assert verified(one.sign(message), one) == [True]


@settings(max_examples=100, deadline=None)
@given(
    body=st.binary(max_size=300).map(lambda b: b.replace(b"\x00", b"")),
    cuts=st.lists(st.integers(0, 300)),
)
def test_the_body_hash_does_not_depend_on_chunk_boundaries(body: bytes, cuts: list[int]) -> None:
    message = b"From: a@example.com\r\n\r\n" + body
    points = sorted({min(cut, len(message)) for cut in cuts})
    chunks = [message[a:b] for a, b in zip([0, *points], [*points, len(message)], strict=True)]
    assert digest(iter(chunks), ["relaxed", "simple"]) == digest(
        iter([message]), ["relaxed", "simple"]
    )
