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

Idempotency, by Message-ID (a message without one is refused), in two keys per id: the claim
``<prefix><id>`` and the commit record ``<prefix><id>:committing``. Before sending, the task
claims the id (``SET NX`` with ``claim_ttl``, refreshed every ``claim_ttl / 3`` while the
message is on its way, so a dead worker's claims lapse soon). The message's commit point is the
pool's ``before_commit`` hook, run just before the end of its data is written (which waits for
it): there one ``SET`` records ``committing`` (with ``record_ttl``). After the final 250 the
claim becomes ``sent`` (with ``record_ttl``), before the task returns and so before a late ack.

A redelivered task that finds ``sent`` reports ``duplicate``; one that finds a live claim of
another run retries later; one that wins a lapsed claim and finds ``committing`` reports
``unknown`` (the message may have been delivered: it is never resent); one that wins a lapsed
claim without a commit record sends (the message never reached its end). Nothing is sent twice.
The window that remains: a worker killed after Redis answered the commit record and before the
end of data was written loses that message (reported ``unknown``, never delivered). A hook that
fails (Redis down) leaves the message undelivered (``SMTPCommitError``): the batch is retried.

Retries: the whole batch is retried (``self.retry``) when a message failed temporarily (4xx,
connection lost before the data, timeout, pool closing, a commit record that could not be
written) or was claimed elsewhere; delivered ones come back as ``duplicate``. Never for ``SMTPDeliveryUnknownError`` or a 5xx.
"""

from __future__ import annotations

import email.policy
import email.utils
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from typing import Any

from celery import Celery, Task, signals

from .._errors import (
    SMTPCommitError,
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

_SENT, _UNKNOWN, _COMMITTING = b"sent", b"unknown", b"committing"
_COMMIT_SUFFIX = ":committing"  # the commit record's key: the claim's, with this added
_DIED_COMMITTING = (
    "an earlier run reached the message's commit point and died before recording its outcome: "
    "it may have been delivered, so it is not resent"
)


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
    return isinstance(error, transient | SMTPPoolClosedError | SMTPCommitError)


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
    # Requests to ``store`` (each one round trip), for the figures; the commit hook counts
    # from the pool's worker threads, hence the lock.
    round_trips: int = field(default=0, init=False)
    _counting: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

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
            item, commit = messages[index], self._commit_hook(str(ids[index]))
            futures[pool.send(item["message"], item.get("envelope"), before_commit=commit)] = index
        retry = any(r.get("status") == "deferred" for r in results)
        every = self.claim_ttl / 3
        refreshed = time.monotonic()
        deadline = refreshed + self.send_timeout
        while futures:
            done, _ = wait(futures, timeout=every, return_when=FIRST_COMPLETED)
            for future in done:
                index = futures.pop(future)
                retry |= self._settle(str(ids[index]), future, results[index])
            now = time.monotonic()
            if futures and now > deadline:
                raise TimeoutError(f"{len(futures)} messages unsent after {self.send_timeout} s")
            if now - refreshed >= every:  # not at every outcome: a round trip each
                refreshed = now
                self._refresh([str(ids[index]) for index in futures.values()])
        return results, retry

    def _commit_hook(self, message_id: str) -> Callable[[], None]:
        """The message's commit point (the pool's ``before_commit``, in its worker thread)."""
        key = self.prefix + message_id + _COMMIT_SUFFIX

        def commit() -> None:
            self._count()
            self.store.set(key, _COMMITTING, px=_ms(self.record_ttl))

        return commit

    def _count(self) -> None:
        with self._counting:
            self.round_trips += 1

    def _refresh(self, ids: list[str]) -> None:
        """Keep the claims of messages still on their way (a dead worker's lapse)."""
        if not ids:
            return
        pipe = self.store.pipeline(transaction=False)
        for message_id in ids:
            pipe.pexpire(self.prefix + message_id, _ms(self.claim_ttl))
        self._count()
        pipe.execute()

    def _claim(self, ids: list[str | None], results: list[dict[str, Any]]) -> list[int]:
        """Claim each id (one round trip); fill the results of those already decided."""
        pipe = self.store.pipeline(transaction=False)
        for message_id in ids:
            if message_id is not None:
                key = self.prefix + message_id
                pipe.set(key, b"pending", nx=True, px=_ms(self.claim_ttl))
                pipe.get(key)
                pipe.get(key + _COMMIT_SUFFIX)
        self._count()
        answers = iter(pipe.execute())
        claimed: list[int] = []
        for index, message_id in enumerate(ids):
            result = results[index]
            result["message_id"] = message_id
            if message_id is None:
                result.update(status="failed", error="the message has no Message-ID header")
                continue
            won, value, committing = next(answers), next(answers), next(answers)
            if won and committing == _COMMITTING:  # a dead run's claim lapsed after its commit
                self._record(message_id, _UNKNOWN)
                result.update(status="unknown", error=_DIED_COMMITTING)
            elif won:
                claimed.append(index)
            elif value == _SENT:
                result["status"] = "duplicate"
            elif value == _UNKNOWN:
                result["status"] = "unknown"
            else:
                result.update(status="deferred", error="being sent by another task")
        return claimed

    def _settle(self, message_id: str, future: Future[SendResult], result: dict[str, Any]) -> bool:
        """Record one outcome; True when it calls for a retry."""
        error = future.exception()
        if error is None:
            sent = future.result()
            self._record(message_id, _SENT)
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
            self._record(message_id, _UNKNOWN)
            result.update(status="unknown", error=str(error))
            return False
        self._record(message_id, None)  # not delivered: a later run may send it
        temporary = isinstance(error, SMTPError) and _temporary(error)
        result.update(status="deferred" if temporary else "failed", error=str(error))
        return temporary

    def _record(self, message_id: str, value: bytes | None) -> None:
        """The id's outcome in one round trip: ``value`` kept ``record_ttl`` (None: forgotten),
        its commit record gone."""
        key = self.prefix + message_id
        pipe = self.store.pipeline(transaction=False)
        if value is None:
            pipe.delete(key, key + _COMMIT_SUFFIX)
        else:
            pipe.set(key, value, px=_ms(self.record_ttl))
            pipe.delete(key + _COMMIT_SUFFIX)
        self._count()
        pipe.execute()


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
