"""Slotted dataclasses built fast, where one is made for every message.

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

A mutable dataclass with many defaulted fields costs in its ``__init__`` too: the call goes
through the type's generic init slot, and each keyword-only default is looked up in a dict
(a Submission took 9,200 instructions, a MailFlow 5,600). :func:`builder` writes, once, a
function of the fields the caller gives that makes the instance and stores every field, the
others from their defaults: the same object, for a fifth of that.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["builder", "open_twin"]

T = TypeVar("T")


def open_twin(cls: type) -> Any:
    """A plain class laid out as the frozen slotted dataclass ``cls`` (same bases, same slots)."""
    namespace = {"__slots__": cls.__dict__["__slots__"], "__module__": cls.__module__}
    # __orig_bases__: a Generic[T] dataclass is rebuilt on Generic[T], as Generic requires.
    bases = getattr(cls, "__orig_bases__", cls.__bases__)
    return types.new_class(f"_Open{cls.__name__}", bases, exec_body=lambda ns: ns.update(namespace))


def builder(cls: type[T], *given: str) -> Callable[..., T]:
    """``build(*values)``, the same as ``cls(**dict(zip(given, values)))``: the ``given``
    fields positionally, in that order, every other one from its default or default factory.

    For mutable dataclasses without ``__post_init__`` (which it would skip), whose every field
    not given has a default."""
    params = dataclasses.fields(cls)  # type: ignore[arg-type]
    if cls.__dataclass_params__.frozen or hasattr(cls, "__post_init__"):  # type: ignore[attr-defined]
        raise ValueError(f"{cls.__name__} is frozen or post-initialised: use its __init__")
    if unknown := set(given) - {param.name for param in params}:
        raise ValueError(f"{cls.__name__} has no field {sorted(unknown)}")
    scope: dict[str, Any] = {"new": object.__new__, "cls": cls}
    lines = [f"def build({', '.join(given)}):", "    made = new(cls)"]
    for param in params:
        if param.name in given:
            value = param.name
        elif param.default is not dataclasses.MISSING:
            scope[f"default_{param.name}"] = param.default
            value = f"default_{param.name}"
        elif param.default_factory is not dataclasses.MISSING:
            scope[f"factory_{param.name}"] = param.default_factory
            value = f"factory_{param.name}()"
        else:
            raise ValueError(f"{cls.__name__}.{param.name} has no default: give it")
        lines.append(f"    made.{param.name} = {value}")
    lines.append("    return made")
    exec("\n".join(lines), scope)  # our own field names, as dataclasses itself does
    built: Callable[..., T] = scope["build"]
    return built
