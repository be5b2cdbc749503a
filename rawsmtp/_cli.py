"""The ``rawsmtp`` command line: argument parsing, the console, and connection settings.

The commands live in their own modules (``_cli_send``, ``_cli_verify``, ``_cli_demo``); this one
turns ``--url``, ``--password-env``, ``--ca-file`` and ``--insecure`` into pool options, prints
through a :class:`Console` that masks every secret it has been told about, and maps errors to
exit statuses: 0 success, 1 something failed (a message, the server), 2 usage (bad arguments,
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
from collections.abc import Callable, Iterator
from typing import Any

from . import __version__
from ._url import pool_kwargs

__all__ = ["Console", "UsageError", "connection_kwargs", "main", "usage_errors"]


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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _address_list(text: str) -> list[str]:
    return [address.strip() for address in text.split(",") if address.strip()]


def _add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        required=True,
        help="smtp://, smtps:// or lmtp:// URL, e.g. smtps://user@host:465 (options as query)",
    )
    parser.add_argument(
        "--password-env",
        metavar="VAR",
        help="read the password from this environment variable (else the URL's, else a prompt)",
    )
    parser.add_argument("--ca-file", metavar="PATH", help="trust only the CA certificates in PATH")
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="do not verify the server's certificate (tls reject_unauthorized=false)",
    )


def _build_parser() -> argparse.ArgumentParser:
    from . import _cli_demo, _cli_send, _cli_verify

    parser = argparse.ArgumentParser(
        prog="rawsmtp", description="Send mail through a pooled SMTP client, or check a server."
    )
    parser.add_argument("--version", action="version", version=f"rawsmtp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    send = commands.add_parser(
        "send",
        help="send .eml files, directories or maildirs, or stdin (-)",
        description="Send messages through one pool. Exit status: 0 all sent, 1 any failed, "
        "2 usage error.",
    )
    _add_connection_arguments(send)
    send.add_argument("--from", dest="mail_from", metavar="ADDR", help="envelope sender")
    # One address per --to (repeat it, or separate with commas): a "+" list would swallow PATHs.
    send.add_argument(
        "--to",
        dest="rcpt_to",
        metavar="ADDR",
        type=_address_list,
        action="extend",
        help="envelope recipient(s), comma-separated; repeatable",
    )
    send.add_argument(
        "--max-connections", type=_positive_int, metavar="N", help="open at most N (default 5)"
    )
    send.add_argument(
        "--rate-limit", type=_positive_int, metavar="N", help="start at most N messages a second"
    )
    send.add_argument("--json", action="store_true", help="one JSON object per line on stdout")
    send.add_argument("paths", nargs="+", metavar="PATH", help=".eml file, directory or -")
    send.set_defaults(handler=_cli_send.command)

    verify = commands.add_parser(
        "verify",
        help="show a server's greeting, capabilities, TLS and AUTH result",
        description="Connect, show what the server offers, try AUTH. Exit status 0 if all worked.",
    )
    _add_connection_arguments(verify)
    verify.set_defaults(handler=_cli_verify.command)

    demo = commands.add_parser(
        "demo",
        help="send generated messages to an embedded test server (needs no server)",
        description="Start rawsmtp.testing's server on loopback and send it a batch through a pool.",
    )
    demo.add_argument("--count", type=_positive_int, default=200, metavar="N")
    demo.set_defaults(handler=_cli_demo.command)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, or argparse's own usage error (2)
        return exit_.code if isinstance(exit_.code, int) else 2
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    console = Console()
    handler: Callable[[argparse.Namespace, Console], int] = args.handler
    try:
        return handler(args, console)
    except UsageError as error:
        console.err(f"rawsmtp {args.command}: error: {error}")
        return 2
    except KeyboardInterrupt:
        console.err("rawsmtp: interrupted")
        return 130
    except BrokenPipeError:
        # The reader went away (``rawsmtp verify ... | head``): stop quietly, as a filter does.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
