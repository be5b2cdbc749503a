"""The pool's own ``proxy=`` option: SOCKS5 and HTTP CONNECT to the real Postfix, TLS through
the tunnel verified against the target's name, typed errors, no proxy password in logs."""

from __future__ import annotations

import logging
import socket
import threading

import pytest
from conftest import Servers
from helpers.smtp import unique

import rawsmtp

PROXIES = {
    "socks5": "socks5://127.0.0.1:{socks5}",
    "socks5h-auth": "socks5h://proxyuser:proxypass@127.0.0.1:{socks5_auth}",
    "http": "http://127.0.0.1:{http_proxy}",
    "http-auth": "http://proxyuser:proxypass@127.0.0.1:{http_proxy_auth}",
}


@pytest.mark.parametrize("secure", [False, True], ids=["starttls", "implicit-tls"])
@pytest.mark.parametrize("kind", list(PROXIES))
def test_mail_through_each_proxy(servers: Servers, kind: str, secure: bool) -> None:
    box = unique(f"proxy-{kind}")
    proxy = PROXIES[kind].format(**servers.ports)
    port = servers.ports["postfix_tls" if secure else "postfix"]
    with rawsmtp.SMTPPool(
        host="localhost",
        port=port,
        secure=secure,
        require_tls=not secure,
        tls={"ca_file": servers.cafile},
        proxy=proxy,
    ) as pool:
        message = f"From: s@example.org\r\nTo: {box}@example.test\r\n\r\nvia {kind}\r\n"
        assert pool.send(message.encode()).result(timeout=30).accepted
    [stored] = servers.mail.wait(box)
    assert f"via {kind}".encode() in stored and b"TLS" in stored


def test_proxy_in_the_smtp_url(servers: Servers) -> None:
    box = unique("proxy-url")
    url = (
        f"smtp://localhost:{servers.ports['postfix']}"
        f"?proxy=socks5://127.0.0.1:{servers.ports['socks5']}&ignoreTLS=true"
    )
    with rawsmtp.create_transport(url) as pool:
        pool.send(f"From: s@example.org\r\nTo: {box}@example.test\r\n\r\nx\r\n").result(30)
    servers.mail.wait(box)


@pytest.mark.parametrize(
    "proxy",
    [
        "socks5://proxyuser:wrong@127.0.0.1:{socks5_auth}",
        "http://proxyuser:wrong@127.0.0.1:{http_proxy_auth}",
    ],
)
def test_wrong_proxy_password_is_a_typed_error_and_never_logged(
    servers: Servers, proxy: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="rawsmtp")
    with rawsmtp.SMTPPool(
        host="localhost",
        port=servers.ports["postfix"],
        ignore_tls=True,
        proxy=proxy.format(**servers.ports),
        max_retries=0,
        debug=True,
    ) as pool:
        future = pool.send(b"From: s@example.org\r\nTo: x@example.test\r\n\r\nx\r\n")
        with pytest.raises(rawsmtp.SMTPProxyError) as info:
            future.result(timeout=30)
    assert info.value.reply_code is not None
    assert "wrong" not in str(info.value)
    assert "wrong" not in caplog.text


def test_a_silent_proxy_times_out_in_the_proxy_phase() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
    thread.start()
    try:
        with rawsmtp.SMTPPool(
            host="mx.example.test",
            port=25,
            proxy=f"socks5h://127.0.0.1:{listener.getsockname()[1]}",
            connection_timeout=0.5,
            delivery_timeout=1.0,  # a failed set-up charges no message: the deadline ends it
        ) as pool:
            future = pool.send(b"From: s@example.org\r\nTo: x@example.test\r\n\r\nx\r\n")
            with pytest.raises(rawsmtp.SMTPTimeoutError) as info:
                future.result(timeout=10)
        assert info.value.phase == "queue"
        cause = info.value.__cause__
        assert isinstance(cause, rawsmtp.SMTPTimeoutError) and cause.phase == "proxy"
    finally:
        listener.close()
        for sock in accepted:
            sock.close()


def test_bad_proxy_urls_are_config_errors() -> None:
    for url in ("ftp://127.0.0.1:21", "socks5://", "gopher://127.0.0.1:3128"):
        with pytest.raises(rawsmtp.SMTPConfigError) as info:
            rawsmtp.SMTPPool(host="127.0.0.1", proxy=url)
        assert info.value.option == "proxy"
    with pytest.raises(rawsmtp.SMTPConfigError) as info:
        rawsmtp.SMTPPool(host="127.0.0.1", proxy="socks5://u:secretpw@127.0.0.1:99999")
    assert "secretpw" not in str(info.value)


def test_an_unreachable_proxy_is_a_proxy_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]  # nothing listens once the probe is closed
    with rawsmtp.SMTPPool(
        host="mx.example.test",
        port=25,
        proxy=f"socks5h://127.0.0.1:{closed_port}",
        delivery_timeout=0.5,
    ) as pool:
        future = pool.send(b"From: s@example.org\r\nTo: x@example.test\r\n\r\nx\r\n")
        with pytest.raises(rawsmtp.SMTPTimeoutError) as info:
            future.result(timeout=10)
    assert isinstance(info.value.__cause__, rawsmtp.SMTPProxyError)
    assert "could not reach the proxy" in str(info.value.__cause__)
