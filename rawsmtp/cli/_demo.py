"""``rawsmtp demo``: a batch through a real pool to the embedded test server, no setup needed.

It starts :class:`rawsmtp.testing.SMTPTestServer` on loopback, sends ``--count`` generated
messages through ``SMTPPool(max_connections=5)`` with the same reporting as ``rawsmtp send``,
and prints what the server received. Exit status 1 when the server did not get them all.
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import email.utils
import sys
from typing import Any

from ..config import EnvelopeDict
from ..pool._selectors import SMTPPool
from ..testing import SMTPTestServer
from ._console import Console
from ._progress import Progress
from ._send import Job, Outcome, Reporter, describe, send_batch

__all__ = ["command", "demo_message"]

SENDER = "demo@rawsmtp.test"
MAX_CONNECTIONS = 5


def demo_message(number: int, count: int) -> bytes:
    """Message ``number`` of ``count``: To one of ten demo users, with a unique Message-ID."""
    return (
        f"From: rawsmtp demo <{SENDER}>\r\n"
        f"To: user{number % 10}@example.test\r\n"
        f"Subject: rawsmtp demo message {number} of {count}\r\n"
        f"Date: {email.utils.formatdate(localtime=True)}\r\n"
        f"Message-ID: <demo-{number}@rawsmtp.test>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        f"Hello from the rawsmtp demo. This is message {number} of {count}.\r\n"
    ).encode()


def _job(number: int, count: int) -> Job:
    def load() -> tuple[bytes, EnvelopeDict | None]:
        return demo_message(number, count), None

    return Job(f"message {number}", load)


def command(args: argparse.Namespace, console: Console) -> int:
    count: int = args.count
    with SMTPTestServer() as server:
        console.out(
            f"rawsmtp demo: test server on {server.host}:{server.port}; sending {count} "
            f"messages through a pool of {MAX_CONNECTIONS} connections"
        )
        progress = Progress(count, sys.stderr, draw=sys.stderr.isatty())
        failures: list[Outcome] = []

        def on_outcome(outcome: Outcome) -> None:
            progress.record(ok=outcome.ok)
            if not outcome.ok:
                failures.append(outcome)

        with SMTPPool(
            host=server.host, port=server.port, ignore_tls=True, max_connections=MAX_CONNECTIONS
        ) as pool:
            jobs = (_job(number, count) for number in range(1, count + 1))
            send_batch(pool, jobs, on_outcome, on_wait=progress.refresh)
        Reporter(console, progress, as_json=False).summary()
        for outcome in failures[:5]:
            assert outcome.error is not None
            console.err(f"FAIL {outcome.label}: {describe(outcome.error)}")
        try:
            received = server.wait_for_messages(count, timeout=5.0)
        except TimeoutError:
            received = server.messages
        _report_server(console, server, received, progress.elapsed)
    return 0 if len(received) >= count else 1


def _report_server(
    console: Console, server: SMTPTestServer, received: list[Any], elapsed: float
) -> None:
    console.out(f"server received {len(received)} messages over {server.connections} connections")
    if received:
        sample = received[0]
        parser = email.parser.BytesHeaderParser(policy=email.policy.default)
        subject = parser.parsebytes(sample.data).get("Subject", "")
        console.out(f"  sample envelope: MAIL FROM:<{sample.mail_from}> RCPT TO:{_rcpts(sample)}")
        console.out(f"  sample Subject:  {subject}")
    rate = len(received) / elapsed if elapsed > 0 else 0.0
    console.out(f"throughput: {rate:.0f} messages/s ({len(received)} in {elapsed:.2f} s)")


def _rcpts(message: Any) -> str:
    return ", ".join(f"<{address}>" for address in message.rcpt_to)
