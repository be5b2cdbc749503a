"""The public API's static types: what ``mypy --strict`` tells a user about their own code.

A small user file with five mistakes a run would only report late (or never) must get exactly
those five errors, on their lines, and nothing for the correct calls around them. The TypedDicts
must name exactly what the run-time tables accept, so the two cannot drift.
"""

from __future__ import annotations

import importlib
import os
import re
import typing
from pathlib import Path

import pytest

from rawsmtp import _message
from rawsmtp.config import _options, _typing

ROOT = Path(__file__).resolve().parent.parent

# Each line marked "# error: <code>" must get exactly that error; no other line may get one.
USER_CODE = """\
import asyncio
import email.message
import io

import rawsmtp
import rawsmtp.aio

pool = rawsmtp.SMTPPool(host="smtp.example.com", port=587, max_connections=2, rateLimit=10)
rawsmtp.SMTPPool(port="587")  # error: arg-type
rawsmtp.SMTPPool(hots="x")  # error: call-arg
pool.send(b"...", {"from": "ann@example.com", "to": ["bob@example.com"], "dsn": {"ret": "HDRS"}})
pool.send(b"...", {"from": "ann@example.com", "too": "bob@example.com"})  # error: arg-type
pool.send(12345)  # error: arg-type
pool.send(email.message.EmailMessage()).result()
pool.send(io.BytesIO(b"..."), rawsmtp.Envelope(mail_from="", rcpt_to=["bob@example.com"]))
pool.send([b"chunk", b"chunk"], rawsmtp.Envelope(mail_from="a@b.c", rcpt_to="bob@example.com"))
rawsmtp.create_transport("smtp://localhost", max_connections=3)
rawsmtp.create_transport("smtp://localhost", max_conections=3)  # error: call-arg


async def main() -> rawsmtp.SendResult:
    async with rawsmtp.aio.SMTPPool(host="localhost", ignore_tls=True) as apool:
        return await apool.send("From: a@b.c\\r\\n\\r\\nhi\\r\\n", {"from": "a@b.c", "to": "b@c.d"})


asyncio.run(main())
"""


def _expected(code: str) -> dict[int, str]:
    marks = (re.search(r"# error: (\S+)", line) for line in code.splitlines())
    return {number: mark.group(1) for number, mark in enumerate(marks, 1) if mark}


def _mypy_api() -> typing.Any:
    if os.environ.get("CI") == "true":  # under CI a missing mypy is a failure, never a skip
        return importlib.import_module("mypy.api")
    return pytest.importorskip("mypy.api")


def test_mypy_strict_reports_exactly_the_mistakes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = _mypy_api()
    user = tmp_path / "user.py"
    user.write_text(USER_CODE, encoding="utf-8")
    monkeypatch.setenv("MYPYPATH", str(ROOT))  # this checkout's rawsmtp, not an installed one
    stdout, stderr, _ = api.run(
        [
            "--strict",
            "--follow-imports=silent",
            "--show-error-codes",
            "--no-error-summary",
            "--cache-dir",
            str(tmp_path / "cache"),
            str(user),
        ]
    )
    errors = re.findall(r"user\.py:(\d+): error: .*\[([\w-]+)\]$", stdout, re.MULTILINE)
    assert {int(line): code for line, code in errors} == _expected(USER_CODE), stdout + stderr
    assert len(errors) == 5, stdout


def test_the_user_file_marks_five_mistakes() -> None:
    assert len(_expected(USER_CODE)) == 5


def test_pool_options_name_every_option_spelling() -> None:
    assert set(_typing.PoolOptions.__annotations__) == set(_options._SPELLINGS)


def test_the_envelope_dict_names_every_accepted_key() -> None:
    assert set(_typing.EnvelopeDict.__annotations__) == _message._ENVELOPE_KEYS
    assert set(_typing.DSNDict.__annotations__) == _message._DSN_KEYS


def test_the_typed_dicts_are_all_optional() -> None:
    for typed_dict in (_typing.PoolOptions, _typing.EnvelopeDict, _typing.DSNDict):
        assert typed_dict.__required_keys__ == frozenset(), typed_dict
