"""SMTPPool against each fault mode of the test server: a typed error or a requeue, in time,
with no thread or socket left behind."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

import rawsmtp
from rawsmtp.testing import CA_FILE, Fault, SMTPTestServer

MESSAGE = b"From: <s@x.test>\r\nTo: <r@x.test>\r\nSubject: fault\r\n\r\nhello\r\n"
NO_CHUNKING = ["PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"]


@dataclass
class Case:
    server: dict[str, Any]
    expect: type[Exception] | None  # None: delivered
    pool: dict[str, Any] = field(default_factory=dict)
    to: tuple[str, ...] = ("r@x.test",)
    code: int | None = None
    cause: type[Exception] | None = None  # a set-up failure: the deadline's cause


def setup_failure(server: dict[str, Any], cause: type[Exception], **more: Any) -> Case:
    """A temporary set-up failure charges no message: the message's deadline ends it."""
    pool = {"delivery_timeout": 2.5, **more.pop("pool", {})}
    return Case(server, rawsmtp.SMTPTimeoutError, pool=pool, cause=cause, **more)


CASES = {
    "slow-greeting": setup_failure(
        {"faults": [Fault(on="CONNECT", delay=3)]}, rawsmtp.SMTPTimeoutError
    ),
    "refused-greeting": Case(
        {"faults": [Fault(on="CONNECT", reply="554 5.7.1 go away")]},
        rawsmtp.SMTPResponseError,
        code=554,
    ),
    "421-greeting": setup_failure(
        {"faults": [Fault(on="CONNECT", action="close")]}, rawsmtp.SMTPResponseError, code=421
    ),
    "silent-greeting": setup_failure(
        {"faults": [Fault(on="CONNECT", action="silent")]}, rawsmtp.SMTPTimeoutError
    ),
    # With CHUNKING the body went out pipelined with MAIL: its fate is unknown, never resent.
    "silent-mail": Case(
        {"faults": [Fault(on="MAIL", action="silent")]}, rawsmtp.SMTPDeliveryUnknownError
    ),
    "drop-after-data": Case(
        {"faults": [Fault(on="DATA_END", action="drop")]}, rawsmtp.SMTPDeliveryUnknownError
    ),
    "slow-reply-after-data": Case(
        {"faults": [Fault(on="DATA_END", delay=3)]}, rawsmtp.SMTPDeliveryUnknownError
    ),
    "short-delay-after-data": Case({"faults": [Fault(on="DATA_END", delay=0.3)]}, None),
    "garbage": setup_failure(
        {"faults": [Fault(on="EHLO", action="garbage")]}, rawsmtp.RemoteProtocolError
    ),
    "endless-line": setup_failure(
        {"faults": [Fault(on="EHLO", action="endless")]}, rawsmtp.RemoteProtocolError
    ),
    "endless-line-after-data": Case(
        {"faults": [Fault(on="DATA_END", action="endless")]}, rawsmtp.SMTPDeliveryUnknownError
    ),
    "starttls-injection": setup_failure(
        {"tls": True, "faults": [Fault(on="STARTTLS", inject=b"250 injected\r\n")]},
        rawsmtp.RemoteProtocolError,
        pool={"tls": {"ca_file": CA_FILE}, "ignore_tls": False},
    ),
    "tempfail-recipient": Case(
        {"faults": [Fault(on="RCPT", reply="450 4.2.0 try later")]},
        rawsmtp.SMTPRecipientsRefusedError,
        code=450,
    ),
    "reject-after-data": Case(
        {"faults": [Fault(on="DATA_END", reply="554 5.7.1 rejected")]},
        rawsmtp.SMTPResponseError,
        code=554,
    ),
    "lmtp-refused-after-data": Case(
        {"lmtp": True, "faults": [Fault(on="DATA_END", reply="552 5.2.2 full")]},
        rawsmtp.SMTPResponseError,
        pool={"lmtp": True},
        code=552,
    ),
    "421-at-rcpt-then-requeued": Case(
        {"faults": [Fault(on="RCPT", action="close", connection=1)]}, None
    ),
    "drop-at-mail-then-requeued": Case(
        {"capabilities": NO_CHUNKING, "faults": [Fault(on="MAIL", action="drop", connection=1)]},
        None,
    ),
}


def open_sockets() -> int:
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{name}").startswith("socket:")
        except OSError:
            continue
    return count


def settle(threads: int, sockets: int) -> tuple[int, int]:
    """Thread and socket counts, given up to 2 s to come back down (worker threads end lazily)."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        if threading.active_count() <= threads and open_sockets() <= sockets:
            break
        time.sleep(0.02)
    return threading.active_count(), open_sockets()


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_pool_ends_each_fault_with_a_typed_error_or_a_requeue(
    case: Case, pool_factory: Callable[..., Any]
) -> None:
    threads, sockets = threading.active_count(), open_sockets()
    with SMTPTestServer(**case.server) as server:
        options: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": server.port,
            "ignore_tls": True,
            "greeting_timeout": 1.0,
            "socket_timeout": 1.0,
            "connection_timeout": 1.0,
            "max_retries": 1,
            **case.pool,
        }
        started = time.monotonic()
        with pool_factory(**options) as pool:
            future = pool.send(MESSAGE, {"from": "s@x.test", "to": list(case.to)})
            if case.expect is None:
                result = future.result(timeout=10)
                assert result.accepted == case.to
                assert len(server.messages) == 1
            else:
                with pytest.raises(case.expect) as info:
                    future.result(timeout=10)
                error: Any = info.value
                if case.cause is not None:
                    assert error.phase == "queue"
                    error = error.__cause__
                    assert isinstance(error, case.cause), error
                if case.code is not None:
                    assert error.code == case.code
        assert time.monotonic() - started < 10
        assert server.errors == []
    # At most as many as before: a thread left by an earlier test may end meanwhile.
    now_threads, now_sockets = settle(threads, sockets)
    assert now_threads <= threads and now_sockets <= sockets
