"""The core stays on the standard library: only rawsmtp/contrib imports third-party libraries,
each in the one module named for it, and importing rawsmtp or rawsmtp.contrib loads none."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import rawsmtp

PACKAGE = Path(rawsmtp.__file__).parent
# Top-level third-party package -> the only module that may import it (path in the package).
ALLOWED = {
    "django": "contrib/django.py",
    "flask": "contrib/flask.py",
    "flask_mailman": "contrib/flask.py",
    "opentelemetry": "contrib/otel.py",
    "prometheus_client": "contrib/prometheus.py",
    "redis": "contrib/redis.py",
    "celery": "contrib/celery.py",
    "pytest": "testing/pytest_plugin.py",  # loaded by pytest itself, as its plugin
}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_only_contrib_modules_import_their_own_library() -> None:
    stdlib = sys.stdlib_module_names | {"rawsmtp"}
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        offenders += [
            f"{relative} imports {root}"
            for root in imported_roots(path) - stdlib
            if ALLOWED.get(root) != relative
        ]
    assert offenders == []


def test_the_checker_sees_an_offending_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("import os\nfrom prometheus_client import Counter\nfrom . import x\n")
    assert imported_roots(module) == {"os", "prometheus_client"}


def test_importing_rawsmtp_and_contrib_loads_no_third_party_library() -> None:
    script = (
        "import sys, rawsmtp, rawsmtp.contrib, rawsmtp.contrib.logging\n"
        f"print(sorted(m for m in {sorted(ALLOWED)!r} if m in sys.modules))"
    )
    output = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    assert output.strip() == "[]"
