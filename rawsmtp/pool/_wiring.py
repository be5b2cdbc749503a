"""From validated pool options to what each session needs (and to a socket, in a worker).

Kept apart from the pool so the selectors pool and the asyncio pool derive sessions the same
way: STARTTLS policy, TLS context, EHLO name, authentication, get_socket and name resolution.
"""

from __future__ import annotations

import functools
import logging
import socket
import weakref
from typing import Any

from .._errors import SMTPConnectionError
from ..auth import (
    check_auth_transport,
    credentials_from,
    select_mechanisms,
    tls_server_end_point,
)
from ..config._options import Options, make_options
from ..config._tls import build_ssl_context, server_name_override
from ..protocol import ClientConnection, LocalProtocolError
from ..protocol._sasl import SASLMechanism
from ..proxy import parse_proxy_url, resolve_ipv4, start_handshake
from ._session import SessionSettings
from ._tokens import TokenSource
from ._transport import SocketPlan

__all__ = ["machine_fqdn", "make_socket_plan", "pool_options", "session_settings"]


def pool_options(options: dict[str, Any]) -> Options:
    return make_options(**options)


def session_settings(options: Options) -> SessionSettings:
    logger = _logger(options)
    return SessionSettings(
        host=options.host,
        port=options.port,
        secure=options.secure,
        starttls="never"
        if options.ignore_tls
        else ("required" if options.require_tls else "opportunistic"),
        ssl_context=build_ssl_context(options.tls)
        if options.secure or not options.ignore_tls
        else None,
        server_hostname=server_name_override(options.tls) or options.host,
        name=options.name,
        local_address=options.local_address,
        lmtp=options.lmtp,
        connection_timeout=options.connection_timeout,
        greeting_timeout=options.greeting_timeout,
        socket_timeout=options.socket_timeout,
        keepalive=_keepalive_idle(options.keepalive),
        **_proxy_tls(options),
        debug=bool(options.debug),
        logger=logger,
        authenticator=_authenticator(options),
        renewable=_renewable(options),
        pipelining=options.pipelining,
        chunking_window=options.chunking_window,
        chunking_window_bytes=options.chunking_window_bytes,
    )


def _keepalive_idle(keepalive: bool | float) -> float | None:
    if keepalive is True:
        return 30.0
    return float(keepalive) if keepalive else None


def _proxy_tls(options: Options) -> dict[str, Any]:
    """An https:// proxy's TLS settings (verified like ``tls``, against the proxy's name)."""
    if options.proxy is None or not parse_proxy_url(options.proxy).tls:
        return {}
    return {
        "proxy_ssl_context": build_ssl_context(options.proxy_tls),
        "proxy_hostname": server_name_override(options.proxy_tls)
        or parse_proxy_url(options.proxy).host,
    }


def _logger(options: Options) -> logging.Logger:
    """The logger to use: the caller's, the shared "rawsmtp" one, or a private stderr one.

    ``logger=True`` prints to stderr through a logger of its own (named "rawsmtp", outside the
    logging tree): nothing propagates, so an application's ``basicConfig`` does not print each
    line a second time. ``debug=True`` logs the protocol at DEBUG (secrets redacted), lowering
    the logger's level; with nowhere to print (no ``logger``, no handler configured) it prints
    to stderr as ``logger=True`` does.
    """
    if isinstance(options.logger, logging.Logger):
        logger = options.logger
    else:
        logger = logging.getLogger("rawsmtp")
        if options.logger is True or (options.debug and not logger.hasHandlers()):
            return _console_logger(logging.DEBUG if options.debug else logging.INFO)
    if options.debug and logger.getEffectiveLevel() > logging.DEBUG:
        logger.setLevel(logging.DEBUG)
    return logger


def _console_logger(level: int) -> logging.Logger:
    """A logger of the pool's own, printing to stderr: not registered, so it has no parent."""
    logger = logging.Logger("rawsmtp", level)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s rawsmtp %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    return logger


def _renewable(options: Options) -> bool:
    credentials = credentials_from(options.auth) if options.auth is not None else None
    return credentials is not None and credentials.renewable


def _authenticator(options: Options) -> Any:
    """A function that builds the SASL mechanisms for one attempt, the first and its fallbacks
    (run in a worker thread)."""
    if options.auth is None:
        return None
    credentials = credentials_from(options.auth)
    tokens = TokenSource(credentials) if credentials.uses_tokens else None
    # The token each connection last tried, so a renewal knows which token was refused; weak,
    # so the entries of closed connections go with them.
    last_token: weakref.WeakKeyDictionary[ClientConnection, str] = weakref.WeakKeyDictionary()

    def authenticate(
        core: ClientConnection, host: str, renew: bool, certificate: bytes | None
    ) -> tuple[SASLMechanism, ...]:
        check_auth_transport(host, core.tls, options.allow_insecure_auth)
        token = None
        if tokens is not None:
            token = tokens.renew(last_token.get(core)) if renew else tokens.token()
            last_token[core] = token
        return select_mechanisms(
            core.extensions.auth,
            credentials,
            preferred=options.auth_method,
            token=token,
            host=host,
            port=options.port,
            channel_binding=tls_server_end_point(certificate) if certificate else None,
        )

    return authenticate


@functools.cache
def machine_fqdn() -> str | None:
    """The machine's FQDN when it has a dot (asked once; it may take a DNS query)."""
    name = socket.getfqdn()
    return name if "." in name and not name.startswith("localhost") else None


def make_socket_plan(options: Options) -> SocketPlan:
    """Run in a worker: the get_socket hook, else name resolution (both may block)."""
    fqdn = None if options.name else machine_fqdn()
    if options.get_socket is not None:
        provided = options.get_socket(options.host, options.port)
        if provided is not None:
            sock, secured = provided if isinstance(provided, tuple) else (provided, False)
            if not isinstance(sock, socket.socket):
                raise LocalProtocolError("get_socket must return a socket, (socket, bool) or None")
            return SocketPlan(sock=sock, secured=bool(secured), addresses=(), local_hostname=fqdn)
    if options.proxy is not None:
        return _proxy_plan(options, fqdn)
    return SocketPlan(
        sock=None,
        secured=False,
        addresses=_resolve(options.host, options.port),
        local_hostname=fqdn,
    )


def _proxy_plan(options: Options, fqdn: str | None) -> SocketPlan:
    """Connect to the proxy, with a handshake that asks it for the target (SOCKS4: by address)."""
    url = parse_proxy_url(options.proxy or "")
    target = (
        resolve_ipv4(options.host, options.port) if url.needs_local_resolution else options.host
    )
    return SocketPlan(
        sock=None,
        secured=False,
        addresses=_resolve(url.host, url.port),
        local_hostname=fqdn,
        proxy=start_handshake(url, target, options.port),
    )


def _resolve(host: str, port: int) -> tuple[tuple[Any, ...], ...]:
    try:
        return tuple(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
    except OSError as error:
        raise SMTPConnectionError(f"cannot resolve {host!r}: {error}") from error
