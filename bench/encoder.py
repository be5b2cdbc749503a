"""DATA encoder throughput: rawsmtp's DataEncoder against smtplib's, in the same run.

smtplib has two paths: ``SMTP.data()`` on bytes only doubles leading dots (``_quote_periods``;
bare LF/CR are sent as they are), and ``sendmail()`` on a str first normalises line ends
(``_fix_eols``) and encodes. rawsmtp always does both, streaming in chunks. Run:

    python bench/encoder.py [--size-mb 10] [--repeat 5]
"""

from __future__ import annotations

import argparse
import base64
import os
import smtplib
import statistics
import time
from collections.abc import Callable

from rawsmtp.protocol import DataEncoder

CHUNK = 64 * 1024


TEXT_PART = (
    b"Dear reader,\r\n.\r\nThis line is a lone dot above. Sentences end in dots.\n"
    b"..and this one starts with two, after a bare LF.\r\n"
) * 200


def make_message(size: int, dot_every: int) -> bytes:
    """A MIME-like message: a text part with dots and a bare LF, then a base64 attachment.

    ``dot_every``: also start every n-th attachment line with a dot (0: none, as in real base64),
    the worst case for dot-stuffing.
    """
    payload = base64.encodebytes(os.urandom(size * 3 // 4)).replace(b"\n", b"\r\n")
    if dot_every:
        lines = payload.split(b"\r\n")
        for index in range(0, len(lines), dot_every):
            lines[index] = b"." + lines[index]
        payload = b"\r\n".join(lines)
    head = b"Subject: bench\r\nMIME-Version: 1.0\r\n\r\n" + TEXT_PART + b"--b\r\n\r\n"
    return head + payload[: size - len(head)]


def rawsmtp_encode(message: bytes) -> bytes:
    encoder = DataEncoder()
    view = memoryview(message)
    out = [
        encoder.encode(bytes(view[start : start + CHUNK]))
        for start in range(0, len(message), CHUNK)
    ]
    out.append(encoder.end())
    return b"".join(out)


def smtplib_bytes_path(message: bytes) -> bytes:
    quoted = smtplib._quote_periods(message)  # type: ignore[attr-defined]
    if not quoted.endswith(b"\r\n"):
        quoted += b"\r\n"
    return quoted + b".\r\n"


def smtplib_str_path(message: str) -> bytes:
    return smtplib_bytes_path(smtplib._fix_eols(message).encode("ascii"))  # type: ignore[attr-defined]


def best_of(repeat: int, function: Callable[[], object]) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    size = int(args.size_mb * 1024 * 1024)
    for label, dot_every in (
        ("attachment as real base64 (no dots)", 0),
        ("dot every 50 lines", 50),
    ):
        compare(f"{label}", make_message(size, dot_every), args.repeat)


def compare(label: str, message: bytes, repeat: int) -> None:
    text = message.decode("ascii")
    assert rawsmtp_encode(message) == smtplib_str_path(text)  # same wire bytes, same meaning
    mb = len(message) / 1e6
    results = {
        "rawsmtp DataEncoder (64 KiB chunks, CRLF + dots)": best_of(
            repeat, lambda: rawsmtp_encode(message)
        ),
        "smtplib data() on bytes (dots only)": best_of(repeat, lambda: smtplib_bytes_path(message)),
        "smtplib sendmail() on str (_fix_eols + dots)": best_of(
            repeat, lambda: smtplib_str_path(text)
        ),
    }
    ours = results["rawsmtp DataEncoder (64 KiB chunks, CRLF + dots)"][0]
    print(f"\n{label}: {len(message):,} bytes; best and median of {repeat} runs")
    for name, (best, median) in results.items():
        print(
            f"{name:52} {best * 1000:8.1f} ms  {median * 1000:8.1f} ms  "
            f"{mb / best:8.0f} MB/s  x{best / ours:6.1f} vs rawsmtp"
        )


if __name__ == "__main__":
    main()
