"""The rawsmtp backend for Flask-Mailman: ``MAIL_BACKEND = "rawsmtp.contrib.flask.EmailBackend"``.

Flask-Mailman's backends are Django's in shape, but built with the extension's state rather
than Django's settings, so this is its own class over the same code as
:mod:`rawsmtp.contrib.django`: ``MAIL_SERVER``, ``MAIL_PORT``, ``MAIL_USERNAME``,
``MAIL_PASSWORD``, ``MAIL_USE_TLS``, ``MAIL_USE_SSL``, ``MAIL_TIMEOUT``, ``MAIL_SSL_CERTFILE`` and
``MAIL_SSL_KEYFILE`` configure it, and ``RAWSMTP_OPTIONS`` in the app's config is a dict of pool
options laid over them, or a URL that replaces them.
"""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask_mailman.backends.base import BaseEmailBackend

from ._backend import MailSettings, PooledBackend, reset_pools

__all__ = ["EmailBackend", "reset_pools"]


class EmailBackend(PooledBackend, BaseEmailBackend):  # type: ignore[misc]
    """Flask-Mailman's smtp backend's arguments (each overrides its setting), plus ``options``."""

    def __init__(
        self,
        mailman: Any = None,
        fail_silently: bool = False,
        *,
        options: dict[str, Any] | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(mailman=mailman, fail_silently=fail_silently)
        state = self.mailman

        def setting(name: str) -> Any:
            return getattr(state, "server" if name == "host" else name)

        extra = current_app.config.get("RAWSMTP_OPTIONS") if options is None else options
        self.configure(MailSettings.resolve(kwargs, setting), extra)
