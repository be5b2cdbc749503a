"""OAuth2 access tokens shared by all connections of a pool.

The one place in rawsmtp/auth that knows about threads and clocks: connections authenticate
from worker threads, and a pool must not ask the provider for a fresh token once per connection
when a single renewal serves them all; a token whose expiry the provider gave is renewed before
it runs out rather than sent to be refused.

:class:`rawsmtp.auth.OAuth2` credentials get a provider made here, :func:`oauth2_provider`: it
POSTs the refresh-token grant with urllib (in the worker thread the provider runs in) and
reports each new token to ``on_token``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from .._errors import SMTPAuthenticationError, SMTPTokenError
from ..auth._credentials import Credentials, check_token
from ..auth._oauth2_client import OAuth2, parse_token_reply, token_request

__all__ = ["RENEW_MARGIN", "TOKEN_FETCH_TIMEOUT", "TokenSource", "oauth2_provider"]

# Seconds a token endpoint may take to answer; the AUTH it is for waits that long.
TOKEN_FETCH_TIMEOUT = 30.0
# Token endpoint replies are small; a larger one is not read further.
_MAX_REPLY = 1 << 16

# A token that expires within this many seconds is renewed before use: it has to survive the
# AUTH exchange, and the two clocks (ours, the token issuer's) may disagree a little.
RENEW_MARGIN = 60.0


class TokenSource:
    """The current token for a pool, from a static ``access_token`` or a ``token_provider``.

    The provider may return a token or ``(token, expires_at)`` (a ``clock()`` timestamp,
    :func:`time.time` by default; ``clock`` is there for tests). ``token()`` asks for a fresh
    one, ``provider(True)``, when the current one expires within :data:`RENEW_MARGIN` seconds.
    """

    __slots__ = ("_clock", "_credentials", "_expires_at", "_lock", "_provider", "_token")

    def __init__(self, credentials: Credentials, *, clock: Callable[[], float] = time.time) -> None:
        if not credentials.uses_tokens:
            raise ValueError("TokenSource needs an access_token, a token_provider or oauth2")
        self._credentials = credentials
        self._provider = credentials.token_provider
        if credentials.oauth2 is not None:
            self._provider = oauth2_provider(credentials.oauth2, clock=clock)
        self._clock = clock
        # The lock is held while the provider runs, so concurrent callers wait for its answer
        # instead of each starting a request of their own.
        self._lock = threading.Lock()
        self._token: str | None = credentials.access_token
        self._expires_at: float | None = None  # None: no known expiry
        if credentials.oauth2 is not None:
            self._token = credentials.oauth2.access_token
            self._expires_at = credentials.oauth2.expires_at

    def token(self) -> str:
        """The current token: the provider is asked (renew=False) the first time, and asked
        for a fresh one (renew=True) when the current one expires within RENEW_MARGIN.

        A renewed token is used even if it also expires soon (the provider knows best), so one
        call asks the provider at most twice.
        """
        with self._lock:
            if self._token is None:
                self._store(renew=False)
            if self._expiring():
                self._store(renew=True)
            assert self._token is not None
            return self._token

    def renew(self, previous: str | None) -> str:
        """A token to retry with after ``previous`` was refused.

        When another connection has already renewed, its token is returned without asking the
        provider again. A static access token cannot be renewed and is returned as it is.
        """
        with self._lock:
            if not self._credentials.renewable:
                assert self._token is not None
                return self._token
            if self._token is None or self._token == previous:
                self._store(renew=True)
            assert self._token is not None
            return self._token

    def _expiring(self) -> bool:
        if not self._credentials.renewable:
            return False  # a static token is all there is: let the server judge it
        return self._expires_at is not None and self._expires_at - RENEW_MARGIN <= self._clock()

    def _store(self, *, renew: bool) -> None:
        """Ask the provider; on failure the previous token (and expiry) are kept."""
        self._token, self._expires_at = self._call_provider(renew=renew)

    def _call_provider(self, *, renew: bool) -> tuple[str, float | None]:
        provider = self._provider
        assert provider is not None

        def error(message: str) -> SMTPAuthenticationError:
            return SMTPAuthenticationError(f"token_provider(renew={renew}): {message}")

        try:
            answer = provider(renew)
        except SMTPTokenError:
            raise  # ours, from oauth2_provider: the endpoint's reason, no secret in it
        except Exception as failure:
            # Only the type: the provider's message might quote a refresh token or a secret.
            raise SMTPAuthenticationError(
                f"token_provider(renew={renew}) failed: {type(failure).__name__}"
            ) from failure
        if not isinstance(answer, tuple):
            return check_token(answer, error), None
        if len(answer) != 2 or not _is_timestamp(answer[1]):
            raise error("must return a token or (token, expires_at: float)")
        return check_token(answer[0], error), float(answer[1])


def _is_timestamp(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def oauth2_provider(
    oauth2: OAuth2, *, clock: Callable[[], float] = time.time
) -> Callable[[bool], str | tuple[str, float]]:
    """A token provider that asks ``oauth2``'s token endpoint for each token (blocking).

    The latest refresh token is kept: an endpoint may rotate it with each answer.
    """
    latest = oauth2.refresh_token

    def provider(renew: bool) -> str | tuple[str, float]:
        nonlocal latest
        if latest is None:
            raise SMTPTokenError("the OAuth2 access token expired and there is no refresh_token")
        import urllib.error  # here: urllib.request loads ssl and hashlib, about 4 MB
        import urllib.request

        request = token_request(oauth2, latest)
        http = urllib.request.Request(request.url, request.body, dict(request.headers))
        try:
            with urllib.request.urlopen(http, timeout=TOKEN_FETCH_TIMEOUT) as answer:
                status, body = answer.status, answer.read(_MAX_REPLY)
        except urllib.error.HTTPError as refusal:
            status, body = refusal.code, refusal.read(_MAX_REPLY)
        except (OSError, ValueError) as error:
            raise SMTPTokenError(f"token endpoint {request.url} unreachable: {error}") from None
        reply = parse_token_reply(request.url, status, body, now=clock())
        latest = reply.refresh_token or latest
        if oauth2.on_token is not None:
            oauth2.on_token(oauth2.user, reply.access_token, reply.expires)
        if reply.expires is None:  # renewed when the server refuses it
            return reply.access_token
        return reply.access_token, reply.expires

    return provider
