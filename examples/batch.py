"""The part of an SMTP client that is the same under every I/O framework.

A :class:`Batch` reacts to the events of a :class:`rawsmtp.protocol.ClientConnection`: it
authenticates once the session is ready (over TLS, since ``starttls="required"``), then queues
every message at once so the core pipelines them, hands each body over when asked, and says
QUIT after the last outcome. The drivers next to this file only move bytes, do the TLS
handshake on ``StartTLS`` and keep the clock; none of them decides anything about SMTP.
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
    """Send ``mails`` over one session, authenticating first when ``user`` is given."""

    def __init__(
        self,
        mails: Sequence[Mail],
        *,
        user: str | None = None,
        password: str | None = None,
        config: smtp.ClientConfig | None = None,
        now: float | None = None,
    ) -> None:
        config = config or smtp.ClientConfig(local_hostname="client.example", starttls="required")
        self.client = smtp.ClientConnection(config, now=now)
        self.credentials = Credentials(user=user, password=password) if user is not None else None
        # The body travels in the transaction's tag, so SendBody says which bytes to send.
        self.transactions = [
            smtp.Transaction(mail_from=m.sender, recipients=m.recipients, tag=m.body) for m in mails
        ]
        self.outcomes: list[smtp.MessageAccepted | smtp.MessageFailed] = []
        self.auth_error: smtp.SMTPAuthenticationError | None = None
        self.closed: smtp.ConnectionClosed | None = None

    def handle(self, event: smtp.Event) -> None:
        """Act on one event (StartTLS is the driver's: it needs the socket)."""
        client = self.client
        if isinstance(event, smtp.Ready):
            if self.credentials is not None:
                # AUTH must not overlap transactions: they are queued once it succeeded.
                client.authenticate(Plain(self.credentials))
            else:
                self._queue_all()
        elif isinstance(event, smtp.Authenticated):
            self._queue_all()
        elif isinstance(event, smtp.AuthenticationFailed):
            self.auth_error = event.error
            client.quit()
        elif isinstance(event, smtp.SendBody):
            body = event.transaction.tag
            assert isinstance(body, bytes)
            client.send_body(body)
            client.end_body()
        elif isinstance(event, smtp.MessageAccepted | smtp.MessageFailed):
            self.outcomes.append(event)
            if len(self.outcomes) == len(self.transactions):
                client.quit()
        elif isinstance(event, smtp.ConnectionClosed):
            self.closed = event

    def _queue_all(self) -> None:
        for transaction in self.transactions:
            self.client.send_mail(transaction)  # pipelined: one write for the whole batch
        if not self.transactions:
            self.client.quit()
