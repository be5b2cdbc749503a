"""OAuth2 credentials that renew their own access token (Nodemailer's ``auth.type = "OAuth2"``).

Sans-I/O: this module says what to ask the token endpoint (:func:`token_request`, the
refresh-token grant of RFC 6749 section 6) and what its answer means (:func:`parse_token_reply`);
``rawsmtp.pool._tokens`` sends the request with urllib, off the event loop. An endpoint's
refusal becomes an :class:`SMTPTokenError` carrying its ``error`` and ``error_description``
(section 5.2); the client secret and the tokens never appear in a message.
"""

from __future__ import annotations

import json
import math
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .._errors import SMTPConfigError, SMTPTokenError

__all__ = ["OAUTH2_TOKEN_URLS", "OAuth2", "TokenRequest", "parse_token_reply", "token_request"]

# service name (lower case) -> token endpoint. Without either, Google's, as in Nodemailer.
_GOOGLE = "https://oauth2.googleapis.com/token"
_MICROSOFT = "https://login.microsoftonline.com/common/oauth2/v2.0/token"
OAUTH2_TOKEN_URLS: Mapping[str, str] = {
    "gmail": _GOOGLE,
    "google": _GOOGLE,
    "googlemail": _GOOGLE,
    "microsoft": _MICROSOFT,
    "outlook": _MICROSOFT,
    "outlook365": _MICROSOFT,
    "office365": _MICROSOFT,
    "hotmail": _MICROSOFT,
}

# Above this an ``expires`` is taken for milliseconds (Nodemailer's Date.now() style): in
# seconds it would be after the year 5000.
_MILLISECONDS = 1e11

# on_token(user, access_token, expires): expires a time.time() timestamp, None when unknown.
OnToken = Callable[[str, str, float | None], None]


def _config_error(message: str) -> SMTPConfigError:
    return SMTPConfigError(message, option="auth")


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class OAuth2:
    """A user's OAuth2 client registration and refresh token, for XOAUTH2/OAUTHBEARER.

    The pool asks ``token_url`` (default: by ``service``, ``"gmail"`` or ``"outlook365"``, else
    Google's) for an access token with ``refresh_token``, renews it before ``expires`` (a
    :func:`time.time` timestamp; milliseconds as Nodemailer gives them are recognised) and when
    the server refuses it, and calls ``on_token(user, access_token, expires)`` with each new one.
    An ``access_token`` given here is used first; without a ``refresh_token`` it is all there is.
    """

    user: str
    client_id: str | None = None
    client_secret: str | None = None
    refresh_token: str | None = None
    access_token: str | None = None
    expires: float | None = None
    token_url: str | None = None
    service: str | None = None
    on_token: OnToken | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.user, str) or not self.user:
            raise _config_error("OAuth2 user must be a non-empty string")
        if self.refresh_token is None and self.access_token is None:
            raise _config_error("OAuth2 needs a refresh_token (with client_id) or an access_token")
        if self.refresh_token is not None and not self.client_id:
            raise _config_error("OAuth2 with a refresh_token needs a client_id")
        for name in ("client_id", "client_secret", "refresh_token", "access_token", "token_url"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise _config_error(f"OAuth2 {name} must be a non-empty string")
        if self.expires is not None and not _is_timestamp(self.expires):
            raise _config_error("OAuth2 expires must be a timestamp")
        if self.service is not None and self.service.lower() not in OAUTH2_TOKEN_URLS:
            known = ", ".join(sorted(OAUTH2_TOKEN_URLS))
            raise _config_error(f"OAuth2 service {self.service!r} has no known token URL ({known})")
        if self.on_token is not None and not callable(self.on_token):
            raise _config_error("OAuth2 on_token must be callable")
        url = urllib.parse.urlsplit(self.endpoint)
        if url.scheme not in ("https", "http") or not url.hostname:
            raise _config_error(f"OAuth2 token_url must be an https:// URL, not {self.endpoint!r}")

    @property
    def endpoint(self) -> str:
        """The token URL to use: ``token_url``, else the service's, else Google's."""
        if self.token_url is not None:
            return self.token_url
        return OAUTH2_TOKEN_URLS[(self.service or "gmail").lower()]

    @property
    def expires_at(self) -> float | None:
        """``expires`` in seconds, whichever unit it was given in."""
        if self.expires is None:
            return None
        return self.expires / 1000 if self.expires > _MILLISECONDS else float(self.expires)

    def __repr__(self) -> str:
        return f"OAuth2(user={self.user!r}, client_id={self.client_id!r}, <secrets redacted>)"


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """An HTTP POST to make: the URL, the form body, its headers."""

    url: str
    body: bytes
    headers: Mapping[str, str]


def token_request(oauth2: OAuth2, refresh_token: str) -> TokenRequest:
    """The refresh-token grant for ``oauth2`` (``refresh_token``: the latest one issued)."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    assert oauth2.client_id is not None
    form["client_id"] = oauth2.client_id
    if oauth2.client_secret is not None:
        form["client_secret"] = oauth2.client_secret
    return TokenRequest(
        oauth2.endpoint,
        urllib.parse.urlencode(form).encode("ascii"),
        {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
    )


@dataclass(frozen=True, slots=True)
class TokenReply:
    """What a successful token reply gave: the token, its expiry, a rotated refresh token."""

    access_token: str
    expires: float | None
    refresh_token: str | None


def parse_token_reply(url: str, status: int, body: bytes, *, now: float) -> TokenReply:
    """The endpoint's answer (HTTP ``status`` and ``body``) as a token, or an SMTPTokenError."""
    try:
        data: Any = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        data = None
    if not isinstance(data, dict):
        raise SMTPTokenError(
            f"token endpoint {url} answered HTTP {status} without a JSON object", status=status
        )
    if status != 200 or "error" in data:
        error, description = _text(data.get("error")), _text(data.get("error_description"))
        reason = f": {error}" if error else ""
        reason += f" ({description})" if description else ""
        raise SMTPTokenError(
            f"token endpoint {url} refused to issue a token (HTTP {status}){reason}",
            status=status,
            error=error,
            error_description=description,
        )
    token = data.get("access_token")
    if not isinstance(token, str) or not token or any(ord(c) < 0x20 for c in token):
        raise SMTPTokenError(
            f"token endpoint {url} answered without an access_token", status=status
        )
    lifetime: Any = data.get("expires_in")
    if isinstance(lifetime, str) and lifetime.isdigit():  # some endpoints send it as text
        lifetime = int(lifetime)
    expires = now + lifetime if _is_timestamp(lifetime) and lifetime > 0 else None
    rotated = data.get("refresh_token")
    return TokenReply(token, expires, rotated if isinstance(rotated, str) and rotated else None)


def _text(value: object) -> str | None:
    # Bounded: the endpoint's text ends up in logs.
    return value[:500] if isinstance(value, str) and value else None


def _is_timestamp(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
