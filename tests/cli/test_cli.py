"""The ``rawsmtp`` command line: send, verify, demo, --version; exit statuses and output.

Most tests call ``main([...])`` in-process against rawsmtp.testing's server; one runs
``python -m rawsmtp demo`` as a subprocess, and one sends a directory to the real Postfix.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers.smtp import unique

import rawsmtp
from rawsmtp.__main__ import main
from rawsmtp.cli._progress import Progress, format_duration, render
from rawsmtp.testing import CA_FILE, Fault, SMTPTestServer

ServerFactory = Callable[..., SMTPTestServer]


def eml(sender: str, recipient: str, subject: str, body: str = "hello") -> bytes:
    return (
        f"From: {sender}\r\nTo: {recipient}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject}@cli.test>\r\n\r\n{body}\r\n"
    ).encode()


def write_emls(folder: Path, recipients: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, recipient in enumerate(recipients, 1):
        path = folder / f"{number:02d}.eml"
        path.write_bytes(eml("alice@cli.test", recipient, f"message-{number}"))
        paths.append(path)
    return paths


def url(server: SMTPTestServer, user: str | None = None) -> str:
    return f"smtp://{user + '@' if user else ''}127.0.0.1:{server.port}?ignoreTLS=true"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# -- demo ---------------------------------------------------------------------------------------


def test_demo_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "demo", "--count", "20")
    assert status == 0
    assert "sent 20, failed 0, unknown 0, not attempted 0 of 20 messages" in out
    assert "server received 20 messages" in out
    assert "sample envelope: MAIL FROM:<demo@rawsmtp.test>" in out
    assert "Subject:  rawsmtp demo message" in out


def test_demo_as_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rawsmtp", "demo", "--count", "20"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "server received 20 messages" in done.stdout
    assert "\r" not in done.stderr  # no progress bar when stderr is not a terminal


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--version")
    assert status == 0
    assert out.strip() == f"rawsmtp {rawsmtp.__version__}"


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys)
    assert status == 2
    assert "usage: rawsmtp" in err


# -- send ---------------------------------------------------------------------------------------


def test_send_directory(
    smtp_server_factory: ServerFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server_factory()
    recipients = ["bob@cli.test", "carol@cli.test", "dave@cli.test"]
    paths = write_emls(tmp_path / "outbox", recipients)
    status, out, err = run(capsys, "send", "--url", url(server), str(tmp_path / "outbox"))
    assert status == 0, err
    received = sorted(server.wait_for_messages(3), key=lambda m: m.rcpt_to)
    assert [m.rcpt_to for m in received] == [(r,) for r in recipients]
    assert {m.mail_from for m in received} == {"alice@cli.test"}
    assert [m.data for m in received] == [p.read_bytes() for p in paths]
    lines = out.splitlines()
    for path, recipient in zip(paths, recipients, strict=True):
        assert any(line.startswith(f"OK {path} -> accepted [{recipient}]") for line in lines)
    assert lines[-1].startswith("sent 3, failed 0, unknown 0, not attempted 0 of 3 messages in ")
    assert lines[-1].endswith("msg/s)")


def test_send_envelope_override_and_stdin(
    smtp_server_factory: ServerFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = smtp_server_factory()
    data = eml("alice@cli.test", "header-only@cli.test", "stdin")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    argv = ["send", "--url", url(server), "--from", "bounce@cli.test"]
    status, out, err = run(
        capsys, *argv, "--to", "x@cli.test,y@cli.test", "--to", "z@cli.test", "-"
    )
    assert status == 0, err
    (message,) = server.wait_for_messages(1)
    assert message.mail_from == "bounce@cli.test"
    assert message.rcpt_to == ("x@cli.test", "y@cli.test", "z@cli.test")
    assert message.data == data
    assert out.startswith("OK <stdin> -> accepted [x@cli.test, y@cli.test, z@cli.test]")


def test_send_maildir_reads_cur_and_new(
    smtp_server_factory: ServerFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server_factory()
    maildir = tmp_path / "Maildir"
    write_emls(maildir / "cur", ["one@cli.test"])
    write_emls(maildir / "new", ["two@cli.test"])
    (maildir / "tmp").mkdir()
    (maildir / "tmp" / "partial").write_bytes(b"not yet delivered")
    status, out, _ = run(capsys, "send", "--url", url(server), str(maildir))
    assert status == 0
    received = server.wait_for_messages(2)
    assert sorted(r for m in received for r in m.rcpt_to) == ["one@cli.test", "two@cli.test"]
    assert "sent 2, failed 0, unknown 0, not attempted 0 of 2" in out


def test_send_failing_recipient(
    smtp_server_factory: ServerFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server_factory(faults=[Fault(on="RCPT", match="bad@", reply="550 5.1.1 no")])
    good, bad = write_emls(tmp_path, ["good@cli.test", "bad@cli.test"])
    status, out, _ = run(capsys, "send", "--url", url(server), str(good), str(bad))
    assert status == 1
    (fail,) = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert fail.startswith(f"FAIL {bad}: SMTPRecipientsRefusedError 550 ")
    assert "5.1.1 no" in fail
    assert "sent 1, failed 1, unknown 0, not attempted 0 of 2 messages" in out
    assert [m.rcpt_to for m in server.wait_for_messages(1)] == [("good@cli.test",)]


def test_send_json(
    smtp_server_factory: ServerFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server_factory(faults=[Fault(on="RCPT", match="bad@", reply="550 5.1.1 no")])
    good, bad = write_emls(tmp_path, ["good@cli.test", "bad@cli.test"])
    status, out, _ = run(capsys, "send", "--json", "--url", url(server), str(good), str(bad))
    assert status == 1
    records = [json.loads(line) for line in out.splitlines()]
    by_path: dict[str, Any] = {r["path"]: r for r in records if r["type"] == "message"}
    assert by_path[str(good)]["ok"] is True
    assert by_path[str(good)]["accepted"] == ["good@cli.test"]
    assert by_path[str(good)]["message_id"] == "<message-1@cli.test>"
    assert by_path[str(good)]["response"].startswith("250")
    failed = by_path[str(bad)]
    assert failed["ok"] is False
    assert failed["error"] == "SMTPRecipientsRefusedError"
    assert (failed["code"], failed["enhanced_code"]) == (550, "5.1.1")
    assert failed["rejected"] == ["bad@cli.test"]
    summary = records[-1]
    assert summary["type"] == "summary"
    assert (summary["total"], summary["sent"], summary["failed"]) == (2, 1, 1)


def test_send_password_env_never_printed(
    smtp_server_factory: ServerFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    password = "s3cret-Pässword"
    server = smtp_server_factory(users={"alice": password}, require_auth=True)
    monkeypatch.setenv("CLI_TEST_PASSWORD", password)
    write_emls(tmp_path, ["bob@cli.test", "carol@cli.test"])
    argv = ["send", "--url", url(server, "alice"), "--password-env", "CLI_TEST_PASSWORD"]
    status, out, err = run(capsys, *argv, str(tmp_path))
    assert status == 0, err
    assert {m.auth_user for m in server.wait_for_messages(2)} == {"alice"}
    status, json_out, json_err = run(capsys, *argv, "--json", str(tmp_path))
    assert status == 0
    # A wrong password: the error is shown, the password still is not.
    monkeypatch.setenv("CLI_TEST_PASSWORD", password + "-wrong")
    status, bad_out, bad_err = run(capsys, *argv, str(tmp_path))
    assert status == 1
    assert "SMTPAuthenticationError" in bad_out
    for text in (out, err, json_out, json_err, bad_out, bad_err):
        assert "s3cret" not in text


def test_send_url_password_masked_in_errors(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "send", "--url", "smtp://u:hunter2@host:99999", "x.eml")
    assert status == 2
    assert "hunter2" not in out + err
    assert "bad port" in err


def test_send_user_without_password_and_no_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))  # not a TTY
    write_emls(tmp_path, ["bob@cli.test"])
    status, _, err = run(capsys, "send", "--url", "smtp://alice@127.0.0.1:1", str(tmp_path))
    assert status == 2
    assert "--password-env" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--url", "http://example.com"], "URL scheme must be smtp://, smtps:// or lmtp://"),
        (["--url", "smtp://h?maxConections=3"], "did you mean 'maxConnections'?"),
        (["--url", "smtp://h", "--password-env", "V"], "needs a user name in the URL"),
        (["--url", "smtp://h", "--to", "a b@x"], "address"),
        (["--url", "smtp://h", "--ca-file", "/nonexistent.pem"], "--ca-file"),
    ],
)
def test_send_usage_errors(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_emls(tmp_path, ["bob@cli.test"])
    status, out, err = run(capsys, "send", *argv, str(tmp_path))
    assert status == 2
    assert out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith("rawsmtp send: error: ")
    assert message in err
    assert "Traceback" not in err


def test_send_missing_path(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, _, err = run(capsys, "send", "--url", "smtp://h", str(tmp_path / "nope.eml"))
    assert status == 2
    assert "no such file or directory" in err


def test_send_argparse_error_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "send", "--url", "smtp://h", "--max-connections", "0", "x")
    assert status == 2
    assert "must be at least 1" in err


# -- verify -------------------------------------------------------------------------------------


def test_verify_starttls(
    smtp_server_factory: ServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server_factory(tls=True)
    argv = ["verify", "--url", f"smtp://localhost:{server.port}", "--ca-file", CA_FILE]
    status, out, _ = run(capsys, *argv)
    assert status == 0, out
    assert "greeting  220 " in out
    assert "PIPELINING" in out
    assert "CHUNKING" in out
    assert "STARTTLS" in out  # the TLS line says how
    assert "TLSv1.3" in out or "TLSv1.2" in out
    assert "cert      subject  commonName=localhost" in out
    assert "AUTH      not configured" in out


def test_verify_auth_result(
    smtp_server_factory: ServerFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = smtp_server_factory(users={"alice": "secret"})
    argv = ["verify", "--url", url(server, "alice"), "--password-env", "CLI_TEST_PASSWORD"]
    monkeypatch.setenv("CLI_TEST_PASSWORD", "secret")
    status, out, _ = run(capsys, *argv)
    assert status == 0, out
    assert "AUTH PLAIN LOGIN" in out
    assert "TLS       none (ignoreTLS)" in out
    assert "AUTH      ok (user alice)" in out
    monkeypatch.setenv("CLI_TEST_PASSWORD", "wrong")
    status, out, _ = run(capsys, *argv)
    assert status == 1
    assert "AUTH      failed for alice: SMTPAuthenticationError 535" in out


def test_verify_untrusted_certificate_fails(
    smtp_server_factory: ServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server_factory(tls=True, implicit_tls=True)
    status, out, _ = run(capsys, "verify", "--url", f"smtps://localhost:{server.port}")
    assert status == 1
    assert "error     SMTPTLSError" in out
    status, out, _ = run(
        capsys, "verify", "--insecure", "--url", f"smtps://localhost:{server.port}"
    )
    assert status == 0, out
    assert "(implicit)" in out
    assert "cert      sha256   " in out


def test_verify_no_server(capsys: pytest.CaptureFixture[str]) -> None:
    with SMTPTestServer() as server:
        port = server.port
    status, out, _ = run(capsys, "verify", "--url", f"smtp://127.0.0.1:{port}")
    assert status == 1
    assert "error     ConnectionRefusedError" in out


# -- the progress display -----------------------------------------------------------------------


def test_render_progress_line() -> None:
    line = render(sent=40, failed=10, total=100, elapsed=5.0, width=100)
    assert line.startswith("[" + "#" * 20 + "-" * 20 + "]")
    assert " 50/100  sent  40  failed  10     10.0 msg/s  ETA  0:05" in line
    assert len(render(sent=0, failed=0, total=7, elapsed=0.0, width=30)) < 30
    assert render(sent=7, failed=0, total=7, elapsed=1.0, width=80).rstrip().endswith("done")
    assert format_duration(3723) == "1:02:03"


def test_progress_draws_only_when_asked() -> None:
    ticks = iter(range(100))
    stream = io.StringIO()
    progress = Progress(3, stream, draw=True, clock=lambda: float(next(ticks)))
    progress.record(ok=True)
    progress.note("FAIL x: boom")
    progress.record(ok=False)
    progress.finish()
    text = stream.getvalue()
    assert "\r[" in text
    assert "FAIL x: boom\n" in text
    assert (progress.sent, progress.failed) == (1, 1)
    quiet = io.StringIO()
    silent = Progress(3, quiet, draw=False)
    silent.record(ok=True)
    silent.finish()
    assert quiet.getvalue() == ""


# -- the real Postfix ---------------------------------------------------------------------------


def test_send_directory_to_postfix(
    servers: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    localparts = [unique("cli") for _ in range(3)]
    write_emls(tmp_path / "outbox", [f"{local}@example.test" for local in localparts])
    argv = ["send", "--url", f"smtp://localhost:{servers.ports['postfix']}"]
    status, out, err = run(capsys, *argv, "--ca-file", servers.cafile, str(tmp_path / "outbox"))
    assert status == 0, out + err
    assert out.splitlines()[-1].startswith(
        "sent 3, failed 0, unknown 0, not attempted 0 of 3 messages"
    )
    for number, local in enumerate(localparts, 1):
        (raw,) = servers.mail.wait(local)
        assert f"Subject: message-{number}".encode() in raw
