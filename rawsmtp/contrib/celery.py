"""Send mail from Celery workers: one pool per worker process, retries only when they are safe,
and a Redis record of delivered Message-IDs so a redelivered task does not send twice.

::

    app = Celery("mail", broker="redis://localhost/1")
    app.conf.update(task_acks_late=True, task_reject_on_worker_lost=True,
                    worker_prefetch_multiplier=1)
    mailer = install(app, pool_options, redis.Redis.from_url("redis://localhost/3"))
    mailer.task.delay([mail("a@example.com", ["b@example.net"], "Hi", "Hello")])

``pool_options()`` runs in each worker process (after the fork), so the limiters of
:mod:`rawsmtp.contrib.redis` and their threads belong to that process. The pool is built at
``worker_process_init`` (or at the first task, in a worker without child processes) and closed
at ``worker_process_shutdown``/``worker_shutdown``, with the limiters it was given.

The task ``rawsmtp.send`` takes a list of messages (``{"message": <RFC 5322 text>, "envelope":
{"from": ..., "to": [...]}}``, the envelope optional; :func:`mail` builds one) and returns one
JSON-serialisable result per message: ``status`` is ``"sent"`` (with ``accepted``, ``rejected``
{address: {"code", "error"}} and ``response``), ``"duplicate"`` (an earlier run delivered it),
``"unknown"`` (its final reply was lost: it may have been delivered, so it is never resent),
``"failed"`` (permanently) or ``"deferred"`` (temporary failures outlasted the retries).

Idempotency, by Message-ID (a message without one is refused): before sending, the task claims
the id (``SET NX`` with ``claim_ttl``, refreshed every ``claim_ttl / 3`` while the message is on
its way, so a dead worker's claims lapse soon); after the final 250 it records ``sent`` (with
``record_ttl``), before the task returns and so before a late ack. A redelivered task finds the
record and reports ``duplicate``; a claim of another run in progress makes it retry later. The
gap that remains: a worker killed after the server's 250 and before the record is written, or
with a message on the wire, sends that message again once its claim lapsed --
at-least-once, for the messages in flight at the crash only.

Retries: the whole batch is retried (``self.retry``) when a message failed temporarily (4xx,
connection lost before the data, timeout, pool closing) or was claimed elsewhere; delivered ones
come back as ``duplicate``. Never for ``SMTPDeliveryUnknownError`` or a 5xx.
"""

from __future__ import annotations

import email.policy
import email.utils
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from typing import Any

from celery import Celery, Task, signals

from .._errors import (
    SMTPConnectionError,
    SMTPDeliveryUnknownError,
    SMTPDisconnectedError,
    SMTPError,
    SMTPPoolClosedError,
    SMTPResponseError,
    SMTPTimeoutError,
)
from .._result import SendResult
from ..pool import SMTPPool

__all__ = ["Mailer", "install", "mail"]

log = logging.getLogger("rawsmtp.contrib.celery")

_SENT, _UNKNOWN = b"sent", b"unknown"


def mail(sender: str, to: list[str], subject: str, text: str, **headers: str) -> dict[str, Any]:
    """One message for the task, with a fresh Message-ID (made once, by the producer, so that
    every redelivery of the task carries the same id)."""
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"], message["To"], message["Subject"] = sender, ", ".join(to), subject
    message["Message-ID"] = email.utils.make_msgid(domain=sender.rpartition("@")[2] or None)
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(text)
    return {"message": message.as_string(), "envelope": {"from": sender, "to": list(to)}}


def _temporary(error: BaseException) -> bool:
    if isinstance(error, SMTPDeliveryUnknownError):
        return False
    if isinstance(error, SMTPResponseError):
        return error.is_temporary
    transient = SMTPConnectionError | SMTPDisconnectedError | SMTPTimeoutError
    return isinstance(error, transient | SMTPPoolClosedError)


def _message_id(message: str) -> str | None:
    headers = BytesHeaderParser().parsebytes(message.encode("utf-8"))
    value = headers.get("Message-ID")
    return str(value).strip() or None if value else None


@dataclass(eq=False)
class Mailer:
    """The process's pool and the task (see the module docstring)."""

    pool_options: Callable[[], Mapping[str, Any]]
    store: Any  # a redis.Redis client: the delivered-ids record
    prefix: str = "rawsmtp:delivered:"
    claim_ttl: float = 60.0
    record_ttl: float = 7 * 86400.0
    send_timeout: float = 600.0
    retry_delay: float = 30.0
    task: Task = field(init=False)
    _pool: SMTPPool | None = field(default=None, init=False)
    _options: Mapping[str, Any] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    @property
    def pool(self) -> SMTPPool:
        """This process's pool, built on first use."""
        with self._lock:
            if self._pool is None:
                self._options = dict(self.pool_options())
                self._pool = SMTPPool(**self._options)
            return self._pool

    def close(self, **_: Any) -> None:
        """Close the pool (letting messages in flight finish), then its limiters."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is None:
            return
        pool.close()
        for name in ("rate_limiter", "connection_limiter"):
            close = getattr(self._options.get(name), "close", None)
            if close is not None:
                close()

    def send_batch(self, messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
        """Send ``messages`` once; returns their results and whether to retry the batch."""
        results: list[dict[str, Any]] = [{} for _ in messages]
        ids = [_message_id(item["message"]) for item in messages]
        claimed = self._claim(ids, results)
        pool = self.pool
        futures: dict[Future[SendResult], int] = {}
        for index in claimed:
            item = messages[index]
            futures[pool.send(item["message"], item.get("envelope"))] = index
        retry = any(r.get("status") == "deferred" for r in results)
        deadline = time.monotonic() + self.send_timeout
        while futures:
            done, _ = wait(futures, timeout=self.claim_ttl / 3, return_when=FIRST_COMPLETED)
            for future in done:
                index = futures.pop(future)
                retry |= self._settle(ids[index], future, results[index])
            if futures and time.monotonic() > deadline:
                raise TimeoutError(f"{len(futures)} messages unsent after {self.send_timeout} s")
            self._refresh(ids[index] for index in futures.values())
        return results, retry

    def _refresh(self, ids: Iterable[str | None]) -> None:
        """Keep the claims of messages still on their way (a dead worker's lapse)."""
        pipe = self.store.pipeline(transaction=False)
        for message_id in ids:
            pipe.pexpire(self.prefix + str(message_id), _ms(self.claim_ttl))
        pipe.execute()

    def _claim(self, ids: list[str | None], results: list[dict[str, Any]]) -> list[int]:
        """Claim each id (one round trip); fill the results of those already decided."""
        pipe = self.store.pipeline(transaction=False)
        for message_id in ids:
            if message_id is not None:
                pipe.set(self.prefix + message_id, b"pending", nx=True, px=_ms(self.claim_ttl))
                pipe.get(self.prefix + message_id)
        answers = iter(pipe.execute())
        claimed: list[int] = []
        for index, message_id in enumerate(ids):
            result = results[index]
            result["message_id"] = message_id
            if message_id is None:
                result.update(status="failed", error="the message has no Message-ID header")
                continue
            won, value = next(answers), next(answers)
            if won:
                claimed.append(index)
            elif value == _SENT:
                result["status"] = "duplicate"
            elif value == _UNKNOWN:
                result["status"] = "unknown"
            else:
                result.update(status="deferred", error="being sent by another task")
        return claimed

    def _settle(self, message_id: Any, future: Future[SendResult], result: dict[str, Any]) -> bool:
        """Record one outcome; True when it calls for a retry."""
        key = self.prefix + message_id
        error = future.exception()
        if error is None:
            sent = future.result()
            self.store.set(key, _SENT, px=_ms(self.record_ttl))
            result.update(
                status="sent",
                accepted=list(sent.accepted),
                rejected={
                    addr: {"code": err.code, "error": str(err)}
                    for addr, err in sent.rejected_errors.items()
                },
                response=sent.response,
            )
            return False
        if isinstance(error, SMTPDeliveryUnknownError):
            self.store.set(key, _UNKNOWN, px=_ms(self.record_ttl))
            result.update(status="unknown", error=str(error))
            return False
        self.store.delete(key)
        temporary = isinstance(error, SMTPError) and _temporary(error)
        result.update(status="deferred" if temporary else "failed", error=str(error))
        return temporary


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def install(
    app: Celery,
    pool_options: Callable[[], Mapping[str, Any]],
    store: Any,
    *,
    name: str = "rawsmtp.send",
    max_retries: int = 5,
    **settings: Any,
) -> Mailer:
    """Register the task ``name`` on ``app`` and the pool's lifetime on the worker signals.

    ``store`` is a ``redis.Redis`` client for the delivered-ids record; ``settings`` set the
    :class:`Mailer`'s fields (``prefix``, ``claim_ttl``, ``record_ttl``, ``send_timeout``,
    ``retry_delay``).
    """
    mailer = Mailer(pool_options, store, **settings)

    def build(**_: Any) -> None:
        mailer.pool  # noqa: B018 - built now, in the child, before the first task

    signals.worker_process_init.connect(build, weak=False)
    signals.worker_process_shutdown.connect(mailer.close, weak=False)
    signals.worker_shutdown.connect(mailer.close, weak=False)

    def send(self: Task, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        results, retry = mailer.send_batch(messages)
        if retry and self.request.retries < max_retries:
            raise self.retry(countdown=mailer.retry_delay)
        return results

    mailer.task = app.task(name=name, bind=True, max_retries=max_retries, acks_late=True)(send)
    return mailer
