"""rawsmtp.testing.probe against real servers: Postfix, Dovecot LMTP, aiosmtpd (started here).

Each report's stable part (check -> status) is kept in fixtures/<server>.json; a change in what a
server does, or in what the probe concludes, shows as a diff. Set RAWSMTP_PROBE_UPDATE=1 to
rewrite the fixtures. The known differences between servers are asserted explicitly too.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Servers
from helpers.smtp import unique

from rawsmtp.cli._main import main
from rawsmtp.testing import ProbeReport, SMTPTestServer, probe

FIXTURES = Path(__file__).with_name("fixtures")


def check_fixture(name: str, report: ProbeReport) -> dict[str, str]:
    path = FIXTURES / f"{name}.json"
    stable = report.stable()
    if os.environ.get("RAWSMTP_PROBE_UPDATE") == "1":
        path.write_text(json.dumps(stable, indent=2) + "\n", encoding="utf-8")
    assert stable == json.loads(path.read_text(encoding="utf-8")), report.table()
    return stable


def run_with_timeout(url: str, **options: Any) -> ProbeReport:
    result: list[ProbeReport] = []
    thread = threading.Thread(target=lambda: result.append(probe(url, **options)), daemon=True)
    thread.start()
    thread.join(120)
    assert result, "the probe hung"
    return result[0]


def test_postfix(servers: Servers) -> None:
    localpart = unique("probe")
    report = run_with_timeout(
        f"smtp://{servers.host}:{servers.ports['postfix']}", recipient=f"{localpart}@example.test"
    )
    stable = check_fixture("postfix", report)
    assert stable["chunking"] == "yes" and stable["pipelining"] == "honoured"
    assert stable["starttls"] == "yes, injection discarded"
    # This Postfix takes a bare LF as a line end, so <LF>.<LF> ends the data (smuggling class).
    assert stable["lf.lf ends data"] == "ENDS DATA"


def test_postfix_submission_offers_auth_only_after_tls(servers: Servers) -> None:
    report = run_with_timeout(f"smtp://{servers.host}:{servers.ports['submission']}")
    stable = check_fixture("postfix-submission", report)
    assert stable["auth before tls"] == "none"
    assert "PLAIN" in stable["auth after tls"].split()


def test_dovecot_lmtp(servers: Servers) -> None:
    user, _ = servers.users["alice"]
    report = run_with_timeout(f"lmtp://{servers.host}:{servers.ports['lmtp']}", recipient=user)
    stable = check_fixture("dovecot-lmtp", report)
    assert stable["helo"] == "n/a" and stable["size"] == "no" and stable["chunking"] == "yes"


class Recorder:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 OK"


@pytest.fixture
def aiosmtpd_url() -> Iterator[tuple[str, Recorder]]:
    controller_module = pytest.importorskip("aiosmtpd.controller")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    recorder = Recorder()
    controller = controller_module.Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield f"smtp://127.0.0.1:{port}", recorder
    finally:
        controller.stop()


def test_aiosmtpd(aiosmtpd_url: tuple[str, Recorder]) -> None:
    url, recorder = aiosmtpd_url
    stable = check_fixture("aiosmtpd", run_with_timeout(url, recipient="null@example.test"))
    assert stable["chunking"] == "no" and stable["starttls"] == "no"
    assert stable["lf.lf ends data"] == "not end of data"
    assert recorder.messages == []  # the probe delivered nothing


def test_the_test_server_rejects_what_it_does_not_offer() -> None:
    with SMTPTestServer(capabilities=["PIPELINING", "SIZE 1000"], max_size=1000) as server:
        report = run_with_timeout(f"smtp://{server.host}:{server.port}", recipient="n@x.test")
        assert server.messages == []
    assert report.status("chunking") == "no" and report.status("size") == "enforced"
    assert report.status("smtputf8") == "no" and report.status("enhancedstatuscodes") == "no"


def test_cli_prints_a_table_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    with SMTPTestServer() as server:
        url = f"smtp://{server.host}:{server.port}"
        assert main(["probe", url]) == 0
        table = capsys.readouterr().out
        assert main(["probe", "--json", url]) == 0
        document = json.loads(capsys.readouterr().out)
    assert table.startswith(f"probe of {server.host}:{server.port}")
    assert "pipelining" in table and "honoured" in table
    checks = {check["name"]: check["status"] for check in document["checks"]}
    assert checks["chunking"] == "yes" and document["target"].endswith(str(server.port))
