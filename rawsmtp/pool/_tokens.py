"""OAuth2 access tokens shared by all connections of a pool.

The one place in rawsmtp/auth that knows about threads and clocks: connections authenticate
from worker threads, and a pool must not ask the provider for a fresh token once per connection
when a single renewal serves them all; a token whose expiry the provider gave is renewed before
it runs out rather than sent to be refused.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from .._errors import SMTPAuthenticationError
from ..auth._credentials import Credentials, check_token

__all__ = ["RENEW_MARGIN", "TokenSource"]

# A token that expires within this many seconds is renewed before use: it has to survive the
# AUTH exchange, and the two clocks (ours, the token issuer's) may disagree a little.
RENEW_MARGIN = 60.0


class TokenSource:
    """The current token for a pool, from a static ``access_token`` or a ``token_provider``.

    The provider may return a token or ``(token, expires_at)`` (a ``clock()`` timestamp,
    :func:`time.time` by default; ``clock`` is there for tests). ``token()`` asks for a fresh
    one, ``provider(True)``, when the current one expires within :data:`RENEW_MARGIN` seconds.
    """

    __slots__ = ("_clock", "_credentials", "_expires_at", "_lock", "_token")

    def __init__(self, credentials: Credentials, *, clock: Callable[[], float] = time.time) -> None:
        if credentials.access_token is None and credentials.token_provider is None:
            raise ValueError("TokenSource needs an access_token or a token_provider")
        self._credentials = credentials
        self._clock = clock
        # The lock is held while the provider runs, so concurrent callers wait for its answer
        # instead of each starting a request of their own.
        self._lock = threading.Lock()
        self._token: str | None = credentials.access_token
        self._expires_at: float | None = None  # None: no known expiry

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
            if self._credentials.token_provider is None:
                assert self._token is not None
                return self._token
            if self._token is None or self._token == previous:
                self._store(renew=True)
            assert self._token is not None
            return self._token

    def _expiring(self) -> bool:
        return self._expires_at is not None and self._expires_at - RENEW_MARGIN <= self._clock()

    def _store(self, *, renew: bool) -> None:
        """Ask the provider; on failure the previous token (and expiry) are kept."""
        self._token, self._expires_at = self._call_provider(renew=renew)

    def _call_provider(self, *, renew: bool) -> tuple[str, float | None]:
        provider = self._credentials.token_provider
        assert provider is not None

        def error(message: str) -> SMTPAuthenticationError:
            return SMTPAuthenticationError(f"token_provider(renew={renew}): {message}")

        try:
            answer = provider(renew)
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
