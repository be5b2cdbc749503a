"""Verifying DKIM signatures with dkimpy, offline: the keys reach it through ``dnsfunc=``."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from rawsmtp.dkim import DKIMSigner


def records(signers: Iterable[DKIMSigner]) -> dict[str, str]:
    return {signer.dns_name: signer.dns_record() for signer in signers}


def dkimpy_verify(message: bytes, keys: dict[str, str]) -> list[bool]:
    """dkimpy's verdict on each DKIM-Signature of ``message``, top first."""
    dkim = pytest.importorskip("dkim")
    table = {name.lower().rstrip("."): value.encode("ascii") for name, value in keys.items()}

    def dnsfunc(name: bytes | str, timeout: int = 5) -> bytes:
        text = name.decode("ascii") if isinstance(name, bytes) else name
        return table.get(text.lower().rstrip("."), b"")

    checker = dkim.DKIM(message)
    count = sum(
        1
        for line in _header_block(message).split(b"\n")
        if line.lower().startswith(b"dkim-signature:")
    )
    verdicts = []
    for index in range(count):
        try:
            verdicts.append(bool(checker.verify(idx=index, dnsfunc=dnsfunc)))
        except dkim.DKIMException:  # some failures (a body hash mismatch) raise
            verdicts.append(False)
    return verdicts


def _header_block(message: bytes) -> bytes:
    return message.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
