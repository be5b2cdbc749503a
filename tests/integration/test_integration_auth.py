"""Authentication through the real pool against Postfix with Dovecot SASL.

Every success is proven by the message arriving in the mail store. The submission port (5870)
offers AUTH only after STARTTLS; ``submission_plain`` (5871) offers it without TLS. XOAUTH2 and
OAUTHBEARER tokens are checked by Dovecot against tests/servers/oauth_introspect.py, which knows
the "good" and "renewed" tokens of servers.json and refuses everything else.
"""

from __future__ import annotations

import base64
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest
from conftest import Servers
from helpers.smtp import unique

import rawsmtp
from rawsmtp.auth import _select

PASSWORD_MECHANISMS = ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"]
WRONG_PASSWORD = "wrong-pässword-SECRET"


def message(localpart: str, marker: str) -> bytes:
    return (
        f"From: <sender@example.org>\r\nTo: <{localpart}@example.test>\r\n"
        f"Subject: auth test {marker}\r\n\r\nbody {marker}\r\n"
    ).encode()


def pool(servers: Servers, **options: Any) -> rawsmtp.SMTPPool:
    settings: dict[str, Any] = {
        "host": "localhost",
        "port": servers.ports["submission"],
        "tls": {"ca_file": servers.cafile},
        "connection_timeout": 20.0,
        "greeting_timeout": 20.0,
        "socket_timeout": 20.0,
    }
    settings.update(options)
    return rawsmtp.SMTPPool(**settings)


def send_and_check(servers: Servers, **options: Any) -> None:
    """One message through a fresh pool; it must arrive in the mail store."""
    localpart, marker = unique("auth"), unique("marker")
    with pool(servers, **options) as smtp:
        result = smtp.send(message(localpart, marker)).result(timeout=30)
    assert result.accepted == (f"{localpart}@example.test",)
    (stored,) = servers.mail.wait(localpart)
    assert f"body {marker}".encode() in stored


def send_expecting_failure(servers: Servers, **options: Any) -> rawsmtp.SMTPError:
    localpart = unique("fail")
    with pool(servers, **options) as smtp:
        future = smtp.send(message(localpart, "never"))
        with pytest.raises(rawsmtp.SMTPError) as failure:
            future.result(timeout=30)
    assert servers.mail.messages(localpart) == []
    return failure.value


class RecordingScram(_select.Scram):
    """Scram that keeps its client-first message, to check the GS2 header on the wire."""

    sent: ClassVar[list[bytes]] = []

    def initial_response(self) -> bytes:
        first = super().initial_response()
        RecordingScram.sent.append(first)
        return first


@pytest.fixture
def recorded_scram(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    RecordingScram.sent = []
    monkeypatch.setattr(_select, "Scram", RecordingScram)
    yield RecordingScram.sent


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, Capture]]:
    logger = logging.getLogger(f"rawsmtp.test.{unique('log')}")
    handler = Capture()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield logger, handler
    logger.removeHandler(handler)


# --- passwords -------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["alice", "bob"])  # bob's password is "pässwörd-ü€"
@pytest.mark.parametrize("mechanism", PASSWORD_MECHANISMS)
def test_password_mechanism_delivers(
    servers: Servers, mechanism: str, who: str, recorded_scram: list[bytes]
) -> None:
    send_and_check(servers, auth=servers.users[who], auth_method=mechanism)
    if mechanism.startswith("SCRAM"):
        # TLS is up, so the client has tls-server-end-point data; Dovecot 2.3 offers no -PLUS,
        # so the client says "y" (could bind, server did not offer it), which Dovecot accepts.
        assert [first[:3] for first in recorded_scram] == [b"y,,"]


def test_default_mechanism_is_scram_sha_256(servers: Servers, recorded_scram: list[bytes]) -> None:
    send_and_check(servers, auth={"user": servers.users["bob"][0], "pass": servers.users["bob"][1]})
    assert len(recorded_scram) == 1 and recorded_scram[0].startswith(b"y,,n=bob@example.test,r=")


@pytest.mark.parametrize("how", ["secure", "get_socket"])
def test_implicit_tls_gives_scram_the_certificate(
    servers: Servers, recorded_scram: list[bytes], how: str
) -> None:
    # Port 4650 is TLS from the first byte: through rawsmtp's own TLS layer (secure=True), or
    # through an ssl.SSLSocket a get_socket hook hands over. Either way the client has the
    # certificate for tls-server-end-point, which the "y" flag shows.
    port = servers.ports["postfix_tls"]
    options: dict[str, Any] = {"port": port, "secure": True}
    if how == "get_socket":
        context = ssl.create_default_context(cafile=servers.cafile)

        def connect(host: str, _: int) -> tuple[socket.socket, bool]:
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)
            return context.wrap_socket(raw, server_hostname=host), True

        options["get_socket"] = connect
    send_and_check(servers, auth=servers.users["bob"], auth_method="SCRAM-SHA-256", **options)
    assert [first[:3] for first in recorded_scram] == [b"y,,"]


@pytest.mark.parametrize("mechanism", [*PASSWORD_MECHANISMS, None])
def test_wrong_password_is_a_typed_error_without_the_password(
    servers: Servers, mechanism: str | None
) -> None:
    user = servers.users["alice"][0]
    error = send_expecting_failure(servers, auth=(user, WRONG_PASSWORD), auth_method=mechanism)
    assert type(error) is rawsmtp.SMTPAuthenticationError
    assert error.code == 535 and error.enhanced_code == "5.7.8"
    secret_forms = [WRONG_PASSWORD, base64.b64encode(WRONG_PASSWORD.encode()).decode()]
    for text in (str(error), repr(error), str(error.detail)):
        assert not any(secret in text for secret in secret_forms)


# --- OAuth2 tokens ---------------------------------------------------------------------------


class Provider:
    """A token provider that counts its calls; ``answer(renew, call_number)`` gives the token."""

    def __init__(
        self, answer: Callable[[bool, int], str | tuple[str, float]], delay: float = 0.05
    ) -> None:
        self.answer = answer
        self.delay = delay
        self.calls: list[bool] = []
        self._lock = threading.Lock()

    def __call__(self, renew: bool) -> str | tuple[str, float]:
        time.sleep(self.delay)  # a slow token endpoint widens any race between connections
        with self._lock:
            self.calls.append(renew)
            return self.answer(renew, len(self.calls))


def token_auth(servers: Servers, **secret: Any) -> dict[str, Any]:
    return {"user": servers.users["alice"][0], **secret}


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
def test_static_token_delivers(servers: Servers, mechanism: str) -> None:
    auth = token_auth(servers, access_token=servers.tokens["good"])
    send_and_check(servers, auth=auth, auth_method=mechanism)


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
def test_refused_token_is_renewed_once_and_delivers(servers: Servers, mechanism: str) -> None:
    provider = Provider(lambda renew, _: servers.tokens["renewed"] if renew else "expired-token")
    auth = token_auth(servers, token_provider=provider)
    send_and_check(servers, auth=auth, auth_method=mechanism)
    assert provider.calls == [False, True]


def test_token_refused_again_after_renewal_fails_with_the_servers_reason(
    servers: Servers,
) -> None:
    provider = Provider(lambda renew, n: f"bad-token-{n}")
    auth = token_auth(servers, token_provider=provider)
    error = send_expecting_failure(servers, auth=auth, auth_method="XOAUTH2")
    assert type(error) is rawsmtp.SMTPAuthenticationError
    assert error.code == 535 and error.enhanced_code == "5.7.8"
    assert error.detail is not None and '"status":"401"' in error.detail
    assert "bad-token" not in str(error) + repr(error) + error.detail
    assert provider.calls == [False, True]  # one retry only


def test_expiring_token_is_renewed_before_use(servers: Servers) -> None:
    # The provider says its first token has already expired: it is never sent.
    def answer(renew: bool, _: int) -> tuple[str, float]:
        if renew:
            return servers.tokens["renewed"], time.time() + 3600
        return "expired-token", time.time() - 1

    provider = Provider(answer)
    send_and_check(servers, auth=token_auth(servers, token_provider=provider))
    assert provider.calls == [False, True]


@pytest.mark.parametrize("expiry", [False, True], ids=["refused", "expires_at"])
def test_concurrent_connections_renew_the_token_once(
    servers: Servers, capture: tuple[logging.Logger, Capture], expiry: bool
) -> None:
    def answer(renew: bool, _: int) -> str | tuple[str, float]:
        token = servers.tokens["renewed"] if renew else "expired-token"
        if not expiry:
            return token  # the server refuses "expired-token"
        return token, time.time() + (3600 if renew else -1)

    # The first answer is slow, so all three connections are waiting for it (and get it).
    provider = Provider(answer, delay=0.3)
    logger, log = capture
    boxes = [unique("conc") for _ in range(6)]
    with pool(
        servers,
        auth=token_auth(servers, token_provider=provider),
        auth_method="XOAUTH2",
        max_connections=3,
        logger=logger,
    ) as smtp:
        futures = [smtp.send(message(box, box)) for box in boxes]
        for future in futures:
            future.result(timeout=30)
    for box in boxes:
        servers.mail.wait(box)
    assert provider.calls == [False, True]
    refused = [line for line in log.lines if "renewing the token" in line]
    if expiry:
        assert refused == []  # renewed before use: the expired token was never sent
    else:
        assert len(refused) >= 2  # several connections were refused, one renewal served all


# --- transport rules -------------------------------------------------------------------------


def test_no_auth_before_starttls_is_a_clear_error(servers: Servers) -> None:
    # Postfix's submission port offers AUTH only after STARTTLS; without TLS the client must
    # not fall back to sending unauthenticated.
    error = send_expecting_failure(servers, auth=servers.users["alice"], ignore_tls=True)
    assert type(error) is rawsmtp.SMTPAuthenticationError
    assert "offers no mechanism" in str(error) and "STARTTLS" in str(error)
    assert error.code is None


def test_clear_text_auth_to_loopback_is_allowed(servers: Servers) -> None:
    send_and_check(
        servers, port=servers.ports["submission_plain"], auth=servers.users["bob"], ignore_tls=True
    )


def remote_name_socket(servers: Servers) -> Callable[[str, int], socket.socket]:
    """A get_socket hook reaching the local server under a name that is not loopback."""

    def connect(host: str, port: int) -> socket.socket:
        assert host == "mail.example.test"
        return socket.create_connection(("127.0.0.1", servers.ports["submission_plain"]))

    return connect


def test_clear_text_auth_to_a_remote_name_is_refused_before_credentials_are_sent(
    servers: Servers, capture: tuple[logging.Logger, Capture]
) -> None:
    logger, log = capture
    error = send_expecting_failure(
        servers,
        host="mail.example.test",
        port=servers.ports["submission_plain"],
        auth=servers.users["alice"],
        ignore_tls=True,
        get_socket=remote_name_socket(servers),
        logger=logger,
        debug=True,
    )
    assert type(error) is rawsmtp.SMTPAuthenticationError
    assert "allow_insecure_auth" in str(error)
    client_lines = [line for line in log.lines if " C: " in line]
    assert any("EHLO" in line for line in client_lines)  # the session got that far...
    assert not any(" C: AUTH" in line for line in client_lines)  # ...and AUTH never went out


def test_clear_text_auth_to_a_remote_name_when_allowed(servers: Servers) -> None:
    send_and_check(
        servers,
        host="mail.example.test",
        port=servers.ports["submission_plain"],
        auth=servers.users["alice"],
        ignore_tls=True,
        allow_insecure_auth=True,
        get_socket=remote_name_socket(servers),
    )


# --- logs ------------------------------------------------------------------------------------


def secret_forms(user: str, secret: str, mechanism: str) -> list[str]:
    """The secret as text and every base64 form the mechanisms put on the wire."""
    raw = [secret.encode(), user.encode()]  # LOGIN sends the user name as a line of its own
    if mechanism == "PLAIN":
        raw.append(f"\0{user}\0{secret}".encode())
    if mechanism == "XOAUTH2":
        raw.append(f"user={user}\x01auth=Bearer {secret}\x01\x01".encode())
    return [secret] + [base64.b64encode(data).decode() for data in raw]


@pytest.mark.parametrize(
    ("mechanism", "kind"),
    [
        ("PLAIN", "password"),
        ("LOGIN", "password"),
        ("CRAM-MD5", "password"),
        ("SCRAM-SHA-256", "password"),
        ("XOAUTH2", "token"),
        ("PLAIN", "wrong password"),
        ("LOGIN", "wrong password"),
        ("XOAUTH2", "refused token"),
    ],
)
def test_debug_logs_contain_no_secret(
    servers: Servers, capture: tuple[logging.Logger, Capture], mechanism: str, kind: str
) -> None:
    logger, log = capture
    user, password = servers.users["bob"]
    if kind == "password":
        secret, auth = password, (user, password)
    elif kind == "wrong password":
        secret, auth = WRONG_PASSWORD, (user, WRONG_PASSWORD)
    elif kind == "token":
        user = servers.users["alice"][0]
        secret = servers.tokens["good"]
        auth = token_auth(servers, access_token=secret)
    else:
        user, secret = servers.users["alice"][0], "refused-token-SECRET"
        auth = token_auth(servers, token_provider=lambda renew: secret)
    options = {"auth": auth, "auth_method": mechanism, "logger": logger, "debug": True}
    if kind.startswith(("wrong", "refused")):
        send_expecting_failure(servers, **options)
    else:
        send_and_check(servers, **options)
    assert any(" C: STARTTLS" in line for line in log.lines)  # TLS came before AUTH...
    auth_lines = [i for i, line in enumerate(log.lines) if f" C: AUTH {mechanism}" in line]
    starttls = next(i for i, line in enumerate(log.lines) if " C: STARTTLS" in line)
    assert auth_lines and min(auth_lines) > starttls  # ...and AUTH was logged, redacted
    forms = secret_forms(user, secret, mechanism)
    leaks = [line for line in log.lines if any(form in line for form in forms)]
    assert leaks == []
