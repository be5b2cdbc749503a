"""Fuzz the reply parser: any bytes, split anywhere, may only raise RemoteProtocolError.

Run: python fuzz/fuzz_replies.py -max_total_time=60 (needs atheris: pip install atheris).
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from rawsmtp.protocol import RemoteProtocolError, ReplyParser


def test_one_input(data: bytes) -> None:
    if not data:
        return
    # The first byte picks a feeding step, so the fuzzer explores chunk boundaries too.
    step, payload = data[0] % 17 + 1, data[1:]
    parser = ReplyParser(max_line_length=600, max_lines=8)
    try:
        for start in range(0, len(payload), step):
            parser.feed(payload[start : start + step])
            while (reply := parser.next_reply()) is not None:
                assert 200 <= reply.code <= 559
                assert 1 <= len(reply.lines) <= 8
    except RemoteProtocolError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
