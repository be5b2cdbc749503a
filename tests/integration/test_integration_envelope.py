"""Envelopes against the real Postfix (which offers SMTPUTF8): UTF-8 and quoted-display-name
mailboxes from every email policy reach exactly their mailboxes, with the sender as Return-Path.
"""

from __future__ import annotations

import email.header
import email.message
import email.policy
import uuid
from typing import Any

import pytest
from conftest import Servers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rawsmtp

POLICIES = [email.policy.default, email.policy.SMTP, email.policy.SMTPUTF8, email.policy.compat32]
# Local parts the maildir store finds as given (Postfix case-folds: no capitals, no ß); each
# gets a letter in front, since Postfix refuses an address that starts with '-'.
local = st.text(alphabet="abcxyz019-_äöüñ漢", min_size=1, max_size=8)
name = st.text(alphabet="ab XY,;:<>@.äöü", max_size=10).map(str.strip)
display = st.sampled_from(["bare", "quoted", "encoded"])


def _mailbox(text: str, address: str, form: str) -> str:
    if form == "bare" or not text:
        return address
    if form == "quoted":
        return '"' + email.utils.quote(text) + f'" <{address}>'
    return f"{email.header.Header(text, 'utf-8').encode()} <{address}>"


@pytest.fixture(scope="module")
def pool(servers: Servers) -> Any:
    with rawsmtp.SMTPPool(
        host="localhost", port=servers.ports["postfix"], tls={"ca_file": servers.cafile}
    ) as smtp:
        yield smtp


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.sampled_from(range(len(POLICIES))),
    local,
    st.lists(st.tuples(local, name, display), min_size=1, max_size=3),
)
def test_postfix_delivers_to_exactly_the_header_addresses(
    servers: Servers, pool: Any, policy: int, sender: str, recipients: list[tuple[str, str, str]]
) -> None:
    tag = uuid.uuid4().hex[:8]
    boxes = list(dict.fromkeys(f"r{box}-{tag}" for box, _, _ in recipients))
    message: email.message.Message = (
        email.message.Message()
        if POLICIES[policy] is email.policy.compat32
        else email.message.EmailMessage(policy=POLICIES[policy])
    )
    message["From"] = f"s{sender}@bücher.example"
    message["To"] = ", ".join(
        _mailbox(text, f"r{box}-{tag}@example.test", form) for box, text, form in recipients
    )
    message["Subject"] = f"envelope {tag}"
    message.set_payload("hello\n")
    result = pool.send(message).result(timeout=60)
    assert result.accepted == tuple(f"{box}@example.test" for box in boxes)
    for box in boxes:
        [stored] = servers.mail.wait(box)
        assert f"Return-Path: <s{sender}@bücher.example>".encode() in stored
        assert f"Delivered-To: {box}@example.test".encode() in stored
        assert f"{box}@example.test".encode() in stored.split(b"\n\n")[0]  # raw, no RFC 2047
