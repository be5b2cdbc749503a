"""The same batch on trio: a stream that becomes an SSLStream, deadlines from the core's timer.

The core takes any monotonic clock, so it runs on trio's own: ``get_timer()`` is a trio
deadline as it stands. Run:
``python examples/trio_client.py HOST PORT CAFILE USER PASSWORD SENDER RECIPIENT``.
"""

from __future__ import annotations

import math
import ssl
import sys
from collections.abc import Sequence
from typing import Any

import trio
from batch import Batch, Mail

from rawsmtp import protocol as smtp


async def run(
    mails: Sequence[Mail], host: str, port: int, context: ssl.SSLContext, **options: Any
) -> Batch:
    batch = Batch(mails, now=trio.current_time(), **options)
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
                if data := client.data_to_send(trio.current_time()):
                    await stream.send_all(data)
                deadline = client.get_timer()
                with trio.move_on_at(math.inf if deadline is None else deadline) as timer:
                    data = await stream.receive_some(65536)
                    client.receive_data(data, trio.current_time())
                if timer.cancelled_caught:
                    client.handle_timer(trio.current_time())
    finally:
        await stream.aclose()
    return batch


if __name__ == "__main__":
    host, port, cafile, user, password, sender, recipient = sys.argv[1:8]
    mails = [Mail(sender, (recipient,), b"Subject: %d\r\n\r\nhello\r\n" % n) for n in range(3)]
    context = ssl.create_default_context(cafile=cafile)
    batch = trio.run(lambda: run(mails, host, int(port), context, user=user, password=password))
    print(batch.closed, *batch.outcomes, sep="\n")
