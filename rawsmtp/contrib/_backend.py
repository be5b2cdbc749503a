"""What the Django and Flask-Mailman backends share: settings -> options, one pool per
configuration per process, and sending a batch with one deadline.

Web frameworks build a backend per request (or per ``send_mail``); building a pool each time
would throw away what a pool is for. So pools live here, one per distinct set of options,
created on first use, shared by every thread, closed at interpreter exit, and forgotten in a
forked child (whose copy has no loop thread).
"""

from __future__ import annotations

import atexit
import concurrent.futures
import email.utils
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .._errors import SMTPTimeoutError
from .._message import Envelope
from ..config import make_options, options_from_url
from ..config._url import pool_kwargs
from ..pool import SMTPPool
from ..protocol import LocalProtocolError, SMTPError

__all__ = ["MailSettings", "PooledBackend", "reset_pools"]


_SETTINGS = (
    "host",
    "port",
    "username",
    "password",
    "use_tls",
    "use_ssl",
    "timeout",
    "ssl_keyfile",
    "ssl_certfile",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class MailSettings:
    """The connection settings both frameworks have, named as in Django's smtp backend."""

    host: str
    port: int
    username: str | None
    password: str | None
    use_tls: bool
    use_ssl: bool
    timeout: float | None
    ssl_keyfile: str | None
    ssl_certfile: str | None

    @classmethod
    def resolve(cls, given: Mapping[str, Any], default: Callable[[str], Any]) -> MailSettings:
        """An argument given to the backend wins, else the framework's setting ``default(name)``;
        as in the smtplib backends, an empty host or a zero port counts as not given."""
        values: dict[str, Any] = {}
        for name in _SETTINGS:
            value = given.get(name)
            missing = not value if name in ("host", "port") else value is None
            values[name] = default(name) if missing else value
        return cls(**values)


def pool_options(settings: MailSettings, extra: Mapping[str, Any] | str | None) -> dict[str, Any]:
    """Pool options from the framework's settings, as its smtplib backend would connect.

    Neither TLS flag means plain SMTP (no STARTTLS), ``use_tls`` means STARTTLS or fail,
    ``use_ssl`` implicit TLS. ``extra`` (``RAWSMTP_OPTIONS``) is a dict of pool options laid over
    these, or a URL that replaces them.
    """
    if isinstance(extra, str):
        return options_from_url(extra)
    if settings.use_tls and settings.use_ssl:
        raise LocalProtocolError("use_tls and use_ssl are mutually exclusive; set one of them")
    options: dict[str, Any] = {"host": settings.host, "port": int(settings.port)}
    if settings.use_ssl:
        options["secure"] = True
    elif settings.use_tls:
        options["require_tls"] = True
    else:
        options["ignore_tls"] = True
    if settings.username:
        options["auth"] = (settings.username, settings.password or "")
    if settings.timeout is not None:
        for name in ("connection_timeout", "greeting_timeout", "socket_timeout"):
            options[name] = settings.timeout
    if settings.ssl_certfile or settings.ssl_keyfile:
        options["tls"] = {"cert_file": settings.ssl_certfile, "key_file": settings.ssl_keyfile}
    return pool_kwargs(options, **dict(extra or {}))


class _Pools:
    """The process's pools, keyed by their options."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pools: dict[str, SMTPPool] = {}

    def get(self, options: dict[str, Any]) -> SMTPPool:
        # repr() keys every value, callables and SSLContexts (by identity) included.
        key = repr(sorted(options.items()))
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                pool = self._pools[key] = SMTPPool(**options)
            return pool

    def close_all(self) -> None:
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
        for pool in pools:
            pool.close()

    def forget(self) -> None:
        """In a forked child: the parent's pools have no loop thread here; start afresh."""
        self._lock = threading.Lock()
        self._pools = {}


_POOLS = _Pools()
atexit.register(_POOLS.close_all)
os.register_at_fork(after_in_child=_POOLS.forget)


def pool_for(options: dict[str, Any]) -> SMTPPool:
    """The process's pool for these options, created on first use."""
    return _POOLS.get(options)


def reset_pools() -> None:
    """Close every backend pool of this process (tests; a worker's shutdown hook)."""
    _POOLS.close_all()


class Outgoing(Protocol):
    """What Django's and Flask-Mailman's EmailMessage have in common."""

    from_email: str

    def recipients(self) -> list[str]: ...

    def message(self) -> Any: ...


def envelope_of(message: Outgoing) -> Envelope:
    """The envelope the framework's smtplib backend would use: from_email and recipients(),
    reduced to bare addresses (display names dropped)."""
    return Envelope(
        mail_from=email.utils.parseaddr(message.from_email)[1],
        rcpt_to=tuple(email.utils.parseaddr(address)[1] for address in message.recipients()),
    )


def deliver(
    pool: SMTPPool, messages: Iterable[Outgoing], *, timeout: float | None, fail_silently: bool
) -> int:
    """Send every message that has recipients; return how many the server accepted.

    All are queued at once (the pool spreads them over its connections) and waited for with
    one deadline, ``timeout`` seconds. A message still pending then is withdrawn if it has not
    started (one already on the wire may still arrive) and is not counted. Unless
    ``fail_silently``, the first failure is raised after the wait; a
    message that cannot be rendered raises at once, as in the frameworks' own backends.
    """
    outgoing = [
        # The email.message.Message itself: the pool flattens it (CR LF, UTF-8 headers under
        # SMTPUTF8) whichever class this Django version builds.
        (message.message(), envelope_of(message))
        for message in messages
        if message.recipients()
    ]
    futures: list[concurrent.futures.Future[Any]] = []
    errors: list[BaseException] = []
    for data, envelope in outgoing:
        try:
            futures.append(pool.send(data, envelope))
        except (SMTPError, ValueError) as error:  # e.g. an address the protocol refuses
            errors.append(error)
    done, pending = concurrent.futures.wait(futures, timeout)
    for future in pending:
        future.cancel()
    errors.extend(failure for future in done if (failure := future.exception()) is not None)
    if pending:
        errors.append(
            SMTPTimeoutError(
                f"{len(pending)} of {len(futures)} messages not sent within {timeout} s",
                phase="send",
            )
        )
    if errors and not fail_silently:
        raise errors[0]
    return sum(1 for future in done if future.exception() is None)


class PooledBackend:
    """The backend methods, over the process's pool for this backend's settings.

    ``open()`` and ``close()`` neither open nor close a connection: the pool is shared by every
    backend with the same settings and lives until the process exits (or :func:`reset_pools`).
    """

    fail_silently: bool
    settings: MailSettings
    pool_options: dict[str, Any]

    def configure(self, settings: MailSettings, extra: Mapping[str, Any] | str | None) -> None:
        """Check the options now, so a bad setting fails where the backend is built."""
        self.settings = settings
        self.pool_options = pool_options(settings, extra)
        make_options(**self.pool_options)

    def open(self) -> bool:
        """Make sure the pool exists (it connects when a message comes); always False."""
        pool_for(self.pool_options)
        return False

    def close(self) -> None:
        """Nothing to do: the shared pool stays open for the next backend."""

    def send_messages(self, email_messages: Sequence[Outgoing]) -> int:
        """Send the messages; return how many were accepted (see :func:`deliver`)."""
        if not email_messages:
            return 0
        return deliver(
            pool_for(self.pool_options),
            email_messages,
            timeout=self.settings.timeout,
            fail_silently=self.fail_silently,
        )
