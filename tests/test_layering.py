"""The package's layers, checked from the source: what each part may import.

- protocol/, auth/ and proxy/ (proxy/_blocking.py excepted) are sans-I/O: no socket, ssl,
  selectors, asyncio, threading or time, at any level (a deferred import inside a function
  counts), and nothing from the I/O and front-end layers (rawsmtp.pool, .config, .cli).
- rawsmtp/_errors.py is the leaf every layer imports: it imports nothing of rawsmtp.
- rawsmtp is standard library only: a third-party library is imported only by the one
  rawsmtp/contrib/ module that integrates it (``THIRD_PARTY``).

Imports are read with :mod:`ast`, so nothing is executed; ``if TYPE_CHECKING:`` imports count too
(a sans-I/O module has no reason to name ``ssl`` even for a type). The one exception:
``typing_extensions`` may be named under ``if TYPE_CHECKING:`` (mypy ships it; it never runs).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "rawsmtp"

SANS_IO = ("protocol", "auth", "proxy")
SANS_IO_EXCEPTED = {"proxy/_blocking.py"}
IO_MODULES = frozenset({"socket", "ssl", "selectors", "asyncio", "threading", "time"})
UPPER_LAYERS = ("rawsmtp.pool", "rawsmtp.config", "rawsmtp.cli")
# Module -> the third-party libraries it alone may import. The one outside contrib/: pytest
# imports its plugin itself, through the pytest11 entry point, so pytest is there when it runs.
THIRD_PARTY = {
    "contrib/django.py": {"django"},
    "contrib/flask.py": {"flask", "flask_mailman"},
    "contrib/otel.py": {"opentelemetry"},
    "contrib/prometheus.py": {"prometheus_client"},
    "contrib/redis.py": {"redis"},
    "contrib/celery.py": {"celery", "redis"},
    "testing/pytest_plugin.py": {"pytest"},
}
TYPE_CHECKING_ONLY = "typing_extensions"


def _type_checking_imports(tree: ast.AST) -> set[ast.AST]:
    """The import nodes inside ``if TYPE_CHECKING:`` blocks."""
    inside: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in (
            "TYPE_CHECKING",
            "typing.TYPE_CHECKING",
        ):
            for statement in node.body:
                inside.update(ast.walk(statement))
    return inside


def imported_modules(source: str, module: str) -> Iterator[str]:
    """The absolute name of every module ``source`` (the text of ``module``) imports.

    ``from . import x`` yields both the package and ``package.x``, since x may be a module.
    """
    package = module.rsplit(".", 1)[0] if not module.endswith(".__init__") else module[:-9]
    tree = ast.parse(source)
    type_checking = _type_checking_imports(tree)
    for node in ast.walk(tree):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if node in type_checking and names == [TYPE_CHECKING_ONLY]:
            continue
        if (
            isinstance(node, ast.ImportFrom)
            and node in type_checking
            and node.module == TYPE_CHECKING_ONLY
        ):
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            yield target
            yield from (f"{target}.{alias.name}" for alias in node.names)


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(relative: str, source: str) -> list[str]:
    """What the module at ``relative`` (a path under rawsmtp/, "/"-separated) must not import."""
    module = "rawsmtp." + relative.removesuffix(".py").replace("/", ".")
    found: list[str] = []
    sans_io = relative.split("/")[0] in SANS_IO and relative not in SANS_IO_EXCEPTED
    for name in sorted(set(imported_modules(source, module))):
        top = name.split(".")[0]
        if sans_io and top in IO_MODULES:
            found.append(f"{relative}: sans-I/O layer imports {name}")
        if sans_io and any(_within(name, layer) for layer in UPPER_LAYERS):
            found.append(f"{relative}: sans-I/O layer imports {name}")
        if relative == "_errors.py" and _within(name, "rawsmtp"):
            found.append(f"{relative}: the leaf module imports {name}")
        allowed = {"rawsmtp", *sys.stdlib_module_names, *THIRD_PARTY.get(relative, ())}
        if top not in allowed:
            found.append(f"{relative}: imports non-stdlib {name}")
    return found


def _sources() -> Iterator[tuple[str, str]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE).as_posix(), path.read_text(encoding="utf-8")


def test_the_package_keeps_its_layers() -> None:
    found = [v for relative, source in _sources() for v in violations(relative, source)]
    assert found == []


def test_the_walk_sees_every_layer() -> None:
    seen = {relative.split("/")[0] for relative, _ in _sources()}
    assert {*SANS_IO, "pool", "config", "cli", "_errors.py"} <= seen


# -- the checker itself must be able to fail ----------------------------------------------------

_DEFERRED_IO = """
import email.utils
def later():
    import time
    from socket import create_connection
"""


@pytest.mark.parametrize(
    ("relative", "source", "expected"),
    [
        ("protocol/_x.py", _DEFERRED_IO, ["time", "socket", "socket.create_connection"]),
        ("auth/_x.py", "from ..pool import SMTPPool\n", ["rawsmtp.pool", "rawsmtp.pool.SMTPPool"]),
        ("proxy/_x.py", "from ..config._url import x\n", ["rawsmtp.config._url"]),
        ("protocol/__init__.py", "from ..cli import main\n", ["rawsmtp.cli"]),
        ("auth/_x.py", "if TYPE_CHECKING:\n    import ssl\n", ["ssl"]),
        ("_errors.py", "from .protocol import Reply\n", ["rawsmtp.protocol"]),
        ("pool/_x.py", "import requests\n", ["requests"]),
        ("cli/_x.py", "from yaml import safe_load\n", ["yaml"]),
        ("testing/_server.py", "import pytest\n", ["pytest"]),  # only the plugin may
    ],
)
def test_the_checker_reports(relative: str, source: str, expected: list[str]) -> None:
    found = violations(relative, source)
    for name in expected:
        assert any(v.endswith(f" {name}") for v in found), (name, found)


@pytest.mark.parametrize(
    ("relative", "source"),
    [
        ("proxy/_blocking.py", "import socket\nimport time\n"),  # the blocking helper
        ("pool/_x.py", "import socket, ssl, threading\nfrom ..config import make_options\n"),
        ("protocol/_x.py", "from .._errors import SMTPError\nfrom . import _events\n"),
        ("contrib/django.py", "import django\n"),  # an integration imports its own library
        ("auth/_x.py", "import hmac, hashlib, secrets\n"),
        ("testing/pytest_plugin.py", "import pytest\n"),
    ],
)
def test_the_checker_allows(relative: str, source: str) -> None:
    assert violations(relative, source) == []
