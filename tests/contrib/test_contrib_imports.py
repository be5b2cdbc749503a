"""Importing rawsmtp or rawsmtp.contrib loads no third-party library (which module may import
which library is checked from the source by tests/test_layering.py)."""

from __future__ import annotations

import subprocess
import sys

THIRD_PARTY = ("django", "flask", "flask_mailman", "opentelemetry", "prometheus_client", "pytest")


def test_importing_rawsmtp_and_contrib_loads_no_third_party_library() -> None:
    script = (
        "import sys, rawsmtp, rawsmtp.contrib, rawsmtp.contrib.logging\n"
        f"print(sorted(m for m in {THIRD_PARTY!r} if m in sys.modules))"
    )
    output = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    assert output.strip() == "[]"
