"""rawsmtp (both drivers) against smtplib and aiosmtplib, same machine, same run: throughput,
CPU, round trips and memory, on loopback and through RTT relays, against smtp-sink and Postfix.

    python bench/run.py            # the full set, with callgrind counts (many minutes)
    python bench/run.py --quick    # a smoke run with small counts (CI)
    python bench/run.py --only relay --rounds 3   # some rows only (see --help)

Needs Postfix's ``smtp-sink`` (Debian: ``apt-get install postfix``; found on PATH or in
/usr/sbin) and aiosmtplib (``pip install .[bench]``). The Postfix rows use the test Postfix of
tests/servers/setup.sh (its servers.json) and are left out when it does not run. Each
measurement runs in a fresh child process, so CPU time and peak RSS are its own. Prints a
Markdown table, then one JSON line per workload.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import pwd
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
from dataclasses import dataclass
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


def _tls_context() -> Any:
    import ssl

    return ssl.create_default_context(cafile=_servers()["cafile"])


def child_rawsmtp(port: int, count: int, connections: int, tls: int = 0) -> int:
    import rawsmtp

    with rawsmtp.SMTPPool(**_pool_options(port, connections, tls)) as pool:
        envelope = rawsmtp.Envelope(mail_from=SENDER, rcpt_to=tuple(RECIPIENTS))
        futures = [pool.send(MESSAGE_1K, envelope) for _ in range(count)]
        _wait_all(futures)
    return count


def child_aio(port: int, count: int, connections: int, tls: int = 0) -> int:
    import asyncio

    import rawsmtp.aio

    async def main() -> None:
        async with rawsmtp.aio.SMTPPool(**_pool_options(port, connections, tls)) as pool:
            envelope = rawsmtp.Envelope(mail_from=SENDER, rcpt_to=tuple(RECIPIENTS))
            await asyncio.gather(*[pool.send(MESSAGE_1K, envelope) for _ in range(count)])

    asyncio.run(main())
    return count


def _pool_options(port: int, connections: int, tls: int) -> dict[str, Any]:
    security: dict[str, Any] = (
        {"require_tls": True, "tls": {"ca_file": _servers()["cafile"]}}
        if tls
        else {"ignore_tls": True}
    )
    return {
        "host": "127.0.0.1",
        "port": port,
        "max_connections": connections,
        "max_messages": 100_000,
        **security,
    }


def _wait_all(futures: list[Any]) -> None:
    """Wait once for all (as a bulk sender does), then surface any error.

    Calling ``result()`` on each in turn also works, but wakes the waiting thread once per
    message, and that thread then competes with the pool's for the GIL (about 25% more CPU).
    """
    concurrent.futures.wait(futures, timeout=600)
    for future in futures:
        future.result(timeout=0)


def _shares(count: int, connections: int) -> list[int]:
    return [count // connections + (i < count % connections) for i in range(connections)]


def child_smtplib(port: int, count: int, connections: int, tls: int = 0) -> int:
    import smtplib  # here, not at the top: the rawsmtp children measure rawsmtp's imports only

    def worker(share: int) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=600) as client:
            if tls:
                client.starttls(context=_tls_context())
            for _ in range(share):
                client.sendmail(SENDER, RECIPIENTS, MESSAGE_1K)

    threads = [threading.Thread(target=worker, args=(n,)) for n in _shares(count, connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return count


def child_aiosmtplib(port: int, count: int, connections: int, tls: int = 0) -> int:
    import asyncio

    import aiosmtplib  # the bench extra: never a dependency of rawsmtp

    async def worker(share: int) -> None:
        client = aiosmtplib.SMTP(
            hostname="127.0.0.1",
            port=port,
            start_tls=bool(tls),
            tls_context=_tls_context() if tls else None,
            timeout=600,
        )
        async with client:
            for _ in range(share):
                await client.sendmail(SENDER, RECIPIENTS, MESSAGE_1K)

    async def main() -> None:
        await asyncio.gather(*(worker(n) for n in _shares(count, connections)))

    asyncio.run(main())
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


def child_queued_aio(port: int, count: int) -> int:
    """As ``child_queued``, on the asyncio pool: ``send()`` returns a future, no task each."""
    import asyncio

    import rawsmtp.aio

    async def main() -> None:
        async with rawsmtp.aio.SMTPPool(
            host="127.0.0.1", port=port, ignore_tls=True, max_connections=5
        ) as pool:
            futures = [pool.send(MESSAGE_1K) for _ in range(count)]
            for future in futures:
                await future

    asyncio.run(main())
    return count


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


CLIENTS: dict[str, Callable[..., int]] = {
    "rawsmtp": child_rawsmtp,
    "rawsmtp.aio": child_aio,
    "smtplib": child_smtplib,
    "aiosmtplib": child_aiosmtplib,
}
CHILDREN: dict[str, Callable[..., int]] = {
    **CLIENTS,
    "stream": child_stream,
    "queued": child_queued,
    "queued_aio": child_queued_aio,
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


def _wait_port(port: int, within: float = 10) -> None:
    deadline = time.monotonic() + within
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


SERVERS_JSON = Path("/tmp/rawsmtp-servers/servers.json")  # tests/servers/setup.sh writes it


def _servers() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SERVERS_JSON.read_text())
    return data


def _postfix_queue() -> str:
    """Where the test Postfix keeps its queue: a disk's fsync bounds every client's STARTTLS row."""
    try:
        return f", Postfix queue in {_servers()['postfix_queue']}"
    except (OSError, KeyError, ValueError):
        return ""


def postfix_port() -> int | None:
    """The test Postfix's plain port (PIPELINING, CHUNKING, STARTTLS), when it runs."""
    try:
        port = int(_servers()["ports"]["postfix"])
        _wait_port(port, within=1)
    except (OSError, KeyError, ValueError, RuntimeError):
        return None
    return port


def postfix_cpu_seconds() -> float | None:
    """CPU time the test Postfix has used so far: its processes' own, plus what master(8) has
    collected from the children it reaped, so a process that comes and goes between two
    readings still counts. None when there is no ``postfix`` user."""
    try:
        uid = pwd.getpwnam("postfix").pw_uid
    except KeyError:
        return None
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, _, rest = stat.read_text().partition(" (")[2].rpartition(") ")
            owner = stat.parent.stat().st_uid
        except OSError:
            continue  # gone since the listing
        fields = rest.split()  # fields[0] is the state; utime, stime, cutime, cstime from [11]
        if owner == uid:
            ticks += int(fields[11]) + int(fields[12])
        elif name == "master" and owner == 0:
            ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class Relay:
    """A running latency relay: its port, RTT, and its round-trip count so far."""

    port: int
    rtt: float
    stats: Path

    def turns(self) -> int:
        return int(self.stats.read_text() or 0)


@contextmanager
def latency_proxy(target: int, rtt: float) -> Iterator[Relay]:
    with tempfile.TemporaryDirectory() as folder:
        stats = Path(folder) / "turns"
        process = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "latency_proxy.py"),
                "--target",
                f"127.0.0.1:{target}",
                "--delay",
                str(rtt / 2),
                "--stats",
                str(stats),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            port = int(process.stdout.readline())
            _wait_port(port)
            yield Relay(port, rtt, stats)
        finally:
            process.terminate()
            process.wait(10)


# -- the workloads ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    label: str
    count: int
    tls: bool = False
    connections: int = 5
    postfix: bool = False  # also measure the server's own CPU per message


def compare(
    work: Workload, port: int, rounds: int, relay: Relay | None = None
) -> list[dict[str, Any]]:
    """Run every client ``rounds`` times, alternating; report medians (the machine is noisy:
    smtplib's own rate varies by a third between runs here), with each ratio's range. Through
    a relay, also round trips per message and messages per RTT per connection."""
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in CLIENTS}
    for _ in range(rounds):
        for name in CLIENTS:
            before = relay.turns() if relay else 0
            server_before = postfix_cpu_seconds() if work.postfix else None
            result = run_child(name, port, work.count, work.connections, int(work.tls))
            server_after = postfix_cpu_seconds() if work.postfix else None
            if server_before is not None and server_after is not None:
                result["server_cpu_s_per_msg"] = (server_after - server_before) / work.count
            if relay is not None:
                result["round_trips_per_msg"] = (relay.turns() - before) / work.count
                result["msgs_per_rtt_per_conn"] = result["msg_per_s"] * relay.rtt / work.connections
            runs[name].append(result)
    row: dict[str, Any] = {"workload": work.label, "rounds": rounds, "rtt": relay and relay.rtt}
    baseline = runs["smtplib"]
    for name, results in runs.items():
        row[name] = _medians(results)
        if name == "smtplib":
            continue
        speed = [
            ours["msg_per_s"] / theirs["msg_per_s"]
            for ours, theirs in zip(results, baseline, strict=True)
        ]
        cpu = [
            ours["cpu_s_per_msg"] / theirs["cpu_s_per_msg"]
            for ours, theirs in zip(results, baseline, strict=True)
        ]
        row[name] |= {
            "ratio_msg_per_s": statistics.median(speed),
            "ratio_msg_per_s_range": [min(speed), max(speed)],
            "ratio_cpu_per_msg": statistics.median(cpu),
        }
    return [row]


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
    parser.add_argument(
        "--no-callgrind",
        dest="callgrind",
        action="store_false",
        help="skip the callgrind instruction counts (never run with --quick)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=ROWS,
        help="run only these rows: " + "; ".join(f"{k}: {v}" for k, v in ROWS.items()),
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import rawsmtp  # noqa: F401 - imported before measuring: RSS growth is the workload's

        name, *numbers = args.child
        print(json.dumps(_measure(lambda: CHILDREN[name](*map(int, numbers)))))
        return
    only = set(args.only or ROWS)
    rows = run_all(quick=args.quick, rounds=args.rounds or (1 if args.quick else 5), only=only)
    if args.callgrind and not args.quick and "callgrind" in only:
        rows.append(callgrind_row())
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}{_postfix_queue()}"
    )
    print_table(rows)
    for row in rows:
        print(json.dumps(row))


ROWS = {
    "sink": "smtp-sink on loopback and through a 10 ms relay",
    "queued": "100,000 messages queued at once, both drivers",
    "stream": "a 100 MB message streamed from a file",
    "starttls": "Postfix STARTTLS, loopback and 50 ms RTT",
    "relay": "Postfix CHUNKING through 10 and 50 ms RTT relays",
    "encoder": "the DATA encoder",
    "callgrind": "instructions per message",
}


def run_all(*, quick: bool, rounds: int, only: set[str]) -> list[dict[str, Any]]:
    n = 0.05 if quick else 1.0  # --quick: a twentieth of every count

    def count(full: int) -> int:
        return max(50, int(full * n))

    rows: list[dict[str, Any]] = []
    if only & {"sink", "queued", "stream"}:
        with smtp_sink() as sink:
            rows += _sink_rows(sink, count, rounds, only, quick)
    if only & {"starttls", "relay"}:
        if (postfix := postfix_port()) is not None:
            rows += _postfix_rows(postfix, count, rounds, only)
        else:
            print(f"Postfix not found ({SERVERS_JSON}): its rows are left out", file=sys.stderr)
    if "encoder" in only:
        rows.append(encoder_workload(10))
    return rows


def _sink_rows(
    sink: int, count: Callable[[int], int], rounds: int, only: set[str], quick: bool
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if "sink" in only:
        rows += compare(Workload("smtp-sink, loopback", count(20_000)), sink, rounds)
        with latency_proxy(sink, 0.010) as relay:
            rows += compare(
                Workload("smtp-sink, 10 ms RTT", count(1_000)), relay.port, rounds, relay
            )
    if "queued" in only:
        queued = 5_000 if quick else 100_000
        for child, driver in (("queued", "rawsmtp"), ("queued_aio", "rawsmtp.aio")):
            rows.append(
                {
                    "workload": f"{queued:,} x 1 KB queued at once ({driver})",
                    "rawsmtp": run_child(child, sink, queued),
                }
            )
    if "stream" in only:
        big = 5 if quick else 100
        rows.append(
            {
                "workload": f"{big} MB message streamed from a file",
                "rawsmtp": run_child("stream", sink, big),
            }
        )
    return rows


def _postfix_rows(
    postfix: int, count: Callable[[int], int], rounds: int, only: set[str]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if "starttls" in only:
        starttls = Workload("Postfix STARTTLS, loopback", count(2_000), tls=True, postfix=True)
        rows += compare(starttls, postfix, rounds)
    if "relay" in only:
        for rtt, full in ((0.010, 1_000), (0.050, 400)):
            with latency_proxy(postfix, rtt) as relay:
                label = f"Postfix CHUNKING, {rtt * 1000:.0f} ms RTT"
                work = Workload(label, count(full), postfix=True)
                rows += compare(work, relay.port, rounds, relay)
    if "starttls" in only:
        with latency_proxy(postfix, 0.050) as relay:
            work = Workload("Postfix STARTTLS, 50 ms RTT", count(400), tls=True, postfix=True)
            rows += compare(work, relay.port, rounds, relay)
    return rows


def callgrind_row() -> dict[str, Any]:
    """Instructions per message under callgrind (bench/instructions.py), when valgrind is here."""
    import instructions

    if shutil.which("valgrind") is None:
        return {"workload": "callgrind: valgrind not found"}
    with smtp_sink() as sink:
        counts = {kind: instructions.per_message(kind, sink) for kind in instructions.WORKLOADS}
    return {"workload": "instructions per message (callgrind, smtp-sink)", "instructions": counts}


def _span(bounds: list[float], spec: str) -> str:
    low, high = bounds
    return f" ({low:{spec}}-{high:{spec}})" if low != high else ""


COLUMNS = (
    "workload", "client", "msg/s", "vs smtplib", "CPU/msg", "vs smtplib", "RTs/msg",
    "msgs/RTT/conn", "server CPU/msg",
)  # fmt: skip


def _line(*cells: str) -> None:
    """One table line: the cells given, then empty ones up to the header's width."""
    print("| " + " | ".join(cells + ("",) * (len(COLUMNS) - len(cells))) + " |")


def print_table(rows: list[dict[str, Any]]) -> None:
    """A Markdown table: one line per workload and client."""
    rounds = max((row.get("rounds", 1) for row in rows), default=1)
    print(
        f"Comparisons: medians of {rounds} alternating round(s), 5 connections each, ratio ranges in brackets."
    )
    _line(*COLUMNS)
    print("|" + "---|" * len(COLUMNS))
    for row in rows:
        if "smtplib" in row:
            for name in CLIENTS:
                r = row[name]
                ratio = (
                    f"{r['ratio_msg_per_s']:.2f}x{_span(r['ratio_msg_per_s_range'], '.2f')}"
                    if "ratio_msg_per_s" in r
                    else ""
                )
                cpu = f"{r['ratio_cpu_per_msg']:.2f}x" if "ratio_cpu_per_msg" in r else ""
                trips = f"{r['round_trips_per_msg']:.2f}" if "round_trips_per_msg" in r else ""
                share = f"{r['msgs_per_rtt_per_conn']:.2f}" if "msgs_per_rtt_per_conn" in r else ""
                server = (
                    f"{r['server_cpu_s_per_msg'] * 1e6:.0f} µs"
                    if "server_cpu_s_per_msg" in r
                    else ""
                )
                _line(
                    row["workload"], name, f"{r['msg_per_s']:,.0f}", ratio,
                    f"{r['cpu_s_per_msg'] * 1e6:.0f} µs", cpu, trips, share, server,
                )  # fmt: skip
        elif "instructions" in row:
            counts = row["instructions"]
            for kind, value in counts.items():
                _line(
                    row["workload"], kind, "", "", f"{value:,} instr",
                    f"{value / counts['smtplib']:.2f}x",
                )  # fmt: skip
        elif "rawsmtp" in row:
            ours = row["rawsmtp"]
            _line(
                row["workload"], "", "", "", f"peak RSS {ours['peak_rss_mb']:.1f} MB",
                f"growth {ours['rss_growth_mb']:.1f} MB",
            )  # fmt: skip
        elif "ratio" in row:
            _line(
                row["workload"], "rawsmtp vs smtplib", f"{row['rawsmtp_mb_per_s']:,.0f} MB/s",
                f"{row['ratio']:.1f}x",
            )  # fmt: skip
        else:
            _line(row["workload"])


if __name__ == "__main__":
    main()
