"""The threaded pool's life cycle: nothing lost at interpreter exit without close(), no thread
or descriptor held by a pool with nothing to do, a ResourceWarning and a clean end when an open
pool is collected. The asyncio pool warns too (its loop is the caller's: nothing to flush)."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import pytest
from helpers.waiting import wait_until

import rawsmtp
import rawsmtp.aio
from rawsmtp.testing import Fault, SMTPTestServer

MESSAGE = b"From: <s@x.test>\r\nTo: <r@x.test>\r\nSubject: life\r\n\r\nhello\r\n"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run_script(source: str, port: int, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent(source).replace("PORT", str(port))
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_a_script_that_forgets_close_still_sends_everything_it_queued() -> None:
    with SMTPTestServer() as server:
        done = _run_script(
            """
            import rawsmtp
            pool = rawsmtp.SMTPPool(host="127.0.0.1", port=PORT, ignore_tls=True)
            for n in range(200):
                pool.send(b"From: s@x.test\\r\\nTo: r@x.test\\r\\nSubject: %d\\r\\n\\r\\nhi\\r\\n" % n)
            """,
            server.port,
        )
        assert done.returncode == 0, done.stderr
        assert wait_until(lambda: len(server.messages) == 200, timeout=5)
        subjects = sorted(
            int(m.data.split(b"Subject: ")[1].split(b"\r\n")[0]) for m in server.messages
        )
        assert subjects == list(range(200))
        assert wait_until(lambda: server.active_connections == 0)  # and it said QUIT


def test_what_exit_timeout_leaves_unsent_fails_loudly_and_exit_is_bounded() -> None:
    with SMTPTestServer(faults=[Fault(on="DATA_END", action="silent")]) as server:
        started = time.monotonic()
        done = _run_script(
            """
            import rawsmtp
            pool = rawsmtp.SMTPPool(
                host="127.0.0.1", port=PORT, ignore_tls=True, max_connections=1, exit_timeout=1
            )
            message = b"From: s@x.test\\r\\nTo: r@x.test\\r\\n\\r\\nhi\\r\\n"
            futures = [pool.send(message) for n in range(3)]
            """,
            server.port,
            timeout=30,
        )
        assert done.returncode == 0 and time.monotonic() - started < 20
        assert "could not send everything within exit_timeout=1.0 s" in done.stderr
        assert server.messages == []


def _threads() -> int:
    return threading.active_count()


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_pools_that_only_verified_hold_no_thread_and_no_descriptor() -> None:
    with SMTPTestServer() as server:
        gc.collect()
        threads, fds = _threads(), _fds()
        pools = []
        for _ in range(500):
            pool = rawsmtp.SMTPPool(host="127.0.0.1", port=server.port, ignore_tls=True)
            assert pool.verify()
            pools.append(pool)  # kept: nothing is released by collection here
        assert wait_until(lambda: _threads() <= threads and _fds() <= fds, timeout=10), (
            _threads() - threads,
            _fds() - fds,
        )
        for pool in pools:
            pool.close()


def test_a_pool_whose_connections_went_idle_ends_its_thread_and_starts_again() -> None:
    with SMTPTestServer() as server:
        threads = _threads()
        pool = rawsmtp.SMTPPool(
            host="127.0.0.1", port=server.port, ignore_tls=True, idle_timeout=0.2
        )
        assert pool.send(MESSAGE).result(timeout=10).accepted == ("r@x.test",)
        assert wait_until(lambda: _threads() <= threads, timeout=10)
        assert server.active_connections == 0
        assert pool.send(MESSAGE).result(timeout=10).accepted == ("r@x.test",)
        pool.close()
        assert len(server.messages) == 2 and _threads() <= threads + 1  # a worker may linger


def test_an_open_pool_collected_warns_sends_its_queue_and_releases_its_thread() -> None:
    with SMTPTestServer(faults=[Fault(on="DATA", delay=0.2)]) as server:
        threads = _threads()
        pool = rawsmtp.SMTPPool(host="127.0.0.1", port=server.port, ignore_tls=True)
        futures = [pool.send(MESSAGE) for _ in range(5)]
        with pytest.warns(ResourceWarning, match="unclosed <SMTPPool"):
            del pool
            gc.collect()
        assert [f.result(timeout=10).accepted for f in futures] == [("r@x.test",)] * 5
        assert wait_until(lambda: _threads() <= threads, timeout=10)
        assert server.active_connections == 0
        # Every connection that carried mail said QUIT (one still connecting when the pool
        # began to close has nothing to say: it just ends).
        quits = {c.connection for c in server.commands if c.line == "QUIT"}
        carried = {c.connection for c in server.commands if c.line.startswith("MAIL")}
        assert carried and carried <= quits


def test_a_closed_pool_collected_says_nothing() -> None:
    pool = rawsmtp.SMTPPool(host="127.0.0.1", port=9, ignore_tls=True)
    pool.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        del pool
        gc.collect()


def test_an_unclosed_asyncio_pool_warns_when_collected_and_releases_its_sockets() -> None:
    with SMTPTestServer() as server:

        async def main() -> None:
            pool = rawsmtp.aio.SMTPPool(host="127.0.0.1", port=server.port, ignore_tls=True)
            await pool.send(MESSAGE)  # a connection stays open, idle

        fds = _fds()
        asyncio.run(main())  # ends without aclose(): the loop is gone, the pool not yet
        with pytest.warns(ResourceWarning, match="unclosed <SMTPPool"):
            gc.collect()
        assert wait_until(lambda: server.active_connections == 0)
        assert _fds() <= fds
