"""The pool's options: their names, types, ranges and defaults, checked once into :class:`Options`.

Every option is one row of ``_SPECS``: how to check it, its Nodemailer (camelCase) spelling, and
whether that spelling counts in milliseconds. Times are seconds in rawsmtp and milliseconds in
Nodemailer, so ``connection_timeout=2`` and ``connectionTimeout=2000`` mean the same. A URL query
(:mod:`rawsmtp.config._url`) goes through the same table, so it cannot drift from keyword arguments.

An invalid option raises :class:`SMTPConfigError` (also a ``ValueError``) whose ``option`` is
the option's name as the caller spelled it.
"""

from __future__ import annotations

import difflib
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal

from .._errors import SMTPConfigError
from ..protocol import LocalProtocolError, validate_hostname
from ..proxy import parse_proxy_url
from ._services import Service, lookup_service
from ._tls import TLS_FLAGS, canonical_tls_key, normalize_tls

if TYPE_CHECKING:
    import ssl

__all__ = ["Options", "canonical_option", "make_options", "option_text_value", "tls_text_value"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """Validated pool options. Times are in seconds; ``port`` is resolved (never None)."""

    host: str = "localhost"
    port: int = 587
    secure: bool = False
    auth: Any = None  # checked by rawsmtp.auth when the pool is built
    ignore_tls: bool = False
    require_tls: bool = False
    name: str | None = None
    local_address: str | None = None
    connection_timeout: float = 120.0
    greeting_timeout: float = 30.0
    socket_timeout: float = 600.0
    idle_timeout: float = 300.0
    max_connection_age: float | None = None
    exit_timeout: float = 30.0
    logger: logging.Logger | bool | None = None
    debug: bool = False
    on_event: Callable[[Any], Any] | None = None  # called with each rawsmtp.pool._observe event
    auth_method: str | None = None
    tls: ssl.SSLContext | dict[str, Any] | None = None
    max_connections: int = 5
    max_messages: int = 100
    rate_limit: int | None = None
    rate_delta: float = 1.0
    max_queue: int | None = None
    max_retries: int = 3
    retry_delay: float = 1.0
    max_retry_delay: float = 30.0
    delivery_timeout: float | None = 600.0
    throttle_replies: tuple[str | re.Pattern[str], ...] = ()  # added to THROTTLE_REPLIES
    pipelining: Literal["full", "envelope", "off"] = "full"
    chunking_window: int = 8
    chunking_window_bytes: int = 1 << 20
    allow_insecure_auth: bool = False
    get_socket: Callable[[str, int], Any] | None = None
    service: str | None = None
    lmtp: bool = False
    proxy: str | None = None
    pool: bool = True  # accepted for Nodemailer compatibility; a pool is what this is
    dkim: Callable[[Any], Any] | None = None  # a rawsmtp.dkim.Signatures
    keepalive: bool | float = True  # TCP keepalive: True (30 s idle), False, or idle seconds
    proxy_tls: ssl.SSLContext | dict[str, Any] | None = None  # an https:// proxy's, as ``tls``
    rate_limiter: Any = None  # a rawsmtp.pool._limits.RateLimiter; needs rate_limit
    connection_limiter: Any = None  # a rawsmtp.pool._limits.ConnectionLimiter


Check = Callable[[str, Any], Any]


def _fail(option: str, message: str) -> SMTPConfigError:
    return SMTPConfigError(f"{option}: {message}", option=option)


@dataclass(frozen=True, slots=True)
class _Number:
    """The one numeric check: integer or real, at least ``low`` (or above it), at most ``high``."""

    integer: bool
    low: float
    high: float = math.inf
    low_allowed: bool = True  # timeouts must be above 0, counts may equal their low

    def __call__(self, option: str, value: Any) -> int | float:
        kinds = int if self.integer else (int, float)
        # bool is an int subclass, and True is never meant as a count or a time.
        if isinstance(value, bool) or not isinstance(value, kinds):
            kind = "an int" if self.integer else "a number"
            raise _fail(option, f"must be {kind}, not {value!r}")
        too_low = value < self.low or (value == self.low and not self.low_allowed)
        if too_low or value > self.high or not math.isfinite(value):
            raise _fail(option, f"{value!r} is out of range ({self._range()})")
        return value if self.integer else float(value)

    def _range(self) -> str:
        low = f">= {self.low:g}" if self.low_allowed else f"> {self.low:g}"
        return low if self.high == math.inf else f"{self.low:g}..{self.high:g}"


def _bool(option: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(option, f"must be True or False, not {value!r}")
    return value


def _text(option: str, value: Any) -> str:
    if not isinstance(value, str) or not value or not value.isprintable():
        raise _fail(option, f"must be a non-empty str, not {value!r}")
    return value


def _host(option: str, value: Any) -> str:
    if " " in _text(option, value):
        raise _fail(option, f"{value!r} is not a host name or address")
    return str(value)


def _ehlo_name(option: str, value: Any) -> str:
    try:
        return validate_hostname(value)
    except LocalProtocolError as error:
        raise _fail(option, str(error)) from error


def _mechanism(option: str, value: Any) -> str:
    # SASL mechanism names are upper-case by definition (RFC 4422 3.1).
    name = _text(option, value).upper()
    if not all(c.isalnum() or c in "-_" for c in name) or not name.isascii():
        raise _fail(option, f"{value!r} is not a SASL mechanism name")
    return name


def _logger(option: str, value: Any) -> logging.Logger | bool:
    if not isinstance(value, logging.Logger | bool):
        raise _fail(option, f"must be a logging.Logger or a bool, not {value!r}")
    return value


def _callable(option: str, value: Any) -> Any:
    if not callable(value):
        raise _fail(option, f"must be callable, not {value!r}")
    return value


def _tls(option: str, value: Any) -> ssl.SSLContext | dict[str, Any]:
    if isinstance(value, dict):
        return normalize_tls(value)
    import ssl  # only now: see _tls's docstring

    if isinstance(value, ssl.SSLContext):
        return value
    raise _fail(option, f"must be an ssl.SSLContext or a dict, not {type(value).__name__}")


def _proxy(option: str, value: Any) -> str:
    parse_proxy_url(_text(option, value))  # raises SMTPConfigError(option="proxy"), no password
    return str(value)


def _keepalive(option: str, value: Any) -> bool | float:
    return value if isinstance(value, bool) else _SECONDS(option, value)


def _keepalive_text(text: str) -> bool | float:
    return _flag_text(text) if text.lower() in ("true", "false") else float(text)


def _dkim(option: str, value: Any) -> Any:
    from ..dkim import signatures  # only when asked for: it loads hashlib and secrets

    return signatures(value, option)


def _limiter(kind: str) -> Check:
    """The check that a value implements the limiter Protocol ``kind`` of the pool."""

    def check(option: str, value: Any) -> Any:
        from ..pool import _limits  # only now: the pool imports this module

        if not isinstance(value, getattr(_limits, kind)):
            raise _fail(option, f"must be a {kind} (acquire, release, next_free...), not {value!r}")
        return value

    return check


def _choice(*choices: str) -> Check:
    def check(option: str, value: Any) -> str:
        if value not in choices:
            raise _fail(option, f"must be one of {', '.join(map(repr, choices))}, not {value!r}")
        return str(value)

    return check


def _patterns(option: str, value: Any) -> tuple[str | re.Pattern[str], ...]:
    """Substrings (matched without case) or compiled regexes, in a list or tuple."""
    items = (value,) if isinstance(value, str | re.Pattern) else value
    if not isinstance(items, list | tuple) or not all(
        (isinstance(item, str) and item) or isinstance(item, re.Pattern) for item in items
    ):
        raise _fail(option, f"must be a list of substrings or re.Pattern, not {value!r}")
    return tuple(items)


def _no_deadline_or(check: Check) -> Check:
    """None given explicitly means none at all (a nullable option's None is its default)."""
    return lambda option, value: None if value is None else check(option, value)


def _anything(option: str, value: Any) -> Any:
    return value


@dataclass(frozen=True, slots=True)
class _Spec:
    check: Check
    camel: str | None = None  # Nodemailer's spelling, when it differs
    nullable: bool = False
    millis: bool = False  # the camelCase spelling counts milliseconds
    text: Callable[[str], Any] | None = None  # how a URL query value converts; None: not allowed


def _flag_text(text: str) -> bool:
    lowered = text.lower()
    if lowered not in ("true", "false", "1", "0"):
        raise ValueError(text)
    return lowered in ("true", "1")


_COUNT = _Number(integer=True, low=1)
_SECONDS = _Number(integer=False, low=0, low_allowed=False)
_FLAG = _Spec(_bool, text=_flag_text)


def _count(camel: str | None, *, nullable: bool = False) -> _Spec:
    return _Spec(_COUNT, camel, nullable=nullable, text=int)


def _seconds(camel: str, *, nullable: bool = False) -> _Spec:
    return _Spec(_SECONDS, camel, nullable=nullable, millis=True, text=float)


_SPECS: dict[str, _Spec] = {
    "host": _Spec(_host),
    "port": _Spec(_Number(integer=True, low=1, high=65535), nullable=True),
    "secure": _Spec(_bool),
    "auth": _Spec(_anything, nullable=True),
    "ignore_tls": _Spec(_bool, "ignoreTLS", text=_flag_text),
    "require_tls": _Spec(_bool, "requireTLS", text=_flag_text),
    "name": _Spec(_ehlo_name, nullable=True, text=str),
    "local_address": _Spec(_host, "localAddress", nullable=True, text=str),
    "connection_timeout": _seconds("connectionTimeout"),
    "greeting_timeout": _seconds("greetingTimeout"),
    "socket_timeout": _seconds("socketTimeout"),
    "idle_timeout": _seconds("idleTimeout"),
    "max_connection_age": _seconds("maxConnectionAge", nullable=True),
    "exit_timeout": _seconds("exitTimeout"),
    "logger": _Spec(_logger, nullable=True, text=_flag_text),
    "debug": _FLAG,
    "on_event": _Spec(_callable, nullable=True),
    "auth_method": _Spec(_mechanism, "authMethod", nullable=True, text=str),
    "tls": _Spec(_tls, nullable=True),
    "max_connections": _count("maxConnections"),
    "max_messages": _count("maxMessages"),
    "rate_limit": _count("rateLimit", nullable=True),
    "rate_delta": _seconds("rateDelta"),
    "max_queue": _count("maxQueue", nullable=True),
    "max_retries": _Spec(_Number(integer=True, low=0), "maxRetries", text=int),
    "retry_delay": _Spec(_SECONDS, text=float),
    "max_retry_delay": _Spec(_SECONDS, text=float),
    "delivery_timeout": _Spec(_no_deadline_or(_SECONDS), text=float),
    "throttle_replies": _Spec(_patterns, text=lambda text: tuple(text.split(","))),
    "pipelining": _Spec(_choice("full", "envelope", "off"), text=str),
    "chunking_window": _count(None),
    "chunking_window_bytes": _count(None),
    "allow_insecure_auth": _Spec(_bool, "allowInsecureAuth", text=_flag_text),
    "get_socket": _Spec(_callable, "getSocket", nullable=True),
    "service": _Spec(_text, nullable=True, text=str),
    "lmtp": _Spec(_bool),
    "proxy": _Spec(_proxy, nullable=True, text=str),
    "pool": _FLAG,
    "dkim": _Spec(_dkim, nullable=True),
    "keepalive": _Spec(_keepalive, text=_keepalive_text),
    "proxy_tls": _Spec(_tls, "proxyTLS", nullable=True),
    "rate_limiter": _Spec(_limiter("RateLimiter"), "rateLimiter", nullable=True),
    "connection_limiter": _Spec(_limiter("ConnectionLimiter"), "connectionLimiter", nullable=True),
}
assert set(_SPECS) == {f.name for f in fields(Options)}, "every option has exactly one row"

# Every accepted spelling -> (canonical name, counts milliseconds).
_SPELLINGS: dict[str, tuple[str, bool]] = {
    **{name: (name, False) for name in _SPECS},
    **{spec.camel: (name, spec.millis) for name, spec in _SPECS.items() if spec.camel},
}


def _resolve(key: str) -> tuple[str, bool]:
    """(canonical name, in milliseconds) of an option spelling; unknown ones get a suggestion."""
    if key in _SPELLINGS:
        return _SPELLINGS[key]
    # Compared without case, so "IGNORE_TLS" and "ignoreTls" still find their spelling.
    lowered = {spelling.lower(): spelling for spelling in _SPELLINGS}
    close = difflib.get_close_matches(key.lower(), lowered, n=1)
    hint = f"; did you mean {lowered[close[0]]!r}?" if close else ""
    raise SMTPConfigError(f"unknown option {key!r}{hint}", option=key)


def canonical_option(key: str) -> str:
    """The snake_case name of an option given in either spelling."""
    return _resolve(key)[0]


def option_text_value(key: str, text: str) -> Any:
    """A URL query value for option ``key`` converted to the option's type (not yet checked)."""
    convert = _SPECS[canonical_option(key)].text
    if convert is None:
        raise _fail(key, "cannot be given in a URL query")
    return _convert(key, convert, text)


def tls_text_value(key: str, text: str) -> tuple[str, Any]:
    """A ``tls.<key>=<text>`` URL argument as (canonical tls key, value, not yet checked)."""
    name = canonical_tls_key(key, text)
    return name, _convert(f"tls.{key}", _flag_text, text) if name in TLS_FLAGS else text


def _convert(option: str, convert: Callable[[str], Any], text: str) -> Any:
    try:
        return convert(text)
    except ValueError:
        raise _fail(option, f"cannot convert {text!r}") from None


def _gather(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Canonical name -> value (milliseconds made seconds), and canonical name -> spelling."""
    values: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, value in kwargs.items():
        name, millis = _resolve(key)
        if name in spelled:
            raise _fail(name, f"given twice, as {spelled[name]!r} and {key!r}")
        spelled[name] = key
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        values[name] = value / 1000 if millis and is_number else value
    return values, spelled


def _check(values: dict[str, Any], spelled: dict[str, str]) -> dict[str, Any]:
    checked: dict[str, Any] = {}
    for name, value in values.items():
        spec = _SPECS[name]
        if value is None and spec.nullable:
            continue  # the default; for port, resolved below
        checked[name] = spec.check(spelled[name], value)
    return checked


def _apply_service(checked: dict[str, Any], spelled: dict[str, str]) -> None:
    """Fill what the named service knows and the caller did not say (as Nodemailer does)."""
    service: Service | None = lookup_service(checked["service"])
    if service is None:
        raise _fail(spelled["service"], f"unknown service {checked['service']!r}")
    checked.setdefault("host", service.host)
    checked.setdefault("port", service.port)
    checked.setdefault("secure", service.secure)
    if service.auth_method:
        checked.setdefault("auth_method", service.auth_method)
    if service.require_tls and "ignore_tls" not in checked:
        checked.setdefault("require_tls", True)


def make_options(**kwargs: Any) -> Options:
    """Check keyword options (snake_case seconds or Nodemailer camelCase milliseconds)."""
    values, spelled = _gather(kwargs)
    checked = _check(values, spelled)
    if checked.get("ignore_tls") and checked.get("require_tls"):
        raise _fail(spelled["require_tls"], "ignore_tls and require_tls contradict each other")
    if "rate_limiter" in checked and "rate_limit" not in checked:
        raise _fail(spelled["rate_limiter"], "needs rate_limit (the starts it grants per window)")
    if "service" in checked:
        _apply_service(checked, spelled)
    # Nodemailer 10's default: implicit TLS on 465, submission with STARTTLS on 587.
    checked.setdefault("port", 465 if checked.get("secure") else 587)
    return Options(**checked)
