"""rawsmtp.contrib.celery's task run eagerly (no worker) against SMTPTestServer and fakeredis:
results, the Message-ID record, and which failures are retried."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rawsmtp.testing import Fault, SMTPTestServer

celery = pytest.importorskip("celery")
fakeredis = pytest.importorskip("fakeredis")
pytest.importorskip("lupa")
from celery.exceptions import Retry  # noqa: E402

from rawsmtp.contrib.celery import install, mail  # noqa: E402


@pytest.fixture
def app() -> Iterator[Any]:
    app = celery.Celery("t", broker="memory://", set_as_current=False)
    app.conf.update(task_acks_late=True, task_eager_propagates=True)
    yield app


def setup(app: Any, server: SMTPTestServer, **settings: Any) -> Any:
    options = {"host": server.host, "port": server.port, "ignore_tls": True, "max_retries": 0}
    return install(app, lambda: options, fakeredis.FakeRedis(), retry_delay=0, **settings)


def run(mailer: Any, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return mailer.task.apply(args=[batch], throw=True).get(timeout=20)  # type: ignore[no-any-return]


def test_sent_then_duplicate_with_per_recipient_results(app: Any) -> None:
    with SMTPTestServer(
        faults=[Fault(on="RCPT", match="bad@", reply="550 5.1.1 no such user")]
    ) as server:
        mailer = setup(app, server)
        batch = [mail("a@x.test", ["ok@y.test", "bad@y.test"], "s", "hi")]
        first = run(mailer, batch)
        again = run(mailer, batch)
        mailer.close()
    assert first[0]["status"] == "sent" and first[0]["accepted"] == ["ok@y.test"]
    assert first[0]["rejected"]["bad@y.test"]["code"] == 550
    assert (
        first[0]["message_id"]
        == batch[0]["message"].split("Message-ID: ")[1].split("\n")[0].strip()
    )
    assert again[0]["status"] == "duplicate"
    assert len(server.messages) == 1
    key = "rawsmtp:delivered:" + first[0]["message_id"]
    assert mailer.store.get(key) == b"sent" and mailer.store.pttl(key) > 0


def test_a_temporary_failure_retries_the_batch(app: Any) -> None:
    with SMTPTestServer(faults=[Fault(on="MAIL", reply="451 4.3.0 try later", nth=1)]) as server:
        mailer = setup(app, server)
        batch = [mail("a@x.test", ["b@y.test"], "s", "hi")]
        with pytest.raises(Retry):
            mailer.task.apply(args=[batch], throw=True).get()
        assert (
            mailer.store.get("rawsmtp:delivered:" + mailer.send_batch(batch)[0][0]["message_id"])
            == b"sent"
        )
        mailer.close()
    assert len(server.messages) == 1


def test_permanent_failure_and_unknown_are_not_retried(app: Any) -> None:
    faults = [
        Fault(on="MAIL", match="perm@", reply="550 5.7.1 refused"),
        Fault(on="DATA_END", action="drop"),  # the final reply never comes
    ]
    with SMTPTestServer(faults=faults) as server:
        mailer = setup(app, server)
        perm, lost = (
            mail("perm@x.test", ["b@y.test"], "s", "hi"),
            mail("a@x.test", ["b@y.test"], "s", "hi"),
        )
        results = run(mailer, [perm])
        assert results[0]["status"] == "failed"
        results = run(mailer, [lost])
        assert results[0]["status"] == "unknown"
        assert run(mailer, [lost])[0]["status"] == "unknown"  # recorded: never resent
        mailer.close()


def test_a_message_without_message_id_is_refused(app: Any) -> None:
    with SMTPTestServer() as server:
        mailer = setup(app, server)
        results = run(
            mailer,
            [
                {
                    "message": "Subject: x\r\n\r\nhi\r\n",
                    "envelope": {"from": "a@x.test", "to": ["b@y.test"]},
                }
            ],
        )
        mailer.close()
    assert results == [
        {"message_id": None, "status": "failed", "error": "the message has no Message-ID header"}
    ]
    assert server.messages == []
