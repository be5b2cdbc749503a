"""The ``rawsmtp`` command line: ``send``, ``verify`` and ``demo``."""

from ._main import main

__all__ = ["main"]
