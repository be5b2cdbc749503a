"""``rawsmtp send`` interrupted with Ctrl-C against a slow server, and resumed with ``--journal``.

The CLI runs as a subprocess (SIGINT goes to it alone) against rawsmtp.testing's server, whose
final replies are delayed so messages are in flight when the signal arrives. The report must
match what the server received exactly, and a rerun with the journal must send each remaining
file once and none twice. Every wait has a timeout, so a hang fails the test.
"""

from __future__ import annotations

import email.parser
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from rawsmtp.testing import Fault, SMTPTestServer

ROOT = Path(__file__).resolve().parents[2]
FILES = 40  # more than the pool holds in flight (2 connections x a CHUNKING window of 9)


def _write_files(folder: Path) -> dict[str, str]:
    """FILES messages; returns subject -> absolute path."""
    folder.mkdir()
    by_subject = {}
    for number in range(1, FILES + 1):
        path = folder / f"{number:02d}.eml"
        subject = f"message-{number}"
        path.write_bytes(
            f"From: ann@cli.test\r\nTo: bob@cli.test\r\nSubject: {subject}\r\n\r\nhi\r\n".encode()
        )
        by_subject[subject] = str(path)
    return by_subject


def _start(server: SMTPTestServer, folder: Path, journal: Path) -> subprocess.Popen[str]:
    argv = [
        *(sys.executable, "-m", "rawsmtp", "send", "--json", "--max-connections", "2"),
        *("--url", f"smtp://127.0.0.1:{server.port}?ignoreTLS=true"),
        *("--journal", str(journal), str(folder)),
    ]
    return subprocess.Popen(
        argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(process: subprocess.Popen[str]) -> tuple[int, list[dict[str, Any]]]:
    try:
        out, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    records = [json.loads(line) for line in out.splitlines()]
    assert records and records[-1]["type"] == "summary", (out, err)
    return process.returncode, records


def _paths(records: list[dict[str, Any]], status: str) -> set[str]:
    return {r["path"] for r in records if r["type"] == "message" and r["status"] == status}


def _received(server: SMTPTestServer, by_subject: dict[str, str]) -> Counter[str]:
    parser = email.parser.BytesHeaderParser()
    return Counter(by_subject[parser.parsebytes(m.data)["Subject"]] for m in server.messages)


def _interrupt_after(server: SMTPTestServer, process: subprocess.Popen[str], count: int) -> None:
    server.wait_for_messages(count, timeout=30)
    process.send_signal(signal.SIGINT)


def _check_summary(records: list[dict[str, Any]]) -> None:
    summary = records[-1]
    counts = {s: len(_paths(records, s)) for s in ("delivered", "failed", "unknown")}
    counts["not_attempted"] = len(_paths(records, "not_attempted"))
    assert (summary["sent"], summary["failed"]) == (counts["delivered"], counts["failed"])
    assert (summary["unknown"], summary["not_attempted"]) == (
        counts["unknown"],
        counts["not_attempted"],
    )
    assert summary["total"] == sum(counts.values())


def _journaled(journal: Path) -> dict[str, str]:
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    return {line["path"]: line["status"] for line in lines}


def _rerun(server: SMTPTestServer, folder: Path, journal: Path, skipped: set[str]) -> set[str]:
    status, records = _finish(_start(server, folder, journal))
    assert status == 0
    delivered = _paths(records, "delivered")
    assert not delivered & skipped
    assert records[-1]["total"] == FILES - len(skipped)
    return delivered


def test_one_ctrl_c_lets_in_flight_finish_and_reports_exactly(tmp_path: Path) -> None:
    by_subject = _write_files(tmp_path / "mail")
    journal = tmp_path / "journal"
    with SMTPTestServer(faults=[Fault(on="DATA_END", delay=0.3)]) as server:
        process = _start(server, tmp_path / "mail", journal)
        _interrupt_after(server, process, 3)
        status, records = _finish(process)

        assert status == 130
        delivered = _paths(records, "delivered")
        received = _received(server, by_subject)
        assert set(received) == delivered  # every delivery reported, nothing reported unsent
        assert _paths(records, "failed") == _paths(records, "unknown") == set()
        not_attempted = _paths(records, "not_attempted")
        assert {str(Path(p).resolve()) for p in delivered | not_attempted} == set(
            by_subject.values()
        )
        assert 3 <= len(delivered) < FILES  # in-flight finished; the rest never started
        _check_summary(records)
        assert _journaled(journal) == dict.fromkeys(delivered, "delivered")

        rest = _rerun(server, tmp_path / "mail", journal, delivered)
        received = _received(server, by_subject)
        assert set(received.values()) == {1}  # none twice
        assert set(received) == set(by_subject.values()) == delivered | rest  # the rest once


def test_a_second_ctrl_c_abandons_in_flight_as_unknown(tmp_path: Path) -> None:
    by_subject, journal = _write_files(tmp_path / "mail"), tmp_path / "journal"
    with SMTPTestServer(faults=[Fault(on="DATA_END", delay=1.5)]) as server:
        _interrupt_after(server, process := _start(server, tmp_path / "mail", journal), 1)
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        started = time.monotonic()
        status, records = _finish(process)
        assert time.monotonic() - started < 1.4  # did not wait for the in-flight replies

        assert status == 130
        delivered, unknown = _paths(records, "delivered"), _paths(records, "unknown")
        assert unknown  # the 1.5 s replies were still owed
        time.sleep(2)  # what was in flight may still arrive
        received = set(_received(server, by_subject))
        assert delivered <= received <= delivered | unknown
        _check_summary(records)
        assert _journaled(journal) == {
            **dict.fromkeys(delivered, "delivered"),
            **dict.fromkeys(unknown, "unknown"),
        }

        rest = _rerun(server, tmp_path / "mail", journal, delivered | unknown)
        counts = _received(server, by_subject)
        assert set(counts.values()) == {1}
        assert set(counts) - delivered - unknown == rest


@pytest.mark.parametrize("content", ["", "not json\n", '{"path": 1}\n{"status": "x"}\n'])
def test_a_damaged_journal_line_is_ignored(tmp_path: Path, content: str) -> None:
    from rawsmtp.cli._journal import Journal

    path = tmp_path / "journal"
    path.write_text(content + '{"path": "/a", "status": "delivered"}\n')
    journal = Journal(str(path))
    journal.record("/b", "unknown")
    journal.close()
    assert Journal(str(path)).recorded == {"/a": "delivered", "/b": "unknown"}
