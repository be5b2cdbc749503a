"""rawsmtp.contrib.logging.SMTPHandler: non-blocking emit, the storm cap, flush at close and exit."""

from __future__ import annotations

import email
import email.policy
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from rawsmtp.contrib.logging import SMTPHandler
from rawsmtp.testing import CA_FILE, Fault, ReceivedMessage, SMTPTestServer


def body(message: ReceivedMessage) -> Any:
    return email.message_from_bytes(
        message.data.replace(b"\r\n", b"\n"), policy=email.policy.default
    )


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    log = logging.getLogger(f"test.contrib.{time.monotonic_ns()}")
    log.propagate = False
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()


def handler_for(server: SMTPTestServer, **kwargs: Any) -> SMTPHandler:
    kwargs.setdefault("timeout", 30)
    return SMTPHandler(
        (server.host, server.port), "app@example.com", ["ops@example.com"], "Error!", **kwargs
    )


def test_a_record_becomes_a_mail_like_the_stdlib_handler(
    smtp_server: SMTPTestServer, logger: logging.Logger
) -> None:
    handler = handler_for(smtp_server)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.error("disk full: %s ✓", "/var")
    handler.flush()
    [received] = smtp_server.wait_for_messages(1)
    assert (received.mail_from, received.rcpt_to) == ("app@example.com", ("ops@example.com",))
    mail = body(received)
    assert mail["Subject"] == "Error!" and mail["To"] == "ops@example.com"
    assert mail.get_content() == "ERROR disk full: /var ✓\n"


def test_an_error_storm_sends_a_bounded_number_of_mails_and_counts_the_rest(
    smtp_server_factory: Any, logger: logging.Logger
) -> None:
    # Each mail takes the server 0.3 s: had emit() waited, 10 mails alone would take 3 s.
    server = smtp_server_factory(faults=[Fault(on="DATA_END", delay=0.3)])
    handler = handler_for(server, max_mails=10, interval=60)
    logger.addHandler(handler)
    start = time.monotonic()
    for n in range(9_999):
        logger.error("failure %d", n)
    logger.critical("the last one")
    emitting = time.monotonic() - start
    assert emitting < 2.5, f"10,000 records took {emitting:.2f} s to log"
    assert handler.suppressed == 9_990
    logger.removeHandler(handler)
    handler.close()  # mails the summary and waits for the queue
    received = server.wait_for_messages(11)
    time.sleep(0.5)
    assert len(server.messages) == 11
    assert [body(m).get_content() for m in received[:10]] == [f"failure {n}\n" for n in range(10)]
    summary = body(received[10])
    assert summary["Subject"] == "Error! (log records not mailed)"
    text = summary.get_content()
    assert "9990 more log records were not mailed (at most 10 mails per 60 s)" in text
    assert "9989 ERROR, 1 CRITICAL" in text
    assert text.rstrip().endswith("the last one")


def test_the_next_window_carries_the_summary(
    smtp_server: SMTPTestServer, logger: logging.Logger
) -> None:
    handler = handler_for(smtp_server, max_mails=2, interval=0.5)
    logger.addHandler(handler)
    for n in range(5):
        logger.warning("w%d", n)
    time.sleep(0.7)
    logger.warning("after the pause")
    handler.flush()
    received = smtp_server.wait_for_messages(3)
    texts = [body(m).get_content() for m in received]
    assert texts[:2] == ["w0\n", "w1\n"]
    assert texts[2].startswith("after the pause\n")
    assert "3 more log records were not mailed" in texts[2] and "3 WARNING" in texts[2]
    assert handler.suppressed == 0


def test_a_dead_server_never_blocks_emit(logger: logging.Logger) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    handler = SMTPHandler(("127.0.0.1", port), "a@example.com", "b@example.com", "s", timeout=1)
    logger.addHandler(handler)
    start = time.monotonic()
    for _ in range(100):
        logger.error("nobody listens")
    assert time.monotonic() - start < 1
    assert handler.suppressed == 90


def test_records_from_rawsmtp_itself_are_not_mailed(smtp_server: SMTPTestServer) -> None:
    handler = handler_for(smtp_server)
    handler.handle(logging.makeLogRecord({"name": "rawsmtp", "msg": "connection lost"}))
    handler.handle(logging.makeLogRecord({"name": "app", "msg": "real"}))
    handler.close()
    [received] = smtp_server.wait_for_messages(1)
    assert body(received).get_content() == "real\n"


def test_credentials_and_secure_require_starttls_and_log_in(
    smtp_server_factory: Any, logger: logging.Logger
) -> None:
    server = smtp_server_factory(tls=True, users={"ann": "secret"})
    handler = SMTPHandler(
        ("localhost", server.port),
        "app@example.com",
        "ops@example.com",
        "s",
        credentials=("ann", "secret"),
        secure=(),
        timeout=30,
        options={"tls": {"ca_file": CA_FILE}},
    )
    assert handler.pool_options["require_tls"] is True
    logger.addHandler(handler)
    logger.error("over TLS")
    handler.flush()
    [received] = server.wait_for_messages(1)
    assert received.tls and received.auth_user == "ann"


def test_the_stdlib_arguments_map_to_pool_options() -> None:
    handler = SMTPHandler("mx.example.com", "a@example.com", "b@example.com", "s", timeout=3)
    options = handler.pool_options
    assert (options["host"], options["port"], options["ignore_tls"]) == ("mx.example.com", 25, True)
    assert options["socket_timeout"] == 3
    secure = SMTPHandler("mx", "a@x.org", "b@x.org", "s", secure=("k.pem", "c.pem")).pool_options
    assert secure["tls"] == {"key_file": "k.pem", "cert_file": "c.pem"}
    handler.close()  # never connected: nothing to do


def test_records_logged_before_exit_are_sent(smtp_server: SMTPTestServer) -> None:
    script = (
        "import logging\n"
        "from rawsmtp.contrib.logging import SMTPHandler\n"
        f"handler = SMTPHandler(({smtp_server.host!r}, {smtp_server.port}), 'a@example.com',"
        " 'b@example.com', 'at exit', timeout=30)\n"
        "logging.getLogger().addHandler(handler)\n"
        "logging.error('logged just before exit')\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    [received] = smtp_server.wait_for_messages(1)
    assert body(received).get_content() == "logged just before exit\n"
