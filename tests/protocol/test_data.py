"""DATA encoding and BDAT framing: line ends, dot-stuffing, chunk boundaries."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rawsmtp.protocol import ChunkingEncoder, DataEncoder, decode_data, to_crlf
from rawsmtp.protocol._data import BDAT_CHUNK_SIZE


def encode(chunks: list[bytes]) -> bytes:
    encoder = DataEncoder()
    return b"".join(encoder.encode(chunk) for chunk in chunks) + encoder.end()


def normalised(data: bytes) -> bytes:
    """What a message means on the wire: every line end is CR LF, ending in a line end."""
    text = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    return text if not text or text.endswith(b"\r\n") else text + b"\r\n"


@pytest.mark.parametrize(
    ("raw", "wire"),
    [
        (b"", b".\r\n"),
        (b"a", b"a\r\n.\r\n"),
        (b"a\r\n", b"a\r\n.\r\n"),
        (b".", b"..\r\n.\r\n"),
        (b"a\n.b\n", b"a\r\n..b\r\n.\r\n"),
        (b"a\r.b", b"a\r\n..b\r\n.\r\n"),  # a dot after a bare CR is a line start too
        (b"a\n.\nb", b"a\r\n..\r\nb\r\n.\r\n"),  # a lone dot line must not end the message
        (b"a\r\n.\r\n", b"a\r\n..\r\n.\r\n"),
        (b"x\r\r\ny", b"x\r\n\r\ny\r\n.\r\n"),
    ],
)
def test_data_encoding(raw: bytes, wire: bytes) -> None:
    assert encode([raw]) == wire


def test_chunk_boundaries_on_cr_lf_and_dot() -> None:
    assert encode([b"a\r", b"\n.b"]) == b"a\r\n..b\r\n.\r\n"
    assert encode([b"a\r", b".b"]) == b"a\r\n..b\r\n.\r\n"
    assert encode([b"a\n", b".", b"b"]) == b"a\r\n..b\r\n.\r\n"
    assert encode([b"a\r"]) == b"a\r\n.\r\n"


def test_no_end_of_data_sequence_can_appear_early() -> None:
    """lettre RUSTSEC-2021-0069 / -2026-0561: a body must never contain CRLF.CRLF itself."""
    wire = encode([b"x\n.\r", b"\nevil\r.\nmore\r\n.\r\n"])
    assert wire.count(b"\r\n.\r\n") == 1 and wire.endswith(b"\r\n.\r\n")


def test_bdat_framing() -> None:
    encoder = ChunkingEncoder(chunk_size=1)
    out = encoder.encode(b"ab\n.c\r") + encoder.encode(b"") + encoder.encode(b"\nd") + encoder.end()
    assert out == b"BDAT 6\r\nab\r\n.c" + b"BDAT 5 LAST\r\n\r\nd\r\n"
    encoder = ChunkingEncoder()
    assert encoder.encode(b"x\r") + encoder.end() == b"BDAT 3 LAST\r\nx\r\n"
    assert ChunkingEncoder().end() == b"BDAT 0 LAST\r\n"


def test_small_pieces_are_gathered_into_chunks_of_at_least_the_chunk_size() -> None:
    encoder = ChunkingEncoder(chunk_size=10)
    pieces = [encoder.encode(b"abcd") for _ in range(7)]
    # The third piece fills 12 bytes: they go out when the fourth shows they are not the last.
    assert pieces == [
        b"",
        b"",
        b"",
        b"BDAT 12\r\nabcdabcdabcd",
        b"",
        b"",
        b"BDAT 12\r\n" + b"abcd" * 3,
    ]
    assert encoder.end() == b"BDAT 6 LAST\r\nabcd\r\n"
    assert BDAT_CHUNK_SIZE == 65536
    default = ChunkingEncoder()
    assert [default.encode(b"x" * 1000) for _ in range(66)].count(b"") == 66
    assert default.encode(b"y\n").startswith(b"BDAT 66000\r\n")


def test_decode_rejects_unterminated_data() -> None:
    with pytest.raises(ValueError):
        decode_data(b"abc\r\n")


def unframe(wire: bytes) -> bytes:
    body, position = bytearray(), 0
    while True:
        match = re.compile(rb"BDAT (\d+)( LAST)?\r\n").match(wire, position)
        assert match is not None
        size = int(match.group(1))
        body += wire[match.end() : match.end() + size]
        position = match.end() + size
        if match.group(2):
            assert position == len(wire)
            return bytes(body)


message_bytes = st.binary(max_size=300) | st.lists(
    st.sampled_from([b"\r", b"\n", b".", b"a", b"\r\n", b".."]), max_size=60
).map(b"".join)


@given(message_bytes, st.lists(st.integers(0, 40), max_size=20))
def test_data_encode_then_decode_is_identity(data: bytes, cuts: list[int]) -> None:
    wire = encode(pieces(data, cuts))
    assert wire == encode([data])  # chunking never changes the output
    assert decode_data(wire) == normalised(data)
    assert b"\r\n.\r\n" not in (b"\r\n" + wire)[:-3]  # the terminator appears only at the end
    assert re.search(rb"\r(?!\n)|(?<!\r)\n", wire) is None  # only CR LF pairs


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut after each size in ``cuts``; the rest is the last piece."""
    chunks, position = [], 0
    for size in cuts:
        chunks.append(data[position : position + size])
        position += size
    return [*chunks, data[position:]]


def stuffed(data: bytes) -> bytes:
    """The DATA payload built the plain way: the whole message at once, line by line."""
    lines = normalised(data).split(b"\r\n")[:-1]
    wire = b"".join((b"." if line.startswith(b".") else b"") + line + b"\r\n" for line in lines)
    return wire + b".\r\n"


@given(
    st.lists(
        st.sampled_from([b"\r", b"\n", b".", b"a", b"\r\n", b"\r\n.", b"\n."]), max_size=80
    ).map(b"".join),
    st.lists(st.integers(0, 40), max_size=20),
)
def test_chunked_encoding_equals_line_by_line_stuffing(data: bytes, cuts: list[int]) -> None:
    """Chunks with and without line-start dots, split anywhere, give the line-by-line bytes."""
    assert encode(pieces(data, cuts)) == stuffed(data)


@given(message_bytes, st.lists(st.integers(0, 40), max_size=20), st.integers(1, 30))
def test_bdat_chunks_carry_the_normalised_message(
    data: bytes, cuts: list[int], chunk_size: int
) -> None:
    encoder, wire, position = ChunkingEncoder(chunk_size=chunk_size), b"", 0
    for size in cuts:
        wire += encoder.encode(data[position : position + size])
        position += size
    wire += encoder.encode(data[position:]) + encoder.end()
    assert unframe(wire) == normalised(data)


@given(message_bytes, st.lists(st.integers(0, 40), max_size=20))
def test_data_and_bdat_deliver_the_same_bytes(data: bytes, cuts: list[int]) -> None:
    """Whichever command carries a message, the server stores the same bytes."""
    chunking = ChunkingEncoder()
    bdat_wire = b"".join(chunking.encode(chunk) for chunk in pieces(data, cuts)) + chunking.end()
    assert unframe(bdat_wire) == decode_data(encode(pieces(data, cuts)))


@given(message_bytes, st.lists(st.integers(0, 40), max_size=20))
def test_to_crlf_is_what_the_encoders_carry(data: bytes, cuts: list[int]) -> None:
    """Its length is the exact SIZE of what either command sends, however the body is cut."""
    chunking = ChunkingEncoder()
    bdat_wire = b"".join(chunking.encode(chunk) for chunk in pieces(data, cuts)) + chunking.end()
    assert to_crlf(data) == normalised(data) == unframe(bdat_wire)
    assert to_crlf(data) == decode_data(encode(pieces(data, cuts)))


@given(st.lists(st.tuples(message_bytes, st.lists(st.integers(0, 40), max_size=5)), max_size=5))
def test_one_data_encoder_serves_message_after_message(
    messages: list[tuple[bytes, list[int]]],
) -> None:
    """After end() an encoder is as new: a session reuses one for every message."""
    shared = DataEncoder()
    for data, cuts in messages:
        wire = b"".join(shared.encode(chunk) for chunk in pieces(data, cuts)) + shared.end()
        assert wire == encode([data])
