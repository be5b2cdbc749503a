"""Whether to authenticate at all on this link, and with which mechanism.

Policy lives here, apart from the mechanisms: the preference orders (strongest first), what
each kind of credentials can use, and the rule that secrets travel in clear only to loopback.

Channel binding (RFC 5802 section 6): with TLS binding data, a SCRAM-*-PLUS the server offers
comes first. A plain SCRAM then says ``y`` (the client could bind) only when the server offers no
-PLUS at all; when the user asked for plain SCRAM although -PLUS is offered, it says ``n``, a
choice not to bind, which such a server accepts.

Fallback: the pool hands the client core every offered mechanism the credentials can use,
strongest first (:func:`select_mechanisms`); the core moves to the next only when the server
refuses the mechanism itself (504, 534, 538: see ``MECHANISM_REFUSED``), never after a refused
login (535: trying again multiplies failed logins and lockouts) nor when a mechanism failed the
server (a SCRAM server signature that does not verify may be an attack). An ``auth_method``
the user chose has no fallback.

A password that SASLprep refuses (see :mod:`._saslprep`) rules out SCRAM only: the choice falls
to the next mechanism, and the SASLprep reason is the error when nothing else is left.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from .._errors import SMTPAuthenticationError, SMTPConfigError
from ..protocol._sasl import SASLMechanism
from ._channel_binding import ChannelBinding
from ._credentials import Credentials
from ._oauth import OAuthBearer, XOAuth2
from ._password import CramMD5, Login, Plain
from ._scram import Scram, prepare_credentials

__all__ = ["KNOWN_MECHANISMS", "check_auth_transport", "select_mechanisms"]


@dataclass(frozen=True, slots=True)
class _Attempt:
    """What a mechanism may be built from for one attempt."""

    credentials: Credentials
    token: str | None
    host: str
    port: int | None
    channel_binding: ChannelBinding | None  # for -PLUS
    binding_declined: ChannelBinding | None  # for plain SCRAM: "y" when given, else "n"


_Factory = Callable[[_Attempt], SASLMechanism]


def _token(attempt: _Attempt) -> str:
    assert attempt.token is not None
    return attempt.token


def _scram(hash_name: str, *, plus: bool) -> _Factory:
    def make(a: _Attempt) -> SASLMechanism:
        binding = a.channel_binding if plus else a.binding_declined
        return Scram(hash_name, a.credentials, channel_binding=binding, plus=plus)

    return make


# Strongest first; a channel-bound SCRAM beats a stronger hash without binding. LOGIN and
# CRAM-MD5 cannot carry an authzid, so they are left out when one is set rather than silently
# logging in as the user instead.
_PASSWORD_MECHANISMS: dict[str, _Factory] = {
    "SCRAM-SHA-256-PLUS": _scram("SHA-256", plus=True),
    "SCRAM-SHA-1-PLUS": _scram("SHA-1", plus=True),
    "SCRAM-SHA-256": _scram("SHA-256", plus=False),
    "SCRAM-SHA-1": _scram("SHA-1", plus=False),
    "PLAIN": lambda a: Plain(a.credentials),
    "LOGIN": lambda a: Login(a.credentials),
    "CRAM-MD5": lambda a: CramMD5(a.credentials),
}
_NO_AUTHZID = frozenset({"LOGIN", "CRAM-MD5"})
_PLUS = frozenset(name for name in _PASSWORD_MECHANISMS if name.endswith("-PLUS"))
_SCRAM = frozenset(name for name in _PASSWORD_MECHANISMS if name.startswith("SCRAM-"))
_TOKEN_MECHANISMS: dict[str, _Factory] = {
    "XOAUTH2": lambda a: XOAuth2(a.credentials.user, _token(a)),
    "OAUTHBEARER": lambda a: OAuthBearer(
        a.credentials.authzid or a.credentials.user, _token(a), host=a.host, port=a.port
    ),
}
KNOWN_MECHANISMS = frozenset(_PASSWORD_MECHANISMS) | frozenset(_TOKEN_MECHANISMS)
"""The SASL mechanism names rawsmtp implements (PLAIN, LOGIN, CRAM-MD5, the SCRAM family with
and without -PLUS, XOAUTH2, OAUTHBEARER): the values the ``auth_method`` option accepts. Any
other name fails with :class:`~rawsmtp.SMTPConfigError` before AUTH is sent."""


def select_mechanisms(
    offered: frozenset[str],
    credentials: Credentials,
    *,
    preferred: str | None,
    token: str | None,
    host: str,
    port: int | None,
    channel_binding: ChannelBinding | None = None,
) -> tuple[SASLMechanism, ...]:
    """Fresh mechanisms for one attempt, the one to try first and then its fallbacks: every
    offered one these credentials can use (a token when ``token`` is given), strongest first;
    only ``preferred`` when given.

    ``channel_binding`` is the TLS binding data of the connection (None without TLS, or when
    the certificate gives none); it makes SCRAM-*-PLUS usable.
    """
    usable, problem = _usable(credentials, token, channel_binding)
    offered = frozenset(name.upper() for name in offered)
    if preferred is not None:
        name = _check_preferred(preferred, usable, problem)
        if name not in offered:
            raise SMTPAuthenticationError(
                f"auth_method {name} is not offered by the server, which offers: "
                + _offering(offered)
            )
        names = [name]
    else:
        names = [n for n in usable if n in offered]
        if not names:
            why = f" ({problem})" if problem is not None and offered & _SCRAM else ""
            raise SMTPAuthenticationError(
                "the server offers no mechanism usable with these credentials: "
                + _offering(offered)
                + why
            )
    declined = channel_binding if not offered & _PLUS else None
    attempt = _Attempt(credentials, token, host, port, channel_binding, declined)
    return tuple(usable[name](attempt) for name in names)


def _usable(
    credentials: Credentials, token: str | None, channel_binding: ChannelBinding | None
) -> tuple[dict[str, _Factory], SMTPConfigError | None]:
    """The mechanisms these credentials can use here, and why SCRAM cannot (if it cannot)."""
    if token is not None:
        return _TOKEN_MECHANISMS, None
    if credentials.password is None:
        raise SMTPConfigError(
            "credentials without a password need an access token to authenticate", option="auth"
        )
    excluded = set(_NO_AUTHZID) if credentials.authzid is not None else set()
    if channel_binding is None:
        excluded |= _PLUS
    problem = None
    try:
        prepare_credentials(credentials)
    except SMTPConfigError as error:
        problem = error
        excluded |= _SCRAM
    return {n: f for n, f in _PASSWORD_MECHANISMS.items() if n not in excluded}, problem


def _check_preferred(
    preferred: str, usable: dict[str, _Factory], problem: SMTPConfigError | None
) -> str:
    name = preferred.upper()
    if name not in KNOWN_MECHANISMS:
        raise SMTPConfigError(
            f"unknown auth_method {preferred!r}; known: {_listing(KNOWN_MECHANISMS)}",
            option="auth_method",
        )
    if name in usable:
        return name
    if problem is not None and name in _SCRAM:
        raise problem
    if name in _PLUS and usable is not _TOKEN_MECHANISMS:  # a password, but no binding data
        raise SMTPAuthenticationError(
            f"auth_method {name} needs TLS channel binding, which this connection does not "
            "have (no TLS, or no tls-server-end-point binding for the server's certificate)"
        )
    raise SMTPConfigError(
        f"auth_method {name} cannot be used with these credentials", option="auth_method"
    )


def _listing(names: frozenset[str]) -> str:
    return ", ".join(sorted(names)) or "(none)"


def _offering(offered: frozenset[str]) -> str:
    if offered:
        return _listing(offered)
    # Credentials were given, so sending without AUTH is not an option; say the likely cause.
    return "(none): it does not offer AUTH on this connection (many offer it only after STARTTLS)"


def check_auth_transport(host: str, tls: bool, allow_insecure: bool) -> None:
    """Refuse to send credentials in clear to anything but this machine."""
    if tls or allow_insecure or is_loopback(host):
        return
    raise SMTPAuthenticationError(
        f"refusing to send credentials to {host} over an unencrypted connection: "
        "use TLS (secure=True or STARTTLS) or set allow_insecure_auth=True",
        command=None,
    )


def is_loopback(host: str) -> bool:
    """``localhost``, ``*.localhost`` (RFC 6761), 127.0.0.0/8 and ::1 (also IPv4-mapped)."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback
