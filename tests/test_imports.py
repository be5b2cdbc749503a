"""What importing rawsmtp costs: OpenSSL and email's heavy modules load only when used."""

from __future__ import annotations

import subprocess
import sys

from rawsmtp.testing import SMTPTestServer

# ssl and hashlib load OpenSSL (about 4 MB); email.message and its helpers about 1 MB more.
HEAVY = ("ssl", "_ssl", "hashlib", "_hashlib", "hmac", "secrets", "email.message", "email.policy")


def _loaded_after(code: str) -> list[str]:
    script = f"import sys\n{code}\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    output = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    return list(eval(output.strip().splitlines()[-1]))


def test_importing_the_package_loads_none_of_them() -> None:
    # Not rawsmtp.aio: asyncio itself imports ssl.
    assert _loaded_after("import rawsmtp, rawsmtp.auth, rawsmtp.proxy") == []


def test_a_plaintext_pool_sends_without_them(smtp_server: SMTPTestServer) -> None:
    code = (
        "import rawsmtp\n"
        f"with rawsmtp.SMTPPool(host={smtp_server.host!r}, port={smtp_server.port},"
        " ignore_tls=True) as pool:\n"
        "    pool.send(b'From: a@example.org\\r\\nTo: b@example.org\\r\\n\\r\\nhi\\r\\n')"
        ".result(timeout=30)"
    )
    assert _loaded_after(code) == []
    assert smtp_server.wait_for_messages(1)[0].data.endswith(b"hi\r\n")


def test_tls_and_email_messages_still_load_what_they_need() -> None:
    code = (
        "import email.message, rawsmtp\n"
        "pool = rawsmtp.SMTPPool(host='mail.example.org')  # STARTTLS when offered\n"
        "message = email.message.EmailMessage()\n"
        "message['From'], message['To'] = 'a@example.org', 'b@example.org'\n"
        "print(rawsmtp._message.prepare_message(message, None).message_id)\n"
        "pool.close()"
    )
    assert {"ssl", "email.message", "email.policy"} <= set(_loaded_after(code))
