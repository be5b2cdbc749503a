"""Command serialisation and the validation that keeps caller data out of the protocol."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rawsmtp.protocol import LocalProtocolError, Transaction, orcpt_value, xtext
from rawsmtp.protocol import _commands as commands


def test_hello_commands() -> None:
    assert commands.ehlo("client.example.com") == b"EHLO client.example.com\r\n"
    assert commands.helo("[192.0.2.1]") == b"HELO [192.0.2.1]\r\n"
    assert commands.lhlo("[IPv6:2001:db8::1]") == b"LHLO [IPv6:2001:db8::1]\r\n"


@pytest.mark.parametrize(
    "name", ["", "bad name", "a\r\nMAIL FROM:<x>", "-leading.example", "x" * 256, "[a b]"]
)
def test_invalid_ehlo_names(name: str) -> None:
    with pytest.raises(LocalProtocolError) as info:
        commands.ehlo(name)
    assert isinstance(info.value, ValueError)


def test_mail_with_every_parameter() -> None:
    line = commands.mail(
        "ann@example.com",
        size=1234,
        body="8BITMIME",
        smtputf8=True,
        ret="HDRS",
        envid="id+1=2 é",
        requiretls=True,
    )
    assert line == (
        b"MAIL FROM:<ann@example.com> SIZE=1234 BODY=8BITMIME SMTPUTF8 RET=HDRS "
        b"ENVID=id+2B1+3D2+20+C3+A9 REQUIRETLS\r\n"
    )
    assert commands.mail("") == b"MAIL FROM:<>\r\n"


def test_rcpt_with_dsn() -> None:
    line = commands.rcpt("bob+x@example.com", notify=["failure", "delay"], orcpt=True)
    assert line == (
        b"RCPT TO:<bob+x@example.com> NOTIFY=DELAY,FAILURE ORCPT=rfc822;bob+2Bx@example.com\r\n"
    )
    assert commands.rcpt("a@b", notify=["NEVER"]) == b"RCPT TO:<a@b> NOTIFY=NEVER\r\n"
    with pytest.raises(LocalProtocolError):
        commands.rcpt("a@b", notify=["NEVER", "SUCCESS"])
    with pytest.raises(LocalProtocolError):
        commands.rcpt("a@b", notify=["SOMETIMES"])


@pytest.mark.parametrize(
    "address",
    [
        "a@b.c>\r\nRCPT TO:<evil@x.y",  # smtplib / aiosmtplib style command injection
        "a@b.c> NOTIFY=SUCCESS",  # go-mail style parameter smuggling
        "a@b.c NOTIFY=SUCCESS",
        "a@b.c\x00",
        "a\n@b.c",
        "a\r@b.c",
        "<a@b.c>",
        "a b@c.d",
        '"unbalanced@c.d',
        '"q"x@c.d',
        "",
        "x" * 250 + "@example.com",
    ],
)
def test_addresses_that_could_smuggle_protocol_are_refused(address: str) -> None:
    with pytest.raises(LocalProtocolError) as info:
        commands.rcpt(address)
    assert isinstance(info.value, ValueError)


def test_quoted_local_part_with_space_is_allowed() -> None:
    assert commands.rcpt('"john doe"@example.com') == b'RCPT TO:<"john doe"@example.com>\r\n'


def test_non_ascii_needs_smtputf8() -> None:
    with pytest.raises(LocalProtocolError, match="SMTPUTF8"):
        commands.mail("jörg@example.com")
    line = commands.mail("jörg@example.com", smtputf8=True)
    assert line == "MAIL FROM:<jörg@example.com> SMTPUTF8\r\n".encode()


def test_xtext_and_orcpt() -> None:
    assert xtext("a+b=c d") == "a+2Bb+3Dc+20d"
    assert orcpt_value("a+b@example.com") == "rfc822;a+2Bb@example.com"
    assert orcpt_value("jörg@example.com") == "utf-8;j\\x{F6}rg@example.com"


def test_auth_line_limit() -> None:
    assert commands.auth("PLAIN", b"\x00u\x00p") == b"AUTH PLAIN AHUAcA==\r\n"
    assert commands.auth("PLAIN", b"") == b"AUTH PLAIN =\r\n"
    assert commands.auth("LOGIN", None) == b"AUTH LOGIN\r\n"
    with pytest.raises(LocalProtocolError, match="512"):
        commands.auth("XOAUTH2", b"x" * 400)
    with pytest.raises(LocalProtocolError):
        commands.auth("PLAIN\r\nQUIT", None)


def test_vrfy_and_bdat() -> None:
    assert commands.vrfy("postmaster") == b"VRFY postmaster\r\n"
    with pytest.raises(LocalProtocolError):
        commands.vrfy("x\r\nQUIT")
    assert commands.bdat(10, last=False) == b"BDAT 10\r\n"
    assert commands.bdat(0, last=True) == b"BDAT 0 LAST\r\n"


def test_transaction_validates_on_creation() -> None:
    with pytest.raises(LocalProtocolError):
        Transaction(mail_from="a@b", recipients=("ok@b", "bad\r\n@b"))
    with pytest.raises(LocalProtocolError):
        Transaction(mail_from="a@b", recipients=())
    with pytest.raises(LocalProtocolError):
        Transaction(mail_from="a@b", recipients="c@d")  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        Transaction(mail_from="a@b", recipients=("c@d",), envid="x" * 101)


def test_transaction_drops_dsn_parameters_when_not_offered() -> None:
    tx = Transaction(
        mail_from="a@b", recipients=("c@d",), ret="FULL", envid="E", notify=frozenset({"SUCCESS"})
    )
    assert tx.mail_command(dsn=False) == b"MAIL FROM:<a@b>\r\n"
    assert tx.mail_command(dsn=True) == b"MAIL FROM:<a@b> RET=FULL ENVID=E\r\n"
    assert tx.rcpt_command("c@d", dsn=False) == b"RCPT TO:<c@d>\r\n"


@given(
    st.lists(st.sampled_from(["c@d", "é@d", "x.y+z@[192.0.2.1]", '"a b"@d']), min_size=1),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)
def test_derived_copies_reuse_the_prototypes_rcpt_lines(
    recipients: list[str], prototype_utf8: bool, copy_utf8: bool, dsn: bool
) -> None:
    """The lines a copy takes over are the ones it would build itself, whichever is built first."""
    options = {"notify": frozenset({"SUCCESS", "DELAY"}), "orcpt": True}
    try:
        prototype = Transaction(
            mail_from="a@b", recipients=tuple(recipients), smtputf8=prototype_utf8, **options
        )
    except LocalProtocolError:
        assert not prototype_utf8  # only a non-ASCII address without SMTPUTF8 is refused
        return
    copy = prototype.derive(size=10, body=None, smtputf8=copy_utf8, tag=None)
    fresh = Transaction(mail_from="a@b", recipients=tuple(recipients), smtputf8=True, **options)
    built = tuple(fresh.rcpt_command(recipient, dsn=dsn) for recipient in recipients)
    assert copy.rcpt_commands(dsn=dsn) == built
    assert prototype.rcpt_commands(dsn=dsn) is copy.rcpt_commands(dsn=dsn)


@given(st.text(max_size=60), st.booleans())
def test_serialised_commands_never_carry_cr_lf_nul(address: str, smtputf8: bool) -> None:
    for build in (
        lambda: commands.mail(address, smtputf8=smtputf8, envid=address or None),
        lambda: commands.rcpt(address, smtputf8=smtputf8, orcpt=True),
        lambda: commands.ehlo(address),
        lambda: commands.vrfy(address),
    ):
        try:
            line = build()
        except LocalProtocolError:
            continue
        body = line[:-2]
        assert line.endswith(b"\r\n")
        assert b"\r" not in body and b"\n" not in body and b"\x00" not in body


@given(st.text(max_size=40))
def test_an_accepted_address_is_one_token_between_brackets(address: str) -> None:
    try:
        line = commands.rcpt(address, smtputf8=True)
    except LocalProtocolError:
        return
    text = line.decode()
    assert text == f"RCPT TO:<{address}>\r\n"
    assert text.count("<") == 1 and text.count(">") == 1


@given(st.text(max_size=50))
def test_xtext_output_is_printable_ascii_without_plus_or_equals_unescaped(value: str) -> None:
    encoded = xtext(value)
    assert encoded.isascii() and "=" not in encoded
    assert all(33 <= ord(char) <= 126 for char in encoded)
    decoded = bytearray()
    index = 0
    while index < len(encoded):
        if encoded[index] == "+":
            decoded.append(int(encoded[index + 1 : index + 3], 16))
            index += 3
        else:
            decoded.append(ord(encoded[index]))
            index += 1
    assert decoded.decode() == value


@given(
    st.sampled_from(["a@b", "", "é@b", '"a b"@c']),
    st.none() | st.integers(0, 10**9),
    st.sampled_from([None, "7BIT", "8BITMIME", "BINARYMIME"]),
    st.booleans(),
    st.sampled_from([None, "FULL", "HDRS"]),
    st.none() | st.text(min_size=1, max_size=20),
    st.booleans(),
    st.lists(st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()), max_size=6),
)
def test_cached_mail_lines_equal_freshly_serialised_ones(
    mail_from: str,
    size: int | None,
    body: str | None,
    smtputf8: bool,
    ret: str | None,
    envid: str | None,
    requiretls: bool,
    calls: list[tuple[bool, bool, bool, bool]],
) -> None:
    """mail_command() caches lines per family of copies; each is what _commands.mail() builds."""
    options = {"ret": ret, "envid": envid, "requiretls": requiretls}
    try:
        prototype = Transaction(
            mail_from=mail_from, recipients=("c@d",), smtputf8=smtputf8, **options
        )
    except LocalProtocolError:
        return
    copy = prototype.derive(size=size, body=body, smtputf8=False, tag=None)  # type: ignore[arg-type]
    for use_copy, dsn, with_size, with_body_type in calls:
        tx = copy if use_copy else prototype
        assert tx.mail_command(dsn=dsn, with_size=with_size, with_body_type=with_body_type) == (
            commands.mail(
                tx.mail_from,
                size=tx.size if with_size else None,
                body=tx.body if with_body_type else None,
                smtputf8=tx.smtputf8,
                ret=ret if dsn else None,
                envid=envid if dsn else None,
                requiretls=requiretls,
            )
        )


def test_invalid_size_is_refused_on_creation() -> None:
    with pytest.raises(LocalProtocolError, match="invalid SIZE"):
        Transaction(mail_from="a@b", recipients=("c@d",), size=-1)


def test_a_derived_transaction_is_a_frozen_copy_with_every_field() -> None:
    """derive() sets the fields one by one (see _frozen): none may be left out or shared."""
    prototype = Transaction(
        mail_from="a@b", recipients=("c@d",), ret="HDRS", envid="e", notify=frozenset({"NEVER"})
    )
    copy = prototype.derive(size=10, body="8BITMIME", smtputf8=True, tag="job")
    assert type(copy) is Transaction
    expected = dataclasses.replace(prototype, size=10, body="8BITMIME", smtputf8=True, tag="job")
    for item in dataclasses.fields(Transaction):
        if item.init:
            assert getattr(copy, item.name) == getattr(expected, item.name), item.name
        else:  # the serialised lines, shared with the prototype
            assert getattr(copy, item.name) is getattr(prototype, item.name), item.name
    with pytest.raises(dataclasses.FrozenInstanceError):
        copy.size = 11  # type: ignore[misc]
    assert prototype.size is None and prototype.tag is None
