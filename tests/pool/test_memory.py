"""What a pool keeps of a message: a finished one is freed by reference counting alone.

A reference cycle per message (a submission and its transaction, a future and its awaiter)
would keep every finished message until a full garbage collection, which a long queue makes
rare: bench/run.py's queued rows saw it as tens of MB of peak RSS. With the collector off,
no finished submission (which holds the message's bytes) may be left as cyclic garbage.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from helpers.harness import FakeServer, PoolHarness

import rawsmtp.aio
from rawsmtp import SMTPResponseError
from rawsmtp._message import PreparedMessage
from rawsmtp.pool._engine import Submission
from rawsmtp.pool._scheduler import Job, Scheduler
from rawsmtp.pool._session import Session
from rawsmtp.pool._transport import Transport
from rawsmtp.testing import SMTPTestServer


@pytest.fixture
def no_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def _cyclic_garbage() -> list[str]:
    """What only a garbage collection would free (the collector being off until now)."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    gc.collect()
    kept = Submission | PreparedMessage | Session | Transport
    return [type(o).__name__ for o in gc.garbage if isinstance(o, kept)]


@pytest.mark.usefixtures("no_collector")
@pytest.mark.parametrize("reply", [None, "550 5.7.1 refused", "451 4.3.0 later"])
def test_a_finished_message_leaves_nothing_behind(reply: str | None) -> None:
    server = FakeServer(capabilities=("PIPELINING",))
    if reply is not None:
        server.on("DATA_END", reply=reply, nth=1)
    pool = PoolHarness(server, max_connections=1, retry_delay=1)
    futures = [pool.send() for _ in range(3)]
    pool.run_until(lambda: all(f.done() for f in futures))
    if reply is not None and reply.startswith("5"):
        with pytest.raises(SMTPResponseError) as failed:
            futures[0].result(0)
        assert failed.value.code == 550
    else:
        assert futures[0].result(0).accepted == ("r@x.test",)
    assert _cyclic_garbage() == []


@dataclass(slots=True, eq=False, weakref_slot=True)
class _Job(Job):
    pass


def test_the_scheduler_lets_go_of_every_job_it_assigned() -> None:
    """Its deadline entries of gone jobs are dropped: none once the queue is empty."""
    scheduler: Scheduler[_Job] = Scheduler(max_connections=1, delivery_timeout=60)
    jobs = [scheduler.submit(_Job(), 0.0) for _ in range(3)]
    scheduler.slot_ready(scheduler.slot_opened(0.0), 0.0, window=3)
    assigned = [job for _, job in scheduler.decide(0.0).assign]
    assert assigned == jobs
    gone = [weakref.ref(job) for job in jobs]
    del jobs, assigned
    assert [ref() for ref in gone] == [None, None, None]


def test_the_scheduler_lets_go_of_assigned_jobs_while_others_wait() -> None:
    """Sent in FIFO order, assigned jobs are the head of the in-order deadline deque, dropped
    after the assignment: a long queue keeps no sent message until it empties."""
    scheduler: Scheduler[_Job] = Scheduler(max_connections=1, delivery_timeout=60)
    jobs = [scheduler.submit(_Job(), float(step)) for step in range(10)]
    scheduler.slot_ready(scheduler.slot_opened(0.0), 0.0, window=3)
    assigned = [job for _, job in scheduler.decide(0.0).assign]
    assert assigned == jobs[:3] and scheduler.pending == 7
    gone = [weakref.ref(job) for job in assigned]
    del jobs[:3], assigned
    assert [ref() for ref in gone] == [None, None, None]
    assert scheduler.next_deadline(0.0) == 63.0  # the first still queued


@pytest.mark.usefixtures("no_collector")
def test_a_closed_session_leaves_nothing_behind() -> None:
    """A session and its real transport refer to each other until it closes: every closed
    connection (its reply buffer, its last message) is freed at once."""
    message = b"From: <s@x.test>\r\nTo: <r@x.test>\r\n\r\nhi\r\n"

    async def main(port: int) -> None:
        async with rawsmtp.aio.SMTPPool(
            host="127.0.0.1", port=port, ignore_tls=True, max_connections=1, max_messages=2
        ) as pool:
            results = await asyncio.gather(*(pool.send(message) for _ in range(6)))
            assert [result.accepted for result in results] == [("r@x.test",)] * 6

    with SMTPTestServer() as server:
        asyncio.run(asyncio.wait_for(main(server.port), 30))
        assert len(server.messages) == 6
    assert _cyclic_garbage() == []
