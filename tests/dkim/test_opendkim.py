"""Every signature checked by OpenDKIM too: RSA of 1024, 2048 and 4096 bits and Ed25519, both
canonicalizations, the awkward messages of test_sign, a 100 MB file signed as the pool signs it
(tampered with too, to see OpenDKIM fail them), and a message signed four ways as Postfix
delivered it.

The ``opendkim`` daemon runs in verify mode on a UNIX socket, reading the public keys from a
``TestPublicKeys`` file (no DNS), and this module feeds it messages over the milter protocol as
an MTA would, asking for header values with their leading whitespace (SMFIP_HDR_LEADSPC, as
Postfix does): ``opendkim -t`` cannot check a simple-canonicalized header whose value does not
start with exactly one space, because without that flag OpenDKIM rewrites it to one space (a
work-around for old sendmail), and Debian 12's ``opendkim-testmsg`` fails every input in
``dkim_chunk()`` with "Syntax error", CR LF or LF alike."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest
from conftest import Servers
from helpers.dkim import records
from helpers.smtp import unique
from test_sign import BODIES, CANONICALIZATIONS, HEADERS, KEY_NAMES, signer

import rawsmtp
from rawsmtp import Envelope
from rawsmtp._message import prepare_message
from rawsmtp.dkim import Signatures
from rawsmtp.dkim._canon import header_fields

OPENDKIM = shutil.which("opendkim") or shutil.which("opendkim", path="/usr/sbin:/sbin")
# One result per signature in the Authentication-Results field OpenDKIM adds, top first.
_RESULT = re.compile(rb"\bdkim=(\w+)[^;]*?\bheader\.s=([^\s;]+)")

# The milter protocol, version 6 (libmilter's mfdef.h).
_VERSION, _ALL_ACTIONS, _HDR_LEADSPC = 6, 0x1FF, 0x100000
_BODY_CHUNK = 65535
_ADD_HEADER, _INSERT_HEADER = b"h", b"i"
_FINAL = {b"a": "accept", b"c": "continue", b"r": "reject", b"t": "tempfail", b"d": "discard"}


class Milter:
    """One message's milter session with OpenDKIM, as the MTA side."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(str(path))
        self.send(b"O", struct.pack(">III", _VERSION, _ALL_ACTIONS, _HDR_LEADSPC))
        command, data = self.read()
        assert command == b"O", command
        assert struct.unpack(">III", data[:12])[2] & _HDR_LEADSPC, "leading spaces not kept"

    def send(self, command: bytes, data: bytes = b"") -> None:
        self.sock.sendall(struct.pack(">I", len(data) + 1) + command + data)

    def read(self) -> tuple[bytes, bytes]:
        (size,) = struct.unpack(">I", self._exactly(4))
        packet = self._exactly(size)
        return packet[:1], packet[1:]

    def step(self, command: bytes, data: bytes = b"") -> None:
        """A command OpenDKIM must let through ("continue")."""
        self.send(command, data)
        reply, _ = self.read()
        assert reply == b"c", f"OpenDKIM answered {command!r} with {reply!r}"

    def _exactly(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            assert chunk, "OpenDKIM closed the milter connection"
            data += chunk
        return data

    def close(self) -> None:
        with contextlib.suppress(OSError):  # OpenDKIM hung up first: that failure is reported
            self.send(b"Q")
        self.sock.close()


def _message_parts(file: BinaryIO) -> tuple[bytes, Iterator[bytes]]:
    """The header block of a CR LF message (up to its blank line) and its body in chunks."""
    block = b""
    while (line := file.readline()) != b"\r\n":
        assert line, "no blank line after the header block"
        block += line
    return block, iter(lambda: file.read(_BODY_CHUNK), b"")


def milter_verify(socket_path: Path, file: BinaryIO) -> list[tuple[str, str]]:
    """OpenDKIM's (selector, result) for each DKIM-Signature of the message read from ``file``."""
    milter = Milter(socket_path)
    try:
        # A client outside OpenDKIM's InternalHosts (127.0.0.1), whose mail it verifies; only
        # a name in the protocol, nothing connects to it.
        milter.step(b"C", b"relay.example.net\0" + b"4" + struct.pack(">H", 25) + b"192.0.2.1\0")
        milter.step(b"M", b"<sender@example.com>\0")
        milter.step(b"R", b"<rcpt@example.org>\0")
        block, body = _message_parts(file)
        for _, raw in header_fields(block):
            name, _, value = raw[:-2].partition(b":")
            milter.step(b"L", name + b"\0" + value + b"\0")
        milter.step(b"N")
        for chunk in body:
            milter.step(b"B", chunk)
        milter.send(b"E")
        added = []
        while (reply := milter.read())[0] not in _FINAL:
            command, data = reply
            if command in (_ADD_HEADER, _INSERT_HEADER):
                name, value, _ = (data[4:] if command == _INSERT_HEADER else data).split(b"\0")
                if name.lower() == b"authentication-results":
                    added.append(value)
        assert reply[0] in (b"a", b"c"), f"OpenDKIM ended with {_FINAL[reply[0]]}"
    finally:
        milter.close()
    assert len(added) == 1, f"OpenDKIM added {len(added)} Authentication-Results fields"
    return [(s.decode(), result.decode()) for result, s in _RESULT.findall(added[0])]


@pytest.fixture(scope="module")
def opendkim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The milter socket of an OpenDKIM daemon that knows every test key of example.com."""
    if OPENDKIM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("opendkim is not installed under CI=true (apt-get install opendkim)")
        pytest.skip("opendkim is not installed (apt-get install opendkim)")
    home = tmp_path_factory.mktemp("opendkim")
    keys = home / "keys"
    keys.write_text("".join(f"{n} {t}\n" for n, t in records(map(signer, KEY_NAMES)).items()))
    sock, log = home / "milter.sock", home / "opendkim.log"
    (home / "opendkim.conf").write_text(
        f"Mode v\nSyslog no\nSocket local:{sock}\nTestPublicKeys {keys}\n"
        "MaximumSignaturesToVerify 10\n"  # three by default; the rest come out "neutral"
    )
    with log.open("wb") as output:
        daemon = subprocess.Popen(
            [OPENDKIM, "-f", "-x", str(home / "opendkim.conf")], stdout=output, stderr=output
        )
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert daemon.poll() is None, f"opendkim exited: {log.read_text()}"
            assert time.monotonic() < deadline, f"no milter socket after 30 s: {log.read_text()}"
            time.sleep(0.05)
        yield sock
    finally:
        daemon.kill()  # nothing to flush, and its SIGTERM handling takes 4 s
        daemon.wait(timeout=30)


def check(opendkim: Path, message: bytes, tmp_path: Path) -> list[tuple[str, str]]:
    path = tmp_path / "message.eml"
    path.write_bytes(message)
    with path.open("rb") as file:
        return milter_verify(opendkim, file)


@pytest.mark.parametrize("key", KEY_NAMES)
@pytest.mark.parametrize("canonicalization", CANONICALIZATIONS)
def test_every_key_and_canonicalization_verifies(
    opendkim: Path, key: str, canonicalization: str, tmp_path: Path
) -> None:
    one = signer(key, canonicalization=canonicalization, oversign=True, expiration=3600)
    signed = one.sign(HEADERS["plain"] + b"\r\n" + BODIES["mixed-line-ends"])
    assert check(opendkim, signed, tmp_path) == [(key, "pass")]
    for forged in (signed.replace(b"four", b"f0ur"), signed.replace(b": hi", b": ho")):
        assert check(opendkim, forged, tmp_path) == [(key, "fail")]


COMBINATIONS = [(h, b) for h in HEADERS for b in BODIES]


@pytest.mark.parametrize(("head", "body"), COMBINATIONS, ids=[f"{h}-{b}" for h, b in COMBINATIONS])
@pytest.mark.parametrize("canonicalization", ["relaxed/relaxed", "simple/simple"])
def test_awkward_messages_verify(
    opendkim: Path, head: str, body: str, canonicalization: str, tmp_path: Path
) -> None:
    rsa, ed = (
        signer("rsa2048", canonicalization=canonicalization),
        signer("ed25519", canonicalization=canonicalization),
    )
    message = HEADERS[head] + (b"\r\n" if head != "bare-lf" else b"\n") + BODIES[body]
    signed = ed.sign(rsa.sign(message))
    assert check(opendkim, signed, tmp_path) == [("ed25519", "pass"), ("rsa2048", "pass")]


def test_a_100_mb_file_signed_as_the_pool_signs_it(opendkim: Path, tmp_path: Path) -> None:
    size = 100 * 1024 * 1024
    source = tmp_path / "big.eml"
    line = b"Lorem ipsum dolor sit amet,  consectetur\t adipiscing elit   \r\n"
    with source.open("wb") as file:
        file.write(HEADERS["utf8"].replace(b"\n", b"\r\n") + b"\r\n")
        block = line * 16384
        for _ in range(-(-size // len(block))):  # at least 100 MB
            file.write(block)
        file.write(b"\r\n\r\n \r\n")
    signers = [signer("rsa4096"), signer("ed25519", canonicalization="simple/simple")]
    envelope = Envelope(mail_from="zoe@example.com", rcpt_to=("j@example.org",))
    signed = tmp_path / "signed.eml"
    with source.open("rb") as file, signed.open("wb") as out:
        for chunk in Signatures(signers)(prepare_message(file, envelope)).chunks():
            out.write(chunk)
    source.unlink()
    assert signed.stat().st_size > size
    with signed.open("rb") as file:
        assert milter_verify(opendkim, file) == [("rsa4096", "pass"), ("ed25519", "pass")]
    with signed.open("r+b") as file:  # one byte of the last line changed
        file.seek(-5, os.SEEK_END)
        file.write(b"x")
    with signed.open("rb") as file:
        assert milter_verify(opendkim, file) == [("rsa4096", "fail"), ("ed25519", "fail")]
    signed.unlink()


def test_what_postfix_delivered_verifies(opendkim: Path, servers: Servers, tmp_path: Path) -> None:
    signers = [
        signer("rsa1024", canonicalization="simple/simple"),
        signer("rsa2048", oversign=True),
        signer("rsa4096", canonicalization="relaxed/simple"),
        signer("ed25519", canonicalization="simple/relaxed"),
    ]
    box = unique("opendkim")
    message = (
        # Date and Message-ID given: Postfix would add them, and oversigned names must stay absent.
        HEADERS["long-folded"].replace(b"To: ", b"To: %s@example.test,\r\n " % box.encode())
        + "Subject: Grüße — ünïcödé\r\nDate: Tue, 01 Jan 2030 00:00:00 +0000\r\n".encode()
        + b"Message-ID: <%s@example.com>\r\n\r\n" % box.encode()
        + BODIES["mixed-line-ends"]
        + BODIES["dots"]
        + BODIES["trailing-blank-lines"]
    )
    options = {"host": "localhost", "tls": {"ca_file": servers.cafile}, "dkim": signers}
    with rawsmtp.SMTPPool(port=servers.ports["postfix"], **options) as smtp:
        envelope = {"from": "alice@example.com", "to": [f"{box}@example.test"]}
        smtp.send(message, envelope).result(timeout=30)
    [stored] = servers.mail.wait(box)
    assert b"Delivered-To:" in stored.split(b"DKIM-Signature:")[0]  # Postfix's fields on top
    wire = stored.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert check(opendkim, wire, tmp_path) == [
        ("rsa1024", "pass"),
        ("rsa2048", "pass"),
        ("rsa4096", "pass"),
        ("ed25519", "pass"),
    ]
