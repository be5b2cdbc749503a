"""AUTH fallback: the next mechanism after 504/534/538, never after 535 or a server that failed
to prove itself. Through the sans-I/O core, then a pool against the test server."""

from __future__ import annotations

import base64

import pytest

import rawsmtp
from rawsmtp import SMTPAuthenticationError
from rawsmtp.auth import Credentials, Login, Plain, Scram, select_mechanisms
from rawsmtp.protocol import (
    NEED_DATA,
    Authenticated,
    AuthenticationFailed,
    ClientConfig,
    ClientConnection,
    Event,
)
from rawsmtp.protocol._sasl import MECHANISM_REFUSED, SASLMechanism
from rawsmtp.testing import Fault, SMTPTestServer

ALICE = Credentials(user="alice", password="secret")
SCRAM_FIRST = b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"


def events(client: ClientConnection) -> list[Event]:
    found = []
    while (event := client.next_event()) is not NEED_DATA:
        found.append(event)
    return found


def authenticating(*mechanisms: SASLMechanism) -> tuple[ClientConnection, bytes]:
    client = ClientConnection(
        ClientConfig(local_hostname="client.example", tls_active=True), now=0.0
    )
    client.receive_data(b"220 mx ESMTP\r\n250-mx\r\n250 AUTH SCRAM-SHA-1 PLAIN LOGIN\r\n", 0.0)
    events(client)
    client.data_to_send(0.0)
    client.authenticate(*mechanisms)
    return client, client.data_to_send(0.0)


def reply(client: ClientConnection, line: bytes) -> bytes:
    client.receive_data(line + b"\r\n", 0.0)
    return client.data_to_send(0.0)


def test_the_refusal_codes() -> None:
    assert frozenset({504, 534, 538}) == MECHANISM_REFUSED


@pytest.mark.parametrize(
    "refusal",
    [
        b"504 5.5.4 Unrecognized authentication type",
        b"534 5.7.9 Mechanism too weak",
        b"538 5.7.11 Encryption required for requested authentication mechanism",
    ],
)
def test_core_moves_to_the_next_mechanism(refusal: bytes) -> None:
    client, first = authenticating(Plain(ALICE), Login(ALICE))
    assert first.startswith(b"AUTH PLAIN ")
    assert reply(client, refusal) == b"AUTH LOGIN\r\n"
    assert events(client) == []  # the refusal is not reported: the exchange goes on
    assert (
        reply(client, b"334 " + base64.b64encode(b"Username:"))
        == base64.b64encode(b"alice") + b"\r\n"
    )
    reply(client, b"334 " + base64.b64encode(b"Password:"))
    reply(client, b"235 2.7.0 ok")
    assert [type(e) for e in events(client)] == [Authenticated]


def test_core_reports_the_last_refusal_when_none_is_left() -> None:
    client, _ = authenticating(Plain(ALICE), Login(ALICE))
    assert reply(client, b"504 5.5.4 no PLAIN") == b"AUTH LOGIN\r\n"
    assert reply(client, b"538 5.7.11 no LOGIN either") == b""
    (failed,) = events(client)
    assert isinstance(failed, AuthenticationFailed)
    assert failed.error.code == 538 and failed.error.enhanced_code == "5.7.11"


@pytest.mark.parametrize(
    "line", [b"535 5.7.8 bad credentials", b"454 4.7.0 try later", b"501 5.5.2 syntax"]
)
def test_core_never_falls_back_after_a_failed_login(line: bytes) -> None:
    client, _ = authenticating(Plain(ALICE), Login(ALICE))
    assert reply(client, line) == b""  # no AUTH LOGIN: another try would be another failed login
    (failed,) = events(client)
    assert isinstance(failed, AuthenticationFailed) and failed.error.code == int(line[:3])


def test_core_never_falls_back_after_a_bad_scram_signature() -> None:
    scram = Scram("SHA-1", ALICE, nonce="fyko+d2lbbFgONRv9qkxdawL")
    client, _ = authenticating(scram, Plain(ALICE))
    reply(client, b"334 " + base64.b64encode(SCRAM_FIRST))
    assert (
        reply(client, b"334 " + base64.b64encode(b"v=" + base64.b64encode(b"x" * 20))) == b"*\r\n"
    )
    # A server that answers the cancel with a "mechanism refused" code gets no second try.
    assert reply(client, b"504 5.5.4 what cancel") == b""
    (failed,) = events(client)
    assert isinstance(failed, AuthenticationFailed) and "signature" in str(failed.error)


def test_select_mechanisms_orders_every_usable_offered_one() -> None:
    names = [
        m.name
        for m in select_mechanisms(
            frozenset({"LOGIN", "PLAIN", "CRAM-MD5", "XOAUTH2", "SCRAM-SHA-256"}),
            ALICE,
            preferred=None,
            token=None,
            host="h",
            port=None,
        )
    ]
    assert names == ["SCRAM-SHA-256", "PLAIN", "LOGIN", "CRAM-MD5"]
    chosen = select_mechanisms(
        frozenset({"LOGIN", "PLAIN"}), ALICE, preferred="login", token=None, host="h", port=None
    )
    assert [m.name for m in chosen] == ["LOGIN"]  # a chosen auth_method has no fallback


# --- a pool against the test server ----------------------------------------------------------

MESSAGE = b"From: alice@example.com\r\nTo: bob@example.com\r\n\r\nhi\r\n"


def send(server: SMTPTestServer, **options: object) -> rawsmtp.SendResult:
    with rawsmtp.SMTPPool(
        host=server.host, port=server.port, ignore_tls=True, auth=("alice", "secret"), **options
    ) as pool:
        return pool.send(MESSAGE).result(timeout=15)


def auth_lines(server: SMTPTestServer) -> list[str]:
    return [c.line.split()[1] for c in server.commands if c.line.upper().startswith("AUTH")]


@pytest.mark.parametrize("code", ["504 5.5.4", "534 5.7.9", "538 5.7.11"])
def test_pool_falls_back_to_login(code: str) -> None:
    faults = [Fault(on="AUTH", match="PLAIN", reply=f"{code} not this one")]
    with SMTPTestServer(users={"alice": "secret"}, faults=faults) as server:
        send(server)
        assert auth_lines(server) == ["PLAIN", "LOGIN"]
        assert server.messages[0].auth_user == "alice"


def test_pool_never_falls_back_after_535() -> None:
    faults = [Fault(on="AUTH", match="PLAIN", reply="535 5.7.8 Authentication credentials invalid")]
    with SMTPTestServer(users={"alice": "secret"}, faults=faults) as server:
        with pytest.raises(SMTPAuthenticationError) as info:
            send(server, max_retries=0)
        assert info.value.code == 535
        assert auth_lines(server) == ["PLAIN"]
        assert server.messages == []


def test_pool_reports_the_last_refusal() -> None:
    faults = [Fault(on="AUTH", reply="504 5.5.4 Unrecognized authentication type")]
    with SMTPTestServer(users={"alice": "secret"}, faults=faults) as server:
        with pytest.raises(SMTPAuthenticationError) as info:
            send(server, max_retries=0)
        assert info.value.code == 504
        assert auth_lines(server) == ["PLAIN", "LOGIN"]


def test_pool_auth_method_has_no_fallback() -> None:
    faults = [Fault(on="AUTH", match="LOGIN", reply="504 5.5.4 no")]
    with SMTPTestServer(users={"alice": "secret"}, faults=faults) as server:
        with pytest.raises(SMTPAuthenticationError) as info:
            send(server, max_retries=0, auth_method="LOGIN")
        assert info.value.code == 504 and auth_lines(server) == ["LOGIN"]
