"""The reply parser: framing, enhanced codes, limits, and independence from how bytes are split."""

from __future__ import annotations

import contextlib
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rawsmtp.protocol import RemoteProtocolError, Reply, ReplyParser


def parse_all(data: bytes, **limits: int) -> list[Reply]:
    parser = ReplyParser(**limits)
    parser.feed(data)
    replies = []
    while (reply := parser.next_reply()) is not None:
        replies.append(reply)
    return replies


def test_single_and_multiline_replies() -> None:
    replies = parse_all(
        b"220 mx.example ESMTP\r\n250-mx.example\r\n250-PIPELINING\r\n250 SIZE 10\r\n"
    )
    assert replies == [
        Reply(220, ("mx.example ESMTP",)),
        Reply(250, ("mx.example", "PIPELINING", "SIZE 10")),
    ]
    assert replies[1].text == "mx.example\nPIPELINING\nSIZE 10"


def test_bare_lf_and_bare_code_are_accepted() -> None:
    assert parse_all(b"250-first\n250\n") == [Reply(250, ("first", ""))]
    assert parse_all(b"250 \r\n") == [Reply(250, ("",))]


def test_enhanced_status_code_is_split_out() -> None:
    [reply] = parse_all(b"550-5.1.1 no such user\r\n550 5.1.1 really\r\n")
    assert reply.enhanced_code == "5.1.1"
    assert reply.is_permanent_failure and not reply.is_success


@pytest.mark.parametrize(
    "line",
    [b"250 4.1.1 class does not match", b"250 2.1 missing detail", b"250 2.1.0x glued"],
)
def test_enhanced_code_needs_the_right_shape(line: bytes) -> None:
    [reply] = parse_all(line + b"\r\n")
    assert reply.enhanced_code is None


@pytest.mark.parametrize(
    "data",
    [
        b"25 short\r\n",
        b"650 bad class\r\n",
        b"2500 four digits\r\n",
        b"abc text\r\n",
        b"250x text\r\n",
        b"250-first\r\n\r\n250 an empty line inside a reply\r\n",
        b"\r\n" * 9 + b"220 too many empty lines first\r\n",
        b"250-first\r\n251 second code\r\n",
    ],
)
def test_malformed_replies_are_remote_protocol_errors(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_all(data)


def test_line_length_limit_is_enforced_before_the_line_ends() -> None:
    parser = ReplyParser(max_line_length=600)
    parser.feed(b"250 " + b"x" * 596)
    assert parser.next_reply() is None
    parser.feed(b"xx")
    with pytest.raises(RemoteProtocolError, match="longer than 600"):
        parser.next_reply()


def test_line_count_limit() -> None:
    with pytest.raises(RemoteProtocolError, match="longer than 3 lines"):
        parse_all(b"250-a\r\n250-b\r\n250-c\r\n250 d\r\n", max_lines=3)
    assert len(parse_all(b"250-a\r\n250-b\r\n250 c\r\n", max_lines=3)[0].lines) == 3


def test_non_utf8_text_is_kept_whole() -> None:
    """Latin-1 when not UTF-8: every byte survives, as a printable string; raw keeps them."""
    [reply] = parse_all(b"250-caf\xe9\r\n250 \xd0\x9f\xd1\x80\xd0\xb8\r\n")
    assert reply.code == 250 and reply.lines == ("caf\xe9", "При")
    assert reply.raw == b"caf\xe9\n\xd0\x9f\xd1\x80\xd0\xb8"
    assert "\ufffd" not in reply.text
    assert reply.text.encode("utf-8")  # no lone surrogates to trip a log handler


@pytest.mark.parametrize("stray", [b"\r\n", b"\n", b"\r\n\n\r\n" + b"\n" * 5])
def test_a_few_empty_lines_between_replies_are_skipped(stray: bytes) -> None:
    data = stray + b"220 hi\r\n" + stray + b"250-mx\r\n250 SIZE 10\r\n" + stray + b"250 ok\r\n"
    replies = parse_all(data)
    assert [r.code for r in replies] == [220, 250, 250]
    assert replies[1].lines == ("mx", "SIZE 10")


def test_empty_lines_are_counted_in_a_row_only() -> None:
    """A server that adds an empty line after every reply works for a whole session."""
    assert len(parse_all(b"250 ok\r\n\r\n" * 100)) == 100


@pytest.mark.parametrize(
    ("tail", "code", "lines"),
    [
        (b"421 \xd0\x9f\xd1\x80\xd0\xbe\xd1\x89\xd0\xb0\xd0\xb9", 421, ("Прощай",)),
        (b"421-4.3.2 going\r\n421 do", 421, ("4.3.2 going", "do")),
        (b"421-4.3.2 going\r\n", 421, ("4.3.2 going",)),
        (b"421-4.3.2 going\r\n550 x", 421, ("4.3.2 going",)),  # a line of another code: cut
        (b"421\r", 421, ("",)),
    ],
)
def test_last_words_of_a_server_that_closes_mid_line(
    tail: bytes, code: int, lines: tuple[str, ...]
) -> None:
    parser = ReplyParser()
    parser.feed(tail)
    assert parser.next_reply() is None
    reply = parser.last_words()
    assert reply is not None and reply.code == code and reply.lines == lines


@pytest.mark.parametrize("tail", [b"", b"garbage", b"42", b"\r\n"])
def test_no_last_words(tail: bytes) -> None:
    parser = ReplyParser()
    parser.feed(tail)
    assert parser.next_reply() is None and parser.last_words() is None


def test_buffered_counts_unparsed_bytes() -> None:
    parser = ReplyParser()
    parser.feed(b"220 hi\r\n250 extra")
    assert parser.next_reply() == Reply(220, ("hi",))
    assert parser.buffered == len(b"250 extra")


def test_one_byte_at_a_time_stays_linear() -> None:
    """A 1 MB reply fed byte by byte: rescanning would be quadratic (hours, not seconds)."""
    line = b"250-" + b"x" * 1000 + b"\r\n"
    data = line * 1000 + b"250 end\r\n"
    parser = ReplyParser(max_lines=2000)
    started = time.perf_counter()
    replies = []
    for index in range(len(data)):
        parser.feed(data[index : index + 1])
        if data[index] == 10 and (reply := parser.next_reply()) is not None:
            replies.append(reply)
    # Not a speed target, a complexity check: quadratic rescanning of 1 MB takes many minutes.
    assert time.perf_counter() - started < 60
    assert len(replies) == 1 and len(replies[0].lines) == 1001


reply_lines = st.lists(
    st.text(
        alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF, exclude_characters="\x7f"),
        max_size=40,
    ),
    min_size=1,
    max_size=5,
)


def serialise(code: int, lines: list[str]) -> bytes:
    out = b"".join(b"%d-%s\r\n" % (code, text.encode()) for text in lines[:-1])
    return out + b"%d %s\r\n" % (code, lines[-1].encode())


@given(
    st.lists(st.tuples(st.integers(200, 559).filter(lambda c: c % 100 < 60), reply_lines)),
    st.lists(st.integers(1, 50), max_size=30),
)
def test_parsing_does_not_depend_on_how_bytes_are_split(
    replies: list[tuple[int, list[str]]], cuts: list[int]
) -> None:
    data = b"".join(serialise(code, lines) for code, lines in replies)
    expected = parse_all(data)
    assert [(r.code, list(r.lines)) for r in expected] == replies
    assert _feed_in_pieces(ReplyParser(), data, cuts) == expected


def _feed_in_pieces(parser: ReplyParser, data: bytes, cuts: list[int]) -> list[Reply]:
    """Feed ``data`` cut after each size in ``cuts``, taking every reply as soon as it is whole."""
    got, position = [], 0
    for size in [*cuts, len(data)]:
        parser.feed(data[position : position + size])
        position += size
        while (reply := parser.next_reply()) is not None:
            got.append(reply)
    return got


@given(st.binary(max_size=2000))
def test_arbitrary_bytes_only_raise_remote_protocol_error(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        parse_all(data, max_line_length=512, max_lines=4)


def test_a_remembered_line_still_ends_a_multiline_reply_by_the_rules() -> None:
    parser = ReplyParser()
    parser.feed(b"250 Ok\r\n251 Ok\r\n250-first\r\n250 Ok\r\n")
    assert [parser.next_reply() for _ in range(3)] == [
        Reply(250, ("Ok",)),
        Reply(251, ("Ok",)),
        Reply(250, ("first", "Ok")),
    ]
    parser.feed(b"250-first\r\n251 Ok\r\n")
    with pytest.raises(RemoteProtocolError, match="code changed"):
        parser.next_reply()


def test_replies_that_differ_each_time_are_all_parsed() -> None:
    data = b"".join(b"250 2.0.0 Ok: queued as Q%d\r\n" % index for index in range(500))
    assert (
        parse_all(data + data)
        == [Reply(250, (f"2.0.0 Ok: queued as Q{i}",)) for i in range(500)] * 2
    )


@given(
    st.lists(
        st.sampled_from(
            [
                b"250 2.1.0 Ok\r\n",
                b"250 2.1.5 Ok\n",
                b"354 End data with <CR><LF>.<CR><LF>\r\n",
                b"250 \r\n",
                b"250\r\n",
                b"250-x\r\n250 2.1.0 Ok\r\n",
                b"550 5.1.1 no\r\n",
                b"250 caf\xe9\r\n",
            ]
        ),
        max_size=40,
    ),
    st.lists(st.integers(1, 50), max_size=30),
)
def test_remembered_replies_equal_freshly_parsed_ones(
    raw_replies: list[bytes], cuts: list[int]
) -> None:
    """One parser sees each reply many times; a new parser per reply parses each from scratch."""
    expected = [reply for raw in raw_replies for reply in parse_all(raw)]
    got = _feed_in_pieces(ReplyParser(), b"".join(raw_replies), cuts)
    assert got == expected
    assert [reply.enhanced_code for reply in got] == [reply.enhanced_code for reply in expected]
