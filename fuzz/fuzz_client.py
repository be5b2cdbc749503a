"""Fuzz the client state machine with arbitrary server bytes.

Whatever arrives, the client must report it as events (a ConnectionClosed carrying an
rawsmtp.SMTPError at worst) and never raise. Run: python fuzz/fuzz_client.py -max_total_time=60.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from rawsmtp.protocol import (
        NEED_DATA,
        Authenticated,
        AuthenticationFailed,
        ClientConfig,
        ClientConnection,
        ConnectionClosed,
        Ready,
        SendBody,
        SMTPError,
        StartTLS,
        State,
        Transaction,
    )

# Seeds for the dictionary: a plausible session, so the fuzzer gets past the greeting quickly.
_SCRIPT = (
    b"220 mx ESMTP\r\n250-mx\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-STARTTLS\r\n"
    b"250-AUTH PLAIN\r\n250 SIZE 100\r\n220 go\r\n250 ok\r\n354 go\r\n334 \r\n235 ok\r\n"
)


class _Plain:
    name = "PLAIN"
    failure_detail = None

    def initial_response(self) -> bytes | None:
        return None

    def respond(self, challenge: bytes) -> bytes:
        return b"\x00u\x00p"

    def complete(self) -> None:
        pass


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    flags, step, payload = data[0], data[1] % 31 + 1, data[2:]
    config = ClientConfig(
        local_hostname="fuzz.test",
        lmtp=bool(flags & 1),
        starttls=("opportunistic", "never", "required")[(flags >> 1) % 3],
        use_chunking=bool(flags & 8),
    )
    client = ClientConnection(config, now=0.0)
    message = Transaction(mail_from="a@test", recipients=("b@test", "c@test"), size=10)
    if flags & 16:
        client.send_mail(message)
    for start in range(0, len(payload) + step, step):
        client.receive_data(payload[start : start + step] or b"", now=float(start))
        while (event := client.next_event()) is not NEED_DATA:
            # Events are reported in order; one may be followed by the session's end, after
            # which the API refuses calls, as a driver must expect.
            live = client.state is not State.CLOSED
            if isinstance(event, SendBody) and live:
                client.send_body(b"x\r\n.\r\n")
                client.end_body()
            elif isinstance(event, StartTLS) and live:
                client.start_tls_done()
            elif isinstance(event, Ready) and not flags & 16 and client.state is State.READY:
                client.authenticate(_Plain())
            elif isinstance(event, Authenticated | AuthenticationFailed) and live:
                client.send_mail(message)
            elif isinstance(event, ConnectionClosed):
                assert event.error is None or isinstance(event.error, SMTPError)
        client.data_to_send(now=float(start))
        client.handle_timer(float(start) * 100)
        if start >= len(payload):
            break


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
