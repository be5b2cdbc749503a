"""One set of client tests, run through rawsmtp.SMTPPool against every server we know.

Targets: the project's own SMTPTestServer (plain, STARTTLS, implicit TLS, AUTH, LMTP) and the
real servers of tests/servers/setup.sh (Postfix plain, STARTTLS, implicit TLS, submission with
Dovecot SASL, Dovecot LMTP). A target says how to reach the server, which recipient it refuses,
and where a delivered message can be read back. The peculiarities found are in README.md here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from helpers.smtp import unique

import rawsmtp
from rawsmtp.testing import CA_FILE, Fault, SMTPTestServer

DOMAIN = "example.test"
# Postfix refuses reject@ at RCPT (rcpt_access); Dovecot accepts every RCPT and refuses quota@
# after the data (1-byte quota). The test server is scripted to do the same.
REJECT = f"reject@{DOMAIN}"
OVER_QUOTA = f"quota@{DOMAIN}"
TEST_SERVER_FAULTS = [
    Fault(on="RCPT", match=REJECT, reply="550 5.1.1 no such user"),
    Fault(on="DATA_END", match=OVER_QUOTA, reply="552 5.2.2 Mailbox is full"),
]
ALICE = (f"alice@{DOMAIN}", "alice-secret")


@dataclass
class Target:
    options: dict[str, Any]
    reject: str  # a recipient this server refuses (at RCPT, or after the data for LMTP)
    fetch: Callable[[str, int], list[bytes]]  # (address, count) -> stored messages, waiting
    server: SMTPTestServer | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def pool(self, factory: Callable[..., Any], **options: Any) -> Any:
        return factory(**{**self.options, **options})


def _test_server_target(start: Callable[..., SMTPTestServer], kind: str) -> Target:
    server_options: dict[str, Any] = {"faults": TEST_SERVER_FAULTS}
    pool_options: dict[str, Any] = {"host": "127.0.0.1", "tls": {"ca_file": CA_FILE}}
    if kind == "plain":
        pool_options = {"host": "127.0.0.1", "ignore_tls": True}
    elif kind == "starttls":
        server_options["tls"] = True
        pool_options["require_tls"] = True
    elif kind == "implicit-tls":
        server_options["implicit_tls"] = True
        pool_options["secure"] = True
    elif kind == "auth":
        server_options.update(tls=True, users=dict([ALICE]), require_auth=True)
        pool_options["auth"] = ALICE
    elif kind == "lmtp":
        server_options["lmtp"] = True
        pool_options = {"host": "127.0.0.1", "ignore_tls": True, "lmtp": True}
    server = start(**server_options)
    pool_options["port"] = server.port

    def fetch(address: str, count: int) -> list[bytes]:
        deadline = time.monotonic() + 15
        while True:
            found = [m.data for m in server.messages if address in m.rcpt_to]
            if len(found) >= count or time.monotonic() > deadline:
                assert len(found) >= count, f"{len(found)} of {count} messages for {address}"
                return found
            time.sleep(0.02)

    reject = OVER_QUOTA if kind == "lmtp" else REJECT
    return Target(options=pool_options, reject=reject, fetch=fetch, server=server)


def _real_target(servers: Any, kind: str) -> Target:
    tls = {"ca_file": servers.cafile}
    store = servers.lmtp_mail if kind == "dovecot-lmtp" else servers.mail

    def fetch(address: str, count: int) -> list[bytes]:
        found: list[bytes] = store.wait(address.partition("@")[0], count)
        return found

    options: dict[str, Any]
    if kind == "postfix-plain":
        options = {"host": servers.host, "port": servers.ports["postfix"], "ignore_tls": True}
    elif kind == "postfix-starttls":
        options = {"host": "localhost", "port": servers.ports["postfix"], "tls": tls}
        options["require_tls"] = True
    elif kind == "postfix-implicit-tls":
        options = {"host": "localhost", "port": servers.ports["postfix_tls"], "tls": tls}
        options["secure"] = True
    elif kind == "postfix-submission":
        options = {"host": "localhost", "port": servers.ports["submission"], "tls": tls}
        options["auth"] = servers.users["alice"]
    else:
        assert kind == "dovecot-lmtp"
        options = {"host": servers.host, "port": servers.ports["lmtp"], "lmtp": True}
        options["ignore_tls"] = True
        return Target(options=options, reject=OVER_QUOTA, fetch=fetch)
    return Target(options=options, reject=REJECT, fetch=fetch)


TEST_SERVER_KINDS = ["plain", "starttls", "implicit-tls", "auth", "lmtp"]
REAL_KINDS = [
    "postfix-plain",
    "postfix-starttls",
    "postfix-implicit-tls",
    "postfix-submission",
    "dovecot-lmtp",
]


@pytest.fixture(
    params=[f"testserver-{kind}" for kind in TEST_SERVER_KINDS] + REAL_KINDS,
)
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    name: str = request.param
    if name.startswith("testserver-"):
        factory = request.getfixturevalue("smtp_server_factory")
        yield _test_server_target(factory, name.removeprefix("testserver-"))
    else:
        yield _real_target(request.getfixturevalue("servers"), name)


def message(recipient: str, text: str) -> bytes:
    head = f"From: <sender@example.org>\r\nTo: <{recipient}>\r\nSubject: conformance\r\n\r\n"
    return (head + f"{text}\r\n.a line that starts with a dot\r\n").encode()


def envelope(*recipients: str) -> dict[str, Any]:
    return {"from": "sender@example.org", "to": list(recipients)}


def test_a_message_is_delivered(target: Target, pool_factory: Callable[..., Any]) -> None:
    recipient = f"{unique('conf')}@{DOMAIN}"
    marker = unique("marker")
    with target.pool(pool_factory) as pool:
        result = pool.send(message(recipient, marker), envelope(recipient)).result(timeout=30)
    assert result.accepted == (recipient,)
    assert result.rejected == ()
    assert result.response.startswith("250")
    [stored] = target.fetch(recipient, 1)
    # Maildir deliveries (Postfix pipe, Dovecot) store LF line ends; the test server keeps CRLF.
    body = stored.replace(b"\r\n", b"\n")
    assert marker.encode() + b"\n.a line that starts with a dot\n" in body


def test_a_rejected_recipient_is_reported_among_accepted_ones(
    target: Target, pool_factory: Callable[..., Any]
) -> None:
    recipient = f"{unique('conf')}@{DOMAIN}"
    with target.pool(pool_factory) as pool:
        future = pool.send(message(recipient, "partial"), envelope(recipient, target.reject))
        result = future.result(timeout=30)
    assert result.accepted == (recipient,)
    assert result.rejected == (target.reject,)
    error = result.rejected_errors[target.reject]
    assert isinstance(error, rawsmtp.SMTPResponseError)
    assert error.code in (550, 552)
    target.fetch(recipient, 1)


def test_twenty_messages_over_three_connections(
    target: Target, pool_factory: Callable[..., Any]
) -> None:
    recipient = f"{unique('conf20')}@{DOMAIN}"
    with target.pool(pool_factory, max_connections=3) as pool:
        futures = [
            pool.send(message(recipient, f"seq={index}"), envelope(recipient))
            for index in range(20)
        ]
        results = [future.result(timeout=30) for future in futures]
    assert all(result.accepted == (recipient,) for result in results)
    stored = target.fetch(recipient, 20)
    assert sorted(int(raw.split(b"seq=")[1].split(b"\n")[0].strip()) for raw in stored) == list(
        range(20)
    )
    if target.server is not None:
        assert 1 <= target.server.connections <= 3


def test_verify(target: Target, pool_factory: Callable[..., Any]) -> None:
    with target.pool(pool_factory) as pool:
        assert pool.verify() is True
