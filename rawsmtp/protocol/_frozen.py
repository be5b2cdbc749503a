"""Frozen slotted dataclasses built fast, where one is made for every message.

A frozen dataclass's ``__init__`` stores each field through ``object.__setattr__`` (its own
``__setattr__`` refuses): under callgrind some 1,800 instructions a field, most of the cost of
a Transaction copy or a SendResult. :func:`open_twin` makes a plain class with the same slots,
whose instances take plain attribute stores; assigning the frozen class to such an instance's
``__class__`` then makes it one (CPython allows that between classes of one layout), frozen
from there on. The builders that use it set every field themselves: nothing is defaulted,
validated or post-initialised, so they are for values the library made, not for user input.

    open_transaction = open_twin(Transaction)
    copy = open_transaction()
    copy.mail_from = ...  # every field
    copy.__class__ = Transaction
"""

from __future__ import annotations

import types
from typing import Any

__all__ = ["open_twin"]


def open_twin(cls: type) -> Any:
    """A plain class laid out as the frozen slotted dataclass ``cls`` (same bases, same slots)."""
    namespace = {"__slots__": cls.__dict__["__slots__"], "__module__": cls.__module__}
    # __orig_bases__: a Generic[T] dataclass is rebuilt on Generic[T], as Generic requires.
    bases = getattr(cls, "__orig_bases__", cls.__bases__)
    return types.new_class(f"_Open{cls.__name__}", bases, exec_body=lambda ns: ns.update(namespace))
