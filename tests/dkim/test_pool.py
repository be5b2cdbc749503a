"""The dkim= option through the pools to rawsmtp.testing.SMTPTestServer: what the server stored
verifies, for every kind of message source; a stream is hashed in a pass with flat memory."""

from __future__ import annotations

import asyncio
import base64
import io
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.dkim import dkimpy_verify, records

import rawsmtp
import rawsmtp.aio
from rawsmtp import SMTPConfigError
from rawsmtp._message import prepare_message
from rawsmtp.dkim import DKIMSigner, Signatures
from rawsmtp.protocol import LocalProtocolError, to_crlf
from rawsmtp.testing import SMTPTestServer

pytest.importorskip("dkim")

KEYS = Path(__file__).with_name("keys")
RSA = DKIMSigner("example.com", "rsa", (KEYS / "rsa2048.pem").read_text(), oversign=True)
ED = DKIMSigner(
    "example.com", "ed", (KEYS / "ed25519.pem").read_text(), canonicalization="simple/simple"
)
MESSAGE = (
    b"From: Alice <alice@example.com>\nTo: bob@example.org\nBcc: secret@example.org\n"
    b"Subject: signed\n\n.a dot line\r\nbare CR\rend  \n\n"
)


def _sources() -> dict[str, object]:
    import email

    return {
        "bytes": MESSAGE,
        "str": MESSAGE.decode(),
        "file": io.BytesIO(MESSAGE),
        "iterable": iter([MESSAGE[:7], MESSAGE[7:40], MESSAGE[40:]]),
        "message": email.message_from_bytes(MESSAGE),
    }


@pytest.mark.parametrize("kind", list(_sources()))
def test_what_the_server_stored_verifies(smtp_server: SMTPTestServer, kind: str) -> None:
    with rawsmtp.SMTPPool(
        host=smtp_server.host, port=smtp_server.port, ignore_tls=True, dkim=[RSA, ED]
    ) as pool:
        pool.send(_sources()[kind]).result(timeout=30)
    stored = smtp_server.wait_for_messages(1)[0]
    assert stored.data.startswith(b"DKIM-Signature: v=1; a=rsa-sha256;")
    assert b"secret@" not in stored.data and "secret@example.org" in stored.rcpt_to
    assert dkimpy_verify(stored.data, records([RSA, ED])) == [True, True]


def test_the_asyncio_pool_signs_too(smtp_server: SMTPTestServer) -> None:
    async def main() -> None:
        pool = rawsmtp.aio.SMTPPool(
            host=smtp_server.host, port=smtp_server.port, ignore_tls=True, dkim=ED
        )
        try:
            await asyncio.wait_for(pool.send(MESSAGE), 30)
        finally:
            await asyncio.wait_for(pool.aclose(), 30)

    asyncio.run(main())
    assert dkimpy_verify(smtp_server.wait_for_messages(1)[0].data, records([ED])) == [True]


def test_a_retried_file_is_sent_with_the_same_signature(smtp_server: SMTPTestServer) -> None:
    prepared = Signatures([ED])(prepare_message(io.BytesIO(MESSAGE), None))
    first, second = b"".join(prepared.chunks()), b"".join(prepared.chunks())
    assert first == second and first.startswith(b"DKIM-Signature:")
    # SIZE counts the octets sent, line ends normalised to CR LF (RFC 1870).
    assert prepared.size == len(to_crlf(first)) and prepared.restartable


def test_an_unseekable_stream_past_max_buffer_is_refused() -> None:
    small = DKIMSigner("example.com", "ed", (KEYS / "ed25519.pem").read_text(), max_buffer=1000)
    stream = iter([MESSAGE, b"x" * 2000])
    with pytest.raises(LocalProtocolError, match="max_buffer=1000 bytes"):
        prepare_message(stream, None, Signatures([small]))


def test_a_bad_option_fails_pool_creation_naming_it() -> None:
    with pytest.raises(SMTPConfigError, match="dkim: private_key:") as error:
        rawsmtp.SMTPPool(
            host="localhost", dkim={"domain": "example.com", "selector": "s", "private_key": "x"}
        )
    assert error.value.option == "dkim"


class _Lines(io.RawIOBase):
    """A seekable 100 MB message made up as it is read (nothing of it is ever held)."""

    LINE = b"Lorem ipsum dolor sit amet,  consectetur\t adipiscing elit   \r\n"

    def __init__(self, size: int) -> None:
        head = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: big\r\n\r\n"
        self.head, self.size, self.pos = head, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = (
            offset if whence == 0 else self.size + offset if whence == 2 else self.pos + offset
        )
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        count = min(len(buffer), self.size - self.pos)
        data = self._at(self.pos, count)
        buffer[:count] = data
        self.pos += count
        return count

    def _at(self, pos: int, count: int) -> bytes:
        if pos < len(self.head):
            return (self.head + self._body(0, count))[pos : pos + count]
        return self._body(pos - len(self.head), count)

    def _body(self, pos: int, count: int) -> bytes:
        line = self.LINE
        start = pos % len(line)
        repeat = line * ((start + count) // len(line) + 2)
        return repeat[start : start + count]


def _expected_relaxed_body(size: int) -> bytes:
    import hashlib

    head = len(b"From: a@example.com\r\nTo: b@example.org\r\nSubject: big\r\n\r\n")
    body_len = size - head
    line = _Lines.LINE
    whole, rest = divmod(body_len, len(line))
    canonical = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit\r\n"
    digest = hashlib.sha256()
    for _ in range(whole // 1000):
        digest.update(canonical * 1000)
    digest.update(canonical * (whole % 1000))
    partial = line[:rest]
    assert b"\n" not in partial
    tail = b" ".join(partial.split()) if partial.strip() else b""
    digest.update(tail + b"\r\n" if tail else b"")
    return digest.digest()


_MEASURE = """
import resource, sys
sys.path[:0] = [{tests!r}, {here!r}]
from test_pool import RSA, _Lines
from rawsmtp import Envelope
from rawsmtp._message import prepare_message
from rawsmtp.dkim import Signatures
envelope = Envelope(mail_from="a@example.com", rcpt_to=("b@example.org",))
Signatures([RSA])(prepare_message(_Lines(1024 * 1024), envelope))  # everything imported and warm
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
prepared = Signatures([RSA])(prepare_message(_Lines({size}), envelope))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(after - before)
print(next(prepared.chunks()).decode(), end="")
"""


def test_a_100_mb_file_is_hashed_in_flat_memory() -> None:
    size = 100 * 1024 * 1024
    here = Path(__file__).parent
    code = _MEASURE.format(tests=str(here.parent), here=str(here), size=size)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    growth_kb, field = done.stdout.split("\n", 1)
    assert int(growth_kb) < 8 * 1024, f"peak RSS grew by {growth_kb} kB"  # the file is 100 MB
    bh = field.replace("\r\n\t", "").split("bh=")[1].split(";")[0]
    assert base64.b64decode(bh) == _expected_relaxed_body(size)
