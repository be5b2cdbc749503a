#!/usr/bin/env python3
"""Tiny OAuth2 token-introspection server (RFC 7662 style) for Dovecot's oauth2 passdb.

Stdlib only.  Dovecot (introspection_mode = post) sends ``POST /`` with the form body
``token=<bearer token>``; we answer ``{"active": true, "username": "alice@example.test"}``
for the known tokens and ``{"active": false}`` for anything else.  GET ``?token=`` and an
``Authorization: Bearer`` header are accepted too, so other introspection modes also work.

Usage: oauth_introspect.py [--host 127.0.0.1] [--port 8089] [--pidfile FILE] [--log FILE]
"""

import argparse
import contextlib
import json
import os
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKENS = {
    "good-token-alice": "alice@example.test",
    "renewed-token-alice": "alice@example.test",
}


class Handler(BaseHTTPRequestHandler):
    server_version = "rawsmtp-oauth-introspect/1"
    protocol_version = "HTTP/1.1"

    def _token(self, body: bytes) -> str:
        token = ""
        if body:
            form = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            token = (form.get("token") or [""])[0]
        if not token:
            query = urllib.parse.urlsplit(self.path).query
            form = urllib.parse.parse_qs(query, keep_blank_values=True)
            token = (form.get("token") or form.get("access_token") or [""])[0]
        if not token:
            auth = self.headers.get("Authorization", "")
            if auth.lower().startswith("bearer "):
                token = auth[7:].strip()
        return token

    def _answer(self, body: bytes) -> None:
        token = self._token(body)
        user = TOKENS.get(token)
        result = {"active": True, "username": user} if user else {"active": False}
        data = json.dumps(result).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.log_message("token=%r -> %s", token, data.decode())

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        self._answer(body)

    def do_GET(self) -> None:
        self._answer(b"")

    def log_message(self, fmt, *args) -> None:
        sys.stderr.write(f"{self.log_date_time_string()} {fmt % args}\n")
        sys.stderr.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--pidfile")
    parser.add_argument("--log")
    args = parser.parse_args()
    if args.log:
        sys.stderr = open(args.log, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - for life
    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.daemon_threads = True
    httpd = ThreadingHTTPServer((args.host, args.port), Handler)
    if args.pidfile:
        with open(args.pidfile, "w") as f:
            f.write(f"{os.getpid()}\n")
    with contextlib.suppress(KeyboardInterrupt):
        httpd.serve_forever()


if __name__ == "__main__":
    main()
