"""Connection URLs and the keyword arguments create_transport builds from a URL or a dict."""

from __future__ import annotations

import ssl
import sys
import types
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rawsmtp import SMTPConfigError
from rawsmtp.config._options import make_options
from rawsmtp.config._url import create_transport, options_from_url, pool_kwargs


def url_error(url: str) -> SMTPConfigError:
    with pytest.raises(SMTPConfigError) as info:
        options_from_url(url)
    assert isinstance(info.value, ValueError)
    return info.value


def test_nodemailer_style_url() -> None:
    url = (
        "smtp://user%40gmail.com:p%40ss%3Aw%2Frd@smtp.gmail.com:587"
        "?maxConnections=3&rateDelta=2000&pool=true&tls.rejectUnauthorized=false"
        "&name=client.example.com"
    )
    kwargs = options_from_url(url)
    assert kwargs["auth"] == {"user": "user@gmail.com", "pass": "p@ss:w/rd"}
    options = make_options(**kwargs)
    assert (options.host, options.port, options.secure) == ("smtp.gmail.com", 587, False)
    assert options.max_connections == 3
    assert options.rate_delta == 2.0
    assert options.pool is True
    assert options.name == "client.example.com"
    assert options.tls == {"reject_unauthorized": False}


@pytest.mark.parametrize(
    ("url", "secure", "lmtp", "port"),
    [
        ("smtp://mail.example.com", False, False, 587),
        ("smtps://mail.example.com", True, False, 465),
        ("SMTPS://mail.example.com", True, False, 465),
        ("lmtp://mail.example.com:24", False, True, 24),
        ("smtp://mail.example.com:25", False, False, 25),
        ("smtps://mail.example.com:2465", True, False, 2465),
    ],
)
def test_schemes(url: str, secure: bool, lmtp: bool, port: int) -> None:
    options = make_options(**options_from_url(url))
    assert (options.secure, options.lmtp, options.port) == (secure, lmtp, port)
    assert options.host == "mail.example.com"


def test_ipv6_host() -> None:
    options = make_options(**options_from_url("smtp://[::1]:2525"))
    assert (options.host, options.port) == ("::1", 2525)
    assert options_from_url("smtps://[2001:db8::25]")["host"] == "2001:db8::25"


def test_no_host_means_the_default() -> None:
    assert make_options(**options_from_url("smtp://")).host == "localhost"
    assert make_options(**options_from_url("smtp:///?debug=true")).debug is True


def test_user_without_password() -> None:
    assert options_from_url("smtp://alice@h")["auth"] == {"user": "alice"}
    assert options_from_url("smtp://alice:@h")["auth"] == {"user": "alice", "pass": ""}
    assert "auth" not in options_from_url("smtp://h")


def test_query_values_convert_by_type() -> None:
    kwargs = options_from_url(
        "smtp://h?max_messages=10&rate_limit=5&rate_delta=0.5&connectionTimeout=1500"
        "&ignoreTLS=1&debug=TRUE&logger=false&authMethod=login&service=gmail"
        "&proxy=socks5%3A%2F%2F127.0.0.1%3A1080&local_address=192.0.2.1&maxRetries=0"
    )
    options = make_options(**kwargs)
    assert options.max_messages == 10 and options.rate_limit == 5
    assert options.rate_delta == 0.5
    assert options.connection_timeout == 1.5
    assert options.ignore_tls is True and options.debug is True and options.logger is False
    assert options.auth_method == "LOGIN"
    assert options.host == "h" and options.port == 465  # the URL's host, the service's port
    assert options.proxy == "socks5://127.0.0.1:1080"
    assert options.local_address == "192.0.2.1" and options.max_retries == 0


def test_tls_arguments_build_the_tls_dict() -> None:
    kwargs = options_from_url(
        "smtps://h?tls.rejectUnauthorized=false&tls.servername=mx.example.com"
        "&tls.minVersion=TLSv1.3&tls.ciphers=ECDHE%2BAESGCM"
    )
    assert kwargs["tls"] == {
        "reject_unauthorized": False,
        "servername": "mx.example.com",
        "min_version": "TLSv1.3",
        "ciphers": "ECDHE+AESGCM",
    }
    assert make_options(**kwargs).tls == {
        "reject_unauthorized": False,
        "servername": "mx.example.com",
        "min_version": ssl.TLSVersion.TLSv1_3,
        "ciphers": "ECDHE+AESGCM",
    }


@pytest.mark.parametrize(
    ("url", "option"),
    [
        ("http://h", "url"),
        ("smtpx://h", "url"),
        ("h:25", "url"),
        ("smtp://h/some/path", "url"),
        ("smtp://h#frag", "url"),
        ("smtp://h?novalue", "url"),
        ("smtp://h:99999", "port"),
        ("smtp://h:port", "port"),
        ("smtp://h?frobnicate=1", "frobnicate"),
        ("smtp://h?maxConections=3", "maxConections"),
        ("smtp://h?maxConnections=three", "maxConnections"),
        ("smtp://h?maxConnections=1.5", "maxConnections"),
        ("smtp://h?debug=yes", "debug"),
        ("smtp://h?debug=1&debug=0", "debug"),
        ("smtp://h?host=other", "host"),
        ("smtp://h?port=25", "port"),
        ("smtp://h?secure=true", "secure"),
        ("smtp://h?auth=x", "auth"),
        ("smtp://h?getSocket=x", "getSocket"),
        ("smtp://h?tls.verify=false", "tls.verify"),
        ("smtp://h?tls.rejectUnauthorized=no", "tls.rejectUnauthorized"),
    ],
)
def test_bad_urls(url: str, option: str) -> None:
    assert url_error(url).option == option


def test_unknown_query_key_suggests() -> None:
    assert "maxConnections" in str(url_error("smtp://h?maxConections=3"))


def test_values_are_checked_by_make_options() -> None:
    kwargs = options_from_url("smtp://h?maxConnections=0")
    with pytest.raises(SMTPConfigError) as info:
        make_options(**kwargs)
    assert info.value.option == "maxConnections"


@given(st.integers(min_value=1, max_value=10**6))
def test_max_connections_round_trips_through_a_url(n: int) -> None:
    assert make_options(**options_from_url(f"smtp://h?maxConnections={n}")).max_connections == n
    assert make_options(**options_from_url(f"smtp://h?max_connections={n}")).max_connections == n


@given(st.integers(min_value=1, max_value=65535))
def test_port_round_trips_through_a_url(port: int) -> None:
    assert make_options(**options_from_url(f"smtp://h:{port}")).port == port


@given(st.text(min_size=1, max_size=20), st.text(max_size=20), st.sampled_from(["//", ""]))
def test_any_credentials_round_trip_percent_encoded(user: str, password: str, slashes: str) -> None:
    from urllib.parse import quote

    url = f"smtp:{slashes}{quote(user, safe='')}:{quote(password, safe='')}@h"
    assert options_from_url(url)["auth"] == {"user": user, "pass": password}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "smtp:user:pass@mail.example.com:587",
            {"secure": False, "host": "mail.example.com", "port": 587},
        ),
        ("smtps:u%40x.com:p%3Aw@h:465", {"secure": True, "host": "h", "port": 465}),
        ("smtp:h", {"secure": False, "host": "h"}),
        ("smtps:[::1]:2465?maxConnections=2", {"secure": True, "host": "::1", "port": 2465}),
        ("lmtp:h:24", {"lmtp": True, "host": "h", "port": 24}),
    ],
)
def test_nodemailer_url_without_slashes(url: str, expected: dict[str, Any]) -> None:
    """Nodemailer reads ``smtp:user:pass@host:port`` as if it had the ``//``: so do we."""
    with_slashes = url.replace(":", "://", 1)
    assert options_from_url(url) == options_from_url(with_slashes)
    kwargs = options_from_url(url)
    assert {key: kwargs[key] for key in expected} == expected
    if "@" in url:
        assert kwargs["auth"]["user"] in ("user", "u@x.com")


@pytest.mark.parametrize("url", ["smtp:/h", "smtp:/h/path", "smtp:h/path", "smtp:h#x"])
def test_slashless_url_still_refuses_a_path(url: str) -> None:
    assert url_error(url).option == "url"


# -- pool_kwargs: what create_transport hands to SMTPPool ------------------------------------


def test_pool_kwargs_from_url() -> None:
    assert pool_kwargs("smtps://u:p@h?maxConnections=3") == {
        "secure": True,
        "host": "h",
        "auth": {"user": "u", "pass": "p"},
        "maxConnections": 3,
    }


def test_pool_kwargs_from_dict_keeps_either_spelling() -> None:
    given_options: dict[str, Any] = {"host": "h", "maxConnections": 2, "rateDelta": 500}
    kwargs = pool_kwargs(given_options)
    assert kwargs == given_options and kwargs is not given_options
    options = make_options(**kwargs)
    assert (options.max_connections, options.rate_delta) == (2, 0.5)


def test_pool_kwargs_none_is_defaults() -> None:
    assert pool_kwargs() == {}
    assert pool_kwargs(None, host="h") == {"host": "h"}


@pytest.mark.parametrize(
    ("base", "overrides", "expected"),
    [
        ("smtp://h?maxConnections=3", {"max_connections": 4}, 4),
        ("smtp://h?max_connections=3", {"maxConnections": 4}, 4),
        ({"maxConnections": 3}, {"max_connections": 4}, 4),
        ({"max_connections": 3}, {}, 3),
    ],
)
def test_overrides_win_whatever_the_spelling(
    base: str | dict[str, Any], overrides: dict[str, Any], expected: int
) -> None:
    assert make_options(**pool_kwargs(base, **overrides)).max_connections == expected


def test_override_replaces_url_auth_and_tls() -> None:
    kwargs = pool_kwargs("smtp://u:p@h?tls.rejectUnauthorized=false", auth=("a", "b"), tls=None)
    assert kwargs["auth"] == ("a", "b") and kwargs["tls"] is None


def test_pool_kwargs_rejects_unknown_overrides_and_bad_input() -> None:
    with pytest.raises(SMTPConfigError) as info:
        pool_kwargs("smtp://h", maxConections=3)
    assert info.value.option == "maxConections"
    with pytest.raises(SMTPConfigError):
        pool_kwargs(42)  # type: ignore[arg-type]


def test_create_transport_builds_a_pool_from_pool_kwargs(monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in pool module, so this runs whatever state the real pool is in.
    built: list[dict[str, Any]] = []

    class FakePool:
        def __init__(self, **kwargs: Any) -> None:
            built.append(kwargs)

    module = types.ModuleType("rawsmtp.pool._selectors")
    module.SMTPPool = FakePool  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rawsmtp.pool._selectors", module)
    pool = create_transport("smtps://u:p@h?maxConnections=3", max_connections=4)
    assert isinstance(pool, FakePool)
    assert built == [pool_kwargs("smtps://u:p@h?maxConnections=3", max_connections=4)]
    assert built[0]["max_connections"] == 4 and "maxConnections" not in built[0]
