"""``rawsmtp verify``: what a server offers, over one session of the sans-I/O core, then AUTH.

:func:`probe` is a small blocking driver for :class:`rawsmtp.protocol.ClientConnection`: it
connects (through the URL's proxy if any), does implicit TLS or STARTTLS as the options say,
records the greeting, the final EHLO reply and the TLS details, and QUITs once the session is
ready. The AUTH result then comes from ``SMTPPool.verify()``, so the credentials go through the
same code (mechanism choice, clear-text guard) that sending would use.
"""

from __future__ import annotations

import argparse
import hashlib
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from ..config._options import Options, make_options
from ..config._tls import build_ssl_context, server_name_override
from ..pool._selectors import SMTPPool
from ..pool._transport import ehlo_name
from ..pool._wiring import machine_fqdn
from ..protocol import (
    NEED_DATA,
    ClientConfig,
    ClientConnection,
    ConnectionClosed,
    Greeting,
    Ready,
    Reply,
    SMTPDisconnectedError,
    SMTPError,
    SMTPTimeoutError,
    SMTPTLSError,
    StartTLS,
)
from ..proxy import connect_via_proxy, redact_url
from ._console import Console, connection_kwargs, usage_errors
from ._send import describe

__all__ = ["Probe", "command", "probe"]


@dataclass
class Probe:
    """What one session learnt. ``error`` is None when the session got as far as Ready."""

    greeting: Reply | None = None
    ready: Ready | None = None
    tls: str | None = None  # "implicit" or "STARTTLS" once TLS is up
    tls_version: str | None = None
    cipher: str | None = None
    certificate: dict[str, Any] = field(default_factory=dict)  # empty when not verified
    certificate_der: bytes | None = None
    error: BaseException | None = None


def _connect(options: Options) -> socket.socket:
    timeout = options.connection_timeout
    if options.proxy:
        return connect_via_proxy(options.proxy, options.host, options.port, timeout=timeout)
    source = (options.local_address, 0) if options.local_address else None
    return socket.create_connection(
        (options.host, options.port), timeout=timeout, source_address=source
    )


def probe(options: Options) -> Probe:
    """One session up to Ready, then QUIT; every failure ends up in ``Probe.error``."""
    result = Probe()
    try:
        session = _Session(_connect(options), options, result)
    except (OSError, SMTPError) as error:
        result.error = error
        return result
    try:
        session.run()
    except (OSError, SMTPError) as error:
        result.error = error
    finally:
        session.sock.close()
    return result


class _Session:
    """The blocking loop around the core; ``sock`` is replaced by its TLS wrapper when secured."""

    def __init__(self, sock: socket.socket, options: Options, result: Probe) -> None:
        self.sock = sock
        self.options = options
        self.result = result
        sock.settimeout(options.greeting_timeout)

    def _secure(self, how: str) -> None:
        options, result = self.options, self.result
        context = build_ssl_context(options.tls)
        server_name = server_name_override(options.tls) or options.host
        try:
            secured = context.wrap_socket(self.sock, server_hostname=server_name)
        except OSError as error:  # ssl.SSLError and certificate failures included
            raise SMTPTLSError(f"TLS handshake failed: {error}") from error
        self.sock = secured
        result.tls = how
        result.tls_version = secured.version()
        cipher = secured.cipher()
        result.cipher = cipher[0] if cipher else None
        result.certificate = dict(secured.getpeercert() or {})
        result.certificate_der = secured.getpeercert(binary_form=True)

    def run(self) -> None:
        options, result = self.options, self.result
        if options.secure:
            self._secure("implicit")
        starttls: Literal["opportunistic", "required", "never"] = (
            "never"
            if options.ignore_tls
            else "required"
            if options.require_tls
            else "opportunistic"
        )
        client = ClientConnection(
            ClientConfig(
                local_hostname=ehlo_name(options.name, machine_fqdn(), self.sock),
                lmtp=options.lmtp,
                starttls=starttls,
                tls_active=options.secure,
            ),
            now=time.monotonic(),  # the socket's own timeout bounds each read here
        )
        while True:
            if data := client.data_to_send(time.monotonic()):
                self.sock.sendall(data)
            event = client.next_event()
            if event is NEED_DATA:
                self._receive(client)
            elif isinstance(event, Greeting):
                result.greeting = event.reply
            elif isinstance(event, StartTLS):
                self._secure("STARTTLS")
                client.start_tls_done()
            elif isinstance(event, Ready):
                result.ready = event
                client.quit()
            elif isinstance(event, ConnectionClosed):
                if result.ready is None:
                    result.error = event.error or SMTPDisconnectedError("closed before EHLO")
                return

    def _receive(self, client: ClientConnection) -> None:
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            client.connection_lost(SMTPTimeoutError("no reply from the server", phase="command"))
        except OSError as error:
            client.connection_lost(SMTPDisconnectedError(f"connection failed: {error}"))
        else:
            client.receive_data(data, time.monotonic())


# -- showing it ---------------------------------------------------------------------------------


def _name(parts: Any) -> str:
    """An X.509 name from ``getpeercert()`` as ``CN=..., O=...``."""
    return ", ".join(f"{key}={value}" for rdn in parts for key, value in rdn)


def _certificate_lines(result: Probe) -> list[str]:
    cert = result.certificate
    if cert:
        names = [value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"]
        lines = [
            f"subject  {_name(cert.get('subject', ()))}",
            f"issuer   {_name(cert.get('issuer', ()))}",
            f"expires  {cert.get('notAfter', '?')}",
        ]
        return lines + ([f"names    {', '.join(names)}"] if names else [])
    if result.certificate_der:
        digest = hashlib.sha256(result.certificate_der).hexdigest().upper()
        fingerprint = ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))
        return ["subject  (not verified, so not decoded: --insecure)", f"sha256   {fingerprint}"]
    return []


def _tls_line(options: Options, result: Probe) -> str:
    if result.tls is not None:
        return f"{result.tls_version} {result.cipher} ({result.tls})"
    if options.ignore_tls:
        return "none (ignoreTLS)"
    if result.ready is not None and not result.ready.extensions.starttls:
        return "none (the server does not offer STARTTLS)"
    return "none"


def _show(console: Console, options: Options, result: Probe) -> None:
    scheme = "lmtp" if options.lmtp else "smtps" if options.secure else "smtp"
    via = f" via {redact_url(options.proxy)}" if options.proxy else ""
    console.out(f"server    {scheme}://{options.host}:{options.port}{via}")
    if result.greeting is not None:
        console.out(f"greeting  {result.greeting}")
    if result.ready is not None:
        lines = result.ready.reply.lines
        console.out(f"EHLO      {result.ready.reply.code} {lines[0] if lines else ''}")
        for line in lines[1:]:
            console.out(f"          {line}")
    console.out(f"TLS       {_tls_line(options, result)}")
    for line in _certificate_lines(result):
        console.out(f"cert      {line}")
    if result.error is not None:
        console.out(f"error     {describe(result.error)}")


def _check_auth(console: Console, kwargs: dict[str, Any], options: Options) -> bool:
    user = options.auth.get("user") if isinstance(options.auth, dict) else None
    pool = SMTPPool(**kwargs)
    try:
        pool.verify()
    except SMTPError as error:
        console.out(f"AUTH      failed for {user}: {describe(error)}")
        return False
    finally:
        pool.close()
    console.out(f"AUTH      ok (user {user})")
    return True


def command(args: argparse.Namespace, console: Console) -> int:
    kwargs = connection_kwargs(args, console)
    with usage_errors():
        options = make_options(**kwargs)
        build_ssl_context(options.tls)  # a bad --ca-file is a usage error, not a TLS failure
    result = probe(options)
    _show(console, options, result)
    if result.error is not None:
        console.out("AUTH      not tried (the session failed)")
        return 1
    if options.auth is None:
        console.out("AUTH      not configured (no user in the URL)")
        return 0
    return 0 if _check_auth(console, kwargs, options) else 1
