"""Every public name has a docstring: the API reference (pdoc, built by .ci/run) is made of them.

Public means listed in an ``__all__`` of a public module. A class or function carries its own
``__doc__`` (not the signature a dataclass makes up); a constant or a type alias has the string
that follows its assignment in the module that defines it, which is where pdoc reads it.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import itertools
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "rawsmtp"
PUBLIC_MODULES = (
    "rawsmtp",
    "rawsmtp.aio",
    "rawsmtp.protocol",
    "rawsmtp.auth",
    "rawsmtp.proxy",
    "rawsmtp.testing",
    "rawsmtp.config",
)


def documented_assignments(source: str) -> set[str]:
    """Names assigned at a module's top level and followed by a string statement."""
    body = ast.parse(source).body
    names: set[str] = set()
    for statement, following in itertools.pairwise(body):
        is_doc = isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
        if not (is_doc and isinstance(following.value.value, str)):
            continue
        if isinstance(statement, ast.Assign):
            names |= {t.id for t in statement.targets if isinstance(t, ast.Name)}
        elif isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            names.add(statement.target.id)
    return names


@cache
def _documented_values() -> frozenset[str]:
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        found |= documented_assignments(path.read_text(encoding="utf-8"))
    return frozenset(found)


def has_docstring(name: str, obj: object) -> bool:
    if inspect.ismodule(obj) or inspect.isroutine(obj):
        doc = obj.__doc__
    elif inspect.isclass(obj):
        doc = obj.__dict__.get("__doc__")
        if dataclasses.is_dataclass(obj) and doc and doc.startswith(f"{obj.__name__}("):
            doc = None  # the signature dataclass() writes when there is no docstring
    else:
        return name in _documented_values()
    return bool(doc and doc.strip())


def _public_names() -> list[str]:
    names = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        names += [f"{module_name}.{name}" for name in module.__all__]
    return names


def _lookup(qualified: str) -> object:
    module_name, name = qualified.rsplit(".", 1)
    return getattr(importlib.import_module(module_name), name)


def test_every_public_name_has_a_docstring() -> None:
    missing = {q for q in _public_names() if not has_docstring(q.rsplit(".")[-1], _lookup(q))}
    assert missing == set()


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('X = 1\n"""X."""\nY = 2\n', {"X"}),
        ('A: int = 1\n"""A."""\n', {"A"}),
        ("X = 1\n# a comment is no docstring\n", set()),
        ('X = 1\nY = 2\n"""Y only."""\n', {"Y"}),
    ],
)
def test_documented_assignments(source: str, expected: set[str]) -> None:
    assert documented_assignments(source) == expected


def test_a_missing_docstring_is_seen() -> None:
    @dataclasses.dataclass
    class Bare:
        x: int

    def bare() -> None:
        pass

    assert not has_docstring("Bare", Bare)
    assert not has_docstring("bare", bare)
    assert not has_docstring("UNDOCUMENTED_VALUE", 3)
    assert has_docstring("SMTPPool", _lookup("rawsmtp.SMTPPool"))
