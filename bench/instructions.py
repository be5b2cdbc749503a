"""User-space instructions per message, counted by valgrind's callgrind: a repeatable figure.

    python bench/instructions.py            # the threaded pool (needs valgrind and smtp-sink)
    python bench/instructions.py --aio      # the asyncio pool
    python bench/instructions.py --smtplib  # smtplib, 5 threads with a connection each
    python bench/instructions.py --all      # all three, and the ratios

Timings vary with the machine's load; instruction counts do not. Sends 300 and then 1,300
messages through 5 connections to smtp-sink, each run under callgrind, and prints the
difference divided by 1,000 (start-up cancels out). Kernel work (syscalls) is not counted.
The workload imports the rawsmtp of the tree this file is in, whatever else is installed.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import smtp_sink  # noqa: E402 - bench/ is not a package

# Each workload puts this tree first on sys.path before importing anything of rawsmtp.
PREAMBLE = """
import sys
sys.path[:0] = [{tree!r}, {bench!r}]
import run
"""

WORKLOADS = {
    "threaded": """
import concurrent.futures, rawsmtp
assert rawsmtp.__file__.startswith({tree!r}), rawsmtp.__file__
with rawsmtp.SMTPPool(host="127.0.0.1", port={port}, ignore_tls=True, max_connections=5,
                      max_messages=100_000) as pool:
    envelope = rawsmtp.Envelope(mail_from=run.SENDER, rcpt_to=tuple(run.RECIPIENTS))
    concurrent.futures.wait([pool.send(run.MESSAGE_1K, envelope) for _ in range({count})])
""",
    "aio": """
import asyncio, rawsmtp, rawsmtp.aio
assert rawsmtp.__file__.startswith({tree!r}), rawsmtp.__file__
async def main():
    async with rawsmtp.aio.SMTPPool(host="127.0.0.1", port={port}, ignore_tls=True,
                                    max_connections=5, max_messages=100_000) as pool:
        envelope = rawsmtp.Envelope(mail_from=run.SENDER, rcpt_to=tuple(run.RECIPIENTS))
        await asyncio.gather(*[pool.send(run.MESSAGE_1K, envelope) for _ in range({count})])
asyncio.run(main())
""",
    "smtplib": """
run.child_smtplib({port}, {count}, 5)
""",
}


def instructions(kind: str, port: int, count: int) -> int:
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "workload.py"
        code = PREAMBLE + WORKLOADS[kind]
        script.write_text(
            code.format(tree=str(HERE.parent), bench=str(HERE), port=port, count=count)
        )
        output = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={folder}/out",
                sys.executable,
                str(script),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=900,
        ).stderr
    match = re.search(r"Collected : (\d+)", output)
    if match is None:
        sys.exit(f"no callgrind total in:\n{output[-2000:]}")
    return int(match.group(1))


def per_message(kind: str, port: int, small: int = 300, large: int = 1300) -> int:
    """Instructions per message: the difference of two runs, so start-up cancels out."""
    return (instructions(kind, port, large) - instructions(kind, port, small)) // (large - small)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--aio", action="store_true", help="the asyncio pool")
    group.add_argument("--smtplib", action="store_true", help="smtplib, 5 threads")
    group.add_argument("--all", action="store_true", help="all three, with ratios")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind not found (Debian: apt-get install valgrind)")
    kinds = (
        ["threaded", "aio", "smtplib"]
        if args.all
        else ["aio" if args.aio else "smtplib" if args.smtplib else "threaded"]
    )
    with smtp_sink() as port:
        counts = {kind: per_message(kind, port) for kind in kinds}
    for kind, count in counts.items():
        print(f"{kind:9} {count:,} instructions per message (user space)")
    if args.all:
        print(f"aio / threaded: {counts['aio'] / counts['threaded']:.2f}x")
        print(f"threaded / smtplib: {counts['threaded'] / counts['smtplib']:.2f}x")


if __name__ == "__main__":
    main()
