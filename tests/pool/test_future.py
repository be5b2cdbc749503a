"""SendFuture: a concurrent.futures.Future that shares its lock with its pool's others."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from concurrent.futures import Future

import pytest

from rawsmtp.pool._future import SendFuture


def _futures(count: int) -> tuple[list[SendFuture[int]], list[Future[int]]]:
    lock = threading.RLock()
    withdrawn: list[Future[int]] = []
    return [SendFuture(lock, withdrawn.append) for _ in range(count)], withdrawn


def _later(delay: float, action: object) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        action()  # type: ignore[operator]

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_is_a_concurrent_future_sharing_one_lock() -> None:
    (first, second), _ = _futures(2)
    assert isinstance(first, Future)
    assert first._condition is second._condition


def test_another_futures_completion_does_not_end_a_wait() -> None:
    (waited, other), _ = _futures(2)
    thread = _later(0.05, lambda: other.set_result(1))
    started = time.monotonic()
    with pytest.raises(concurrent.futures.TimeoutError):
        waited.result(timeout=0.3)
    assert time.monotonic() - started >= 0.29  # woken early by `other`, it waited on
    thread.join()
    assert other.result(timeout=0) == 1


def test_result_and_exception_wait_for_their_own_future() -> None:
    (ok, failed, other), _ = _futures(3)
    threads = [
        _later(0.02, lambda: other.set_result(0)),
        _later(0.05, lambda: ok.set_result(7)),
        _later(0.05, lambda: failed.set_exception(ValueError("bad"))),
    ]
    assert ok.result(timeout=5) == 7
    assert isinstance(failed.exception(timeout=5), ValueError)
    with pytest.raises(ValueError, match="bad"):
        failed.result()
    for thread in threads:
        thread.join()


def test_wait_and_as_completed_work() -> None:
    futures, _ = _futures(50)
    threads = [_later(0.001 * i, lambda f=f, i=i: f.set_result(i)) for i, f in enumerate(futures)]
    done, not_done = concurrent.futures.wait(futures, timeout=10)
    assert len(done) == 50 and not not_done
    assert sorted(f.result() for f in concurrent.futures.as_completed(futures)) == list(range(50))
    for thread in threads:
        thread.join()


def test_cancel_tells_the_pool_once_and_only_until_the_dot_is_committed() -> None:
    (queued, running, committed, finished), withdrawn = _futures(4)
    assert queued.cancel() and queued.cancel()
    assert queued.cancelled() and withdrawn == [queued]
    assert running.set_running_or_notify_cancel() and committed.set_running_or_notify_cancel()
    assert committed.commit()
    assert not committed.cancel() and not committed.cancelled()
    assert running.cancel() and running.cancel() and not running.commit()
    finished.set_result(1)
    assert not finished.cancel() and not finished.commit()
    assert withdrawn == [queued, running]
    for cancelled in (queued, running):
        with pytest.raises(concurrent.futures.CancelledError):
            cancelled.result()


def test_cancelling_a_running_future_wakes_concurrent_futures_wait() -> None:
    # Nobody calls set_running_or_notify_cancel() again on a running future: cancel() itself
    # must tell wait()'s waiters.
    (future,), _ = _futures(1)
    assert future.set_running_or_notify_cancel()
    thread = _later(0.05, future.cancel)
    done, pending = concurrent.futures.wait([future], timeout=5)
    thread.join()
    assert done == {future} and not pending and future.cancelled()


def test_done_callbacks_run_once_before_and_after_completion() -> None:
    (future,), _ = _futures(1)
    seen: list[str] = []
    future.add_done_callback(lambda f: seen.append("before"))
    future.add_done_callback(lambda f: 1 / 0)  # logged, and the others still run
    future.add_done_callback(lambda f: seen.append("third"))  # one, two, then three kept
    future.set_result(3)
    future.add_done_callback(lambda f: seen.append(f"after {f.result()}"))
    assert seen == ["before", "third", "after 3"]


def test_asyncio_can_await_it() -> None:
    (future,), _ = _futures(1)

    async def main() -> int:
        _later(0.02, lambda: future.set_result(5))
        return await asyncio.wrap_future(future)

    assert asyncio.run(main()) == 5


def test_cancel_wakes_a_waiting_result_and_waiters_are_removed() -> None:
    (future,), withdrawn = _futures(1)
    thread = _later(0.05, future.cancel)
    with pytest.raises(concurrent.futures.CancelledError):
        future.result(timeout=5)
    thread.join()
    assert withdrawn == [future]
    assert future._waiters == []


def test_settling_twice_is_refused_and_wait_sees_exceptions() -> None:
    (ok, failed), _ = _futures(2)
    thread = _later(0.02, lambda: failed.set_exception(ValueError("no")))
    done, pending = concurrent.futures.wait(
        [ok, failed], timeout=5, return_when=concurrent.futures.FIRST_EXCEPTION
    )
    thread.join()
    assert done == {failed} and pending == {ok} and not ok.done() and failed.done()
    ok.set_result(1)
    with pytest.raises(concurrent.futures.InvalidStateError):
        ok.set_result(2)
    with pytest.raises(concurrent.futures.InvalidStateError):
        failed.set_exception(ValueError("again"))
    assert ok.result() == 1
