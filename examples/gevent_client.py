"""The same batch on gevent: green sockets look blocking, so the loop reads like plain code.

:func:`run_many` sends several batches at once, one greenlet each, to show they interleave.
Run: ``python examples/gevent_client.py HOST PORT CAFILE USER PASSWORD SENDER RECIPIENT``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

import gevent
import gevent.socket
import gevent.ssl
from batch import Batch, Mail

from rawsmtp import protocol as smtp


def run(batch: Batch, host: str, port: int, cafile: str) -> Batch:
    client = batch.client
    # gevent.ssl.create_default_context is the stdlib's, whose sockets would block the hub.
    context = gevent.ssl.SSLContext(gevent.ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile)
    sock = gevent.socket.create_connection((host, port))
    try:
        while batch.closed is None:
            event = client.next_event()
            if isinstance(event, smtp.StartTLS):
                sock = context.wrap_socket(sock, server_hostname=host)
                client.start_tls_done()
            elif event is not smtp.NEED_DATA:
                batch.handle(event)
            else:
                sock.sendall(client.data_to_send(now=time.monotonic()))
                deadline = client.get_timer()
                sock.settimeout(None if deadline is None else max(0.0, deadline - time.monotonic()))
                try:
                    data = sock.recv(65536)
                except TimeoutError:  # socket.timeout, for gevent's sockets too
                    client.handle_timer(time.monotonic())
                else:
                    client.receive_data(data, now=time.monotonic())
    finally:
        sock.close()
    return batch


def run_many(batches: Sequence[Batch], host: str, port: int, cafile: str) -> None:
    greenlets = [gevent.spawn(run, batch, host, port, cafile) for batch in batches]
    gevent.joinall(greenlets, raise_error=True)


if __name__ == "__main__":
    host, port, cafile, user, password, sender, recipient = sys.argv[1:8]
    mails = [Mail(sender, (recipient,), b"Subject: %d\r\n\r\nhello\r\n" % n) for n in range(3)]
    batches = [Batch(mails, user=user, password=password, now=time.monotonic()) for _ in range(2)]
    run_many(batches, host, int(port), cafile)
    for batch in batches:
        print(batch.closed, *batch.outcomes, sep="\n")
