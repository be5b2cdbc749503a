"""What every ``rawsmtp`` command shares: the console, usage errors and connection settings.

This module turns ``--url``, ``--password-env``, ``--ca-file`` and ``--insecure`` into pool options, prints
through a :class:`Console` that masks every secret it has been told about, and maps errors to
exit statuses (which :mod:`._main` applies): 0 success, 1 something failed (a message, the server), 2 usage (bad arguments,
URL or options; printed as one line, no traceback), 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import sys
import urllib.parse
from collections.abc import Iterator
from typing import Any

from ..config._url import pool_kwargs

__all__ = ["Console", "UsageError", "connection_kwargs", "usage_errors"]


class UsageError(ValueError):
    """Bad arguments: reported in one line, exit status 2."""


@contextlib.contextmanager
def usage_errors() -> Iterator[None]:
    """Turn the ``ValueError`` of a bad option, URL or address into a :class:`UsageError`."""
    try:
        yield
    except UsageError:
        raise
    except ValueError as error:
        raise UsageError(str(error)) from error


class Console:
    """stdout/stderr (looked up at each write, so redirection and capture work), minus secrets."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()

    def hide(self, secret: str | None) -> None:
        """Mask ``secret`` (and its percent-encoded spelling) in everything printed from now on."""
        if secret:
            # As printed, percent-encoded (URLs) and JSON-escaped (--json output).
            spellings = {secret, urllib.parse.quote(secret, safe=""), json.dumps(secret)[1:-1]}
            self._secrets.update(spellings)

    def clean(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def out(self, text: str) -> None:
        print(self.clean(text), file=sys.stdout, flush=True)

    def err(self, text: str) -> None:
        print(self.clean(text), file=sys.stderr, flush=True)


def _hide_url_password(url: str, console: Console) -> None:
    # Done before the URL is parsed for real, so even an error quoting the URL is masked.
    with contextlib.suppress(ValueError):
        password = urllib.parse.urlsplit(url).password
        if password:
            console.hide(password)
            console.hide(urllib.parse.unquote(password))


def _password(args: argparse.Namespace, auth: dict[str, Any]) -> str:
    """The password, in the brief's order: --password-env, the URL's own, a terminal prompt."""
    if args.password_env:
        value = os.environ.get(args.password_env)
        if value is None:
            raise UsageError(f"--password-env: environment variable {args.password_env} is not set")
        return value
    if "pass" in auth:
        return str(auth["pass"])
    if sys.stdin is not None and sys.stdin.isatty():
        try:
            return getpass.getpass(f"Password for {auth['user']}: ")
        except EOFError:
            raise UsageError("no password entered") from None
    raise UsageError(
        f"the URL names user {auth['user']!r} but no password; give --password-env VAR "
        "(no prompt: stdin is not a terminal)"
    )


def connection_kwargs(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    """``SMTPPool`` keyword options from ``--url`` and the connection flags (not yet checked)."""
    _hide_url_password(args.url, console)
    with usage_errors():
        kwargs = pool_kwargs(args.url)
    auth = kwargs.get("auth")
    if auth is None and args.password_env:
        raise UsageError("--password-env needs a user name in the URL (smtp://user@host)")
    if auth is not None:
        auth = dict(auth)
        auth["pass"] = _password(args, auth)
        console.hide(auth["pass"])
        kwargs["auth"] = auth
    tls = dict(kwargs.get("tls") or {})
    if args.ca_file:
        if not os.path.isfile(args.ca_file):
            raise UsageError(f"--ca-file: no such file: {args.ca_file}")
        tls["ca_file"] = args.ca_file
    if args.insecure:
        tls["reject_unauthorized"] = False
    if tls:
        kwargs["tls"] = tls
    return kwargs
