"""A TCP relay that delays each direction by a fixed time: a loopback link with a real RTT.

    python bench/latency_proxy.py --listen 127.0.0.1:0 --target 127.0.0.1:2526 --delay 0.005

Data keeps its order and is delivered ``delay`` seconds after it arrived, per direction, so a
request/reply costs 2 x delay more than on plain loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
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
            queue.put_nowait((loop.time() + delay, data))
    finally:
        queue.put_nowait((0.0, b""))
        await sender


async def _relay(target: tuple[str, int], delay: float) -> asyncio.Server:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(*target)
        try:
            await asyncio.gather(_pump(client_r, server_w, delay), _pump(server_r, client_w, delay))
        except OSError:
            pass
        finally:
            client_w.close()
            server_w.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def _main(target: tuple[str, int], delay: float) -> None:
    server = await _relay(target, delay)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="host:port to relay to")
    parser.add_argument("--delay", type=float, default=0.005, help="seconds, per direction")
    args = parser.parse_args()
    host, _, port = args.target.rpartition(":")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main((host, int(port)), args.delay))
    sys.exit(0)


if __name__ == "__main__":
    main()
