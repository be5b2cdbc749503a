"""Shared fixtures: the real servers started by tests/servers/setup.sh, and their mail stores.

Integration tests need those servers. Without them a test is skipped, except under CI=true,
where a missing server is a failure: CI must never go green by skipping the real MTA.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from helpers.drivers import DRIVERS
from helpers.smtp import MailStore

STATE = Path(os.environ.get("RAWSMTP_SERVER_STATE", "/tmp/rawsmtp-servers"))


class Servers:
    """What setup.sh wrote to servers.json, with helpers."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.info = info
        self.host: str = info["host"]
        self.cafile: str = info["cafile"]
        self.ports: dict[str, int] = info["ports"]
        self.users: dict[str, tuple[str, str]] = {k: tuple(v) for k, v in info["users"].items()}
        self.tokens: dict[str, str] = info["oauth_tokens"]
        self.mail = MailStore(Path(info["maildir_root"]))
        self.lmtp_mail = MailStore(Path(info["lmtp_mail_root"]))


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"integration servers unavailable under CI=true: {reason}")
    pytest.skip(f"integration servers unavailable ({reason}); run tests/servers/setup.sh")


@pytest.fixture(scope="session")
def servers() -> Servers:
    path = STATE / "servers.json"
    if not path.exists():
        _unavailable(f"{path} missing")
    result = Servers(json.loads(path.read_text(encoding="utf-8")))
    try:
        socket.create_connection((result.host, result.ports["postfix"]), timeout=5).close()
    except OSError as error:
        _unavailable(f"postfix not answering: {error}")
    return result


@pytest.fixture(params=list(DRIVERS))
def pool_factory(request: pytest.FixtureRequest) -> Any:
    """Each pool driver in turn (selectors, asyncio) behind the synchronous interface."""
    return DRIVERS[request.param]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "servers" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)
