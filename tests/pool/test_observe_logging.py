"""The pool's log lines, by level and content, for each outcome (both drivers); how
``logger=True`` and ``debug=True`` print (in a child process, whose logging is untouched)."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import rawsmtp
from rawsmtp.testing import Fault, SMTPTestServer

ROOT = Path(__file__).resolve().parents[2]
MESSAGE = b"From: <s@x.test>\r\nTo: r@x.test, nobody@x.test\r\nMessage-ID: <m1@x>\r\n\r\nhi\r\n"


def options(server: SMTPTestServer, **extra: Any) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": server.port, "ignore_tls": True, **extra}


def lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "rawsmtp" and r.levelno == level]


@pytest.fixture
def info(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="rawsmtp")
    return caplog


def test_a_delivery_is_one_info_line(
    pool_factory: Callable[..., Any], info: pytest.LogCaptureFixture
) -> None:
    with SMTPTestServer() as server, pool_factory(**options(server)) as pool:
        result = pool.send(MESSAGE).result(timeout=10)
    connected, delivered, closed = lines(info, logging.INFO)
    assert lines(info, logging.WARNING) == []
    number = re.fullmatch(r"\[(\d+)\] connected to 127\.0\.0\.1:\d+", connected)
    assert number is not None
    match = re.fullmatch(
        r"\[(\d+)\] <m1@x> delivered to 2 of 2 recipients in [0-9.]+ s, queue id (\S+): (.*)",
        delivered,
    )
    assert match is not None and match[1] == number[1]
    assert match[2] == (result.queue_id or "unknown") and match[3] == result.response
    assert closed == f"[{number[1]}] connection closed after 1 messages"


def test_a_refused_recipient_is_a_warning(
    pool_factory: Callable[..., Any], info: pytest.LogCaptureFixture
) -> None:
    refuse = [Fault(on="RCPT", match="nobody@", reply="550 5.1.1 No such user")]
    with SMTPTestServer(faults=refuse) as server, pool_factory(**options(server)) as pool:
        pool.send(MESSAGE).result(timeout=10)
    (warning,) = lines(info, logging.WARNING)
    assert "<m1@x> delivered to 1 of 2 recipients" in warning
    assert warning.endswith("; refused nobody@x.test: recipient refused: 550 5.1.1 No such user")
    assert not any("delivered" in line for line in lines(info, logging.INFO))


def test_a_refused_connection_is_two_warnings(
    pool_factory: Callable[..., Any], info: pytest.LogCaptureFixture
) -> None:
    with SMTPTestServer() as server:
        port = server.port  # closed below: nothing listens there any more
    with (
        pool_factory(host="127.0.0.1", port=port, delivery_timeout=0.5) as pool,
        pytest.raises(rawsmtp.SMTPTimeoutError),  # the deadline, caused by the refusal
    ):
        pool.send(MESSAGE).result(timeout=10)
    connect, failed = lines(info, logging.WARNING)
    assert re.fullmatch(r"\[\d+\] could not connect: SMTPConnectionError: .*ECONNREFUSED", connect)
    assert re.fullmatch(r"\[-\] <m1@x> failed after [0-9.]+ s: SMTPTimeoutError: .*", failed)
    assert lines(info, logging.INFO) == []


def test_a_retry_is_a_warning(
    pool_factory: Callable[..., Any], info: pytest.LogCaptureFixture
) -> None:
    drop = [Fault(on="MAIL", action="drop", nth=1)]
    with (
        SMTPTestServer(faults=drop, capabilities=["8BITMIME"]) as server,
        pool_factory(**options(server)) as pool,
    ):
        pool.send(MESSAGE).result(timeout=15)
    lost, retry = lines(info, logging.WARNING)
    assert re.fullmatch(r"\[\d+\] connection lost after 0 messages: SMTP\w+Error: .*", lost)
    assert re.fullmatch(
        # A first connection's drop is the destination's failure: no attempt is charged.
        r"\[\d+\] <m1@x> will be retried in [0-9.]+ s \(no attempt charged\): SMTP\w+Error: .*",
        retry,
    )
    assert sum("delivered to 2 of 2" in line for line in lines(info, logging.INFO)) == 1


def run_child(script: str) -> str:
    """Run ``script`` in a fresh interpreter (rawsmtp from this worktree); its stderr."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


SEND = """
    import rawsmtp
    from rawsmtp.testing import SMTPTestServer

    with SMTPTestServer(users={"ann": "s3cret-pw"}) as server:
        pool = rawsmtp.SMTPPool(
            host="127.0.0.1", port=server.port, ignore_tls=True, auth=("ann", "s3cret-pw"),
            allow_insecure_auth=True, %s
        )
        with pool:
            message = b"From: <s@x.test>\\r\\nTo: <r@x.test>\\r\\nMessage-ID: <m1@x>\\r\\n\\r\\nhi\\r\\n"
            pool.send(message).result(timeout=10)
"""


def test_logger_true_with_basic_config_prints_each_line_once() -> None:
    err = run_child(
        "import logging; logging.basicConfig(level=logging.INFO)\n"
        + textwrap.dedent(SEND % "logger=True")
    )
    delivered = [line for line in err.splitlines() if "<m1@x> delivered" in line]
    assert len(delivered) == 1 and " rawsmtp INFO [" in delivered[0]
    assert sum("connected to 127.0.0.1" in line for line in err.splitlines()) == 1
    assert "C: MAIL" not in err  # no transcript without debug


def test_debug_alone_prints_the_redacted_transcript() -> None:
    err = run_child(SEND % "debug=True")
    shown = [line.split("rawsmtp DEBUG ", 1)[-1] for line in err.splitlines()]
    number = next(line.split("]")[0] for line in shown if "C: MAIL FROM:<s@x.test>" in line)
    assert f"{number}] C: AUTH PLAIN <redacted>" in shown
    assert "s3cret-pw" not in err and "czNjcmV0LXB3" not in err  # the password, nor its base64
    assert f"{number}] S: 250-PIPELINING" in shown  # a multi-line reply: one line each
    assert f"{number}] C: <message data> <m1@x>" in shown  # a body names its Message-ID
    assert any(f"{number}] <m1@x> delivered to 1 of 1" in line for line in shown)
