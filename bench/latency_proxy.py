"""A TCP relay that delays each direction by a fixed time: a loopback link with a real RTT.

    python bench/latency_proxy.py --target 127.0.0.1:2526 --delay 0.005 [--stats FILE]

Prints the port it listens on. Data keeps its order and is delivered ``delay`` seconds after it
arrived, per direction, so a request/reply costs 2 x delay more than on plain loopback.

With ``--stats`` it counts round trips: each time a client sends after the server last spoke on
that connection, the client waited (or could have) for a reply, and one more RTT is spent. The
running total is written to FILE whenever a connection ends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Callable


class _Turns:
    """Round trips over all connections (see the module docstring)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.total = 0

    def save(self) -> None:
        if self.path:
            with open(self.path, "w") as file:
                file.write(f"{self.total}\n")


async def _pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    delay: float,
    on_data: Callable[[], None],
) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                break
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()

    sender = asyncio.create_task(deliver())
    try:
        while data := await reader.read(65536):
            on_data()
            queue.put_nowait((loop.time() + delay, data))
    finally:
        queue.put_nowait((0.0, b""))
        await sender


async def _relay(target: tuple[str, int], delay: float, turns: _Turns) -> asyncio.Server:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(*target)
        server_spoke = False

        def from_client() -> None:
            nonlocal server_spoke
            if server_spoke:
                turns.total += 1
                server_spoke = False

        def from_server() -> None:
            nonlocal server_spoke
            server_spoke = True

        try:
            await asyncio.gather(
                _pump(client_r, server_w, delay, from_client),
                _pump(server_r, client_w, delay, from_server),
            )
        except OSError:
            pass
        finally:
            client_w.close()
            server_w.close()
            turns.save()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def _main(target: tuple[str, int], delay: float, stats: str | None) -> None:
    turns = _Turns(stats)
    turns.save()
    server = await _relay(target, delay, turns)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="host:port to relay to")
    parser.add_argument("--delay", type=float, default=0.005, help="seconds, per direction")
    parser.add_argument("--stats", help="file to keep the round-trip count in")
    args = parser.parse_args()
    host, _, port = args.target.rpartition(":")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main((host, int(port)), args.delay, args.stats))
    sys.exit(0)


if __name__ == "__main__":
    main()
