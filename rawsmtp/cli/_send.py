"""``rawsmtp send``: messages from files, directories, maildirs or stdin, through one pool.

Files are read one at a time as the pool takes them, and at most ``MAX_IN_FLIGHT`` messages
(``MAX_IN_FLIGHT_BYTES`` of them) wait in the pool at once, so a maildir of any size is sent in
bounded memory. Outcomes are reported as they complete: plain lines or JSON objects on stdout,
a progress bar on a terminal's stderr, and a summary at the end. :func:`send_batch` and
:class:`Reporter` are shared with ``rawsmtp demo``.

Ctrl-C (SIGINT) stops in two steps. The first stops taking files, withdraws the messages still
queued in the pool (never started, so never sent) and lets those in flight finish. A second one
abandons those in flight: the pool is closed without waiting and they count as unknown. Every
file ends in one of four classes, each listed and counted after the pool is closed: delivered,
failed, unknown (may have arrived) or not attempted. ``--journal`` (:mod:`._journal`) records
the delivered and unknown ones, so a rerun sends each remaining file once and none twice.
"""

from __future__ import annotations

import argparse
import contextlib
import email.parser
import email.policy
import email.utils
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import SMTPDeliveryUnknownError
from .._result import SendResult
from ..config import EnvelopeDict
from ..pool._selectors import SMTPPool
from ..protocol import SMTPRecipientsRefusedError, validate_address
from ._console import Console, UsageError, connection_kwargs, usage_errors
from ._journal import DELIVERED, UNKNOWN, Journal, journal_key
from ._progress import Progress

__all__ = [
    "Batch",
    "Interrupts",
    "Job",
    "Outcome",
    "Reporter",
    "collect_paths",
    "command",
    "describe",
    "send_batch",
]

MAX_IN_FLIGHT = 200
MAX_IN_FLIGHT_BYTES = 64 * 1024 * 1024
STDIN = "-"


@dataclass(frozen=True, slots=True)
class Job:
    """One message to send: ``load()`` gives its bytes and envelope (None: from the headers)."""

    label: str
    load: Callable[[], tuple[bytes, EnvelopeDict | None]]
    key: str | None = None  # its name in a journal; None: never journaled (stdin, demo)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempted message ended: its result, or the error that ended it."""

    label: str
    result: SendResult | None = None
    error: BaseException | None = None
    key: str | None = None

    @property
    def ok(self) -> bool:
        return self.result is not None

    @property
    def unknown(self) -> bool:
        """Sent in full, final reply never seen: it may have been delivered."""
        return isinstance(self.error, SMTPDeliveryUnknownError)


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

    return [
        Job("<stdin>", loader(path))
        if path == STDIN
        else Job(path, loader(path), journal_key(path))
        for path in paths
    ]


# -- sending ------------------------------------------------------------------------------------


def _outcome(job: Job, future: Future[SendResult]) -> Outcome:
    error = future.exception()
    if error is not None:
        return Outcome(job.label, error=error, key=job.key)
    return Outcome(job.label, future.result(), key=job.key)


class _Abandon(BaseException):
    """A second Ctrl-C while waiting: stop waiting for the messages in flight."""


class Interrupts:
    """SIGINT in two steps: the first asks to stop, the second to abandon what is in flight.

    The handler raises only inside :meth:`abandonable` (waiting), never while a message is being
    handed to the pool, so a message is always either submitted and tracked or not submitted.
    """

    def __init__(self) -> None:
        self.presses = 0
        self._raising = False

    @property
    def stopping(self) -> bool:
        return self.presses > 0

    def _handle(self, signum: int, frame: object) -> None:
        self.presses += 1
        if self.presses > 1 and self._raising:
            raise _Abandon

    @contextlib.contextmanager
    def abandonable(self) -> Iterator[None]:
        if self.presses > 1:
            raise _Abandon
        self._raising = True
        try:
            yield
        finally:
            self._raising = False

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Handle SIGINT here while the block runs (only the main thread can)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, self._handle)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


@dataclass(slots=True)
class Batch:
    """How a batch ended: the jobs never attempted, and whether in-flight ones were abandoned."""

    not_attempted: list[Job] = field(default_factory=list)
    abandoned: bool = False


def send_batch(
    pool: SMTPPool,
    jobs: Iterable[Job],
    on_outcome: Callable[[Outcome], None],
    *,
    on_wait: Callable[[], None] = lambda: None,
    interrupts: Interrupts | None = None,
) -> Batch:
    """Send every job through ``pool``; call ``on_outcome`` (on this thread) as each ends.

    ``on_wait`` is called about ten times a second while waiting, to keep a display alive. With
    ``interrupts``, a first Ctrl-C ends the intake and a second abandons the messages in flight
    (each reported as an :class:`SMTPDeliveryUnknownError` unless it ended meanwhile).
    """
    interrupts = interrupts or Interrupts()
    in_flight: dict[Future[SendResult], tuple[Job, int]] = {}
    held = 0
    batch = Batch()

    def harvest(timeout: float) -> None:
        nonlocal held
        with interrupts.abandonable():
            done, _ = wait(list(in_flight), timeout=timeout, return_when=FIRST_COMPLETED)
        for future in done:
            job, size = in_flight.pop(future)
            held -= size
            on_outcome(_outcome(job, future))
        if not done:
            on_wait()

    pending = iter(jobs)
    current: Job | None = None  # taken from ``pending``, not yet handed to the pool
    try:
        for current in pending:
            while in_flight and (len(in_flight) >= MAX_IN_FLIGHT or held >= MAX_IN_FLIGHT_BYTES):
                harvest(0.1)
            if interrupts.stopping:
                break
            job, current = current, None
            try:
                data, envelope = job.load()
                future = pool.send(data, envelope)
            except (OSError, ValueError) as error:  # unreadable, or a message that can never go
                on_outcome(Outcome(job.label, error=error, key=job.key))
                continue
            in_flight[future] = (job, len(data))
            held += len(data)
            harvest(0)
        if current is not None:  # Ctrl-C came before it was handed to the pool
            batch.not_attempted += [current, *pending]
            current = None
        while in_flight:
            if interrupts.stopping:
                batch.not_attempted += _withdraw_queued(in_flight)
            harvest(0.1)
    except _Abandon:
        batch.abandoned = True
        batch.not_attempted += [current, *pending] if current is not None else list(pending)
        for future, (job, _) in in_flight.items():
            if future.done():
                on_outcome(_outcome(job, future))
            else:
                lost = SMTPDeliveryUnknownError("abandoned in flight by a second Ctrl-C")
                on_outcome(Outcome(job.label, error=lost, key=job.key))
    return batch


def _withdraw_queued(in_flight: dict[Future[SendResult], tuple[Job, int]]) -> list[Job]:
    """Cancel the messages still queued in the pool: not started, so certainly not sent."""
    withdrawn = [future for future in in_flight if future.cancel()]
    return [in_flight.pop(future)[0] for future in withdrawn]


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
        verdict = "UNKNOWN" if outcome.unknown else "FAIL"
        return f"{verdict} {outcome.label}: {describe(outcome.error)}"
    result = outcome.result
    line = f"OK {outcome.label} -> accepted [{', '.join(result.accepted)}]"
    if result.rejected:
        line += f" rejected [{', '.join(result.rejected)}]"
    return f"{line} ({result.response.splitlines()[0] if result.response else ''})"


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    status = "delivered" if outcome.ok else "unknown" if outcome.unknown else "failed"
    record: dict[str, Any] = {"type": "message", "path": outcome.label, "ok": outcome.ok}
    record["status"] = status
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
        self.unknown = 0  # counted among the progress display's failures
        self.not_attempted = 0
        self._stdout_tty = sys.stdout.isatty()

    def outcome(self, outcome: Outcome) -> None:
        self.progress.record(ok=outcome.ok)
        self.unknown += outcome.unknown
        if self.as_json:
            self._emit(json.dumps(outcome_json(outcome)))
        elif not (outcome.ok and self.progress.drawing and self._stdout_tty):
            self._emit(outcome_line(outcome))

    def not_sent(self, jobs: list[Job]) -> None:
        """List the files never attempted (a Ctrl-C stopped the batch first)."""
        self.not_attempted += len(jobs)
        for job in jobs:
            if self.as_json:
                record = {"type": "message", "path": job.label, "ok": False}
                self._emit(json.dumps(record | {"status": "not_attempted"}))
            else:
                self._emit(f"NOT ATTEMPTED {job.label}")

    def _emit(self, line: str) -> None:
        line = self.console.clean(line)
        if self.progress.drawing:
            self.progress.note(line, sys.stdout)
        else:
            print(line, file=sys.stdout, flush=True)

    def summary(self) -> None:
        p = self.progress
        p.finish()
        failed = p.failed - self.unknown
        total = p.sent + p.failed + self.not_attempted
        if self.as_json:
            record = {
                "type": "summary",
                "total": total,
                "sent": p.sent,
                "failed": failed,
                "unknown": self.unknown,
                "not_attempted": self.not_attempted,
                "elapsed": round(p.elapsed, 3),
                "rate": round(p.rate, 1),
            }
            self.console.out(json.dumps(record))
        else:
            self.console.out(
                f"sent {p.sent}, failed {failed}, unknown {self.unknown}, not attempted "
                f"{self.not_attempted} of {total} messages in {p.elapsed:.2f} s "
                f"({p.rate:.1f} msg/s)"
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
    jobs = _jobs(collect_paths(args.paths), args.mail_from, args.rcpt_to)
    journal = Journal(args.journal) if args.journal else None
    if journal is not None:
        jobs = _skip_journaled(jobs, journal, console)
    with usage_errors():
        pool = SMTPPool(**kwargs)
    if not jobs:
        pool.close()
        console.err("rawsmtp send: nothing to send (no files found)")
        return 0
    progress = Progress(len(jobs), sys.stderr, draw=sys.stderr.isatty())
    reporter = Reporter(console, progress, as_json=args.json)

    def on_outcome(outcome: Outcome) -> None:
        if journal is not None and outcome.key is not None and (outcome.ok or outcome.unknown):
            journal.record(outcome.key, DELIVERED if outcome.ok else UNKNOWN)
        reporter.outcome(outcome)

    interrupts = Interrupts()
    with interrupts.installed():
        batch = Batch()
        try:
            batch = send_batch(
                pool, jobs, on_outcome, on_wait=progress.refresh, interrupts=interrupts
            )
        finally:
            _close(pool, interrupts, abandoned=batch.abandoned)
            if journal is not None:
                journal.close()
    reporter.not_sent(batch.not_attempted)
    reporter.summary()
    if interrupts.stopping:
        console.err("rawsmtp send: interrupted" + (", in-flight abandoned" * batch.abandoned))
        return 130
    return 0 if progress.failed == 0 else 1


def _skip_journaled(jobs: list[Job], journal: Journal, console: Console) -> list[Job]:
    kept = [job for job in jobs if job.key is None or job.key not in journal.recorded]
    if len(kept) < len(jobs):
        console.err(
            f"rawsmtp send: skipping {len(jobs) - len(kept)} files already in {journal.path}"
        )
    return kept


def _close(pool: SMTPPool, interrupts: Interrupts, *, abandoned: bool) -> None:
    """Close the pool: QUIT politely, unless a second Ctrl-C said not to wait (then the loop,
    a daemon thread, is left to end with the process)."""
    if abandoned:
        threading.Thread(target=pool.close, daemon=True).start()
        return
    with contextlib.suppress(_Abandon), interrupts.abandonable():
        pool.close()
