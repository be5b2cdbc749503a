"""Whether to authenticate at all on this link, and with which mechanism.

Policy lives here, apart from the mechanisms: the preference orders (strongest first), what
each kind of credentials can use, and the rule that secrets travel in clear only to loopback.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from .._errors import SMTPConfigError
from ..protocol._errors import SMTPAuthenticationError
from ..protocol._sasl import SASLMechanism
from ._credentials import Credentials
from ._oauth import OAuthBearer, XOAuth2
from ._password import CramMD5, Login, Plain
from ._scram import Scram

__all__ = ["check_auth_transport", "select_mechanism"]


@dataclass(frozen=True, slots=True)
class _Attempt:
    """What a mechanism may be built from for one attempt."""

    credentials: Credentials
    token: str | None
    host: str
    port: int | None


_Factory = Callable[[_Attempt], SASLMechanism]


def _token(attempt: _Attempt) -> str:
    assert attempt.token is not None
    return attempt.token


# Strongest first. LOGIN and CRAM-MD5 cannot carry an authzid, so they are left out when one is
# set rather than silently logging in as the user instead.
_PASSWORD_MECHANISMS: dict[str, _Factory] = {
    "SCRAM-SHA-256": lambda a: Scram("SHA-256", a.credentials),
    "SCRAM-SHA-1": lambda a: Scram("SHA-1", a.credentials),
    "PLAIN": lambda a: Plain(a.credentials),
    "LOGIN": lambda a: Login(a.credentials),
    "CRAM-MD5": lambda a: CramMD5(a.credentials),
}
_NO_AUTHZID = frozenset({"LOGIN", "CRAM-MD5"})
_TOKEN_MECHANISMS: dict[str, _Factory] = {
    "XOAUTH2": lambda a: XOAuth2(a.credentials.user, _token(a)),
    "OAUTHBEARER": lambda a: OAuthBearer(
        a.credentials.authzid or a.credentials.user, _token(a), host=a.host, port=a.port
    ),
}
KNOWN_MECHANISMS = frozenset(_PASSWORD_MECHANISMS) | frozenset(_TOKEN_MECHANISMS)


def select_mechanism(
    offered: frozenset[str],
    credentials: Credentials,
    *,
    preferred: str | None,
    token: str | None,
    host: str,
    port: int | None,
) -> SASLMechanism:
    """A fresh mechanism for one attempt: ``preferred`` if the server offers it, else the
    strongest offered one these credentials can use (a token when ``token`` is given)."""
    usable = _usable(credentials, token)
    offered = frozenset(name.upper() for name in offered)
    if preferred is not None:
        name = _check_preferred(preferred, usable)
        if name not in offered:
            raise SMTPAuthenticationError(
                f"auth_method {name} is not offered by the server, which offers: "
                + _listing(offered)
            )
    else:
        name = next((n for n in usable if n in offered), "")
        if not name:
            raise SMTPAuthenticationError(
                "the server offers no mechanism usable with these credentials: " + _listing(offered)
            )
    return usable[name](_Attempt(credentials, token, host, port))


def _usable(credentials: Credentials, token: str | None) -> dict[str, _Factory]:
    if token is not None:
        return _TOKEN_MECHANISMS
    if credentials.password is None:
        raise SMTPConfigError(
            "credentials without a password need an access token to authenticate", option="auth"
        )
    if credentials.authzid is None:
        return _PASSWORD_MECHANISMS
    return {n: f for n, f in _PASSWORD_MECHANISMS.items() if n not in _NO_AUTHZID}


def _check_preferred(preferred: str, usable: dict[str, _Factory]) -> str:
    name = preferred.upper()
    if name not in KNOWN_MECHANISMS:
        raise SMTPConfigError(
            f"unknown auth_method {preferred!r}; known: {_listing(KNOWN_MECHANISMS)}",
            option="auth_method",
        )
    if name not in usable:
        raise SMTPConfigError(
            f"auth_method {name} cannot be used with these credentials", option="auth_method"
        )
    return name


def _listing(names: frozenset[str]) -> str:
    return ", ".join(sorted(names)) or "(none)"


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
