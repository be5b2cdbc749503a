"""``SMTPHandler``: mail log records through a rawsmtp pool, without ever waiting for the network.

It takes the arguments of :class:`logging.handlers.SMTPHandler`, but ``emit()`` only queues
the mail (the pool sends it from its own thread), and an error storm cannot become a mail storm:
at most ``max_mails`` mails go out per ``interval`` seconds; the records over the cap are
counted, and the next mail (or, at the latest, ``close()``) says how many and which levels.
``flush()`` waits up to ``timeout`` seconds for queued mails; the handler flushes when the main
thread ends and ``logging.shutdown()`` closes it at exit, so what was logged before exit is sent.

Records from the ``rawsmtp`` loggers are not mailed: they report on this handler's own mail.
"""

from __future__ import annotations

import collections
import concurrent.futures
import email.message
import email.utils
import logging
import sys
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

from .._message import Envelope
from ..pool import SMTPPool

__all__ = ["SMTPHandler"]

_SMTP_PORT = 25  # smtplib.SMTP_PORT, the stdlib handler's default


class SMTPHandler(logging.Handler):
    """A drop-in for the stdlib's ``SMTPHandler`` that never blocks the logging thread.

    ``secure`` (a tuple, as in the stdlib: ``()``, ``(keyfile,)`` or ``(keyfile, certfile)``)
    requires STARTTLS, with or without ``credentials``; without it the connection is plain SMTP,
    as the stdlib handler's. ``options`` is a dict of pool options laid over those.
    """

    def __init__(
        self,
        mailhost: str | tuple[str, int],
        fromaddr: str,
        toaddrs: str | Sequence[str],
        subject: str,
        credentials: tuple[str, str] | None = None,
        secure: tuple[()] | tuple[str] | tuple[str, str] | None = None,
        timeout: float = 5.0,
        *,
        max_mails: int = 10,
        interval: float = 60.0,
        options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        host, port = (mailhost, _SMTP_PORT) if isinstance(mailhost, str) else mailhost
        self.fromaddr = fromaddr
        self.toaddrs = [toaddrs] if isinstance(toaddrs, str) else list(toaddrs)
        self.subject = subject
        self.timeout = timeout
        self.max_mails = max_mails
        self.interval = interval
        self.pool_options = _pool_options(host, port, credentials, secure, timeout) | (
            options or {}
        )
        self.failures = 0  # mails the server did not take (each also noted on stderr)
        self._pool: SMTPPool | None = None
        self._pending: set[concurrent.futures.Future[Any]] = set()
        self._pending_lock = threading.Lock()  # done callbacks run on the pool's thread
        self._window_start = -float("inf")
        self._window_mails = 0
        self._suppressed: collections.Counter[str] = collections.Counter()
        self._last_suppressed: logging.LogRecord | None = None

    def getSubject(self, record: logging.LogRecord) -> str:
        """The subject of a record's mail; override to vary it (as in the stdlib)."""
        return self.subject

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the record's mail, or count it when the cap is reached. Never waits."""
        if record.name == "rawsmtp" or record.name.startswith("rawsmtp."):
            return
        try:
            now = time.monotonic()
            if now - self._window_start >= self.interval:
                self._window_start, self._window_mails = now, 0
            if self._window_mails >= self.max_mails:
                self._suppressed[record.levelname] += 1
                self._last_suppressed = record
                return
            self._window_mails += 1
            body = self.format(record)
            if summary := self._take_summary():
                body = f"{body}\n\n-- \n{summary}\n"
            self._mail(self.getSubject(record), body)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        """Wait up to ``timeout`` seconds for the mails already queued."""
        with self._pending_lock:
            pending = list(self._pending)
        concurrent.futures.wait(pending, timeout=self.timeout)

    def close(self) -> None:
        """Mail the count of records over the cap, flush, and close the pool."""
        self.acquire()
        try:
            if summary := self._take_summary():
                self._mail(f"{self.subject} (log records not mailed)", summary + "\n")
        finally:
            self.release()
        self.flush()
        if self._pool is not None:
            self._pool.close()
        super().close()

    @property
    def suppressed(self) -> int:
        """Records over the cap not yet reported in a mail."""
        return sum(self._suppressed.values())

    def _take_summary(self) -> str:
        if not self._suppressed:
            return ""
        total = sum(self._suppressed.values())
        levels = ", ".join(f"{count} {level}" for level, count in self._suppressed.most_common())
        last = self._last_suppressed
        self._suppressed.clear()
        self._last_suppressed = None
        text = (
            f"{total} more log records were not mailed"
            f" (at most {self.max_mails} mails per {self.interval:g} s): {levels}."
        )
        if last is not None:
            text += f"\nThe last of them:\n{self.format(last)}"
        return text

    def _mail(self, subject: str, body: str) -> None:
        message = email.message.EmailMessage()
        message["From"] = self.fromaddr
        message["To"] = ", ".join(self.toaddrs)
        message["Subject"] = subject
        message["Date"] = email.utils.formatdate(localtime=True)
        message.set_content(body)
        envelope = Envelope(
            mail_from=email.utils.parseaddr(self.fromaddr)[1],
            rcpt_to=tuple(email.utils.parseaddr(address)[1] for address in self.toaddrs),
        )
        if self._pool is None:
            self._pool = SMTPPool(**self.pool_options)
            _flush_before_thread_shutdown(self)
        future = self._pool.send(message, envelope)
        with self._pending_lock:
            self._pending.add(future)
        future.add_done_callback(self._finished)

    def _finished(self, future: concurrent.futures.Future[Any]) -> None:
        with self._pending_lock:
            self._pending.discard(future)
        error = None if future.cancelled() else future.exception()
        if error is not None:
            self.failures += 1
            # Not through logging: this handler may be the one that would receive it.
            if logging.raiseExceptions:
                print(f"rawsmtp SMTPHandler: a log mail was not sent: {error!r}", file=sys.stderr)


def _flush_before_thread_shutdown(handler: SMTPHandler) -> None:
    """Flush when the main thread ends, before ``atexit`` (where ``logging.shutdown`` runs).

    By then the interpreter has stopped the executors the pool resolves names with, so a mail
    still queued would fail to connect. ``threading._register_atexit`` hooks run in reverse
    order of registration, so this one (registered after ``concurrent.futures``'s) runs first.
    """
    register = getattr(threading, "_register_atexit", None)
    if register is None:  # pragma: no cover - not CPython
        return
    alive = weakref.ref(handler)

    def flush() -> None:
        if (still := alive()) is not None:
            still.flush()

    register(flush)


def _pool_options(
    host: str,
    port: int,
    credentials: tuple[str, str] | None,
    secure: tuple[str, ...] | None,
    timeout: float,
) -> dict[str, Any]:
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "max_connections": 1,  # log mail is rare; one connection keeps it in order
        "connection_timeout": timeout,
        "greeting_timeout": timeout,
        "socket_timeout": timeout,
    }
    if credentials is not None:
        options["auth"] = tuple(credentials)
    if secure is None:
        options["ignore_tls"] = True
    else:
        options["require_tls"] = True
        keyfile, certfile = (*secure, None, None)[:2]
        if keyfile or certfile:
            options["tls"] = {"key_file": keyfile, "cert_file": certfile}
    return options
