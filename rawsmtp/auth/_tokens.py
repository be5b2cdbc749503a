"""OAuth2 access tokens shared by all connections of a pool.

The one place in rawsmtp/auth that knows about threads: connections authenticate from worker
threads, and a pool must not ask the provider for a fresh token once per connection when a single
renewal serves them all.
"""

from __future__ import annotations

import threading

from ..protocol._errors import SMTPAuthenticationError
from ._credentials import Credentials, check_token

__all__ = ["TokenSource"]


class TokenSource:
    """The current token for a pool, from a static ``access_token`` or a ``token_provider``."""

    __slots__ = ("_credentials", "_lock", "_token")

    def __init__(self, credentials: Credentials) -> None:
        if credentials.access_token is None and credentials.token_provider is None:
            raise ValueError("TokenSource needs an access_token or a token_provider")
        self._credentials = credentials
        # The lock is held while the provider runs, so concurrent callers wait for its answer
        # instead of each starting a request of their own.
        self._lock = threading.Lock()
        self._token: str | None = credentials.access_token

    def token(self) -> str:
        """The current token, asking the provider (renew=False) only the first time."""
        with self._lock:
            if self._token is None:
                self._token = self._call_provider(renew=False)
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
                self._token = self._call_provider(renew=True)
            return self._token

    def _call_provider(self, *, renew: bool) -> str:
        provider = self._credentials.token_provider
        assert provider is not None
        try:
            token = provider(renew)
        except Exception as error:
            # Only the type: the provider's message might quote a refresh token or a secret.
            raise SMTPAuthenticationError(
                f"token_provider(renew={renew}) failed: {type(error).__name__}"
            ) from error
        return check_token(
            token,
            lambda message: SMTPAuthenticationError(f"token_provider(renew={renew}): {message}"),
        )
