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


def _commit_key(message_id: str) -> str:
    return "rawsmtp:delivered:" + message_id + ":committing"


def test_the_commit_record_is_written_before_the_end_of_data_and_gone_after(app: Any) -> None:
    batch = [mail("a@x.test", ["b@y.test"], "s", "hi")]
    message_id = batch[0]["message"].split("Message-ID: ")[1].split("\n")[0].strip()
    at_end: list[Any] = []

    def policy(context: Any) -> None:
        if context.point == "DATA_END":  # the server has the whole message, not yet answered
            at_end.append(mailer.store.get(_commit_key(message_id)))

    with SMTPTestServer(faults=policy) as server:
        mailer = setup(app, server)
        assert run(mailer, batch)[0]["status"] == "sent"
        mailer.close()
    assert at_end == [b"committing"]
    assert mailer.store.get(_commit_key(message_id)) is None
    assert mailer.round_trips == 3  # claim, commit record, outcome
    assert len(server.messages) == 1


def test_a_redelivery_after_the_commit_point_reports_unknown_and_never_resends(app: Any) -> None:
    with SMTPTestServer() as server:
        mailer = setup(app, server)
        committed, lapsed = (mail("a@x.test", [f"{n}@y.test"], "s", "hi") for n in "ab")
        committed_id = committed["message"].split("Message-ID: ")[1].split("\n")[0].strip()
        # A killed run: its claim lapsed, its commit record stays (``lapsed`` never got there).
        mailer.store.set(_commit_key(committed_id), b"committing", px=60_000)
        results = run(mailer, [committed, lapsed])
        assert [r["status"] for r in results] == ["unknown", "sent"]
        assert "may have been delivered" in results[0]["error"]
        assert run(mailer, [committed])[0]["status"] == "unknown"  # recorded
        mailer.close()
    assert [m.rcpt_to for m in server.messages] == [("b@y.test",)]
    assert mailer.store.get("rawsmtp:delivered:" + committed_id) == b"unknown"
    assert mailer.store.get(_commit_key(committed_id)) is None


def test_a_failed_commit_record_leaves_the_message_unsent_and_retried(app: Any) -> None:
    redis = pytest.importorskip("redis")

    class Store(fakeredis.FakeRedis):  # type: ignore[misc]
        down = True

        def set(self, name: str, *args: Any, **kwargs: Any) -> Any:
            if self.down and name.endswith(":committing"):
                raise redis.ConnectionError("redis went away")
            return super().set(name, *args, **kwargs)

    with SMTPTestServer() as server:
        options = {"host": server.host, "port": server.port, "ignore_tls": True}
        mailer = install(app, lambda: options, Store(), retry_delay=0)
        batch = [mail("a@x.test", ["b@y.test"], "s", "hi")]
        results, retry = mailer.send_batch(batch)
        assert retry and results[0]["status"] == "deferred"
        assert "before_commit raised ConnectionError: redis went away" in results[0]["error"]
        assert server.messages == []
        assert mailer.store.get("rawsmtp:delivered:" + results[0]["message_id"]) is None
        mailer.store.down = False
        assert mailer.send_batch(batch)[0][0]["status"] == "sent"
        mailer.close()
    assert len(server.messages) == 1
