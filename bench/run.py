"""rawsmtp against smtplib, same machine, same run: throughput, latency tolerance, CPU, memory.

    python bench/run.py            # the full set (a few minutes)
    python bench/run.py --quick    # a smoke run with small counts (CI)

Needs Postfix's ``smtp-sink`` (Debian: ``apt-get install postfix``; found on PATH or in
/usr/sbin). Each measurement runs in a fresh child process, so CPU time and peak RSS are its own.
Prints a table, then one JSON line per workload.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

MESSAGE_1K = (
    b"From: bench@example.org\r\nTo: sink@example.net\r\nSubject: benchmark\r\n\r\n"
    + b"x" * 74
    + b"\r\n"
) * 12
SENDER, RECIPIENTS = "bench@example.org", ["sink@example.net"]


# -- children: one measurement each -------------------------------------------------------------


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _measure(run: Callable[[], int]) -> dict[str, float]:
    rss_before = _rss_mb()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    count = run()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {
        "messages": count,
        "seconds": wall,
        "msg_per_s": count / wall,
        "cpu_s_per_msg": cpu / count,
        "peak_rss_mb": _rss_mb(),
        "rss_growth_mb": _rss_mb() - rss_before,
    }


def child_rawsmtp(port: int, count: int, connections: int) -> int:
    import rawsmtp

    with rawsmtp.SMTPPool(
        host="127.0.0.1",
        port=port,
        ignore_tls=True,
        max_connections=connections,
        max_messages=100_000,
    ) as pool:
        envelope = rawsmtp.Envelope(mail_from=SENDER, rcpt_to=tuple(RECIPIENTS))
        futures = [pool.send(MESSAGE_1K, envelope) for _ in range(count)]
        _wait_all(futures)
    return count


def _wait_all(futures: list[Any]) -> None:
    """Wait once for all (as a bulk sender does), then surface any error.

    Calling ``result()`` on each in turn also works, but wakes the waiting thread once per
    message, and that thread then competes with the pool's for the GIL (about 25% more CPU).
    """
    concurrent.futures.wait(futures, timeout=600)
    for future in futures:
        future.result(timeout=0)


def child_smtplib(port: int, count: int, connections: int) -> int:
    import smtplib  # here, not at the top: the rawsmtp children measure rawsmtp's imports only

    def worker(share: int) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=600) as client:
            for _ in range(share):
                client.sendmail(SENDER, RECIPIENTS, MESSAGE_1K)

    shares = [count // connections + (i < count % connections) for i in range(connections)]
    threads = [threading.Thread(target=worker, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return count


def child_stream(port: int, size_mb: int) -> int:
    import rawsmtp

    with tempfile.TemporaryFile() as file:
        file.write(b"From: bench@example.org\r\nTo: sink@example.net\r\n\r\n")
        line = b"y" * 76 + b"\r\n"
        for _ in range(size_mb * 1024 * 1024 // len(line)):
            file.write(line)
        file.seek(0)
        with rawsmtp.SMTPPool(host="127.0.0.1", port=port, ignore_tls=True) as pool:
            pool.send(file).result(timeout=600)
    return 1


def child_queued(port: int, count: int) -> int:
    """Queue everything before the first connection is up: the memory cost of a queued message.

    Waits with ``result()`` on each future in turn: ``concurrent.futures.wait()`` would add its
    own sets of all the futures (about 190 B per future, 3.8 MB here) to what is measured.
    """
    import rawsmtp

    with rawsmtp.SMTPPool(host="127.0.0.1", port=port, ignore_tls=True, max_connections=5) as pool:
        futures = [pool.send(MESSAGE_1K) for _ in range(count)]
        for future in futures:
            future.result(timeout=600)
    return count


CHILDREN: dict[str, Callable[..., int]] = {
    "rawsmtp": child_rawsmtp,
    "smtplib": child_smtplib,
    "stream": child_stream,
    "queued": child_queued,
}


def run_child(name: str, *args: int) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, __file__, "--child", name, *map(str, args)],
        check=True,
        capture_output=True,
        text=True,
        timeout=1200,
    ).stdout
    return dict(json.loads(output.strip().splitlines()[-1]))


# -- servers ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing answers on 127.0.0.1:{port}")


@contextmanager
def smtp_sink() -> Iterator[int]:
    binary = shutil.which("smtp-sink") or shutil.which(
        "smtp-sink", path="/usr/sbin:/usr/lib/postfix"
    )
    if binary is None:
        sys.exit("smtp-sink not found: install Postfix (Debian: apt-get install postfix)")
    port = _free_port()
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    process = subprocess.Popen([binary, *user, f"127.0.0.1:{port}", "1000"])
    try:
        _wait_port(port)
        yield port
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def latency_proxy(target: int, delay: float) -> Iterator[int]:
    process = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "latency_proxy.py"),
            "--target",
            f"127.0.0.1:{target}",
            "--delay",
            str(delay),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        _wait_port(port)
        yield port
    finally:
        process.terminate()
        process.wait(10)


# -- the workloads ------------------------------------------------------------------------------


def compare(
    label: str, port: int, count: int, connections: int, rounds: int
) -> list[dict[str, Any]]:
    """Alternate rawsmtp and smtplib ``rounds`` times; report medians (the machine is noisy:
    smtplib's own rate varies by a third between runs here), with each ratio's range."""
    runs = [
        (
            run_child("rawsmtp", port, count, connections),
            run_child("smtplib", port, count, connections),
        )
        for _ in range(rounds)
    ]
    speed = [ours["msg_per_s"] / theirs["msg_per_s"] for ours, theirs in runs]
    cpu = [ours["cpu_s_per_msg"] / theirs["cpu_s_per_msg"] for ours, theirs in runs]
    return [
        {
            "workload": label,
            "rounds": rounds,
            "rawsmtp": _medians([ours for ours, _ in runs]),
            "smtplib": _medians([theirs for _, theirs in runs]),
            "ratio_msg_per_s": statistics.median(speed),
            "ratio_msg_per_s_range": [min(speed), max(speed)],
            "ratio_cpu_per_msg": statistics.median(cpu),
            "ratio_cpu_per_msg_range": [min(cpu), max(cpu)],
        }
    ]


def _medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def encoder_workload(size_mb: int) -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    import encoder

    message = encoder.make_message(size_mb * 1024 * 1024, dot_every=0)
    ours, _ = encoder.best_of(3, lambda: encoder.rawsmtp_encode(message))
    text = message.decode("ascii")
    theirs, _ = encoder.best_of(3, lambda: encoder.smtplib_str_path(text))
    mb = len(message) / 1e6
    return {
        "workload": f"DATA encoder, {size_mb} MB",
        "rawsmtp_mb_per_s": mb / ours,
        "smtplib_mb_per_s": mb / theirs,
        "ratio": theirs / ours,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts, for CI smoke runs")
    parser.add_argument(
        "--rounds",
        type=int,
        help="runs of each comparison, alternating (default 5; 1 with --quick)",
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import rawsmtp  # noqa: F401 - imported before measuring: RSS growth is the workload's

        name, *numbers = args.child
        print(json.dumps(_measure(lambda: CHILDREN[name](*map(int, numbers)))))
        return
    bulk, slow, queued, big = (300, 100, 1000, 5) if args.quick else (20_000, 1_000, 20_000, 100)
    rounds = args.rounds or (1 if args.quick else 5)
    rows: list[dict[str, Any]] = []
    with smtp_sink() as port:
        rows += compare(f"{bulk} x 1 KB, 5 connections, loopback", port, bulk, 5, rounds)
        with latency_proxy(port, 0.005) as slow_port:
            rows += compare(f"{slow} x 1 KB, 5 connections, 10 ms RTT", slow_port, slow, 5, rounds)
        rows.append(
            {
                "workload": f"{queued} x 1 KB queued at once",
                "rawsmtp": run_child("queued", port, queued),
            }
        )
        rows.append(
            {
                "workload": f"{big} MB message streamed from a file",
                "rawsmtp": run_child("stream", port, big),
            }
        )
    rows.append(encoder_workload(10))
    print_table(rows)
    for row in rows:
        print(json.dumps(row))


def _span(bounds: list[float], spec: str) -> str:
    low, high = bounds
    return f"({low:{spec}}-{high:{spec}})" if low != high else ""


def print_table(rows: list[dict[str, Any]]) -> None:
    rounds = max((row.get("rounds", 1) for row in rows), default=1)
    if rounds > 1:
        print(f"Comparisons: medians of {rounds} alternating rounds, ratio ranges in brackets.")
    print(f"{'workload':45} {'rawsmtp':>22} {'smtplib x5 threads':>22} {'ratio':>8}")
    for row in rows:
        if "smtplib" in row:
            ours, theirs = row["rawsmtp"], row["smtplib"]
            print(
                f"{row['workload']:45} {ours['msg_per_s']:15.0f} msg/s {theirs['msg_per_s']:15.0f} msg/s"
                f" {row['ratio_msg_per_s']:7.1f}x {_span(row['ratio_msg_per_s_range'], '.1f')}"
            )
            print(
                f"{'  CPU per message':45} {ours['cpu_s_per_msg'] * 1e6:16.0f} us "
                f"{theirs['cpu_s_per_msg'] * 1e6:17.0f} us {row['ratio_cpu_per_msg']:7.2f}x"
                f" {_span(row['ratio_cpu_per_msg_range'], '.2f')}"
            )
            print(
                f"{'  peak RSS':45} {ours['peak_rss_mb']:19.1f} MB {theirs['peak_rss_mb']:19.1f} MB"
            )
        elif "rawsmtp" in row:
            ours = row["rawsmtp"]
            print(
                f"{row['workload']:45} peak RSS {ours['peak_rss_mb']:.1f} MB,"
                f" growth {ours['rss_growth_mb']:.1f} MB, {ours['seconds']:.2f} s"
            )
        else:
            print(
                f"{row['workload']:45} {row['rawsmtp_mb_per_s']:16.0f} MB/s {row['smtplib_mb_per_s']:16.0f} MB/s"
                f" {row['ratio']:7.1f}x"
            )


if __name__ == "__main__":
    main()
