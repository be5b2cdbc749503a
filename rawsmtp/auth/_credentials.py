"""The credentials object and the ``auth=`` forms that become one.

Validation happens here, once, when the pool is configured, so every mechanism can assume a
well-formed user name and exactly one kind of secret. Secrets never appear in a repr.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .._errors import SMTPConfigError
from ._oauth2_client import OAuth2

__all__ = ["Credentials", "TokenProvider", "credentials_from"]

TokenProvider = Callable[[bool], str | tuple[str, float]]
"""An OAuth2 access-token source for XOAUTH2 and OAUTHBEARER: ``provider(renew)`` returns the
token, or ``(token, expires_at)`` with ``expires_at`` a ``time.time()`` timestamp so the pool
can ask for a fresh one before it lapses. ``renew`` is True when the pool needs a new token
(the last one expires soon, or the server refused it): return a new one, not a cached one. It
may block: the pool calls it in a worker thread, never on its loop."""

# Nodemailer's key names (and their snake_case spellings) -> Credentials fields.
_DICT_KEYS = {
    "user": "user",
    "pass": "password",
    "password": "password",
    "access_token": "access_token",
    "accessToken": "access_token",
    "token_provider": "token_provider",
    "authzid": "authzid",
}
# Nodemailer's keys (and ours) of an ``auth={"type": "OAuth2", ...}`` dict -> OAuth2 fields.
_OAUTH2_KEYS = {
    "user": "user",
    "clientId": "client_id",
    "client_id": "client_id",
    "clientSecret": "client_secret",
    "client_secret": "client_secret",
    "refreshToken": "refresh_token",
    "refresh_token": "refresh_token",
    "accessToken": "access_token",
    "access_token": "access_token",
    "expires": "expires",
    "accessUrl": "token_url",
    "tokenUrl": "token_url",
    "token_url": "token_url",
    "service": "service",
    "on_token": "on_token",
    "onToken": "on_token",
}


def _config_error(message: str) -> SMTPConfigError:
    return SMTPConfigError(message, option="auth")


def _has_control(text: str) -> bool:
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class Credentials:
    """A user name and exactly one of: a password, an OAuth2 access token, a token provider,
    an :class:`OAuth2` registration (the pool then fetches and renews tokens itself).

    ``token_provider(renew)`` returns an access token, or ``(token, expires_at)`` where
    ``expires_at`` is a :func:`time.time` timestamp. It is first called with ``renew=False``, and
    with ``renew=True`` when a fresh token is needed: after the server refused the current one
    (once per refusal), or before use when the current one expires within 60 seconds. The pool
    shares one token between its connections, so the provider is asked once, not once per
    connection, and it runs in a worker thread (it may block). ``authzid`` asks to act as
    another identity (PLAIN, SCRAM, OAUTHBEARER).
    """

    user: str
    password: str | None = None
    access_token: str | None = None
    token_provider: TokenProvider | None = None
    oauth2: OAuth2 | None = None
    authzid: str | None = None

    _SECRETS = ("password", "access_token", "token_provider", "oauth2")

    def __post_init__(self) -> None:
        if not isinstance(self.user, str) or not self.user:
            raise _config_error("auth user must be a non-empty string")
        if sum(getattr(self, name) is not None for name in self._SECRETS) != 1:
            raise _config_error(
                "auth needs exactly one of: password, access_token, token_provider, oauth2"
            )
        self._check_text("user", self.user)
        if self.authzid is not None:
            self._check_text("authzid", self.authzid)
        password = self.password
        if password is not None and (not isinstance(password, str) or "\0" in password):
            raise _config_error("auth password must be a string without NUL")
        if self.access_token is not None:
            check_token(self.access_token, _config_error)
        if self.token_provider is not None and not callable(self.token_provider):
            raise _config_error("auth token_provider must be callable")
        if self.oauth2 is not None and (
            not isinstance(self.oauth2, OAuth2) or self.oauth2.user != self.user
        ):
            raise _config_error("auth oauth2 must be an OAuth2 for the same user")

    @property
    def uses_tokens(self) -> bool:
        """Authenticates with bearer tokens (XOAUTH2, OAUTHBEARER), not a password."""
        return self.password is None

    @property
    def renewable(self) -> bool:
        """A refused token can be replaced by a fresh one (a provider, or an OAuth2 refresh)."""
        return self.token_provider is not None or (
            self.oauth2 is not None and self.oauth2.refresh_token is not None
        )

    @staticmethod
    def _check_text(field: str, value: object) -> None:
        # A control character would break XOAUTH2's ^A framing, and has no business in a name.
        if not isinstance(value, str) or _has_control(value):
            raise _config_error(f"auth {field} must be a string without control characters")

    def __repr__(self) -> str:
        secret = next(name for name in self._SECRETS if getattr(self, name) is not None)
        authzid = f", authzid={self.authzid!r}" if self.authzid is not None else ""
        return f"Credentials(user={self.user!r}, {secret}=<redacted>{authzid})"


def check_token(token: object, error: Callable[[str], Exception]) -> str:
    """A bearer token must be a non-empty string that cannot break the \\x01 framing."""
    if not isinstance(token, str) or not token or _has_control(token):
        # The token itself stays out of the message: it is a secret even when malformed.
        raise error("the access token must be a non-empty string without control characters")
    return token


def credentials_from(auth: object) -> Credentials:
    """Credentials from any accepted ``auth=`` form: Credentials, OAuth2, ``(user, password)``,
    a dict (Nodemailer's ``{"type": "OAuth2", ...}`` included)."""
    if isinstance(auth, Credentials):
        return auth
    if isinstance(auth, OAuth2):
        return Credentials(user=auth.user, oauth2=auth)
    if isinstance(auth, tuple):
        if len(auth) != 2:
            raise _config_error("auth tuple must be (user, password)")
        return Credentials(user=auth[0], password=auth[1])
    if isinstance(auth, Mapping):
        # Nodemailer's "type": "login" (its default) or "OAuth2".
        kind = auth.get("type", "login")
        kind = kind.lower() if isinstance(kind, str) else kind
        rest = {key: value for key, value in auth.items() if key != "type"}
        if kind == "oauth2":
            return credentials_from(OAuth2(**_fields_from_dict(rest, _OAUTH2_KEYS)))
        if kind != "login":
            raise _config_error(f"auth type must be 'login' or 'OAuth2', not {auth['type']!r}")
        return Credentials(**_fields_from_dict(rest, _DICT_KEYS))
    raise _config_error(
        "auth must be a dict, a (user, password) tuple or rawsmtp.auth.Credentials, "
        f"not {type(auth).__name__}"
    )


def _fields_from_dict(auth: Mapping[Any, Any], keys: Mapping[str, str]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, value in auth.items():
        field = keys.get(key) if isinstance(key, str) else None
        if field is None:
            known = ", ".join(keys)
            raise _config_error(f"unknown auth key {key!r} (known keys: {known})")
        if field in fields:
            raise _config_error(f"auth gives {field} twice (key {key!r})")
        fields[field] = value
    if "user" not in fields:
        raise _config_error("auth needs a 'user'")
    return fields
