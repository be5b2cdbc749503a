"""The server's queue id in a final reply (``250 2.0.0 Ok: queued as 4Xyz`` -> ``"4Xyz"``).

No RFC says where a server puts the id under which it queued a message, but the common servers
each have one fixed form, and the id is what their logs (and their operators) know the message
by. The forms are a table, tried in order on each line of the reply text, after the reply code
and the enhanced status code; nothing matching means no id (``None``), never an error.
"""

from __future__ import annotations

import re

__all__ = ["QUEUE_ID_FORMS", "parse_queue_id"]

# (server, pattern with the id as its one group). Anchored forms first: a looser one (Postfix's
# "queued as") must not pick a word out of another server's text.
QUEUE_ID_FORMS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (server, re.compile(pattern, re.IGNORECASE))
    for server, pattern in (
        # 250 2.0.0 OK  1700000000 x1-20020a05620a123400b00123abc.12 - gsmtp
        ("gmail", r"^OK\s+\d+\s+(\S+)\s+-\s+gsmtp\b"),
        # 250 2.6.0 <msgid> [InternalId=1234, Hostname=...] Queued mail for delivery
        ("microsoft", r"\[InternalId=(\d+)\b"),
        # 250 Ok 0100018c1a2b3c4d-5e6f7a8b-...-000000
        ("ses", r"^Ok\s+([0-9a-f]{16}-[0-9a-f-]+-\d{6})\s*$"),
        # 250 Message Queued (8A3F2C1E-0D4B-4E1A-9C3B-2F1E0D9C8B7A.1)
        ("haraka", r"^Message Queued \(([^()\s]+)\)"),
        # 250 2.0.0 <user@example.com> 2kvHMHuS2GIXJAAAwWz8mA Saved (no id: "<user> Saved")
        ("dovecot", r"^<[^>]*>\s+(\S+)\s+Saved\b"),
        # 250 2.0.0 x1ABCdef012345 Message accepted for delivery
        ("sendmail", r"^(\S+)\s+Message accepted for delivery\b"),
        # 250 OK id=1rBw8C-00000000Ehx-1Y0M
        ("exim", r"\bid=([0-9A-Za-z]+(?:-[0-9A-Za-z]+)+)\b"),
        # 250 ok 1700000000 qp 12345
        ("qmail", r"^ok \d+ qp (\d+)\b"),
        # 250 2.0.0 Ok: queued as 4Xyz12AbC (also SendGrid, Mailjet and other Postfix fronts)
        ("postfix", r"\bqueued as:?\s+([0-9A-Za-z][0-9A-Za-z._-]*)"),
    )
)

_PREFIX = re.compile(r"^(?:[2-5]\d\d[ -])?(?:[2-5]\.\d{1,3}\.\d{1,3}\s+)?")


def parse_queue_id(reply_text: str) -> str | None:
    """The queue id in a reply (``"250 2.0.0 Ok: queued as X"``, or its text alone), or None."""
    for line in reply_text.splitlines():
        text = _PREFIX.sub("", line.strip(), count=1)
        for _, pattern in QUEUE_ID_FORMS:
            match = pattern.search(text)
            if match:
                return match.group(1)
    return None
