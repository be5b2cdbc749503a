"""Proxies: URL parsing, the sans-I/O handshakes with scripted proxy bytes, and real proxies.

Every handshake is driven three ways (h11's ``tr()``): the whole reply at once, one byte at a
time, and with tunnel bytes after it. Hypothesis checks that no reply, however split or
malformed, ends in anything but an open tunnel or an SMTPProxyError. The integration tests use
the microsocks (SOCKS5) and tinyproxy (HTTP CONNECT) servers from tests/servers/setup.sh; no
SOCKS4 server is installed there, so SOCKS4/4a are covered by the scripted tests only.
"""

from __future__ import annotations

import base64
import socket

import pytest
from conftest import Servers
from helpers.smtp import unique
from hypothesis import given
from hypothesis import strategies as st

import rawsmtp
from rawsmtp import LocalProtocolError, SMTPConfigError, SMTPProxyError
from rawsmtp.proxy import (
    MAX_HEAD_SIZE,
    SOCKS4_REPLIES,
    SOCKS5_REPLIES,
    ProxyHandshake,
    ProxyURL,
    connect_via_proxy,
    parse_proxy_url,
    proxy_get_socket,
    redact_url,
    start_handshake,
)

GREETING = b"220 mx.example.test ESMTP\r\n"
SOCKS5_OK_V4 = b"\x05\x00\x00\x01\x7f\x00\x00\x01\x09\xc5"
SOCKS4_OK = b"\x00\x5a\x00\x00\x00\x00\x00\x00"
HTTP_OK = b"HTTP/1.1 200 Connection established\r\nProxy-agent: test/1.0\r\n\r\n"


def feed(handshake: ProxyHandshake, data: bytes, mode: str) -> None:
    """Hand ``data`` over whole or one byte at a time, stopping once the handshake is done."""
    if mode == "whole":
        handshake.receive_data(data)
        return
    for i in range(len(data)):
        if handshake.done:
            raise AssertionError(f"done with {len(data) - i} bytes unread")
        handshake.receive_data(data[i : i + 1])


MODES = ["whole", "bytewise"]


# --------------------------------------------------------------------------------------------
# URLs


@pytest.mark.parametrize(
    ("url", "scheme", "host", "port"),
    [
        ("socks5://proxy.example", "socks5", "proxy.example", 1080),
        ("SOCKS5H://Proxy.Example:9050", "socks5h", "proxy.example", 9050),
        ("socks4://10.0.0.1", "socks4", "10.0.0.1", 1080),
        ("socks4a://h:1081/", "socks4a", "h", 1081),
        ("http://[::1]", "http", "::1", 8080),
        ("http://proxy:3128", "http", "proxy", 3128),
    ],
)
def test_parse_defaults(url: str, scheme: str, host: str, port: int) -> None:
    proxy = parse_proxy_url(url)
    assert (proxy.scheme, proxy.host, proxy.port) == (scheme, host, port)
    assert proxy.username is None and proxy.password is None
    assert proxy.needs_local_resolution == (scheme == "socks4")


def test_parse_percent_decodes_credentials() -> None:
    proxy = parse_proxy_url("socks5://us%40er:p%3Aw%2Fd%20%C3%BC@h:1")
    assert (proxy.username, proxy.password) == ("us@er", "p:w/d ü")
    assert parse_proxy_url("socks4a://alice@h").username == "alice"
    assert parse_proxy_url("http://@h").username is None
    assert parse_proxy_url("http://u:@h").password == ""


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://u:secret@h", "proxy must be a URL"),
        ("h:1080", "proxy must be a URL"),
        ("socks5://", "proxy must be a URL"),
        ("socks5://u:secret@:1080", "needs a host"),
        ("socks5://u:secret@h:99999", "invalid proxy URL"),
        ("socks5://u:secret@h:port", "invalid proxy URL"),
        ("socks5://u:secret@h:0", "1 to 65535"),
        ("socks5://u:secret@h/path", "no path"),
        ("http://u:secret@h?x=1", "no path"),
        ("socks5://:secret@h", "password but no user"),
        ("socks4://u:secret@h", "no passwords"),
        ("socks4a://u%00x@h", "NUL"),
        (f"socks5://{'u' * 256}:secret@h", "255 bytes"),
        (f"socks5://u:{'s' * 200}%C3%BC%C3%BC%C3%BC%C3%BC%C3%BC%C3%BC{'s' * 50}@h", "255 bytes"),
        ("http://a%3Ab:secret@h", "cannot contain ':'"),
        ("socks5://u%FF:secret@h", "UTF-8"),
        ("socks5://u:secret@[::1", "invalid proxy URL"),
    ],
)
def test_parse_errors(url: str, words: str) -> None:
    with pytest.raises(SMTPConfigError) as caught:
        parse_proxy_url(url)
    assert caught.value.option == "proxy"
    assert words in str(caught.value)
    assert "secret" not in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_parse_rejects_non_strings() -> None:
    with pytest.raises(SMTPConfigError, match="URL string"):
        parse_proxy_url(1080)  # type: ignore[arg-type]


def test_direct_construction_is_validated() -> None:
    with pytest.raises(SMTPConfigError):
        ProxyURL(scheme="socks5", host="h", port=70000)
    with pytest.raises(SMTPConfigError):
        ProxyURL(scheme="gopher", host="h", port=70)
    with pytest.raises(SMTPConfigError):
        ProxyURL(scheme="http", host="", port=80)
    with pytest.raises(SMTPConfigError):
        ProxyURL(scheme="socks5", host="h", port=1, username="u", password=b"x")  # type: ignore[arg-type]


def test_repr_and_str_never_show_the_password() -> None:
    proxy = parse_proxy_url("socks5://alice:hunter2@h:1080")
    for text in (repr(proxy), str(proxy), repr([proxy]), f"{proxy}"):
        assert "hunter2" not in text
    assert "alice" in repr(proxy) and "***" in repr(proxy)
    assert str(proxy) == "socks5://alice:***@h:1080"
    assert str(parse_proxy_url("http://[::1]:3128")) == "http://[::1]:3128"
    assert "password=None" in repr(parse_proxy_url("socks4a://bob@h"))


def test_redact_url() -> None:
    assert redact_url("socks5://u:p%40ss@h:1/x?y") == "socks5://u:***@h:1/x?y"
    assert redact_url("http://h:1") == "http://h:1"
    assert redact_url("u:pw@h") == "u:***@h"


# --------------------------------------------------------------------------------------------
# The target


@pytest.mark.parametrize("url", ["socks5://h", "socks4a://h", "http://h"])
@pytest.mark.parametrize(
    ("host", "port"),
    [
        ("mx.example", 0),
        ("mx.example", 65536),
        ("mx example", 25),
        ("mx.example\r\nX-Injected: 1", 25),
        ("mx/example", 25),
        ("", 25),
        ("a" * 256, 25),
        ("fe80::1%eth0", 25),
        ("[mx.example]", 25),
        ("[10.0.0.1]", 25),
    ],
)
def test_bad_targets_fail_before_sending(url: str, host: str, port: int) -> None:
    with pytest.raises(LocalProtocolError):
        start_handshake(url, host, port)


# --------------------------------------------------------------------------------------------
# SOCKS5


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "reply",
    [
        SOCKS5_OK_V4,
        b"\x05\x00\x00\x03\x0bproxy.local\x09\xc5",
        b"\x05\x00\x00\x03\x00\x09\xc5",
        b"\x05\x00\x00\x04" + bytes(16) + b"\x09\xc5",
        b"\x05\x00\xff\x01\x00\x00\x00\x00\x00\x00",  # RSV is not checked
    ],
)
def test_socks5_no_auth(mode: str, reply: bytes) -> None:
    handshake = start_handshake("socks5://h", "127.0.0.1", 2525)
    assert handshake.data_to_send() == b"\x05\x01\x00"
    assert handshake.data_to_send() == b""
    feed(handshake, b"\x05\x00", mode)
    assert handshake.data_to_send() == b"\x05\x01\x00\x01\x7f\x00\x00\x01\x09\xdd"
    assert not handshake.done
    feed(handshake, reply, mode)
    assert handshake.done and handshake.leftover == b""
    assert handshake.bytes_needed() == 0


@pytest.mark.parametrize("mode", MODES)
def test_socks5_leftover_greeting(mode: str) -> None:
    handshake = start_handshake("socks5h://h", "mx.example", 25)
    handshake.data_to_send()
    handshake.receive_data(b"\x05\x00")
    assert handshake.data_to_send() == b"\x05\x01\x00\x03\x0amx.example\x00\x19"
    if mode == "whole":
        handshake.receive_data(SOCKS5_OK_V4 + GREETING)
        assert handshake.leftover == GREETING
    else:
        feed(handshake, SOCKS5_OK_V4, mode)
        assert handshake.leftover == b""


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("10.1.2.3", b"\x01\x0a\x01\x02\x03"),
        ("::1", b"\x04" + bytes(15) + b"\x01"),
        ("[::1]", b"\x04" + bytes(15) + b"\x01"),
        ("MX.Example", b"\x03\x0aMX.Example"),
        ("bücher.example", b"\x03\x15xn--bcher-kva.example"),
    ],
)
def test_socks5_address_types(host: str, address: bytes) -> None:
    for scheme in ("socks5", "socks5h"):
        handshake = start_handshake(f"{scheme}://h", host, 587)
        handshake.data_to_send()
        handshake.receive_data(b"\x05\x00")
        assert handshake.data_to_send() == b"\x05\x01\x00" + address + b"\x02\x4b"


@pytest.mark.parametrize("mode", MODES)
def test_socks5_username_password(mode: str) -> None:
    handshake = start_handshake("socks5://us%C3%A9r:pw@h", "127.0.0.1", 25)
    assert handshake.data_to_send() == b"\x05\x02\x00\x02"
    feed(handshake, b"\x05\x02", mode)
    assert handshake.data_to_send() == b"\x01\x05us\xc3\xa9r\x02pw"
    feed(handshake, b"\x01\x00", mode)
    assert handshake.data_to_send().startswith(b"\x05\x01\x00\x01")
    handshake.receive_data(SOCKS5_OK_V4 + GREETING)
    assert handshake.done and handshake.leftover == GREETING


def test_socks5_credentials_but_proxy_wants_none() -> None:
    handshake = start_handshake("socks5://u:p@h", "127.0.0.1", 25)
    handshake.data_to_send()
    handshake.receive_data(b"\x05\x00")
    assert handshake.data_to_send().startswith(b"\x05\x01\x00")


@pytest.mark.parametrize("status", [0x01, 0x02, 0xFF])
def test_socks5_authentication_failed(status: int) -> None:
    handshake = start_handshake("socks5://u:p@h", "127.0.0.1", 25)
    handshake.receive_data(b"\x05\x02")
    with pytest.raises(SMTPProxyError, match="proxy authentication failed") as caught:
        handshake.receive_data(bytes([0x01, status]))
    assert caught.value.reply_code == status


def test_socks5_no_acceptable_method() -> None:
    handshake = start_handshake("socks5://h", "127.0.0.1", 25)
    with pytest.raises(SMTPProxyError, match="no acceptable authentication method") as caught:
        handshake.receive_data(b"\x05\xff")
    assert caught.value.reply_code == 0xFF
    assert isinstance(caught.value, rawsmtp.SMTPConnectionError)


@pytest.mark.parametrize(
    ("url", "reply", "words"),
    [
        ("socks5://h", b"\x05\x02", "not offered"),  # user/pass without credentials
        ("socks5://u:p@h", b"\x05\x03", "not offered"),
        ("socks5://h", b"\x04\x00", "not a SOCKS5 proxy"),
        ("socks5://h", b"HTTP/1.1 400 Bad Request\r\n\r\n", "not a SOCKS5 proxy"),
        ("socks5://u:p@h", b"\x05\x02\x05\x00", "malformed SOCKS5 authentication reply"),
        ("socks5://h", b"\x05\x00\x04\x00", "not a SOCKS5 proxy"),
        ("socks5://h", b"\x05\x00\x05\x00\x00\x02", "address type 0x02"),
    ],
)
def test_socks5_protocol_violations(url: str, reply: bytes, words: str) -> None:
    handshake = start_handshake(url, "127.0.0.1", 25)
    with pytest.raises(SMTPProxyError, match=words):
        handshake.receive_data(reply)
    with pytest.raises(LocalProtocolError, match="failed"):
        handshake.receive_data(b"\x00")


@pytest.mark.parametrize("code", [*SOCKS5_REPLIES, 0x09, 0xFF])
@pytest.mark.parametrize("mode", MODES)
def test_socks5_reply_codes(code: int, mode: str) -> None:
    handshake = start_handshake("socks5://h", "mx.example", 25)
    handshake.receive_data(b"\x05\x00")
    with pytest.raises(SMTPProxyError) as caught:
        # Only VER and REP: some proxies close right after a failure code.
        feed(handshake, bytes([0x05, code]), mode)
    assert caught.value.reply_code == code
    reason = SOCKS5_REPLIES.get(code, "unknown reply code")
    assert str(caught.value).startswith("SOCKS5 proxy could not connect to mx.example:25: ")
    assert reason in str(caught.value)


@pytest.mark.parametrize(
    "sent",
    [b"", b"\x05", b"\x05\x00", b"\x05\x00\x05\x00\x00", b"\x05\x00\x05\x00\x00\x03\x05abc"],
)
def test_socks5_truncated(sent: bytes) -> None:
    handshake = start_handshake("socks5://h", "127.0.0.1", 25)
    if sent:
        handshake.receive_data(sent)
    with pytest.raises(SMTPProxyError, match="proxy closed the connection during the handshake"):
        handshake.receive_data(b"")


def test_no_bytes_after_done() -> None:
    handshake = start_handshake("socks5://h", "127.0.0.1", 25)
    handshake.receive_data(b"\x05\x00" + SOCKS5_OK_V4)
    assert handshake.done
    with pytest.raises(LocalProtocolError, match="done"):
        handshake.receive_data(GREETING)
    with pytest.raises(LocalProtocolError):
        handshake.receive_data(b"")


# --------------------------------------------------------------------------------------------
# SOCKS4 / SOCKS4a (no SOCKS4 server in the integration set: scripted only)


@pytest.mark.parametrize("mode", MODES)
def test_socks4_connect(mode: str) -> None:
    handshake = start_handshake("socks4://alice@h", "10.0.0.2", 25)
    assert handshake.data_to_send() == b"\x04\x01\x00\x19\x0a\x00\x00\x02alice\x00"
    feed(handshake, SOCKS4_OK, mode)
    assert handshake.done and handshake.leftover == b""


def test_socks4_leftover_and_empty_user() -> None:
    handshake = start_handshake("socks4://h", "10.0.0.2", 25)
    assert handshake.data_to_send() == b"\x04\x01\x00\x19\x0a\x00\x00\x02\x00"
    handshake.receive_data(SOCKS4_OK + GREETING)
    assert handshake.done and handshake.leftover == GREETING


def test_socks4a_sends_the_name() -> None:
    handshake = start_handshake("socks4a://bob@h", "mx.example", 2525)
    assert handshake.data_to_send() == b"\x04\x01\x09\xdd\x00\x00\x00\x01bob\x00mx.example\x00"
    handshake.receive_data(SOCKS4_OK)
    assert handshake.done
    literal = start_handshake("socks4a://h", "192.0.2.1", 25)
    assert literal.data_to_send() == b"\x04\x01\x00\x19\xc0\x00\x02\x01\x00"


def test_socks4_needs_ipv4() -> None:
    assert parse_proxy_url("socks4://h").needs_local_resolution
    with pytest.raises(LocalProtocolError, match="resolve the name first"):
        start_handshake("socks4://h", "mx.example", 25)
    for scheme in ("socks4", "socks4a"):
        with pytest.raises(LocalProtocolError, match="IPv6"):
            start_handshake(f"{scheme}://h", "::1", 25)


@pytest.mark.parametrize("code", [*SOCKS4_REPLIES, 0x00, 0x5E])
def test_socks4_reply_codes(code: int) -> None:
    handshake = start_handshake("socks4a://h", "mx.example", 25)
    with pytest.raises(SMTPProxyError, match="SOCKS4 proxy could not connect") as caught:
        handshake.receive_data(bytes([0x00, code, 0, 0, 0, 0, 0, 0]))
    assert caught.value.reply_code == code


def test_socks4_bad_version_and_eof() -> None:
    handshake = start_handshake("socks4a://h", "mx.example", 25)
    with pytest.raises(SMTPProxyError, match="not a SOCKS4 proxy"):
        handshake.receive_data(b"\x04\x5a")
    handshake = start_handshake("socks4a://h", "mx.example", 25)
    handshake.receive_data(b"\x00\x5a\x00")
    with pytest.raises(SMTPProxyError, match="closed the connection"):
        handshake.receive_data(b"")


# --------------------------------------------------------------------------------------------
# HTTP CONNECT


def test_http_request() -> None:
    handshake = start_handshake("http://h", "mx.example", 587)
    assert handshake.data_to_send() == (
        b"CONNECT mx.example:587 HTTP/1.1\r\nHost: mx.example:587\r\n\r\n"
    )
    ipv6 = start_handshake("http://h", "[2001:db8::1]", 25)
    assert ipv6.data_to_send().startswith(b"CONNECT [2001:db8::1]:25 HTTP/1.1\r\n")
    auth = start_handshake("http://al%C3%AFce:p%40ss@h", "127.0.0.1", 25)
    secret = base64.b64encode("alïce:p@ss".encode()).decode()
    assert auth.data_to_send() == (
        b"CONNECT 127.0.0.1:25 HTTP/1.1\r\nHost: 127.0.0.1:25\r\n"
        + f"Proxy-Authorization: Basic {secret}\r\n\r\n".encode()
    )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "reply",
    [
        HTTP_OK,
        b"HTTP/1.0 200 Connection established\r\n\r\n",
        b"HTTP/1.1 200\r\n\r\n",
        b"HTTP/1.1 204 No Content\nVia: x\n  folded\n\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
    ],
)
def test_http_success(mode: str, reply: bytes) -> None:
    handshake = start_handshake("http://h", "mx.example", 25)
    handshake.data_to_send()
    feed(handshake, reply, mode)
    assert handshake.done and handshake.leftover == b""


def test_http_leftover_greeting() -> None:
    handshake = start_handshake("http://h", "mx.example", 25)
    handshake.receive_data(HTTP_OK[:10])
    handshake.receive_data(HTTP_OK[10:] + GREETING)
    assert handshake.done and handshake.leftover == GREETING


@pytest.mark.parametrize(
    ("url", "reply", "code", "words"),
    [
        ("http://h", b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", 407, "required"),
        ("http://u:p@h", b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", 407, "failed"),
        ("http://u:p@h", b"HTTP/1.0 401 Unauthorized\r\n\r\n", 401, "authentication failed"),
        ("http://h", b"HTTP/1.0 401 Unauthorized\r\n\r\n", 401, "401 Unauthorized"),
        ("http://h", b"HTTP/1.0 403 Access violation\r\nContent-Length: 9\r\n\r\nforbidden", 403,
         "refused the tunnel to mx.example:25: 403 Access violation"),
        ("http://h", b"HTTP/1.1 502 Bad Gateway\n\n", 502, "502 Bad Gateway"),
        ("http://h", b"HTTP/1.1 301\r\n\r\n", 301, "mx.example:25: 301"),
        ("http://h", b"HTTP/1.1 500 \x1b[31mred\x00\r\n\r\n", 500, r"500 \?\[31mred\?"),
    ],
)  # fmt: skip
def test_http_refusals(url: str, reply: bytes, code: int, words: str) -> None:
    for mode in MODES:
        handshake = start_handshake(url, "mx.example", 25)
        with pytest.raises(SMTPProxyError, match=words) as caught:
            feed(handshake, reply, mode)
        assert caught.value.reply_code == code


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (b"SSH-2.0-OpenSSH\r\n\r\n", "malformed HTTP proxy status line"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "malformed HTTP proxy status line"),
        (b"HTTP/2 200\r\n\r\n", "malformed HTTP proxy status line"),
        (b"\r\n\r\n", "malformed HTTP proxy status line"),
        (b"\x05\x00\n\n", "malformed HTTP proxy status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed HTTP proxy header line"),
        (b"HTTP/1.1 200 OK\r\n: empty name\r\n\r\n", "malformed HTTP proxy header line"),
        (b"HTTP/1.1 100 Continue\r\n\r\n" * 9, "more than 8 interim replies"),
    ],
)
def test_http_malformed(reply: bytes, words: str) -> None:
    handshake = start_handshake("http://h", "mx.example", 25)
    with pytest.raises(SMTPProxyError, match=words):
        handshake.receive_data(reply)


@pytest.mark.parametrize("chunk", [1000, MAX_HEAD_SIZE * 2])
def test_http_head_is_bounded(chunk: int) -> None:
    handshake = start_handshake("http://h", "mx.example", 25)
    handshake.receive_data(b"HTTP/1.1 200 OK\r\n")
    filler = b"X-Filler: " + b"a" * (chunk - 12) + b"\r\n"
    with pytest.raises(SMTPProxyError, match=f"longer than {MAX_HEAD_SIZE} bytes"):
        for _ in range(MAX_HEAD_SIZE // len(filler) + 2):
            handshake.receive_data(filler)


def test_http_head_just_under_the_bound() -> None:
    handshake = start_handshake("http://h", "mx.example", 25)
    head = b"HTTP/1.1 200 OK\r\nX: "
    head += b"a" * (MAX_HEAD_SIZE - len(head) - 4) + b"\r\n\r\n"
    assert len(head) == MAX_HEAD_SIZE
    handshake.receive_data(head + GREETING)
    assert handshake.done and handshake.leftover == GREETING


@pytest.mark.parametrize("sent", [b"", b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 200 OK\r\n\r"])
def test_http_truncated(sent: bytes) -> None:
    handshake = start_handshake("http://h", "mx.example", 25)
    if sent:
        handshake.receive_data(sent)
    with pytest.raises(SMTPProxyError, match="proxy closed the connection during the handshake"):
        handshake.receive_data(b"")


# --------------------------------------------------------------------------------------------
# Properties

URLS = [
    "socks5://h",
    "socks5://u:p@h",
    "socks4://u@h",
    "socks4a://h",
    "http://h",
    "http://u:p@h",
]


def _target(url: str) -> str:
    return "10.0.0.1" if url.startswith("socks4://") else "mx.example"


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True) if b > a]


@given(
    url=st.sampled_from(URLS),
    reply=st.binary(max_size=300),
    cuts=st.lists(st.integers(0, 300), max_size=20),
    eof=st.booleans(),
)
def test_any_reply_ends_in_a_tunnel_or_a_proxy_error(
    url: str, reply: bytes, cuts: list[int], eof: bool
) -> None:
    handshake = start_handshake(url, _target(url), 25)
    chunks = [*_split(reply, cuts), *([b""] if eof else [])]
    fed = b""
    try:
        for index, chunk in enumerate(chunks):
            handshake.receive_data(chunk)
            fed += chunk
            handshake.data_to_send()
            if handshake.done:
                rest = b"".join(chunks[index + 1 :])
                assert fed.endswith(handshake.leftover)
                assert reply.endswith(handshake.leftover + rest)
                break
    except SMTPProxyError:
        pass


def _socks5_reply(draw: st.DrawFn) -> bytes:
    address_type = draw(st.sampled_from([1, 3, 4]))
    if address_type == 3:
        name = draw(st.binary(max_size=255))
        address = bytes([len(name)]) + name
    else:
        address = draw(st.binary(min_size=4, max_size=4) if address_type == 1 else
                       st.binary(min_size=16, max_size=16))  # fmt: skip
    rsv = draw(st.integers(0, 255))
    return bytes([5, 0, rsv, address_type]) + address + draw(st.binary(min_size=2, max_size=2))


@st.composite
def good_replies(draw: st.DrawFn) -> tuple[str, bytes]:
    url = draw(st.sampled_from(URLS))
    if url.startswith("socks5://u"):
        reply = b"\x05\x02\x01\x00" + _socks5_reply(draw)
    elif url.startswith("socks5"):
        reply = b"\x05\x00" + _socks5_reply(draw)
    elif url.startswith("socks4"):
        reply = b"\x00\x5a" + draw(st.binary(min_size=6, max_size=6))
    else:
        code = draw(st.integers(200, 299))
        fields = draw(st.lists(st.from_regex(r"[A-Za-z-]{1,10}: [ -~]{0,40}", fullmatch=True)))
        end = draw(st.sampled_from(["\r\n", "\n"]))
        reply = f"HTTP/1.1 {code} OK{end}{''.join(f + end for f in fields)}{end}".encode()
    return url, reply


@given(good=good_replies(), tail=st.binary(max_size=50), cuts=st.lists(st.integers(0, 400)))
def test_good_replies_split_anyhow_keep_the_tunnel_bytes(
    good: tuple[str, bytes], tail: bytes, cuts: list[int]
) -> None:
    url, reply = good
    handshake = start_handshake(url, _target(url), 25)
    chunks = _split(reply + tail, cuts)
    for index, chunk in enumerate(chunks):
        handshake.receive_data(chunk)
        if handshake.done:
            assert handshake.leftover + b"".join(chunks[index + 1 :]) == tail
            return
    raise AssertionError("handshake not done after the whole reply")


@given(
    good=good_replies(),
    edits=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=4),
    cut=st.integers(0, 400),
    eof=st.booleans(),
)
def test_corrupted_replies_end_in_a_tunnel_or_a_proxy_error(
    good: tuple[str, bytes], edits: list[tuple[int, int]], cut: int, eof: bool
) -> None:
    url, reply = good
    data = bytearray(reply)
    for position, value in edits:
        if data:
            data[position % len(data)] = value
    handshake = start_handshake(url, _target(url), 25)
    try:
        for chunk in _split(bytes(data), [cut]):
            handshake.receive_data(chunk)
            if handshake.done:
                return
        if eof:
            handshake.receive_data(b"")
    except SMTPProxyError:
        return
    assert not eof


@given(good=good_replies(), tail=st.binary(min_size=1, max_size=50))
def test_reading_bytes_needed_never_reads_the_tunnel(good: tuple[str, bytes], tail: bytes) -> None:
    url, reply = good
    handshake = start_handshake(url, _target(url), 25)
    stream = reply + tail
    while not handshake.done:
        size = handshake.bytes_needed()
        assert size >= 1
        handshake.receive_data(stream[:size])
        stream = stream[size:]
    assert handshake.leftover == b"" and stream == tail and handshake.bytes_needed() == 0


# --------------------------------------------------------------------------------------------
# Real proxies (microsocks: SOCKS5; tinyproxy: HTTP CONNECT)


def proxy_urls(servers: Servers) -> dict[str, str]:
    user, password = servers.info["proxy_auth"]
    host, ports = servers.host, servers.ports
    return {
        "socks5": f"socks5://{host}:{ports['socks5']}",
        "socks5_auth": f"socks5h://{user}:{password}@{host}:{ports['socks5_auth']}",
        "http_proxy": f"http://{host}:{ports['http_proxy']}",
        "http_proxy_auth": f"http://{user}:{password}@{host}:{ports['http_proxy_auth']}",
    }


PROXIES = ["socks5", "socks5_auth", "http_proxy", "http_proxy_auth"]


def read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data


@pytest.mark.parametrize("kind", PROXIES)
def test_real_proxy_reaches_postfix(servers: Servers, kind: str) -> None:
    with connect_via_proxy(
        proxy_urls(servers)[kind], servers.host, servers.ports["postfix"], timeout=10
    ) as sock:
        assert read_line(sock).startswith(b"220 ")
        sock.sendall(b"QUIT\r\n")
        assert read_line(sock).startswith(b"221")


def test_real_socks5_sends_names_to_the_proxy(servers: Servers) -> None:
    url = proxy_urls(servers)["socks5"]
    with connect_via_proxy(url, "localhost", servers.ports["postfix"], timeout=10) as sock:
        assert read_line(sock).startswith(b"220 ")


def test_real_socks5_wrong_password(servers: Servers) -> None:
    user, _ = servers.info["proxy_auth"]
    url = f"socks5://{user}:wrong@{servers.host}:{servers.ports['socks5_auth']}"
    with pytest.raises(SMTPProxyError, match="proxy authentication failed") as caught:
        connect_via_proxy(url, servers.host, servers.ports["postfix"], timeout=10)
    assert caught.value.reply_code not in (None, 0)
    assert "wrong" not in str(caught.value)


def test_real_socks5_credentials_missing(servers: Servers) -> None:
    url = f"socks5://{servers.host}:{servers.ports['socks5_auth']}"
    with pytest.raises(SMTPProxyError, match="no acceptable authentication method") as caught:
        connect_via_proxy(url, servers.host, servers.ports["postfix"], timeout=10)
    assert caught.value.reply_code == 0xFF


def test_real_socks5_target_refused(servers: Servers) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind((servers.host, 0))
        port = probe.getsockname()[1]
    with pytest.raises(SMTPProxyError, match="could not connect") as caught:
        connect_via_proxy(proxy_urls(servers)["socks5"], servers.host, port, timeout=10)
    assert caught.value.reply_code in SOCKS5_REPLIES


def test_real_http_wrong_password(servers: Servers) -> None:
    user, _ = servers.info["proxy_auth"]
    url = f"http://{user}:wrong@{servers.host}:{servers.ports['http_proxy_auth']}"
    with pytest.raises(SMTPProxyError, match="proxy authentication failed") as caught:
        connect_via_proxy(url, servers.host, servers.ports["postfix"], timeout=10)
    assert caught.value.reply_code in (401, 407)  # tinyproxy answers wrong credentials with 401
    assert "wrong" not in str(caught.value)


def test_real_http_credentials_missing(servers: Servers) -> None:
    url = f"http://{servers.host}:{servers.ports['http_proxy_auth']}"
    with pytest.raises(SMTPProxyError, match="proxy authentication required") as caught:
        connect_via_proxy(url, servers.host, servers.ports["postfix"], timeout=10)
    assert caught.value.reply_code == 407


def test_real_http_port_not_allowed(servers: Servers) -> None:
    with pytest.raises(SMTPProxyError, match="403") as caught:
        connect_via_proxy(proxy_urls(servers)["http_proxy"], servers.host, 8089, timeout=10)
    assert caught.value.reply_code == 403


def test_unreachable_proxy(servers: Servers) -> None:
    with socket.socket() as probe:
        probe.bind((servers.host, 0))
        port = probe.getsockname()[1]
    with pytest.raises(SMTPProxyError, match="cannot connect to proxy"):
        connect_via_proxy(f"socks5://{servers.host}:{port}", servers.host, 25, timeout=5)


def test_silent_proxy_times_out() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        with pytest.raises(rawsmtp.SMTPTimeoutError) as caught:
            connect_via_proxy(url, "mx.example", 25, timeout=0.3)
    assert caught.value.phase == "proxy"


@pytest.mark.parametrize("kind", PROXIES)
def test_pool_sends_through_real_proxy(servers: Servers, kind: str) -> None:
    recipient = unique("proxy")
    message = (
        f"From: a@example.org\r\nTo: {recipient}@example.test\r\nSubject: x\r\n\r\nhi\r\n"
    ).encode()
    hook = proxy_get_socket(proxy_urls(servers)[kind], timeout=10)
    with rawsmtp.SMTPPool(
        host=servers.host, port=servers.ports["postfix"], ignore_tls=True, get_socket=hook
    ) as pool:
        result = pool.send(message).result(timeout=30)
    assert result.accepted == (f"{recipient}@example.test",)
    (stored,) = servers.mail.wait(recipient)
    assert b"\r\n\r\nhi" in stored.replace(b"\n", b"\r\n").replace(b"\r\r", b"\r")
