"""aiosmtpd as a real server for rawsmtp's interop tests.

    python tests/servers/aiosmtpd_server.py CONFIG.json

CONFIG is the same file Node's smtp-server reads (see node/server.js): host, ``aiosmtpd_port``,
cert, key, users, tokens, size, dir. It listens on loopback only, never relays, and writes each
accepted message to DIR as ``aiosmtpd-<n>.eml`` (the content, dot-unstuffed, as received) and
``aiosmtpd-<n>.json`` (the envelope). STARTTLS with the given certificate; AUTH PLAIN and LOGIN
(aiosmtpd's own) and XOAUTH2 (a handler ``auth_`` hook) only after STARTTLS.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import ssl
import sys
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


class Recorder:
    """The handler: accepts every recipient, records every message."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.dir = Path(config["dir"])
        self.users: dict[str, str] = config["users"]
        self.tokens: dict[str, str] = config["tokens"]
        self.counter = itertools.count(1)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        n = next(self.counter)
        stem = self.dir / f"aiosmtpd-{os.getpid()}-{n}"
        meta = {
            "server": "aiosmtpd",
            "mail_from": envelope.mail_from,
            "mail_params": envelope.mail_options,
            "rcpt_to": envelope.rcpt_tos,
            "rcpt_params": envelope.rcpt_options,
            "tls": server._tls_protocol is not None,
            "user": session.auth_data if isinstance(session.auth_data, str) else None,
            "smtputf8": envelope.smtp_utf8,
        }
        assert envelope.original_content is not None
        stem.with_suffix(".eml").write_bytes(envelope.original_content)
        temporary = stem.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(meta), encoding="utf-8")
        temporary.rename(stem.with_suffix(".json"))  # the .json appears last, complete
        return f"250 2.0.0 Ok: queued as AIO{n}"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword):
            user, password = data.login.decode(), data.password.decode()
            if self.users.get(user) == password:
                return AuthResult(success=True, auth_data=user)
        return AuthResult(success=False, handled=False)

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        if len(args) < 2:
            return AuthResult(success=False, handled=False)
        try:
            fields = dict(
                part.partition("=")[::2]
                for part in base64.b64decode(args[1]).decode("utf-8").split("\x01")
                if part
            )
        except ValueError:
            return AuthResult(success=False, handled=False)
        user, token = fields.get("user", ""), fields.get("auth", "").removeprefix("Bearer ")
        if user and self.tokens.get(user) == token:
            return AuthResult(success=True, auth_data=user)
        return AuthResult(success=False, handled=False)


async def serve(config: dict[str, Any]) -> None:
    if config["host"] not in ("127.0.0.1", "::1"):
        raise SystemExit("interop servers listen on loopback only")
    Path(config["dir"]).mkdir(parents=True, exist_ok=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config["cert"], config["key"])
    handler = Recorder(config)

    def factory() -> SMTP:
        return SMTP(
            handler,
            hostname="aiosmtpd.interop.test",
            data_size_limit=config["size"],
            enable_SMTPUTF8=True,
            decode_data=False,
            tls_context=context,
            require_starttls=False,
            auth_required=False,
            auth_require_tls=True,
            authenticator=handler.authenticate,
        )

    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, config["host"], config["aiosmtpd_port"])
    print(f"aiosmtpd on {config['host']}:{config['aiosmtpd_port']}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))))
