"""Fuzz the proxy handshakes (SOCKS5, SOCKS4a, HTTP CONNECT) with arbitrary proxy replies.

Whatever the proxy sends, split anywhere, a handshake ends done or with SMTPProxyError.
Run: python fuzz/fuzz_proxy.py -max_total_time=60 (needs atheris).
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from rawsmtp import SMTPProxyError
    from rawsmtp.proxy import start_handshake

PROXIES = (
    "socks5://127.0.0.1:1080",
    "socks5h://user:secret@127.0.0.1:1080",
    "socks4a://user@127.0.0.1:1080",
    "http://user:secret@127.0.0.1:3128",
)


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    proxy, step, replies = PROXIES[data[0] % len(PROXIES)], data[1] % 13 + 1, data[2:]
    handshake = start_handshake(proxy, "mx.example.com", 25)
    try:
        for start in range(0, len(replies) + 1, step):
            handshake.data_to_send()
            if handshake.done:
                return
            handshake.receive_data(replies[start : start + step])  # b"" at the end: EOF
    except SMTPProxyError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
