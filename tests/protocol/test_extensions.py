"""EHLO replies turned into capabilities."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rawsmtp.protocol import Reply, parse_ehlo


def test_postfix_style_reply() -> None:
    reply = Reply(
        250,
        (
            "mx.example.test",
            "PIPELINING",
            "SIZE 10240000",
            "VRFY",
            "ETRN",
            "STARTTLS",
            "AUTH PLAIN LOGIN",
            "AUTH=PLAIN LOGIN XOAUTH2",
            "ENHANCEDSTATUSCODES",
            "8BITMIME",
            "DSN",
            "SMTPUTF8",
            "CHUNKING",
            "REQUIRETLS",
            "X-CUSTOM a b",
        ),
    )
    ext = parse_ehlo(reply)
    assert ext.pipelining and ext.starttls and ext.eightbitmime and ext.smtputf8
    assert ext.chunking and ext.dsn and ext.enhanced_status_codes and ext.requiretls
    assert ext.size == 10240000
    assert ext.auth == frozenset({"PLAIN", "LOGIN", "XOAUTH2"})
    assert ext.keywords["X-CUSTOM"] == ("a", "b")
    assert "x-custom" in ext and "BINARYMIME" not in ext


def test_smtp_sink_empty_last_line_and_size_without_limit() -> None:
    ext = parse_ehlo(Reply(250, ("sink", "pipelining", "size", "")))
    assert ext.pipelining and ext.size is None and not ext.starttls


def test_greeting_line_is_not_a_keyword() -> None:
    assert parse_ehlo(Reply(250, ("STARTTLS",))).starttls is False


@given(st.lists(st.text(max_size=30), min_size=1, max_size=10))
def test_any_text_parses(lines: list[str]) -> None:
    ext = parse_ehlo(Reply(250, tuple(lines)))
    assert all(keyword == keyword.upper() for keyword in ext.keywords)
