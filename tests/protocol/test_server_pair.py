"""ClientConnection against ServerConnection in memory, h11's ConnectionPair style: no sockets.

The pair moves each side's output to the other, cut in pieces by ``split`` (whole, a byte at a
time, or random cuts from hypothesis), until neither has anything to say. TLS is a handshake
that both sides are told has happened. Assertions are on what each side saw.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rawsmtp import protocol as smtp
from rawsmtp.auth import Credentials, Login, Plain

Split = Callable[[bytes], Iterable[bytes]]
Answer = Callable[[smtp.Command], "str | None"]


def whole(data: bytes) -> list[bytes]:
    return [data]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


@dataclass
class Pair:
    client: smtp.ClientConnection
    server: smtp.ServerConnection
    answer: Answer = lambda command: None  # a reply to send instead of the default
    split: Split = whole
    mechanism: smtp.SASLMechanism | None = None
    mails: list[tuple[smtp.Transaction, bytes]] = field(default_factory=list)
    client_events: list[smtp.Event] = field(default_factory=list)
    server_events: list[smtp.ServerEvent] = field(default_factory=list)
    c2s_writes: list[bytes] = field(default_factory=list)

    def send(self, transaction: smtp.Transaction, body: bytes) -> None:
        self.mails.append((transaction, body))

    def run(self, rounds: int = 10_000) -> Pair:
        if self.mechanism is None:
            self._queue()
        for _ in range(rounds):
            if not (self._to_client() | self._to_server()):
                return self
        raise AssertionError("the pair never went quiet")

    def _queue(self) -> None:
        # quit() before the greeting would end the session at once: it waits for the outcomes.
        for transaction, _ in self.mails:
            self.client.send_mail(transaction)

    def _to_client(self) -> bool:
        data = self.server.data_to_send()
        for piece in self.split(data):
            self.client.receive_data(piece, 0.0)
        while (event := self.client.next_event()) is not smtp.NEED_DATA:
            self.client_events.append(event)
            self._on_client(event)
        return bool(data)

    def _on_client(self, event: smtp.Event) -> None:
        client = self.client
        if isinstance(event, smtp.StartTLS):
            assert self.server.state is smtp.ServerState.TLS_HANDSHAKE
            self.server.start_tls_done()
            client.start_tls_done()
        elif isinstance(event, smtp.Ready) and self.mechanism is not None:
            client.authenticate(self.mechanism)
        elif isinstance(event, smtp.Authenticated | smtp.AuthenticationFailed):
            self._queue()
        elif isinstance(event, smtp.SendBody):
            body = dict((id(t), b) for t, b in self.mails)[id(event.transaction)]
            client.send_body(body)
            client.end_body()
        settled = smtp.Authenticated | smtp.AuthenticationFailed | smtp.MessageAccepted
        if isinstance(event, smtp.Ready) and self.mechanism is None:
            settled = smtp.Ready
        if isinstance(event, settled | smtp.MessageFailed) and not client.transactions_in_progress:
            client.quit()

    def _to_server(self) -> bool:
        data = self.client.data_to_send(0.0)
        if data:
            self.c2s_writes.append(data)
        for piece in self.split(data):
            self.server.receive_data(piece)
            self._drain_server()
        self._drain_server()
        return bool(data)

    def _drain_server(self) -> None:
        while (event := self.server.next_event()) is not smtp.NEED_DATA:
            self.server_events.append(event)
            if isinstance(event, smtp.Command):
                reply = self.answer(event)
                if reply is None:
                    self.server.accept()
                else:
                    self.server.respond(reply)

    def of(self, kind: type) -> list:  # type: ignore[type-arg]
        return [e for e in [*self.client_events, *self.server_events] if isinstance(e, kind)]


def pair(
    *,
    client: dict | None = None,  # type: ignore[type-arg]
    server: dict | None = None,  # type: ignore[type-arg]
    **options: object,
) -> Pair:
    client_config = smtp.ClientConfig(local_hostname="client.test", **(client or {}))
    server_config = smtp.ServerConfig(hostname="server.test", **(server or {}))
    result = Pair(
        smtp.ClientConnection(client_config, now=0.0), smtp.ServerConnection(server_config)
    )
    for key, value in options.items():
        setattr(result, key, value)
    result.server.greet()
    return result


def tx(*recipients: str, **options: object) -> smtp.Transaction:
    return smtp.Transaction(mail_from="ann@example.com", recipients=recipients, **options)  # type: ignore[arg-type]


BODY = b"Subject: hi\r\n\r\nline one\r\n.starts with a dot\r\n"
SPLITS = [whole, bytewise]


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("chunking", [True, False])
def test_a_pipelined_batch_arrives_intact_and_in_order(split: Split, chunking: bool) -> None:
    p = pair(client={"use_chunking": chunking}, split=split)
    for n in range(3):
        p.send(tx(f"r{n}@example.com", f"s{n}@example.com"), BODY + b"%d\r\n" % n)
    p.run()
    received = p.of(smtp.MessageReceived)
    assert [m.data for m in received] == [body for _, body in p.mails]
    assert [m.recipients for m in received] == [t.recipients for t, _ in p.mails]
    assert all(m.chunked is chunking for m in received)
    accepted = p.of(smtp.MessageAccepted)
    assert [a.transaction for a in accepted] == [t for t, _ in p.mails]
    closed = p.of(smtp.ConnectionClosed)
    assert closed[0].error is None and p.of(smtp.ServerClosed)[0].error is None
    # Pipelined: the whole first envelope went in one write (with CHUNKING the next
    # transactions follow the first one's BDAT LAST in the same write).
    first_mail = next(w for w in p.c2s_writes if w.startswith(b"MAIL"))
    assert first_mail.count(b"RCPT TO") == (6 if chunking else 2)


@pytest.mark.parametrize("split", SPLITS)
def test_starttls_then_auth_plain_and_login(split: Split) -> None:
    for mechanism in (Plain, Login):
        credentials = Credentials(user="ann", password="sécret")
        p = pair(
            client={"starttls": "required"},
            server={
                "starttls": True,
                "mechanisms": smtp.PASSWORD_MECHANISMS,
                "auth_after_tls": True,
            },
            split=split,
            mechanism=mechanism(credentials),
        )
        p.send(tx("bob@example.com"), BODY)
        p.run()
        (auth,) = p.of(smtp.Authenticate)
        assert (auth.mechanism, auth.username, auth.password) == (mechanism._NAME, "ann", "sécret")
        assert p.server.tls and p.server.auth_user == "ann"
        assert p.of(smtp.Authenticated) and p.of(smtp.MessageReceived)[0].data == BODY
        assert p.of(smtp.TLSStart) == [smtp.TLSStart(discarded=0)]


def test_auth_not_offered_before_tls() -> None:
    server = smtp.ServerConnection(
        smtp.ServerConfig(
            hostname="s.test",
            starttls=True,
            mechanisms=smtp.PASSWORD_MECHANISMS,
            auth_after_tls=True,
        )
    )
    assert "AUTH PLAIN LOGIN" not in server.config.ehlo_lines(tls=False)
    assert "AUTH PLAIN LOGIN" in server.config.ehlo_lines(tls=True)
    assert "STARTTLS" not in server.config.ehlo_lines(tls=True)


def test_refused_credentials_fail_the_client_attempt_with_the_servers_code() -> None:
    p = pair(
        server={"mechanisms": smtp.PASSWORD_MECHANISMS},
        mechanism=Plain(Credentials(user="ann", password="wrong")),
        answer=lambda c: "535 5.7.8 Authentication failed" if c.verb == "AUTH" else None,
    )
    p.run()
    (failed,) = p.of(smtp.AuthenticationFailed)
    assert failed.error.code == 535 and failed.error.enhanced_code == "5.7.8"
    assert p.server.auth_user is None


def test_one_refused_recipient_and_a_fully_refused_envelope_then_the_next_message() -> None:
    def answer(command: smtp.Command) -> str | None:
        if isinstance(command, smtp.RcptTo) and command.address.startswith("bad"):
            return "550 5.1.1 No such user"
        return None

    p = pair(answer=answer)
    p.send(tx("good@example.com", "bad1@example.com"), BODY)
    p.send(tx("bad2@example.com"), BODY)
    p.send(tx("good2@example.com"), BODY)
    p.run()
    first, last = p.of(smtp.MessageAccepted)
    assert last.accepted == ("good2@example.com",)
    assert first.accepted == ("good@example.com",) and list(first.rejected) == ["bad1@example.com"]
    assert first.rejected["bad1@example.com"].code == 550
    (failed,) = p.of(smtp.MessageFailed)
    assert failed.transaction.recipients == ("bad2@example.com",)
    assert [m.recipients for m in p.of(smtp.MessageReceived)] == [
        ("good@example.com",),
        ("good2@example.com",),
    ]
    verbs = [c.verb for c in p.of(smtp.Command)]
    assert "RSET" in verbs  # the client cleared the refused transaction


def test_refused_sender_and_refused_data() -> None:
    def answer(command: smtp.Command) -> str | None:
        if isinstance(command, smtp.MailFrom) and command.address == "evil@example.com":
            return "553 5.7.1 Sender refused"
        if isinstance(command, smtp.MessageReceived) and b"spam" in command.data:
            return "554 5.7.1 Looks like spam"
        return None

    p = pair(answer=answer)
    p.mails.append((smtp.Transaction(mail_from="evil@example.com", recipients=("b@x.com",)), BODY))
    p.send(tx("b@example.com"), b"spam\r\n")
    p.send(tx("c@example.com"), BODY)
    p.run()
    codes = [f.error.code for f in p.of(smtp.MessageFailed)]  # type: ignore[union-attr]
    assert codes == [553, 554]
    assert [a.transaction.recipients for a in p.of(smtp.MessageAccepted)] == [("c@example.com",)]


@pytest.mark.parametrize("chunking", [True, False])
def test_a_message_over_the_size_limit_is_refused_after_its_data(chunking: bool) -> None:
    p = pair(client={"use_chunking": chunking}, server={"max_size": 1000})
    p.send(tx("b@example.com"), b"x" * 3000 + b"\r\n")
    p.send(tx("c@example.com"), BODY)
    p.run()
    (failed,) = p.of(smtp.MessageFailed)
    assert failed.error.code == 552  # type: ignore[union-attr]
    big = p.of(smtp.MessageReceived)[0]
    assert big.too_big and big.data == b""
    assert p.of(smtp.MessageAccepted)[0].transaction.recipients == ("c@example.com",)


def test_declared_size_over_the_limit_is_refused_by_the_client_itself() -> None:
    p = pair(server={"max_size": 1000})
    p.send(tx("b@example.com", size=5000), BODY)
    p.run()
    (failed,) = p.of(smtp.MessageFailed)
    assert isinstance(failed.error, smtp.SMTPCapabilityError)
    assert not p.of(smtp.MailFrom)


def test_a_refused_bdat_chunk_ends_the_transaction_and_the_next_goes() -> None:
    p = pair(answer=lambda c: "554 5.6.0 Chunk refused" if c.verb == "BDAT" else None)
    p.send(tx("b@example.com"), BODY)
    p.run()
    (failed,) = p.of(smtp.MessageFailed)
    assert failed.error.code == 554  # type: ignore[union-attr]
    assert p.server.mail_from is None


def test_smtputf8_and_dsn_parameters_are_parsed() -> None:
    p = pair()
    transaction = tx(
        "bøb@exämple.com",
        smtputf8=True,
        ret="HDRS",
        envid="id+1=x",
        notify=frozenset({"FAILURE", "DELAY"}),
        orcpt=True,
        size=len(BODY),
        body="8BITMIME",
    )
    p.send(transaction, BODY)
    p.run()
    (mail,) = p.of(smtp.MailFrom)
    assert (mail.smtputf8, mail.ret, mail.envid, mail.size, mail.body) == (
        True,
        "HDRS",
        "id+1=x",
        len(BODY),
        "8BITMIME",
    )
    (rcpt,) = p.of(smtp.RcptTo)
    assert rcpt.address == "bøb@exämple.com"
    assert rcpt.notify == {"FAILURE", "DELAY"}
    assert rcpt.orcpt == (
        "utf-8",
        "bøb@exämple.com".replace("ø", "\\x{F8}").replace("ä", "\\x{E4}"),
    )


def test_lmtp_answers_each_recipient_after_the_data() -> None:
    def answer(command: smtp.Command) -> str | None:
        if isinstance(command, smtp.MessageReceived) and command.recipient == "full@example.com":
            return "452 4.2.2 <full@example.com> Mailbox full"
        return None

    p = pair(client={"lmtp": True}, server={"lmtp": True}, answer=answer)
    p.send(tx("ok@example.com", "full@example.com"), BODY)
    p.run()
    (accepted,) = p.of(smtp.MessageAccepted)
    assert accepted.accepted == ("ok@example.com",)
    assert accepted.rejected["full@example.com"].code == 452
    assert [m.recipient for m in p.of(smtp.MessageReceived)] == [
        "ok@example.com",
        "full@example.com",
    ]


def test_helo_fallback_when_ehlo_is_refused() -> None:
    p = pair(answer=lambda c: "502 5.5.2 EHLO not here" if c.verb == "EHLO" else None)
    p.send(tx("b@example.com"), BODY)
    p.run()
    assert [h.verb for h in p.of(smtp.Hello)] == ["EHLO", "HELO"]
    assert p.of(smtp.MessageReceived)[0].data == BODY
    assert not p.of(smtp.MessageReceived)[0].chunked  # no extensions after HELO


def test_a_refused_greeting_closes_the_client() -> None:
    client = smtp.ClientConnection(smtp.ClientConfig(local_hostname="c.test"), now=0.0)
    server = smtp.ServerConnection(smtp.ServerConfig(hostname="s.test"))
    server.greet("554 5.7.1 No service for you")
    client.receive_data(server.data_to_send(), 0.0)
    (closed,) = [e for e in iter(client.next_event, smtp.NEED_DATA)]
    assert isinstance(closed, smtp.ConnectionClosed) and closed.error.code == 554  # type: ignore[union-attr]


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=30))
def test_random_splits_change_nothing(cuts: list[int]) -> None:
    def split(data: bytes) -> list[bytes]:
        pieces, at, index = [], 0, 0
        while at < len(data):
            size = cuts[index % len(cuts)]
            pieces.append(data[at : at + size])
            at, index = at + size, index + 1
        return pieces

    def answer(command: smtp.Command) -> str | None:
        if isinstance(command, smtp.RcptTo) and command.address.startswith("bad"):
            return "550 5.1.1 No"
        return None

    outcomes = []
    for chosen in (whole, split):
        p = pair(
            split=chosen,
            answer=answer,
            client={"starttls": "required"},
            server={"starttls": True, "mechanisms": smtp.PASSWORD_MECHANISMS},
            mechanism=Login(Credentials(user="u", password="p")),
        )
        p.send(tx("a@example.com", "bad@example.com"), BODY)
        p.send(tx("bad2@example.com"), BODY)
        p.send(tx("c@example.com"), b"..\r\n.\r\n" + BODY)
        p.run()
        outcomes.append(
            (
                [(type(e).__name__, e.verb, e.argument) for e in p.of(smtp.Command)],
                [m.data for m in p.of(smtp.MessageReceived)],
                [type(e).__name__ for e in p.client_events],
            )
        )
    assert outcomes[0] == outcomes[1]
