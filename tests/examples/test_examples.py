"""The examples/ drivers, each run against the test server and against the real Postfix.

Every driver sends a pipelined batch over STARTTLS with AUTH PLAIN; a silent server proves it
wires the core's timer to its framework. Each run happens in a thread joined with a timeout,
so a driver that hangs fails the test instead of the suite.
"""

from __future__ import annotations

import ssl
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Servers
from helpers.smtp import unique

from rawsmtp import protocol as smtp
from rawsmtp.testing import CA_FILE, Fault, SMTPTestServer

sys.path.insert(0, str(Path(__file__).parents[2] / "examples"))

import batch as batch_module
import selectors_client

trio = pytest.importorskip("trio")
gevent = pytest.importorskip("gevent")

import gevent_client  # noqa: E402
import trio_client  # noqa: E402

Batch, Mail = batch_module.Batch, batch_module.Mail


def selectors_driver(batch: Any, host: str, port: int, cafile: str) -> None:
    selectors_client.run(batch, host, port, ssl.create_default_context(cafile=cafile))


def trio_driver(batch: Any, host: str, port: int, cafile: str) -> None:
    trio.run(trio_client.run, batch, host, port, ssl.create_default_context(cafile=cafile))


def gevent_driver(batch: Any, host: str, port: int, cafile: str) -> None:
    gevent_client.run_many([batch], host, port, cafile)


DRIVERS: dict[str, Callable[[Any, str, int, str], None]] = {
    "selectors": selectors_driver,
    "trio": trio_driver,
    "gevent": gevent_driver,
}


def run_in_thread(driver: Callable[..., None], *args: Any, timeout: float = 30.0) -> None:
    failure: list[BaseException] = []

    def target() -> None:
        try:
            driver(*args)
        except BaseException as error:
            failure.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "the driver hung"
    if failure:
        raise failure[0]


def mails(domain: str, count: int = 3) -> list[Any]:
    return [
        Mail(
            f"sender@{domain}",
            (f"{unique('ex')}@{domain}",),
            b"Subject: example %d\r\n\r\nbody %d\r\n.dot line\r\n" % (n, n),
        )
        for n in range(count)
    ]


@pytest.mark.parametrize("name", list(DRIVERS))
def test_batch_over_starttls_and_auth_to_the_test_server(name: str) -> None:
    batch_mails = mails("example.com")
    with SMTPTestServer(tls=True, users={"ann": "secret"}) as server:
        batch = Batch(batch_mails, user="ann", password="secret", now=time.monotonic())
        run_in_thread(DRIVERS[name], batch, "localhost", server.port, CA_FILE)
        received = server.wait_for_messages(3)
        verbs = [record.line.split()[0].upper() for record in server.commands]
    assert batch.closed is not None and batch.closed.error is None
    assert [type(outcome) for outcome in batch.outcomes] == [smtp.MessageAccepted] * 3
    assert [m.data for m in received] == [m.body for m in batch_mails]
    assert [m.rcpt_to for m in received] == [m.recipients for m in batch_mails]
    assert all(m.tls and m.auth_user == "ann" and m.chunked for m in received)
    assert verbs[:4] == ["EHLO", "STARTTLS", "EHLO", "AUTH"]
    assert verbs[-1] == "QUIT"


@pytest.mark.parametrize("name", list(DRIVERS))
def test_a_silent_server_ends_the_session_by_the_core_timer(name: str) -> None:
    config = smtp.ClientConfig(
        local_hostname="client.example", starttls="required", command_timeout=0.5
    )
    with SMTPTestServer(tls=True, faults=[Fault(on="MAIL", action="silent")]) as server:
        batch = Batch(mails("example.com", 1), config=config, now=time.monotonic())
        started = time.monotonic()
        run_in_thread(DRIVERS[name], batch, "localhost", server.port, CA_FILE)
    assert batch.closed is not None
    assert isinstance(batch.closed.error, smtp.SMTPTimeoutError)
    assert batch.closed.error.command == "MAIL"
    assert 0.4 < time.monotonic() - started < 10
    # Pipelined with CHUNKING, the whole message went out before MAIL's reply was due.
    assert batch.closed.unconfirmed == tuple(batch.transactions)


@pytest.mark.parametrize("name", list(DRIVERS))
def test_batch_over_starttls_and_auth_to_postfix(name: str, servers: Servers) -> None:
    user, password = servers.users["alice"]
    batch_mails = mails("example.test")
    batch = Batch(batch_mails, user=user, password=password, now=time.monotonic())
    run_in_thread(DRIVERS[name], batch, "localhost", servers.ports["submission"], servers.cafile)
    assert batch.auth_error is None
    assert batch.closed is not None and batch.closed.error is None
    assert [type(outcome) for outcome in batch.outcomes] == [smtp.MessageAccepted] * 3
    for mail in batch_mails:
        (stored,) = servers.mail.wait(mail.recipients[0].split("@")[0])
        assert mail.body.split(b"\r\n\r\n")[1] in stored.replace(b"\n", b"\r\n")
