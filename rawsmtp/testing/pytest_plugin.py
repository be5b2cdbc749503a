"""pytest fixtures for rawsmtp's test server (registered through the ``pytest11`` entry point).

``smtp_server`` is a started :class:`SMTPTestServer` with default options; ``smtp_server_factory``
starts one per call with the options given. Both are stopped when the test ends, and the test
fails if a server hit an unexpected exception (see ``SMTPTestServer.errors``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ._server import SMTPTestServer

__all__ = ["smtp_server", "smtp_server_factory"]


@pytest.fixture
def smtp_server_factory() -> Iterator[Callable[..., SMTPTestServer]]:
    """``smtp_server_factory(**options)`` -> a started server, stopped after the test."""
    started: list[SMTPTestServer] = []

    def factory(**options: Any) -> SMTPTestServer:
        server = SMTPTestServer(**options).start()
        started.append(server)
        return server

    try:
        yield factory
    finally:
        for server in reversed(started):
            server.stop()
    errors = [error for server in started for error in server.errors]
    if errors:
        pytest.fail(f"SMTPTestServer raised inside: {errors!r}")


@pytest.fixture
def smtp_server(smtp_server_factory: Callable[..., SMTPTestServer]) -> SMTPTestServer:
    """A started SMTPTestServer with the default options."""
    return smtp_server_factory()
