"""Fuzz the whole pool (engine, scheduler, sessions, the real core) against arbitrary servers.

The pool is the in-memory one of tests/helpers/harness.py (production engine and sessions, a
fake clock, no sockets); its server here replays the fuzzer's bytes: on each connection and each
write of the client, a control byte says how many of the next bytes to send (0xFF: close the
connection). Messages are sent, some cancelled part way, the pool closed. Whatever the server
says, every future must settle with a rawsmtp.SMTPError (or as cancelled), the pool must end,
and each input must finish within a wall-clock bound: a hang is a crash, any other exception
too. Run: python fuzz/fuzz_pool.py -max_total_time=60 (needs atheris).
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import FrameType

import atheris

_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(_ROOT), str(_ROOT / "tests")]  # this checkout's rawsmtp, and its helpers

with atheris.instrument_imports():
    from helpers.harness import FakeClock, PoolHarness

    from rawsmtp import SMTPError, SMTPPoolClosedError

_WALL_CLOCK_LIMIT = 5  # seconds per input; a well-behaved one takes milliseconds
_CLOSE = 0xFF


class Hang(Exception):
    """An input ran past the wall-clock bound."""


class _Peer:
    def __init__(self, number: int) -> None:
        self.number = number
        self.output = bytearray()
        self.closed = False


class ReplayServer:
    """What MemoryTransport needs of a server, answering with the fuzzer's bytes."""

    def __init__(self, stream: bytes) -> None:
        self.stream = memoryview(stream)
        self.clock = FakeClock()
        self.connections = 0

    def accept(self) -> _Peer:
        self.connections += 1
        peer = _Peer(self.connections)
        self._speak(peer)
        return peer

    def receive(self, peer: _Peer, data: bytes) -> None:
        self._speak(peer)

    def _speak(self, peer: _Peer) -> None:
        if not self.stream or self.stream[0] == _CLOSE:
            peer.closed = True  # also once the input is used up: every session ends
            self.stream = self.stream[1:]
            return
        length = self.stream[0] % 64 + 1
        peer.output += self.stream[1 : 1 + length]
        self.stream = self.stream[1 + length :]


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise Hang(f"one input ran for more than {_WALL_CLOCK_LIMIT} s")


def test_one_input(data: bytes) -> None:
    if len(data) < 4:
        return
    flags, count, cancel_mask, stream = data[0], data[1] % 4 + 1, data[2], data[3:]
    server = ReplayServer(stream)
    signal.alarm(_WALL_CLOCK_LIMIT)
    try:
        pool = PoolHarness(
            server,  # type: ignore[arg-type]  # duck-typed: accept(), receive(), clock
            max_connections=flags % 2 + 1,
            max_retries=(flags >> 1) % 3,
            lmtp=bool(flags & 8),
        )
        futures = [pool.send() for _ in range(count)]
        pool.run()
        for index, future in enumerate(futures):  # some now, before any reply was read...
            if cancel_mask >> index & 1:
                future.cancel()
        pool.run()
        pool.advance((flags >> 4) % 4 * 10)
        for index, future in enumerate(futures):  # ...some later, wherever they are
            if cancel_mask >> (index + 4) & 1:
                future.cancel()
        pool.run_until(lambda: all(f.done() for f in futures), limit=100_000)
        pool.close()
        pool.run_until(lambda: not pool.engine.sessions, limit=100_000)
    finally:
        signal.alarm(0)
    for future in futures:
        if future.cancelled():
            continue
        error = future.exception()
        if error is not None and not isinstance(error, SMTPError):
            raise error
    assert isinstance(pool.send().exception(), SMTPPoolClosedError)


def main() -> None:
    signal.signal(signal.SIGALRM, _alarm)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
