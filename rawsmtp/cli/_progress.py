"""The command line's progress display: counts, rate and ETA, drawn as one ``\\r``-redrawn line.

:class:`Progress` keeps the counts whether or not it draws, so the summary comes from one place.
It draws only when asked to (the CLI asks when stderr is a terminal); lines printed with
:meth:`Progress.note` appear above the bar without tearing it. :func:`render` is the pure part.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress", "format_duration", "render"]

_REDRAW_INTERVAL = 0.1  # seconds; redrawing more often only costs the terminal time


def format_duration(seconds: float) -> str:
    """``"0:07"``, ``"12:03"``, ``"1:02:03"``."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def render(*, sent: int, failed: int, total: int, elapsed: float, width: int) -> str:
    """The progress line for ``width`` columns (never wider, never ending in a newline)."""
    done = sent + failed
    rate = done / elapsed if elapsed > 0 else 0.0
    if done >= total:
        eta = "done     "
    elif rate > 0:
        eta = f"ETA {format_duration((total - done) / rate):>5}"
    else:
        eta = "ETA --:--"
    d = len(str(total))  # fixed-width fields, so the bar does not jump as counts grow
    tail = f" {done:>{d}}/{total}  sent {sent:>{d}}  failed {failed:>{d}}  {rate:7.1f} msg/s  {eta}"
    bar_width = min(40, width - len(tail) - 3)
    if bar_width < 10:
        return tail.strip()[: max(width - 1, 0)]
    filled = bar_width * done // total if total else bar_width
    return f"[{'#' * filled}{'-' * (bar_width - filled)}]{tail}"


class Progress:
    """Counts outcomes; when ``draw`` is true, keeps a progress line up to date on ``stream``."""

    def __init__(
        self,
        total: int,
        stream: TextIO,
        *,
        draw: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.sent = 0
        self.failed = 0
        self._stream = stream
        self._draw = draw
        self._clock = clock
        self._start = clock()
        self._stop: float | None = None
        self._last_drawn = -_REDRAW_INTERVAL
        self._shown = False  # a bar is on screen now

    @property
    def elapsed(self) -> float:
        end = self._stop if self._stop is not None else self._clock()
        return end - self._start

    @property
    def rate(self) -> float:
        """Messages (sent or failed) per second so far."""
        elapsed = self.elapsed
        return (self.sent + self.failed) / elapsed if elapsed > 0 else 0.0

    def record(self, *, ok: bool) -> None:
        if ok:
            self.sent += 1
        else:
            self.failed += 1
        self.refresh()

    def refresh(self, *, force: bool = False) -> None:
        """Redraw the line, at most every 0.1 s unless ``force``."""
        if not self._draw:
            return
        now = self._clock()
        if force or now - self._last_drawn >= _REDRAW_INTERVAL:
            self._last_drawn = now
            width = shutil.get_terminal_size().columns
            line = render(
                sent=self.sent,
                failed=self.failed,
                total=self.total,
                elapsed=self.elapsed,
                width=width,
            )
            self._stream.write(f"\r{line}\x1b[K")
            self._stream.flush()
            self._shown = True

    @property
    def drawing(self) -> bool:
        return self._draw

    def note(self, line: str, stream: TextIO | None = None) -> None:
        """Print ``line`` above the bar, on ``stream`` (default: the bar's own stream).

        The bar is wiped first and redrawn after, so the same terminal can show both.
        """
        if self._shown:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._shown = False
        target = stream or self._stream
        target.write(line + "\n")
        target.flush()
        self.refresh(force=True)

    def finish(self) -> None:
        """Stop the clock; draw the final state and end the line."""
        if self._stop is None:
            self._stop = self._clock()
        if self._draw:
            self.refresh(force=True)
            self._stream.write("\n")
            self._stream.flush()
            self._shown = False
