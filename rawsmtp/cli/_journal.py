"""``rawsmtp send --journal FILE``: which files were sent, kept so a rerun never sends one twice.

One JSON object a line, ``{"path": <absolute path>, "status": "delivered" | "unknown"}``, each
appended, flushed and fsynced as its outcome arrives, so a crash loses at most the line being
written. A rerun skips every file the journal names: delivered ones are done, and unknown ones
(the final reply was lost: they may have arrived) are left to the user, who removes their line
to send them again. A line that does not parse (a write cut short) is ignored. Stdin has no
path and is never journaled.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import IO

__all__ = ["Journal", "journal_key"]

DELIVERED = "delivered"
UNKNOWN = "unknown"


def journal_key(path: str) -> str:
    """How a file is named in the journal: absolute, so a rerun from elsewhere still matches."""
    return os.path.abspath(path)


class Journal:
    """The files a journal names (read on opening), and the appending of new ones."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.recorded: dict[str, str] = {}  # key -> status
        with contextlib.suppress(FileNotFoundError):
            for line in self.path.read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    record = json.loads(line)
                    self.recorded[str(record["path"])] = str(record["status"])
        self._file: IO[str] = self.path.open("a", encoding="utf-8")

    def record(self, key: str, status: str) -> None:
        """Append one line and make it durable before returning."""
        self._file.write(json.dumps({"path": key, "status": status}) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.recorded[key] = status

    def close(self) -> None:
        self._file.close()
