"""The ``tls`` option: from an ``ssl.SSLContext`` or a dict of settings to the context to use.

Certificates and host names are verified unless the dict says ``reject_unauthorized=False``;
that is the only switch that turns verification off, so turning it off is always explicit. The
dict accepts our snake_case keys and the camelCase keys of Node's ``tls`` options, which
Nodemailer users already have in their configuration.

``x509_strict=False`` clears only ``ssl.VERIFY_X509_STRICT``, which Python 3.13 turned on by
default: it rejects some certificates that providers really serve (a CA certificate without the
key-usage extension, a critical basic-constraints the RFC 5280 profile forbids); the chain and
the host name are still verified.

``min_version`` may be lowered to ``"TLSv1"`` or ``"TLSv1.1"`` for old servers. The default
stays TLS 1.2, Python warns about the old versions, and OpenSSL's security level may still refuse
them (``ciphers="DEFAULT:@SECLEVEL=0"`` lowers it).

``ssl`` is imported when a context is built or a version checked, not with the package: a pool
that never uses TLS (a local relay) does not load OpenSSL, about 4 MB.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._errors import SMTPConfigError

if TYPE_CHECKING:
    import ssl

__all__ = [
    "TLS_FLAGS",
    "build_ssl_context",
    "canonical_tls_key",
    "normalize_tls",
    "server_name_override",
]

_VERSIONS = {  # Node's names -> ssl.TLSVersion members
    "TLSv1": "TLSv1",
    "TLSv1.1": "TLSv1_1",
    "TLSv1.2": "TLSv1_2",
    "TLSv1.3": "TLSv1_3",
}


def _fail(key: str, message: str) -> SMTPConfigError:
    return SMTPConfigError(f"tls.{key}: {message}", option=f"tls.{key}")


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(key, f"must be True or False, not {value!r}")
    return value


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(key, f"must be a non-empty str, not {value!r}")
    return value


def _path(key: str, value: Any) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    return _text(key, value)


def _pem(key: str, value: Any) -> str | bytes:
    # Node accepts a list of PEM strings; ssl wants them concatenated.
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        value = "\n".join(value)
    if isinstance(value, bytes) and value:
        return value  # DER, as ssl.SSLContext.load_verify_locations(cadata=bytes) expects
    return _text(key, value)


def _version(key: str, value: Any) -> ssl.TLSVersion:
    import ssl

    if isinstance(value, ssl.TLSVersion):
        return value
    if isinstance(value, str) and value in _VERSIONS:
        return ssl.TLSVersion[_VERSIONS[value]]
    raise _fail(key, f"must be one of {', '.join(_VERSIONS)}, not {value!r}")


# canonical key -> (checker, other spellings). Node's spellings come last in each row.
_KEYS: dict[str, tuple[Callable[[str, Any], Any], tuple[str, ...]]] = {
    "reject_unauthorized": (_bool, ("rejectUnauthorized",)),
    "x509_strict": (_bool, ("x509Strict",)),
    "ca_file": (_path, ("cafile", "caFile")),
    "ca_path": (_path, ("capath", "caPath")),
    "ca_data": (_pem, ("cadata", "caData")),
    "cert_file": (_path, ("certfile", "certFile")),
    "key_file": (_path, ("keyfile", "keyFile")),
    "key_password": (_text, ("password", "passphrase")),
    "min_version": (_version, ("minVersion",)),
    "max_version": (_version, ("maxVersion",)),
    "ciphers": (_text, ()),
    "servername": (_text, ("server_hostname", "serverName")),
}
TLS_FLAGS = frozenset(key for key, (check, _) in _KEYS.items() if check is _bool)
_SPELLINGS = {alias: key for key, (_, aliases) in _KEYS.items() for alias in (key, *aliases)}


def canonical_tls_key(key: str, value: Any) -> str:
    """The canonical name of a tls key; Node's ``ca`` is PEM text, else we take it as a path."""
    if key == "ca":
        is_pem = isinstance(value, list | tuple | bytes) or "-----BEGIN" in str(value)
        return "ca_data" if is_pem else "ca_file"
    if key not in _SPELLINGS:
        close = difflib.get_close_matches(key, [*_SPELLINGS, "ca"], n=1)
        hint = f"; did you mean tls.{close[0]}?" if close else ""
        raise SMTPConfigError(f"unknown TLS option tls.{key}{hint}", option=f"tls.{key}")
    return _SPELLINGS[key]


def normalize_tls(tls: dict[str, Any]) -> dict[str, Any]:
    """Check a tls dict; return a new one with canonical keys and checked values."""
    result: dict[str, Any] = {}
    for key, value in tls.items():
        name = canonical_tls_key(str(key), value)
        if name in result:
            raise _fail(name, "given twice (under two spellings)")
        result[name] = _KEYS[name][0](name, value)
    if "key_file" in result and "cert_file" not in result:
        raise _fail("key_file", "needs tls.cert_file")
    return result


def server_name_override(tls: ssl.SSLContext | dict[str, Any] | None) -> str | None:
    """The name to send in SNI and check the certificate against, when it is not the host."""
    if not isinstance(tls, dict):
        return None
    name: str | None = normalize_tls(tls).get("servername")
    return name


def build_ssl_context(tls: ssl.SSLContext | dict[str, Any] | None) -> ssl.SSLContext:
    """The context for TLS connections: a given one as it is, else a verifying default."""
    import ssl

    if isinstance(tls, ssl.SSLContext):
        return tls
    if tls is None:
        return ssl.create_default_context()
    settings = normalize_tls(tls)
    try:
        # With a CA given only that CA is trusted, as with Node's ``ca``.
        context = ssl.create_default_context(
            cafile=settings.get("ca_file"),
            capath=settings.get("ca_path"),
            cadata=settings.get("ca_data"),
        )
    except (OSError, ValueError) as error:
        option = next(k for k in ("ca_file", "ca_path", "ca_data") if k in settings)
        raise _fail(option, f"cannot load CA certificates: {error}") from error
    _configure(context, settings)
    return context


def _configure(context: ssl.SSLContext, settings: dict[str, Any]) -> None:
    import ssl

    if "min_version" in settings:
        context.minimum_version = settings["min_version"]
    if "max_version" in settings:
        context.maximum_version = settings["max_version"]
    if "ciphers" in settings:
        try:
            context.set_ciphers(settings["ciphers"])
        except ssl.SSLError as error:
            raise _fail("ciphers", f"no usable cipher in {settings['ciphers']!r}") from error
    if "cert_file" in settings:
        try:
            context.load_cert_chain(
                settings["cert_file"], settings.get("key_file"), settings.get("key_password")
            )
        except (OSError, ValueError) as error:
            raise _fail("cert_file", f"cannot load client certificate: {error}") from error
    if settings.get("x509_strict") is False:
        context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    if settings.get("reject_unauthorized") is False:
        # check_hostname must go first: ssl refuses CERT_NONE while it is on.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
