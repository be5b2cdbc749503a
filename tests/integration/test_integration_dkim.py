"""DKIM through the pool to the real Postfix: the message as delivered to the maildir (with the
headers Postfix adds above it) verifies, for RSA and Ed25519 signatures together."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from conftest import Servers
from helpers.dkim import dkimpy_verify, records
from helpers.smtp import unique

import rawsmtp
from rawsmtp.dkim import DKIMSigner

pytest.importorskip("dkim")

KEYS = Path(__file__).parent.parent / "dkim" / "keys"


@pytest.mark.parametrize("source", ["bytes", "file"])
def test_postfix_delivers_a_message_that_verifies(servers: Servers, source: str) -> None:
    signers = [
        DKIMSigner("example.org", "rsa", (KEYS / "rsa2048.pem").read_text(), oversign=True),
        DKIMSigner(
            "example.org",
            "ed",
            (KEYS / "ed25519.pem").read_text(),
            canonicalization="simple/simple",
        ),
    ]
    box = unique("dkim")
    message = (
        # Date and Message-ID given: Postfix adds them when missing, and an oversigned name
        # that was absent when signing must stay absent.
        f"From: Sender <s@example.org>\nTo: <{box}@example.test>\nSubject: Grüße, signed\n"
        f"Date: Tue, 01 Jan 2030 00:00:00 +0000\nMessage-ID: <{box}@example.org>\n\n"
        ".dot line\r\ntrailing space   \n\n\n"
    ).encode()
    options = {"host": "localhost", "tls": {"ca_file": servers.cafile}, "dkim": signers}
    with rawsmtp.SMTPPool(port=servers.ports["postfix"], **options) as smtp:
        smtp.send(message if source == "bytes" else io.BytesIO(message)).result(timeout=30)
    [stored] = servers.mail.wait(box)
    assert b"Delivered-To:" in stored.split(b"DKIM-Signature:")[0]  # Postfix's fields on top
    wire = stored.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert dkimpy_verify(wire, records(signers)) == [True, True]
