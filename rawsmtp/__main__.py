"""``python -m rawsmtp`` and the ``rawsmtp`` console script: see :mod:`rawsmtp.cli`."""

from __future__ import annotations

import sys

from .cli import main as _main

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    return _main(argv)


if __name__ == "__main__":
    sys.exit(main())
