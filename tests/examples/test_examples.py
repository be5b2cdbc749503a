"""The examples/ drivers, each run against the test server and against the real Postfix.

Every driver sends a pipelined batch over STARTTLS with AUTH PLAIN, all asked for up front; a
silent server proves it wires the core's timer to its framework. Each run happens in a thread joined with a timeout,
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

Mail = batch_module.Mail


Driver = Callable[..., Any]  # (mails, host, port, cafile, **Batch options) -> Batch


def selectors_driver(mails: Any, host: str, port: int, cafile: str, **options: Any) -> Any:
    context = ssl.create_default_context(cafile=cafile)
    return selectors_client.run(mails, host, port, context, **options)


def trio_driver(mails: Any, host: str, port: int, cafile: str, **options: Any) -> Any:
    context = ssl.create_default_context(cafile=cafile)
    return trio.run(lambda: trio_client.run(mails, host, port, context, **options))


def gevent_driver(mails: Any, host: str, port: int, cafile: str, **options: Any) -> Any:
    [batch] = gevent_client.run_many([mails], host, port, cafile, **options)
    return batch


DRIVERS: dict[str, Driver] = {
    "selectors": selectors_driver,
    "trio": trio_driver,
    "gevent": gevent_driver,
}


def run_in_thread(driver: Driver, *args: Any, timeout: float = 30.0, **options: Any) -> Any:
    """The driver's Batch; a driver that hangs fails here, after ``timeout``."""
    failure: list[BaseException] = []
    result: list[Any] = []

    def target() -> None:
        try:
            result.append(driver(*args, **options))
        except BaseException as error:
            failure.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "the driver hung"
    if failure:
        raise failure[0]
    return result[0]


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
        batch = run_in_thread(
            DRIVERS[name],
            batch_mails,
            "localhost",
            server.port,
            CA_FILE,
            user="ann",
            password="secret",
        )
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
        started = time.monotonic()
        batch = run_in_thread(
            DRIVERS[name], mails("example.com", 1), "localhost", server.port, CA_FILE, config=config
        )
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
    port, cafile = servers.ports["submission"], servers.cafile
    batch = run_in_thread(
        DRIVERS[name], batch_mails, "localhost", port, cafile, user=user, password=password
    )
    assert batch.auth_error is None
    assert batch.closed is not None and batch.closed.error is None
    assert [type(outcome) for outcome in batch.outcomes] == [smtp.MessageAccepted] * 3
    for mail in batch_mails:
        (stored,) = servers.mail.wait(mail.recipients[0].split("@")[0])
        assert mail.body.split(b"\r\n\r\n")[1] in stored.replace(b"\n", b"\r\n")


@pytest.mark.parametrize("name", list(DRIVERS))
def test_refused_credentials_hold_the_whole_batch_back(name: str) -> None:
    with SMTPTestServer(tls=True, users={"ann": "secret"}) as server:
        batch = run_in_thread(
            DRIVERS[name],
            mails("example.com", 2),
            "localhost",
            server.port,
            CA_FILE,
            user="ann",
            password="wrong",
        )
        verbs = [record.line.split()[0].upper() for record in server.commands]
    assert batch.auth_error is not None and batch.auth_error.code == 535
    assert batch.outcomes == []
    assert batch.closed == smtp.ConnectionClosed(error=None, unsent=tuple(batch.transactions))
    assert "MAIL" not in verbs and verbs[-1] == "QUIT"
