"""A Django email backend over a rawsmtp pool: ``EMAIL_BACKEND = "rawsmtp.contrib.django.EmailBackend"``.

It reads the settings Django's smtp backend reads (``EMAIL_HOST``, ``EMAIL_PORT``,
``EMAIL_HOST_USER``, ``EMAIL_HOST_PASSWORD``, ``EMAIL_USE_TLS``, ``EMAIL_USE_SSL``,
``EMAIL_TIMEOUT``, ``EMAIL_SSL_CERTFILE``, ``EMAIL_SSL_KEYFILE``) and ``RAWSMTP_OPTIONS``: a dict
of pool options laid over them, or a URL that replaces them. One pool per process and settings
serves every thread and request; ``send_messages`` queues a batch at once and waits at most
``EMAIL_TIMEOUT`` seconds for it (see :func:`rawsmtp.contrib._backend.deliver`).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.core.mail.backends.base import BaseEmailBackend

from ._backend import MailSettings, PooledBackend, reset_pools

__all__ = ["EmailBackend", "reset_pools"]


# The backend's argument -> the Django setting it defaults to.
_SETTINGS = {
    "host": "EMAIL_HOST",
    "port": "EMAIL_PORT",
    "username": "EMAIL_HOST_USER",
    "password": "EMAIL_HOST_PASSWORD",
    "use_tls": "EMAIL_USE_TLS",
    "use_ssl": "EMAIL_USE_SSL",
    "timeout": "EMAIL_TIMEOUT",
    "ssl_keyfile": "EMAIL_SSL_KEYFILE",
    "ssl_certfile": "EMAIL_SSL_CERTFILE",
}


def _setting(name: str) -> Any:
    return getattr(django_settings, _SETTINGS[name])


class EmailBackend(PooledBackend, BaseEmailBackend):  # type: ignore[misc]
    """Django's smtp backend's arguments (each overrides its setting), plus ``options``."""

    def __init__(
        self,
        fail_silently: bool = False,
        *,
        options: dict[str, Any] | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(fail_silently=fail_silently)
        extra = getattr(django_settings, "RAWSMTP_OPTIONS", None) if options is None else options
        self.configure(MailSettings.resolve(kwargs, _setting), extra)
