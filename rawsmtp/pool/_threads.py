"""Starting the pool's helper threads, and what to do when the interpreter no longer allows it.

Since Python 3.12 no thread may start once the interpreter is shutting down, and that includes
the ``threading`` exit hooks where an unclosed pool sends its queue. Work that would have gone
to a new thread then runs on the calling thread instead: slower (a name lookup blocks the loop
for its length), but nothing queued is lost at exit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["daemon", "start"]


def daemon(target: Callable[[], None], name: str) -> threading.Thread:
    """A daemon thread for ``target``, not started (so the caller can record it first)."""
    return threading.Thread(target=target, name=name, daemon=True)


def start(thread: threading.Thread) -> bool:
    """Start ``thread``; False when the interpreter is shutting down and no thread may start."""
    try:
        thread.start()
    except RuntimeError:  # "can't create new thread at interpreter shutdown" (3.12+)
        return False
    return True
