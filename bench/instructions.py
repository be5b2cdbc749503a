"""User-space instructions per message, counted by valgrind's callgrind: a repeatable figure.

    python bench/instructions.py         # needs valgrind and Postfix's smtp-sink

Timings vary with the machine's load; instruction counts do not. Sends 1,000 and then 3,000
messages through a pool of 5 connections to smtp-sink, each run under callgrind, and prints
the difference divided by 2,000 (start-up cancels out). Kernel work (syscalls) is not counted.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import smtp_sink  # noqa: E402 - bench/ is not a package

WORKLOAD = """
import concurrent.futures, sys
sys.path.insert(0, {bench!r})
import rawsmtp, run
with rawsmtp.SMTPPool(host="127.0.0.1", port={port}, ignore_tls=True, max_connections=5,
                      max_messages=100_000) as pool:
    envelope = rawsmtp.Envelope(mail_from=run.SENDER, rcpt_to=tuple(run.RECIPIENTS))
    concurrent.futures.wait([pool.send(run.MESSAGE_1K, envelope) for _ in range({count})])
"""


def instructions(port: int, count: int) -> int:
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "workload.py"
        script.write_text(WORKLOAD.format(bench=str(HERE), port=port, count=count))
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


def main() -> None:
    if shutil.which("valgrind") is None:
        sys.exit("valgrind not found (Debian: apt-get install valgrind)")
    with smtp_sink() as port:
        small, large = instructions(port, 1000), instructions(port, 3000)
    print(f"{(large - small) // 2000:,} instructions per message (user space)")


if __name__ == "__main__":
    main()
