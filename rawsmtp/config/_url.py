"""Connection URLs (``smtp://``, ``smtps://``, ``lmtp://``) and :func:`create_transport`.

A URL becomes the same keyword options a caller could pass to ``SMTPPool``: the scheme says
``secure`` or ``lmtp``, the user part becomes ``auth``, and query arguments are options in either
spelling (Nodemailer's camelCase in milliseconds, or ours in seconds); ``tls.<key>`` arguments
build the ``tls`` dict. Nodemailer's form without slashes, ``smtp:user:pass@host:587``, means the
same as ``smtp://user:pass@host:587``. Checking the values is left to :func:`rawsmtp.config._options.make_options`.
"""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING, Any, Unpack

from .._errors import SMTPConfigError
from ._options import canonical_option, option_text_value, tls_text_value
from ._typing import PoolOptions

if TYPE_CHECKING:
    from ..pool._selectors import SMTPPool

__all__ = ["create_transport", "options_from_url", "pool_kwargs"]

_SCHEMES: dict[str, dict[str, Any]] = {
    "smtp": {"secure": False},
    "smtps": {"secure": True},
    "lmtp": {"lmtp": True},
}

# The URL itself says these; a query argument repeating them would be a second, silent answer.
_FROM_URL_PARTS = frozenset({"host", "port", "secure", "lmtp", "auth"})


def _fail(message: str) -> SMTPConfigError:
    return SMTPConfigError(message, option="url")


def options_from_url(url: str) -> dict[str, Any]:
    """Keyword options for ``SMTPPool`` / :func:`make_options` from a connection URL."""
    parts = _split(url)
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise _fail(f"URL scheme must be smtp://, smtps:// or lmtp://, not {url.split(':')[0]!r}")
    if parts.path not in ("", "/") or parts.fragment:
        raise _fail(f"unexpected path or fragment in {url!r}")
    try:
        port = parts.port
    except ValueError as error:
        raise SMTPConfigError(f"bad port in {url!r}", option="port") from error
    options: dict[str, Any] = dict(_SCHEMES[scheme])
    if parts.hostname:
        options["host"] = parts.hostname  # lower-cased, and without [] around IPv6
    if port is not None:
        options["port"] = port
    if parts.username is not None:
        # Percent-encoding lets a user name hold "@" and ":", as mail addresses often must.
        options["auth"] = {"user": urllib.parse.unquote(parts.username)}
        if parts.password is not None:
            options["auth"]["pass"] = urllib.parse.unquote(parts.password)
    options.update(_query_options(parts.query))
    return options


def _split(url: str) -> urllib.parse.SplitResult:
    """urlsplit, reading ``smtp:user:pass@host:port`` (Nodemailer accepts it) as ``smtp://...``.

    Without ``//`` urlsplit takes the authority for a path; a path never belongs in our URLs, so
    one that does not start with ``/`` can only be that authority.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.netloc or not parts.path or parts.path.startswith("/"):
        return parts
    scheme, _, rest = url.partition(":")
    return urllib.parse.urlsplit(f"{scheme}://{rest}")


def _query_options(query: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    tls: dict[str, Any] = {}
    try:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as error:
        raise _fail(f"malformed URL query {query!r}") from error
    for key, text in pairs:
        if key.startswith("tls."):
            target, (name, value) = tls, tls_text_value(key[4:], text)
        else:
            if canonical_option(key) in _FROM_URL_PARTS:
                raise SMTPConfigError(f"give {key} in the URL itself", option=key)
            target, name, value = options, key, option_text_value(key, text)
        if name in target:
            raise SMTPConfigError(f"{key} given twice in the URL query", option=key)
        target[name] = value
    if tls:
        options["tls"] = tls
    return options


def pool_kwargs(
    url_or_options: str | dict[str, Any] | None = None, **overrides: Any
) -> dict[str, Any]:
    """The keyword arguments :func:`create_transport` passes to ``SMTPPool``.

    An override replaces the same option from the URL or dict whichever way either spells it.
    """
    if isinstance(url_or_options, str):
        base = options_from_url(url_or_options)
    elif isinstance(url_or_options, dict):
        base = dict(url_or_options)
    elif url_or_options is None:
        base = {}
    else:
        raise SMTPConfigError(
            f"expected a URL, a dict of options or None, not {type(url_or_options).__name__}",
            option="url",
        )
    overridden = {canonical_option(key) for key in overrides}
    kept = {key: value for key, value in base.items() if canonical_option(key) not in overridden}
    return kept | overrides


def create_transport(
    url_or_options: str | dict[str, Any] | None = None, **overrides: Unpack[PoolOptions]
) -> SMTPPool:
    """A pool from a URL (``"smtps://user:pw@host?maxConnections=3"``) or a dict of options."""
    from ..pool._selectors import (
        SMTPPool,  # here, not at the top: the pool imports the options modules
    )

    return SMTPPool(**pool_kwargs(url_or_options, **overrides))
