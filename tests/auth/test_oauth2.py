"""OAuth2 credentials: the token endpoint's request and reply (pure), then a pool that fetches
tokens from a local endpoint (stdlib http.server on 127.0.0.1) and logs in to the test server
with them over XOAUTH2."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import rawsmtp
from rawsmtp import SMTPConfigError, SMTPTokenError
from rawsmtp.auth import Credentials, OAuth2, credentials_from
from rawsmtp.auth._oauth2_client import parse_token_reply, token_request
from rawsmtp.testing import SMTPTestServer

USER = "ann@example.com"
MESSAGE = b"From: ann@example.com\r\nTo: bob@example.com\r\n\r\nhi\r\n"


# --- pure parts -------------------------------------------------------------------------------


def test_token_request_is_the_refresh_grant() -> None:
    oauth2 = OAuth2(user=USER, client_id="cid", client_secret="s3cret", refresh_token="rt")
    request = token_request(oauth2, "rt")
    assert request.url == "https://oauth2.googleapis.com/token"
    assert urllib.parse.parse_qs(request.body.decode()) == {
        "grant_type": ["refresh_token"],
        "refresh_token": ["rt"],
        "client_id": ["cid"],
        "client_secret": ["s3cret"],
    }
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"


@pytest.mark.parametrize(
    ("service", "url"),
    [
        ("gmail", "https://oauth2.googleapis.com/token"),
        ("Outlook365", "https://login.microsoftonline.com/common/oauth2/v2.0/token"),
        ("hotmail", "https://login.microsoftonline.com/common/oauth2/v2.0/token"),
        (None, "https://oauth2.googleapis.com/token"),
    ],
)
def test_token_url_by_service(service: str | None, url: str) -> None:
    assert OAuth2(user=USER, client_id="c", refresh_token="r", service=service).endpoint == url


def test_parse_token_reply() -> None:
    body = json.dumps({"access_token": "ya29.x", "expires_in": 3599, "token_type": "Bearer"})
    reply = parse_token_reply("u", 200, body.encode(), now=1000.0)
    assert (reply.access_token, reply.expires, reply.refresh_token) == ("ya29.x", 4599.0, None)
    rotated = parse_token_reply(
        "u", 200, b'{"access_token": "a", "expires_in": "60", "refresh_token": "r2"}', now=0.0
    )
    assert (rotated.expires, rotated.refresh_token) == (60.0, "r2")
    assert parse_token_reply("u", 200, b'{"access_token": "a"}', now=0.0).expires is None


@pytest.mark.parametrize(
    ("status", "body", "error", "description"),
    [
        (
            400,
            b'{"error": "invalid_grant", "error_description": "Token has been expired or revoked."}',
            "invalid_grant",
            "Token has been expired or revoked.",
        ),
        (401, b'{"error": "invalid_client"}', "invalid_client", None),
        (200, b'{"error": "invalid_scope"}', "invalid_scope", None),
        (502, b"<html>Bad gateway</html>", None, None),
        (200, b'{"token_type": "Bearer"}', None, None),
        (200, b'{"access_token": "a\\u0001b"}', None, None),
        (200, b"[]", None, None),
    ],
)
def test_token_endpoint_refusals_are_typed(
    status: int, body: bytes, error: str | None, description: str | None
) -> None:
    with pytest.raises(SMTPTokenError) as info:
        parse_token_reply("https://idp.example/token", status, body, now=0.0)
    assert isinstance(info.value, rawsmtp.SMTPAuthenticationError)
    assert (info.value.status, info.value.error, info.value.error_description) == (
        status,
        error,
        description,
    )
    assert "idp.example" in str(info.value)


def test_camelcase_dict_is_nodemailers_oauth2() -> None:
    credentials = credentials_from(
        {
            "type": "OAuth2",
            "user": USER,
            "clientId": "cid",
            "clientSecret": "secret",
            "refreshToken": "rt",
            "accessToken": "at",
            "expires": 1484314697598,  # Nodemailer's milliseconds
            "accessUrl": "https://idp.example/token",
        }
    )
    oauth2 = credentials.oauth2
    assert oauth2 is not None and credentials.user == USER
    assert (oauth2.client_id, oauth2.client_secret, oauth2.refresh_token) == ("cid", "secret", "rt")
    assert oauth2.expires_at == 1484314697.598 and oauth2.endpoint == "https://idp.example/token"
    assert credentials.uses_tokens and credentials.renewable
    assert "secret" not in repr(credentials) and "rt" not in repr(oauth2)
    assert credentials_from({"type": "login", "user": "u", "pass": "p"}).password == "p"


@pytest.mark.parametrize(
    "fields",
    [
        {"user": USER},
        {"user": USER, "refresh_token": "rt"},  # no client_id
        {"user": USER, "access_token": "at", "service": "nowhere"},
        {"user": USER, "access_token": "at", "token_url": "ftp://x/token"},
        {"user": "", "access_token": "at"},
        {"user": USER, "access_token": "at", "expires": "soon"},
    ],
)
def test_bad_oauth2(fields: dict[str, Any]) -> None:
    with pytest.raises(SMTPConfigError):
        OAuth2(**fields)


def test_bad_auth_dicts() -> None:
    with pytest.raises(SMTPConfigError):
        credentials_from({"type": "OAuth2", "user": USER, "accessToken": "a", "bogus": 1})
    with pytest.raises(SMTPConfigError):
        credentials_from({"type": "custom", "user": USER})
    with pytest.raises(SMTPConfigError):
        Credentials(user="other", oauth2=OAuth2(user=USER, access_token="a"))


# --- a local token endpoint -------------------------------------------------------------------


class Endpoint:
    """Issues tok-1, tok-2... for refresh token "rt-good" (400 invalid_grant otherwise), each
    living ``lifetime`` seconds; the SMTP server is told to accept only the latest."""

    def __init__(self, smtp: SMTPTestServer, lifetime: int = 3600) -> None:
        self.smtp, self.lifetime = smtp, lifetime
        self.requests: list[dict[str, list[str]]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                form = urllib.parse.parse_qs(
                    self.rfile.read(int(self.headers["Content-Length"])).decode()
                )
                endpoint.requests.append(form)
                if form.get("refresh_token") == ["rt-good"] and form.get("client_id") == ["cid"]:
                    token = f"tok-{len(endpoint.requests)}"
                    # The test server reads this dict live: only the newest token is valid.
                    endpoint.smtp.settings.tokens[USER] = token  # type: ignore[index]
                    status, body = 200, {"access_token": token, "expires_in": endpoint.lifetime}
                else:
                    status = 400
                    body = {"error": "invalid_grant", "error_description": "Bad Request"}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/token"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.thread.join(10)


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[SMTPTestServer, Endpoint]]:
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    with SMTPTestServer(tokens={USER: "nothing-issued-yet"}) as smtp:
        endpoint = Endpoint(smtp)
        try:
            yield smtp, endpoint
        finally:
            endpoint.close()


def pool(smtp: SMTPTestServer, auth: object, **options: Any) -> rawsmtp.SMTPPool:
    return rawsmtp.SMTPPool(host=smtp.host, port=smtp.port, ignore_tls=True, auth=auth, **options)


def test_pool_fetches_a_token_and_reports_it(servers: tuple[SMTPTestServer, Endpoint]) -> None:
    smtp, endpoint = servers
    seen: list[tuple[str, str, float | None]] = []
    oauth2 = OAuth2(
        user=USER,
        client_id="cid",
        client_secret="secret",
        refresh_token="rt-good",
        token_url=endpoint.url,
        on_token=lambda *args: seen.append(args),
    )
    before = time.time()
    with pool(smtp, oauth2, max_connections=3) as p:
        for future in [p.send(MESSAGE) for _ in range(6)]:
            future.result(timeout=15)
    assert len(endpoint.requests) == 1  # one fetch serves every connection (single-flight)
    assert endpoint.requests[0]["client_secret"] == ["secret"]
    assert [(u, t) for u, t, _ in seen] == [(USER, "tok-1")]
    assert seen[0][2] is not None and before + 3600 <= seen[0][2] <= time.time() + 3600
    assert {m.auth_user for m in smtp.messages} == {USER} and len(smtp.messages) == 6


def test_refused_token_is_renewed_once(servers: tuple[SMTPTestServer, Endpoint]) -> None:
    smtp, endpoint = servers
    auth = {
        "type": "OAuth2",
        "user": USER,
        "clientId": "cid",
        "refreshToken": "rt-good",
        "accessToken": "stale",
        "expires": (time.time() + 3600) * 1000,
        "accessUrl": endpoint.url,
    }
    with pool(smtp, auth) as p:
        p.send(MESSAGE).result(timeout=15)
    assert len(endpoint.requests) == 1
    tried = [c.line for c in smtp.commands if c.line.startswith("AUTH XOAUTH2")]
    assert len(tried) == 2 and smtp.messages[0].auth_user == USER


def test_expiring_token_is_renewed_before_use(servers: tuple[SMTPTestServer, Endpoint]) -> None:
    smtp, endpoint = servers
    endpoint.lifetime = 61  # within RENEW_MARGIN (60 s) one second after it is issued
    seen: list[str] = []
    oauth2 = OAuth2(
        user=USER,
        client_id="cid",
        refresh_token="rt-good",
        token_url=endpoint.url,
        on_token=lambda user, token, expires: seen.append(token),
    )
    with pool(smtp, oauth2, max_messages=1) as p:  # a new connection, so a new AUTH, each time
        p.send(MESSAGE).result(timeout=15)
        time.sleep(1.5)
        p.send(MESSAGE).result(timeout=15)
    assert seen == ["tok-1", "tok-2"]
    tokens = [c.line for c in smtp.commands if c.line.startswith("AUTH XOAUTH2")]
    assert len(tokens) == 2  # each token accepted at the first try: renewed before it was refused
    assert len(smtp.messages) == 2


def test_endpoint_refusal_fails_the_send(servers: tuple[SMTPTestServer, Endpoint]) -> None:
    smtp, endpoint = servers
    oauth2 = OAuth2(user=USER, client_id="cid", refresh_token="rt-revoked", token_url=endpoint.url)
    with pool(smtp, oauth2, max_retries=0) as p, pytest.raises(SMTPTokenError) as info:
        p.send(MESSAGE).result(timeout=15)
    assert (info.value.status, info.value.error, info.value.error_description) == (
        400,
        "invalid_grant",
        "Bad Request",
    )
    assert "rt-revoked" not in str(info.value)
    assert smtp.messages == [] and not [c for c in smtp.commands if c.line.startswith("AUTH")]


def test_unreachable_endpoint(servers: tuple[SMTPTestServer, Endpoint]) -> None:
    smtp, endpoint = servers
    url = endpoint.url
    endpoint.close()
    oauth2 = OAuth2(user=USER, client_id="cid", refresh_token="rt-good", token_url=url)
    with pool(smtp, oauth2, max_retries=0) as p, pytest.raises(SMTPTokenError) as info:
        p.send(MESSAGE).result(timeout=40)
    assert info.value.status is None and "unreachable" in str(info.value)
