"""A single-threaded client on :mod:`selectors`: non-blocking socket, TLS, timers, no threads.

Run: ``python examples/selectors_client.py HOST PORT CAFILE USER PASSWORD SENDER RECIPIENT``.
"""

from __future__ import annotations

import selectors
import socket
import ssl
import sys
import time
from collections.abc import Sequence
from typing import Any

from batch import Batch, Mail

from rawsmtp import protocol as smtp

TLS_HANDSHAKE_TIMEOUT = 30.0  # the core times replies; the handshake is the driver's


def run(
    mails: Sequence[Mail], host: str, port: int, context: ssl.SSLContext, **options: Any
) -> Batch:
    batch = Batch(mails, now=time.monotonic(), **options)
    client = batch.client
    sock = socket.create_connection((host, port), timeout=30)
    sock.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    outgoing = bytearray()
    try:
        while batch.closed is None:
            event = client.next_event()
            if isinstance(event, smtp.StartTLS):
                # Nothing is left to write (the core is silent until start_tls_done()): hand
                # the socket to ssl for a handshake bounded by a timeout, then go back to
                # non-blocking. A client with many connections would step do_handshake() from
                # its selector instead.
                selector.unregister(sock)
                sock.settimeout(TLS_HANDSHAKE_TIMEOUT)
                sock = context.wrap_socket(sock, server_hostname=host)
                sock.setblocking(False)
                selector.register(sock, selectors.EVENT_READ)
                client.start_tls_done()
            elif event is not smtp.NEED_DATA:
                batch.handle(event)
            else:
                outgoing += client.data_to_send(time.monotonic())
                flush(sock, outgoing)
                mask = selectors.EVENT_READ | (selectors.EVENT_WRITE if outgoing else 0)
                selector.modify(sock, mask)
                deadline = client.get_timer()
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not selector.select(timeout):
                    client.handle_timer(time.monotonic())
                elif (data := read(sock)) is not None:
                    client.receive_data(data, time.monotonic())
    finally:
        selector.close()
        sock.close()
    return batch


def flush(sock: socket.socket, outgoing: bytearray) -> None:
    """Write as much as the socket takes now; the rest waits for the next round."""
    try:
        while outgoing:
            del outgoing[: sock.send(outgoing)]
    except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
        pass


def read(sock: socket.socket) -> bytes | None:
    """What arrived (``b""``: the peer closed), or None when nothing is ready yet."""
    try:
        data = sock.recv(65536)
    except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
        return None
    # A TLS record may hold more than one recv's worth: take all that is decrypted.
    if isinstance(sock, ssl.SSLSocket) and data:
        while sock.pending():
            data += sock.recv(sock.pending())
    return data


if __name__ == "__main__":
    host, port, cafile, user, password, sender, recipient = sys.argv[1:8]
    mails = [Mail(sender, (recipient,), b"Subject: %d\r\n\r\nhello\r\n" % n) for n in range(3)]
    context = ssl.create_default_context(cafile=cafile)
    done = run(mails, host, int(port), context, user=user, password=password)
    print(done.closed, *done.outcomes, sep="\n")
