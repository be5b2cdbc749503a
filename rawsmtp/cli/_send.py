"""``rawsmtp send``: messages from files, directories, maildirs or stdin, through one pool.

Files are read one at a time as the pool takes them, and at most ``MAX_IN_FLIGHT`` messages
(``MAX_IN_FLIGHT_BYTES`` of them) wait in the pool at once, so a maildir of any size is sent in
bounded memory. Outcomes are reported as they complete: plain lines or JSON objects on stdout,
a progress bar on a terminal's stderr, and a summary at the end. :func:`send_batch` and
:class:`Reporter` are shared with ``rawsmtp demo``.
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import email.utils
import json
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._result import SendResult
from ..config import EnvelopeDict
from ..pool._selectors import SMTPPool
from ..protocol import SMTPRecipientsRefusedError, validate_address
from ._console import Console, UsageError, connection_kwargs, usage_errors
from ._progress import Progress

__all__ = ["Job", "Outcome", "Reporter", "collect_paths", "command", "describe", "send_batch"]

MAX_IN_FLIGHT = 200
MAX_IN_FLIGHT_BYTES = 64 * 1024 * 1024
STDIN = "-"


@dataclass(frozen=True, slots=True)
class Job:
    """One message to send: ``load()`` gives its bytes and envelope (None: from the headers)."""

    label: str
    load: Callable[[], tuple[bytes, EnvelopeDict | None]]


@dataclass(frozen=True, slots=True)
class Outcome:
    label: str
    result: SendResult | None = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.result is not None


# -- what to send -------------------------------------------------------------------------------


def _files_in(folder: Path) -> list[Path]:
    # Dot files are editor and OS litter (.DS_Store), never messages; maildirs have none.
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def collect_paths(paths: Iterable[str]) -> list[str]:
    """Every file to send, in order: files as given; a directory's regular files, sorted, then
    those of its ``cur/`` and ``new/`` when it is a maildir; ``-`` for stdin (at most once)."""
    found: list[str] = []
    for name in paths:
        path = Path(name)
        if name == STDIN:
            if STDIN in found:
                raise UsageError("'-' (stdin) given more than once")
            found.append(STDIN)
        elif path.is_dir():
            files = _files_in(path)
            for sub in ("cur", "new"):
                if (path / sub).is_dir():
                    files += _files_in(path / sub)
            found += [str(p) for p in files]
        elif path.is_file():
            found.append(name)
        else:
            raise UsageError(f"{name}: no such file or directory")
    return found


def _header_addresses(data: bytes, *names: str) -> list[str]:
    headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(data)
    values = [str(value) for name in names for value in headers.get_all(name, [])]
    return [address for _, address in email.utils.getaddresses(values) if address]


def envelope_for(
    data: bytes, mail_from: str | None, rcpt_to: list[str] | None
) -> EnvelopeDict | None:
    """The envelope when --from or --to is given (the other part from the headers), else None."""
    if mail_from is None and not rcpt_to:
        return None
    sender = mail_from
    if sender is None:
        senders = _header_addresses(data, "sender") or _header_addresses(data, "from")
        sender = senders[0] if senders else None
    recipients = rcpt_to or _header_addresses(data, "to", "cc", "bcc")
    envelope: EnvelopeDict = {"to": recipients}
    if sender is not None:
        envelope["from"] = sender  # else the pool reports the missing sender for this message
    return envelope


def _jobs(paths: list[str], mail_from: str | None, rcpt_to: list[str] | None) -> list[Job]:
    def loader(path: str) -> Callable[[], tuple[bytes, EnvelopeDict | None]]:
        def load() -> tuple[bytes, EnvelopeDict | None]:
            data = sys.stdin.buffer.read() if path == STDIN else Path(path).read_bytes()
            return data, envelope_for(data, mail_from, rcpt_to)

        return load

    return [Job("<stdin>" if path == STDIN else path, loader(path)) for path in paths]


# -- sending ------------------------------------------------------------------------------------


def _outcome(label: str, future: Future[SendResult]) -> Outcome:
    error = future.exception()
    return Outcome(label, error=error) if error is not None else Outcome(label, future.result())


def send_batch(
    pool: SMTPPool,
    jobs: Iterable[Job],
    on_outcome: Callable[[Outcome], None],
    *,
    on_wait: Callable[[], None] = lambda: None,
) -> None:
    """Send every job through ``pool``; call ``on_outcome`` (on this thread) as each ends.

    ``on_wait`` is called about ten times a second while waiting, to keep a display alive.
    """
    in_flight: dict[Future[SendResult], tuple[str, int]] = {}
    held = 0

    def harvest(timeout: float) -> None:
        nonlocal held
        done, _ = wait(list(in_flight), timeout=timeout, return_when=FIRST_COMPLETED)
        for future in done:
            label, size = in_flight.pop(future)
            held -= size
            on_outcome(_outcome(label, future))
        if not done:
            on_wait()

    for job in jobs:
        while in_flight and (len(in_flight) >= MAX_IN_FLIGHT or held >= MAX_IN_FLIGHT_BYTES):
            harvest(0.1)
        try:
            data, envelope = job.load()
            future = pool.send(data, envelope)
        except (OSError, ValueError) as error:  # unreadable, or a message that can never go
            on_outcome(Outcome(job.label, error=error))
            continue
        in_flight[future] = (job.label, len(data))
        held += len(data)
        harvest(0)
    while in_flight:
        harvest(0.1)


# -- reporting ----------------------------------------------------------------------------------


def describe(error: BaseException) -> str:
    """``<error class> [<code>] <text>``, with each refused recipient's reply."""
    parts = [type(error).__name__]
    code = getattr(error, "code", None)
    if isinstance(code, int):
        parts.append(str(code))
    text = str(error) or repr(error)
    if isinstance(error, SMTPRecipientsRefusedError):
        refusals = "; ".join(f"{address}: {refusal}" for address, refusal in error.rejected.items())
        text = f"{text} ({refusals})" if refusals else text
    parts.append(text)
    return " ".join(parts)


def outcome_line(outcome: Outcome) -> str:
    if outcome.result is None:
        assert outcome.error is not None
        return f"FAIL {outcome.label}: {describe(outcome.error)}"
    result = outcome.result
    line = f"OK {outcome.label} -> accepted [{', '.join(result.accepted)}]"
    if result.rejected:
        line += f" rejected [{', '.join(result.rejected)}]"
    return f"{line} ({result.response.splitlines()[0] if result.response else ''})"


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    record: dict[str, Any] = {"type": "message", "path": outcome.label, "ok": outcome.ok}
    if outcome.result is not None:
        result = outcome.result
        record |= {
            "accepted": list(result.accepted),
            "rejected": list(result.rejected),
            "rejected_errors": {a: str(e) for a, e in result.rejected_errors.items()},
            "response": result.response,
            "message_id": result.message_id,
            "message_size": result.message_size,
        }
    else:
        error = outcome.error
        record |= {
            "error": type(error).__name__,
            "message": str(error),
            "code": getattr(error, "code", None),
            "enhanced_code": getattr(error, "enhanced_code", None),
            "response": getattr(error, "response", None),
        }
        if isinstance(error, SMTPRecipientsRefusedError):
            record["rejected"] = list(error.rejected)
            record["rejected_errors"] = {a: str(e) for a, e in error.rejected.items()}
    return record


class Reporter:
    """Prints outcomes and the summary; feeds the progress display.

    On a terminal the bar replaces the OK lines (failures still show above it); when stdout is
    redirected every line goes there, whatever stderr shows.
    """

    def __init__(self, console: Console, progress: Progress, *, as_json: bool) -> None:
        self.console = console
        self.progress = progress
        self.as_json = as_json
        self._stdout_tty = sys.stdout.isatty()

    def outcome(self, outcome: Outcome) -> None:
        self.progress.record(ok=outcome.ok)
        if self.as_json:
            self._emit(json.dumps(outcome_json(outcome)))
        elif not (outcome.ok and self.progress.drawing and self._stdout_tty):
            self._emit(outcome_line(outcome))

    def _emit(self, line: str) -> None:
        line = self.console.clean(line)
        if self.progress.drawing:
            self.progress.note(line, sys.stdout)
        else:
            print(line, file=sys.stdout, flush=True)

    def summary(self) -> None:
        p = self.progress
        p.finish()
        if self.as_json:
            record = {
                "type": "summary",
                "total": p.sent + p.failed,
                "sent": p.sent,
                "failed": p.failed,
                "elapsed": round(p.elapsed, 3),
                "rate": round(p.rate, 1),
            }
            self.console.out(json.dumps(record))
        else:
            self.console.out(
                f"sent {p.sent}, failed {p.failed} of {p.sent + p.failed} messages "
                f"in {p.elapsed:.2f} s ({p.rate:.1f} msg/s)"
            )


# -- the command --------------------------------------------------------------------------------


def _check_addresses(args: argparse.Namespace) -> None:
    with usage_errors():
        if args.mail_from is not None:
            validate_address(args.mail_from, smtputf8=True, null_allowed=True)
        for address in args.rcpt_to or ():
            validate_address(address, smtputf8=True)


def command(args: argparse.Namespace, console: Console) -> int:
    kwargs = connection_kwargs(args, console)
    if args.max_connections is not None:
        kwargs["max_connections"] = args.max_connections
    if args.rate_limit is not None:
        kwargs["rate_limit"] = args.rate_limit
    _check_addresses(args)
    paths = collect_paths(args.paths)
    with usage_errors():
        pool = SMTPPool(**kwargs)
    with pool:
        if not paths:
            console.err("rawsmtp send: nothing to send (no files found)")
            return 0
        progress = Progress(len(paths), sys.stderr, draw=sys.stderr.isatty())
        reporter = Reporter(console, progress, as_json=args.json)
        try:
            send_batch(
                pool,
                _jobs(paths, args.mail_from, args.rcpt_to),
                reporter.outcome,
                on_wait=progress.refresh,
            )
        finally:
            reporter.summary()
    return 0 if progress.failed == 0 else 1
