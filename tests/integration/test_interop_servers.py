"""The same conformance list against other real servers: aiosmtpd and Node's smtp-server.

tests/servers/interop.sh starts them on 127.0.0.1 and writes their settings to
$RAWSMTP_SERVER_STATE/interop.json; each records what it accepts (the message bytes as received,
dot-unstuffed, and its envelope) to the directory named there, which these tests read. Without
the servers the tests skip, except under CI=true, where they fail (as the Postfix tests do).
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import _unavailable

import rawsmtp
from rawsmtp import SMTPAuthenticationError, SMTPCapabilityError, SMTPTLSError

pytestmark = pytest.mark.integration

STATE = Path(os.environ.get("RAWSMTP_SERVER_STATE", "/tmp/rawsmtp-servers"))  # as conftest's
ALICE, ALICE_PASS = "alice@example.test", "alice-secret"
BOB, BOB_PASS = "bob@example.test", "pässwörd-ü€"
WAIT = 60.0  # seconds for the last of a batch to be on disk


@dataclass(frozen=True)
class Server:
    name: str  # the recording's prefix: aiosmtpd, node-smtp, node-lmtp
    port: int
    lmtp: bool


@dataclass(frozen=True)
class Received:
    meta: dict[str, Any]
    data: bytes

    @property
    def mail_params(self) -> dict[str, Any]:
        """MAIL FROM parameters, whichever way the server recorded them."""
        params = self.meta["mail_params"]
        if isinstance(params, list):  # aiosmtpd: ["SIZE=66", "SMTPUTF8"]
            pairs = (p.partition("=") for p in params)
            return {key: value if sep else True for key, sep, value in pairs}
        return dict(params)


class Recordings:
    """What the servers wrote, found by each message's X-Interop-Id header."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._seen: dict[str, Received] = {}
        self._read: set[str] = set()

    def _scan(self) -> None:
        for name in os.listdir(self.directory):
            if not name.endswith(".json") or name in self._read:
                continue
            self._read.add(name)
            stem = self.directory / name[: -len(".json")]
            data = stem.with_suffix(".eml").read_bytes()
            meta = json.loads((self.directory / name).read_text(encoding="utf-8"))
            for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
                if line.lower().startswith(b"x-interop-id: "):
                    self._seen[line[14:].decode()] = Received(meta, data)

    def wait(self, ids: list[str], timeout: float = WAIT) -> list[Received]:
        deadline = time.monotonic() + timeout
        while True:
            self._scan()
            missing = [i for i in ids if i not in self._seen]
            if not missing:
                return [self._seen[i] for i in ids]
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{len(missing)} of {len(ids)} messages not recorded, e.g. {missing[0]}"
                )
            time.sleep(0.1)

    def absent(self, message_id: str) -> bool:
        time.sleep(0.3)
        self._scan()
        return message_id not in self._seen


@dataclass(frozen=True)
class Interop:
    config: dict[str, Any]
    recordings: Recordings


@pytest.fixture(scope="module")
def interop() -> Interop:
    path = STATE / "interop.json"
    if not path.exists():
        _unavailable(f"{path} missing; run tests/servers/interop.sh")
    config = json.loads(path.read_text(encoding="utf-8"))
    for key in ("aiosmtpd_port", "smtp_port", "lmtp_port"):
        try:
            socket.create_connection((config["host"], config[key]), timeout=5).close()
        except OSError as error:
            _unavailable(f"nothing on port {config[key]}: {error}")
    return Interop(config, Recordings(Path(config["dir"])))


SERVERS = {
    "aiosmtpd": ("aiosmtpd_port", False),
    "node-smtp": ("smtp_port", False),
    "node-lmtp": ("lmtp_port", True),
}


@pytest.fixture(params=list(SERVERS))
def server(request: pytest.FixtureRequest, interop: Interop) -> Server:
    key, lmtp = SERVERS[request.param]
    return Server(request.param, interop.config[key], lmtp)


def make_pool(interop: Interop, server: Server, **options: Any) -> rawsmtp.SMTPPool:
    settings: dict[str, Any] = {
        "host": interop.config["host"],
        "port": server.port,
        "lmtp": server.lmtp,
        "tls": {"ca_file": interop.config["cafile"]},
        "require_tls": True,
        "auth": (ALICE, ALICE_PASS),
    }
    return rawsmtp.SMTPPool(**(settings | options))


def message(body: bytes = b"Hello\r\n", *, headers: bytes = b"") -> tuple[str, bytes]:
    tag = uuid.uuid4().hex
    return tag, (
        b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: interop\r\n"
        + headers
        + f"X-Interop-Id: {tag}\r\n\r\n".encode()
        + body
    )


def send_one(interop: Interop, server: Server, data: bytes, **options: Any) -> rawsmtp.SendResult:
    with make_pool(interop, server, **options) as pool:
        return pool.send(data).result(timeout=30)


def _body(n: int) -> bytes:
    """Bodies that exercise the encoder: dot lines, an empty line, long lines, varied sizes."""
    lines = [b".leading dot", b"..two dots", b"", b"x" * (n % 900 + 1), b"."]
    lines += [f"line {i} of message {n}".encode() for i in range(n % 50)]
    return b"\r\n".join(lines) + b"\r\n"


def test_2000_messages_pipelined_byte_exact(interop: Interop, server: Server) -> None:
    sent = [message(_body(n)) for n in range(2000)]
    with make_pool(interop, server, max_connections=4) as pool:
        started = time.perf_counter()
        futures = [pool.send(data) for _, data in sent]
        results = [future.result(timeout=120) for future in futures]
        elapsed = time.perf_counter() - started
    received = interop.recordings.wait([tag for tag, _ in sent])
    assert all(r.accepted == ("bob@example.test",) for r in results)
    for (tag, data), got in zip(sent, received, strict=True):
        assert got.data == data, tag
        assert got.meta["tls"] is True and got.meta["user"] == ALICE
    rate = len(sent) / elapsed
    with (STATE / "interop" / "figures.txt").open("a", encoding="utf-8") as figures:
        figures.write(f"{server.name}: 2000 messages in {elapsed:.2f} s, {rate:.0f} msg/s\n")
    print(f"\n{server.name}: 2000 messages in {elapsed:.2f} s = {rate:.0f} msg/s")


def test_starttls_is_verified(interop: Interop, server: Server) -> None:
    tag, data = message()
    result = send_one(interop, server, data)
    (got,) = interop.recordings.wait([tag])
    assert got.meta["tls"] is True and "STARTTLS" not in result.capabilities  # asked after TLS
    # The certificate is for localhost/127.0.0.1: any other expected name must fail the handshake.
    other_tag, other = message()
    tls = {"ca_file": interop.config["cafile"], "servername": "mx.other.test"}
    with pytest.raises(SMTPTLSError):
        send_one(interop, server, other, tls=tls, max_retries=0)
    with pytest.raises(SMTPTLSError):  # no CA given: the system store does not know the test CA
        send_one(interop, server, other, tls={}, max_retries=0)
    assert interop.recordings.absent(other_tag)


@pytest.mark.parametrize(
    ("method", "auth"),
    [
        ("PLAIN", (ALICE, ALICE_PASS)),
        ("LOGIN", (ALICE, ALICE_PASS)),
        ("PLAIN", (BOB, BOB_PASS)),
        ("XOAUTH2", {"user": ALICE, "access_token": "ya29.interop-token"}),
    ],
)
def test_auth(interop: Interop, server: Server, method: str, auth: Any) -> None:
    tag, data = message()
    send_one(interop, server, data, auth=auth, auth_method=method)
    (got,) = interop.recordings.wait([tag])
    assert got.meta["user"] == (auth[0] if isinstance(auth, tuple) else auth["user"])


@pytest.mark.parametrize(
    ("method", "auth"),
    [
        ("PLAIN", (ALICE, "wrong")),
        ("LOGIN", (ALICE, "wrong")),
        ("XOAUTH2", {"user": ALICE, "access_token": "revoked"}),
    ],
)
def test_auth_refused(interop: Interop, server: Server, method: str, auth: Any) -> None:
    tag, data = message()
    with pytest.raises(SMTPAuthenticationError) as info:
        send_one(interop, server, data, auth=auth, auth_method=method, max_retries=0)
    assert info.value.code == 535
    assert interop.recordings.absent(tag)


def test_smtputf8(interop: Interop, server: Server) -> None:
    tag, data = message("Grüße, 你好\r\n".encode(), headers="Subject2: Grüße\r\n".encode())
    envelope = rawsmtp.Envelope(mail_from="jörg@example.test", rcpt_to=("用户@example.test",))
    with make_pool(interop, server) as pool:
        result = pool.send(data, envelope=envelope).result(timeout=30)
    (got,) = interop.recordings.wait([tag])
    assert result.accepted == ("用户@example.test",)
    assert got.data == data
    assert got.meta["mail_from"] == "jörg@example.test"
    assert got.meta["rcpt_to"] == ["用户@example.test"]
    assert got.mail_params.get("SMTPUTF8") is True


def test_8bitmime(interop: Interop, server: Server) -> None:
    tag, data = message("Grüße in Latin-1: \xe4\xf6\xfc\r\n".encode("latin-1"))
    send_one(interop, server, data)
    (got,) = interop.recordings.wait([tag])
    assert got.data == data and got.mail_params.get("BODY") == "8BITMIME"


def test_size(interop: Interop, server: Server) -> None:
    tag, data = message((b"y" * 998 + b"\r\n") * 5)  # lines of RFC 5321's longest
    result = send_one(interop, server, data)
    (got,) = interop.recordings.wait([tag])
    assert got.mail_params.get("SIZE") == str(len(data))
    limit = int(result.capabilities["SIZE"][0])
    assert limit == interop.config["size"]
    big_tag, big = message(b"z" * 998 + b"\r\n")
    big += (b"z" * 998 + b"\r\n") * (limit // 1000 + 1)
    with pytest.raises(SMTPCapabilityError):  # refused before a byte of it is sent
        send_one(interop, server, big, max_retries=0)
    assert interop.recordings.absent(big_tag)


def test_dsn(interop: Interop, server: Server) -> None:
    tag, data = message()
    envelope = {
        "from": ALICE,
        "to": [BOB],
        "dsn": {"ret": "HDRS", "envid": "env-42", "notify": ["SUCCESS", "FAILURE"], "orcpt": BOB},
    }
    with make_pool(interop, server) as pool:
        result = pool.send(data, envelope=envelope).result(timeout=30)
    (got,) = interop.recordings.wait([tag])
    if "DSN" in result.capabilities:  # smtp-server
        assert got.mail_params["RET"] == "HDRS" and got.mail_params["ENVID"] == "env-42"
        rcpt = got.meta["rcpt_params"][BOB]
        assert set(rcpt["NOTIFY"].split(",")) == {"SUCCESS", "FAILURE"}
        assert rcpt["ORCPT"] == f"rfc822;{BOB}"
        assert got.meta["dsn"]["envid"] == "env-42"
    else:  # aiosmtpd offers no DSN: the parameters are left out, the message still goes
        assert server.name == "aiosmtpd"
        assert "RET" not in got.mail_params and got.meta["rcpt_params"] == []


def test_lmtp_per_recipient_replies(interop: Interop) -> None:
    server = Server("node-lmtp", interop.config["lmtp_port"], True)
    tag, data = message()
    envelope = rawsmtp.Envelope(
        mail_from=ALICE, rcpt_to=(BOB, "full@example.test", "carl@example.test")
    )
    with make_pool(interop, server) as pool:
        result = pool.send(data, envelope=envelope).result(timeout=30)
    assert result.accepted == (BOB, "carl@example.test")
    assert result.rejected == ("full@example.test",)
    error = result.rejected_errors["full@example.test"]
    assert error.code == 452 and error.is_temporary
    (got,) = interop.recordings.wait([tag])
    assert got.data == data
