"""The part of an SMTP client that is the same under every I/O framework.

A :class:`Batch` asks a :class:`rawsmtp.protocol.ClientConnection` for everything at once,
before the greeting: AUTH PLAIN (sent over TLS, since ``starttls="required"``), every message
(pipelined once the session is ready) and QUIT; it then hands each body over when asked. The
drivers next to this file only move bytes, do the TLS handshake on ``StartTLS`` and keep the
clock; none of them decides anything about SMTP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rawsmtp import protocol as smtp
from rawsmtp.auth import Credentials, Plain

__all__ = ["Batch", "Mail"]


@dataclass(frozen=True)
class Mail:
    sender: str
    recipients: tuple[str, ...]
    body: bytes  # the message as it should arrive, CR LF line ends


class Batch:
    """Send ``mails`` over one session, authenticating first when ``user`` is given.

    Everything is asked of the core up front: AUTH (which every transaction waits for), the
    transactions and QUIT, which goes once they are done. What is left is to hand over each
    body and to note what happened. ``now`` is the driver's clock, whichever it is.
    """

    def __init__(
        self,
        mails: Sequence[Mail],
        *,
        now: float,
        user: str | None = None,
        password: str | None = None,
        config: smtp.ClientConfig | None = None,
    ) -> None:
        config = config or smtp.ClientConfig(local_hostname="client.example", starttls="required")
        # Typed by the tag: the body travels in it, so SendBody's transaction says what to send.
        self.client: smtp.ClientConnection[bytes] = smtp.ClientConnection(config, now=now)
        if user is not None:
            self.client.authenticate(Plain(Credentials(user=user, password=password)))
        self.transactions = [
            smtp.Transaction(mail_from=m.sender, recipients=m.recipients, tag=m.body) for m in mails
        ]
        for transaction in self.transactions:
            self.client.send_mail(transaction)  # pipelined once the session is ready
        self.client.quit()
        self.outcomes: list[smtp.MessageAccepted[bytes] | smtp.MessageFailed[bytes]] = []
        self.auth_error: smtp.SMTPAuthenticationError | None = None
        self.closed: smtp.ConnectionClosed[bytes] | None = None

    def handle(self, event: smtp.Event[bytes]) -> None:
        """Act on one event (StartTLS is the driver's: it needs the socket)."""
        if isinstance(event, smtp.SendBody):
            self.client.send_body(event.transaction.tag)
            self.client.end_body()
        elif isinstance(event, smtp.MessageAccepted | smtp.MessageFailed):
            self.outcomes.append(event)
        elif isinstance(event, smtp.AuthenticationFailed):
            self.auth_error = event.error  # the held transactions come back unsent
        elif isinstance(event, smtp.ConnectionClosed):
            self.closed = event
