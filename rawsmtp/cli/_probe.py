"""``rawsmtp probe URL``: what a server does with each SMTP rule, as a table or JSON.

The checks are :func:`rawsmtp.testing.probe`'s; this module only parses and prints.
"""

from __future__ import annotations

import argparse
import ssl

from ._console import Console

__all__ = ["add_parser", "command"]


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "probe",
        help="check what a server under test does with pipelining, STARTTLS, bare LF...",
        description="Probe the one server of URL (smtp://, smtps:// or lmtp://host:port). "
        "Nothing is delivered: transactions end in RSET or a hang-up before the data ends. "
        "Exit status 0 when the server answered.",
    )
    parser.add_argument("url", metavar="URL")
    parser.add_argument(
        "--recipient",
        metavar="ADDR",
        default="null@probe.invalid",
        help="an accepted recipient that discards mail, for the checks that need a transaction",
    )
    parser.add_argument("--ca-file", metavar="PATH", help="verify the certificate against PATH")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=command)


def command(args: argparse.Namespace, console: Console) -> int:
    from ..testing import probe

    context = ssl.create_default_context(cafile=args.ca_file) if args.ca_file else None
    report = probe(args.url, recipient=args.recipient, ssl_context=context, timeout=args.timeout)
    console.out(report.to_json() if args.json else report.table())
    return 0 if report.checks and report.checks[0].status == "ok" else 1
