"""A single-threaded client on :mod:`selectors`: non-blocking socket, TLS, timers, no threads.

Run: ``python examples/selectors_client.py HOST PORT CAFILE USER PASSWORD SENDER RECIPIENT``.
"""

from __future__ import annotations

import selectors
import socket
import ssl
import sys
import time

from batch import Batch, Mail

from rawsmtp import protocol as smtp


class Link:
    """A non-blocking socket that may become a TLS socket; bytes in, bytes out."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock: socket.socket = sock
        self.selector = selectors.DefaultSelector()
        self.selector.register(sock, selectors.EVENT_READ)
        self.outgoing = bytearray()

    def wait(self, deadline: float | None, *, write: bool = False) -> bool:
        """Block until the socket is readable (or writable); False when the deadline passed."""
        mask = selectors.EVENT_READ | (selectors.EVENT_WRITE if write else 0)
        self.selector.modify(self.sock, mask)
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        return bool(self.selector.select(timeout))

    def flush(self) -> None:
        """Write as much as the socket takes now; the rest waits for the next round."""
        try:
            while self.outgoing:
                del self.outgoing[: self.sock.send(self.outgoing)]
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            pass

    def read(self) -> bytes | None:
        """What arrived (``b""``: the peer closed), or None when nothing is ready yet."""
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return None
        # A TLS record may hold more than one recv's worth: take all that is decrypted.
        if isinstance(self.sock, ssl.SSLSocket) and data:
            while self.sock.pending():
                data += self.sock.recv(self.sock.pending())
        return data

    def start_tls(self, context: ssl.SSLContext, hostname: str, deadline: float | None) -> None:
        self.selector.unregister(self.sock)
        self.sock = context.wrap_socket(
            self.sock, server_hostname=hostname, do_handshake_on_connect=False
        )
        self.selector.register(self.sock, selectors.EVENT_READ)
        while True:
            try:
                self.sock.do_handshake()
                return
            except ssl.SSLWantReadError:
                want_write = False
            except ssl.SSLWantWriteError:
                want_write = True
            if not self.wait(deadline, write=want_write):
                raise TimeoutError("TLS handshake timed out")

    def close(self) -> None:
        self.selector.close()
        self.sock.close()


def run(batch: Batch, host: str, port: int, context: ssl.SSLContext) -> Batch:
    client = batch.client
    link = Link(socket.create_connection((host, port), timeout=30))
    try:
        while batch.closed is None:
            event = client.next_event()
            if isinstance(event, smtp.StartTLS):
                link.flush()
                link.start_tls(context, host, time.monotonic() + 30)
                client.start_tls_done()
            elif event is not smtp.NEED_DATA:
                batch.handle(event)
            else:
                link.outgoing += client.data_to_send(now=time.monotonic())
                link.flush()
                deadline = client.get_timer()
                if link.wait(deadline, write=bool(link.outgoing)):
                    link.flush()
                    data = link.read()
                    if data is not None:
                        client.receive_data(data, now=time.monotonic())
                else:
                    client.handle_timer(time.monotonic())
    finally:
        link.close()
    return batch


if __name__ == "__main__":
    host, port, cafile, user, password, sender, recipient = sys.argv[1:8]
    mails = [Mail(sender, (recipient,), b"Subject: %d\r\n\r\nhello\r\n" % n) for n in range(3)]
    done = run(
        Batch(mails, user=user, password=password, now=time.monotonic()),
        host,
        int(port),
        ssl.create_default_context(cafile=cafile),
    )
    print(done.closed, *done.outcomes, sep="\n")
