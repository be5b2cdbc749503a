"""Static types of the public API's loose inputs: pool keywords, dict envelopes, messages.

``SMTPPool(**options)`` and ``create_transport(url, **overrides)`` take their keywords as
:class:`PoolOptions` (PEP 692), so a type checker reports a misspelled option or a wrong type
where a run would only report it on the first call. The keys are the option table's spellings
(:mod:`rawsmtp.config._options`), snake_case and Nodemailer's camelCase; a test keeps them equal.
Nothing here checks a value at run time: the option table does that.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias, TypedDict, Union

from .._message import Envelope
from ..auth import Credentials

if TYPE_CHECKING:
    # Neither is imported with rawsmtp (tests/test_imports.py): ssl comes with a TLS option
    # (see _tls), email.message with a Message. The pool imports this module, not the reverse.
    import email.message
    import ssl

    from ..pool._limits import ConnectionLimiter, RateLimiter
    from ..pool._observe import PoolEvent

__all__ = [
    "AuthInput",
    "BeforeCommit",
    "BinaryReadable",
    "DSNDict",
    "EnvelopeDict",
    "EnvelopeInput",
    "MessageInput",
    "PoolOptions",
]

AuthInput: TypeAlias = Credentials | tuple[str, str] | dict[str, Any]
"""What ``auth=`` accepts: Credentials, ``(user, password)``, or a dict of Credentials' fields."""


class PoolOptions(TypedDict, total=False):
    """The keyword options of ``SMTPPool`` and ``create_transport`` (see README.md, Options).

    Times are seconds in the snake_case spellings and milliseconds in the camelCase ones.
    """

    host: str
    port: int | None
    secure: bool
    auth: AuthInput | None
    ignore_tls: bool
    ignoreTLS: bool
    require_tls: bool
    requireTLS: bool
    name: str | None
    local_address: str | None
    localAddress: str | None
    connection_timeout: float
    connectionTimeout: float
    greeting_timeout: float
    greetingTimeout: float
    socket_timeout: float
    socketTimeout: float
    idle_timeout: float
    idleTimeout: float
    max_connection_age: float | None
    maxConnectionAge: float | None
    exit_timeout: float
    exitTimeout: float
    logger: logging.Logger | bool | None
    debug: bool
    on_event: Callable[[PoolEvent], object] | None
    auth_method: str | None
    authMethod: str | None
    tls: ssl.SSLContext | dict[str, Any] | None
    max_connections: int
    maxConnections: int
    max_messages: int
    maxMessages: int
    rate_limit: int | None
    rateLimit: int | None
    rate_delta: float
    rateDelta: float
    max_queue: int | None
    maxQueue: int | None
    max_retries: int
    maxRetries: int
    retry_delay: float
    max_retry_delay: float
    delivery_timeout: float | None
    throttle_replies: Sequence[str | re.Pattern[str]]
    pipelining: Literal["full", "envelope", "off"]
    chunking_window: int
    chunking_window_bytes: int
    allow_insecure_auth: bool
    allowInsecureAuth: bool
    get_socket: Callable[[str, int], Any] | None
    getSocket: Callable[[str, int], Any] | None
    service: str | None
    lmtp: bool
    proxy: str | None
    proxy_tls: ssl.SSLContext | dict[str, Any] | None
    proxyTLS: ssl.SSLContext | dict[str, Any] | None
    keepalive: bool | float
    pool: bool
    # a rawsmtp.dkim.DKIMSigner, a dict of its arguments, or a list of them
    dkim: Any
    rate_limiter: RateLimiter | None
    rateLimiter: RateLimiter | None
    connection_limiter: ConnectionLimiter | None
    connectionLimiter: ConnectionLimiter | None


class DSNDict(TypedDict, total=False):
    """An envelope dict's ``dsn``: RFC 3461 requests (``ret`` is "FULL" or "HDRS", any case)."""

    ret: str
    envid: str
    notify: str | Iterable[str]
    orcpt: bool


# "from" is a Python keyword, so it needs the functional syntax; the rest reads as a class.
_EnvelopeFrom = TypedDict("_EnvelopeFrom", {"from": str}, total=False)

_Addresses: TypeAlias = str | list[str] | tuple[str, ...]


class EnvelopeDict(_EnvelopeFrom, total=False):
    """Nodemailer's envelope shape for ``send(message, envelope)``.

    ``from`` is needed ("" for the null sender); ``to``, ``cc`` and ``bcc`` are an address or a
    list of them; ``requiretls`` (or ``requireTLS``) asks for RFC 8689 REQUIRETLS.
    """

    to: _Addresses
    cc: _Addresses
    bcc: _Addresses
    dsn: DSNDict
    requiretls: bool
    requireTLS: bool


class BinaryReadable(Protocol):
    """A binary file object, as ``send()`` reads one: in chunks, until ``b""``."""

    def read(self, size: int, /) -> bytes: ...


# A real object (the aliases are imported at run time), with Message as a forward reference:
# Union, since "|" takes no string.
MessageInput: TypeAlias = Union[
    bytes, bytearray, memoryview, str, "email.message.Message", BinaryReadable, Iterable[bytes]
]
"""What ``send()`` accepts as the message (see :mod:`rawsmtp._message`)."""

EnvelopeInput: TypeAlias = Envelope | EnvelopeDict | None
"""``send()``'s envelope: an Envelope, a Nodemailer-shaped dict, or None (from the headers)."""

BeforeCommit: TypeAlias = Callable[[], object]
"""``send(before_commit=)``: called with no arguments in a worker thread just before the
message's end of data is written (the dot, or ``BDAT ... LAST``), which waits for it to return;
what it returns is ignored, and an exception fails the message with ``SMTPCommitError``."""
