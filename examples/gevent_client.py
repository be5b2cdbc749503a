"""The same batch on gevent: green sockets look blocking, so the loop reads like plain code.

:func:`run_many` sends several batches at once, one greenlet each, to show they interleave.
Run: ``python examples/gevent_client.py HOST PORT CAFILE USER PASSWORD SENDER RECIPIENT``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

import gevent
import gevent.socket
import gevent.ssl
from batch import Batch, Mail

from rawsmtp import protocol as smtp


def run(mails: Sequence[Mail], host: str, port: int, cafile: str, **options: Any) -> Batch:
    batch = Batch(mails, now=time.monotonic(), **options)
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
                sock.sendall(client.data_to_send(time.monotonic()))
                deadline = client.get_timer()
                sock.settimeout(None if deadline is None else max(0.0, deadline - time.monotonic()))
                try:
                    data = sock.recv(65536)
                except TimeoutError:  # socket.timeout, for gevent's sockets too
                    client.handle_timer(time.monotonic())
                else:
                    client.receive_data(data, time.monotonic())
    finally:
        sock.close()
    return batch


def run_many(
    batches: Sequence[Sequence[Mail]], host: str, port: int, cafile: str, **options: Any
) -> list[Batch]:
    greenlets = [gevent.spawn(run, mails, host, port, cafile, **options) for mails in batches]
    gevent.joinall(greenlets, raise_error=True)
    return [greenlet.value for greenlet in greenlets]


if __name__ == "__main__":
    host, port, cafile, user, password, sender, recipient = sys.argv[1:8]
    mails = [Mail(sender, (recipient,), b"Subject: %d\r\n\r\nhello\r\n" % n) for n in range(3)]
    for batch in run_many([mails, mails], host, int(port), cafile, user=user, password=password):
        print(batch.closed, *batch.outcomes, sep="\n")
