"""The same batch on trio: a stream that becomes an SSLStream, deadlines from the core's timer.

Run: ``python examples/trio_client.py HOST PORT CAFILE USER PASSWORD SENDER RECIPIENT``.
"""

from __future__ import annotations

import math
import ssl
import sys
import time

import trio
from batch import Batch, Mail

from rawsmtp import protocol as smtp


async def run(batch: Batch, host: str, port: int, context: ssl.SSLContext) -> Batch:
    client = batch.client
    stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
    try:
        while batch.closed is None:
            event = client.next_event()
            if isinstance(event, smtp.StartTLS):
                stream = trio.SSLStream(stream, context, server_hostname=host)
                await stream.do_handshake()
                client.start_tls_done()
            elif event is not smtp.NEED_DATA:
                batch.handle(event)
            else:
                if data := client.data_to_send(now=time.monotonic()):
                    await stream.send_all(data)
                deadline = client.get_timer()
                # The core's clock is time.monotonic(); trio's deadlines use trio.current_time().
                wake = trio.current_time() + deadline - time.monotonic() if deadline else math.inf
                with trio.move_on_at(wake) as timer:
                    client.receive_data(await stream.receive_some(65536), now=time.monotonic())
                if timer.cancelled_caught:
                    client.handle_timer(time.monotonic())
    finally:
        await stream.aclose()
    return batch


if __name__ == "__main__":
    host, port, cafile, user, password, sender, recipient = sys.argv[1:8]
    mails = [Mail(sender, (recipient,), b"Subject: %d\r\n\r\nhello\r\n" % n) for n in range(3)]
    batch = Batch(mails, user=user, password=password, now=time.monotonic())
    trio.run(run, batch, host, int(port), ssl.create_default_context(cafile=cafile))
    print(batch.closed, *batch.outcomes, sep="\n")
