"""Core behaviour that only shows through a whole pool: a real SMTPTestServer, both drivers."""

from __future__ import annotations

import time
from typing import Any

import pytest

import rawsmtp
from rawsmtp.testing import SMTPTestServer
from tests.helpers.drivers import DRIVERS

SMALL = b"Subject: small\r\n\r\nhi\r\n"
BIG = b"Subject: big\r\n\r\n" + b"x" * 2000 + b"\r\n"


@pytest.mark.parametrize("driver", sorted(DRIVERS))
@pytest.mark.parametrize("round_", range(4))  # the stall was a race: try it a few times
def test_after_a_capability_failure_without_pipelining_the_next_message_goes_at_once(
    driver: str, round_: int
) -> None:
    envelope = rawsmtp.Envelope(mail_from="a@test", rcpt_to=("b@test",))
    options: dict[str, Any] = {"ignore_tls": True, "max_connections": 1, "idle_timeout": 30}
    with SMTPTestServer(capabilities=["SIZE 1000", "8BITMIME"]) as server:
        with DRIVERS[driver](host=server.host, port=server.port, **options) as pool:
            pool.send(SMALL, envelope).result(timeout=10)  # the connection is READY
            started = time.monotonic()
            refused, after = pool.send(BIG, envelope), pool.send(SMALL, envelope)
            with pytest.raises(rawsmtp.SMTPCapabilityError, match="SIZE 1000"):
                refused.result(timeout=10)
            after.result(timeout=10)  # the guard: the stall lasted the idle_timeout (30 s)
            assert time.monotonic() - started < 5
        assert len(server.messages) == 2
