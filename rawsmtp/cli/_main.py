"""The ``rawsmtp`` command line's entry point: the argument parser and the exit statuses.

Each command lives in its own module (``_send``, ``_verify``, ``_demo``, ``_probe``); what they share (the
console, usage errors, connection arguments) is in ``_console``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable

from .. import __version__
from . import _demo, _probe, _send, _verify
from ._console import Console, UsageError

__all__ = ["main"]


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
    parser = argparse.ArgumentParser(
        prog="rawsmtp", description="Send mail through a pooled SMTP client, or check a server."
    )
    parser.add_argument("--version", action="version", version=f"rawsmtp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    send = commands.add_parser(
        "send",
        help="send .eml files, directories or maildirs, or stdin (-)",
        description="Send messages through one pool. Ctrl-C stops taking files and lets those "
        "in flight finish; a second Ctrl-C abandons them. Exit status: 0 all sent, 1 any "
        "failed, 2 usage error, 130 interrupted.",
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
    send.add_argument(
        "--journal",
        metavar="FILE",
        help="append each delivered file to FILE and skip the files FILE names (resumable runs)",
    )
    send.add_argument("paths", nargs="+", metavar="PATH", help=".eml file, directory or -")
    send.set_defaults(handler=_send.command)

    verify = commands.add_parser(
        "verify",
        help="show a server's greeting, capabilities, TLS and AUTH result",
        description="Connect, show what the server offers, try AUTH. Exit status 0 if all worked.",
    )
    _add_connection_arguments(verify)
    verify.set_defaults(handler=_verify.command)

    demo = commands.add_parser(
        "demo",
        help="send generated messages to an embedded test server (needs no server)",
        description="Start rawsmtp.testing's server on loopback and send it a batch through a pool.",
    )
    demo.add_argument("--count", type=_positive_int, default=200, metavar="N")
    demo.set_defaults(handler=_demo.command)
    _probe.add_parser(commands)
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
