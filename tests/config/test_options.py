"""Pool options: defaults, both spellings, milliseconds, ranges, services and the errors' option."""

from __future__ import annotations

import dataclasses
import logging
import ssl
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rawsmtp import LocalProtocolError, SMTPConfigError
from rawsmtp.config._options import (
    Options,
    canonical_option,
    make_options,
    option_text_value,
    tls_text_value,
)


def config_error(**kwargs: Any) -> SMTPConfigError:
    """The error make_options raises for kwargs, checked to be a ValueError too."""
    with pytest.raises(SMTPConfigError) as info:
        make_options(**kwargs)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, LocalProtocolError)
    return info.value


def test_defaults() -> None:
    options = make_options()
    assert options == Options()
    assert (options.host, options.port, options.secure) == ("localhost", 587, False)
    assert (options.ignore_tls, options.require_tls, options.lmtp) == (False, False, False)
    assert (options.connection_timeout, options.greeting_timeout) == (120.0, 30.0)
    assert (options.socket_timeout, options.idle_timeout) == (600.0, 300.0)
    assert options.max_connection_age is None
    assert (options.max_connections, options.max_messages, options.max_retries) == (5, 100, 3)
    assert (options.rate_limit, options.rate_delta, options.max_queue) == (None, 1.0, None)
    assert options.tls is None and options.auth is None and options.proxy is None
    assert options.pool is True and options.allow_insecure_auth is False


def test_options_is_frozen_and_slotted() -> None:
    options = make_options()
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.host = "elsewhere"  # type: ignore[misc]
    assert not hasattr(options, "__dict__")


@pytest.mark.parametrize(
    ("kwargs", "port"),
    [
        ({}, 587),
        ({"secure": True}, 465),
        ({"secure": False}, 587),
        ({"secure": True, "port": 2465}, 2465),
        ({"port": 25}, 25),
        ({"port": None}, 587),
        ({"port": None, "secure": True}, 465),
        ({"service": "gmail"}, 465),
        ({"service": "SendGrid"}, 587),
        ({"service": "postmark"}, 2525),
        ({"service": "gmail", "port": 587}, 587),
    ],
)
def test_port_resolution(kwargs: dict[str, Any], port: int) -> None:
    assert make_options(**kwargs).port == port


def test_service_fills_host_port_secure() -> None:
    options = make_options(service="gmail")
    assert (options.host, options.port, options.secure) == ("smtp.gmail.com", 465, True)
    assert options.service == "gmail"


@pytest.mark.parametrize("service", ["Gmail", "GMAIL", "google mail", "Google-Mail", "gmail.com"])
def test_service_spellings(service: str) -> None:
    assert make_options(service=service).host == "smtp.gmail.com"


def test_explicit_options_beat_the_service() -> None:
    options = make_options(service="gmail", host="relay.example.com", secure=False)
    assert (options.host, options.port, options.secure) == ("relay.example.com", 465, False)


def test_service_extras_are_defaults_too() -> None:
    assert make_options(service="zoho").auth_method == "LOGIN"
    assert make_options(service="zoho", auth_method="plain").auth_method == "PLAIN"
    assert make_options(service="proton").require_tls is True
    assert make_options(service="proton", ignore_tls=True).require_tls is False


def test_unknown_service() -> None:
    assert config_error(service="no-such-mail").option == "service"


def test_camel_case_times_are_milliseconds() -> None:
    options = make_options(
        connectionTimeout=5000,
        greetingTimeout=1500,
        socketTimeout=60000,
        idleTimeout=2000,
        maxConnectionAge=250,
        rateDelta=2000,
    )
    assert options.connection_timeout == 5.0
    assert options.greeting_timeout == 1.5
    assert options.socket_timeout == 60.0
    assert options.idle_timeout == 2.0
    assert options.max_connection_age == 0.25
    assert options.rate_delta == 2.0


def test_snake_case_times_are_seconds() -> None:
    options = make_options(connection_timeout=5, rate_delta=0.5, max_connection_age=3600)
    assert options.connection_timeout == 5.0 and isinstance(options.connection_timeout, float)
    assert options.rate_delta == 0.5
    assert options.max_connection_age == 3600.0


@pytest.mark.parametrize(
    ("camel", "snake", "value"),
    [
        ("maxConnections", "max_connections", 7),
        ("maxMessages", "max_messages", 9),
        ("rateLimit", "rate_limit", 3),
        ("maxQueue", "max_queue", 50),
        ("maxRetries", "max_retries", 0),
        ("ignoreTLS", "ignore_tls", True),
        ("requireTLS", "require_tls", True),
        ("localAddress", "local_address", "192.0.2.1"),
        ("authMethod", "auth_method", "LOGIN"),
        ("allowInsecureAuth", "allow_insecure_auth", True),
    ],
)
def test_camel_case_aliases(camel: str, snake: str, value: Any) -> None:
    assert getattr(make_options(**{camel: value}), snake) == value
    assert canonical_option(camel) == snake
    error = config_error(**{camel: value, snake: value})
    assert error.option == snake
    assert camel in str(error) and snake in str(error)


def test_get_socket_alias() -> None:
    def hook(host: str, port: int) -> None:
        return None

    assert make_options(getSocket=hook).get_socket is hook
    assert config_error(get_socket="not callable").option == "get_socket"


def test_unknown_option_suggests_a_spelling() -> None:
    error = config_error(max_conections=3)
    assert error.option == "max_conections"
    assert "max_connections" in str(error)
    assert "maxConnections" in str(config_error(maxConections=3))
    assert "ignoreTLS" in str(config_error(ignoreTls=True))
    assert config_error(frobnicate=1).option == "frobnicate"


_NUMBER_CASES: list[tuple[str, list[Any], list[Any]]] = [
    # (option, valid values, invalid values)
    ("max_connections", [1, 2, 1000], [0, -1, 1.5, "5", True, None]),
    ("max_messages", [1, 10**6], [0, -5, 2.0, "100", False, None]),
    ("rate_limit", [1, 50, None], [0, -1, 0.5, "1", True]),
    ("max_queue", [1, 10000, None], [0, -1, 3.0, "x", True]),
    ("max_retries", [0, 1, 10], [-1, 1.0, "3", True, None]),
    ("port", [1, 25, 465, 587, 65535, None], [0, -1, 65536, 25.0, "25", True]),
    ("connection_timeout", [0.001, 1, 120.5], [0, -1, float("inf"), float("nan"), "1", True, None]),
    ("greeting_timeout", [0.5, 30], [0, -0.1, float("inf"), "30", None]),
    ("socket_timeout", [1e-3, 600], [0, -600, float("-inf"), False, None]),
    ("idle_timeout", [0.1, 300], [0, -1, float("nan"), "300", None]),
    ("max_connection_age", [1, 3600.0, None], [0, -1, float("inf"), "1h"]),
    ("rate_delta", [0.001, 1, 60], [0, -1, float("inf"), "1", True, None]),
]


@pytest.mark.parametrize(
    ("option", "value"),
    [(option, value) for option, good, _ in _NUMBER_CASES for value in good],
)
def test_numbers_in_range(option: str, value: Any) -> None:
    result = getattr(make_options(**{option: value}), option)
    if value is not None:
        assert result == value
    elif option != "port":
        assert result is None


@pytest.mark.parametrize(
    ("option", "value"),
    [(option, value) for option, _, bad in _NUMBER_CASES for value in bad],
)
def test_numbers_out_of_range_or_wrong_type(option: str, value: Any) -> None:
    assert config_error(**{option: value}).option == option


def test_errors_name_the_spelling_used() -> None:
    assert config_error(maxConnections=0).option == "maxConnections"
    assert config_error(connectionTimeout=-1).option == "connectionTimeout"
    assert config_error(rateDelta="1000").option == "rateDelta"


_FLAGS = ["secure", "ignore_tls", "require_tls", "debug", "allow_insecure_auth", "lmtp", "pool"]


@pytest.mark.parametrize("option", _FLAGS)
@pytest.mark.parametrize("value", ["yes", "true", 1, 0, None, [], "False"])
def test_flags_must_be_real_bools(option: str, value: Any) -> None:
    assert config_error(**{option: value}).option == option


@pytest.mark.parametrize("option", _FLAGS)
def test_flags_accept_bools(option: str) -> None:
    assert getattr(make_options(**{option: True}), option) is True
    assert getattr(make_options(**{option: False}), option) is False


def test_ignore_tls_and_require_tls_contradict() -> None:
    error = config_error(ignore_tls=True, require_tls=True)
    assert error.option == "require_tls"
    make_options(ignore_tls=True, require_tls=False)
    make_options(ignore_tls=False, require_tls=True)


@pytest.mark.parametrize("host", ["smtp.example.com", "127.0.0.1", "::1", "localhost"])
def test_host_accepted(host: str) -> None:
    assert make_options(host=host).host == host


@pytest.mark.parametrize("host", ["", "a b", "mail\r\n.example", None, 42])
def test_host_rejected(host: Any) -> None:
    assert config_error(host=host).option == "host"


@pytest.mark.parametrize("name", ["client.example.com", "client", "[192.0.2.1]", "[IPv6:::1]"])
def test_name_accepted(name: str) -> None:
    assert make_options(name=name).name == name


@pytest.mark.parametrize("name", ["", "bad name", "x\r\nMAIL FROM:<a@b>", "a" * 300, 5])
def test_name_rejected(name: Any) -> None:
    assert config_error(name=name).option == "name"


def test_local_address() -> None:
    assert make_options(local_address="192.0.2.7").local_address == "192.0.2.7"
    assert config_error(local_address="").option == "local_address"
    assert config_error(localAddress=1).option == "localAddress"


def test_auth_method_is_upper_cased() -> None:
    assert make_options(auth_method="plain").auth_method == "PLAIN"
    assert make_options(authMethod="CRAM-MD5").auth_method == "CRAM-MD5"
    assert config_error(auth_method="PL AIN").option == "auth_method"
    assert config_error(auth_method="").option == "auth_method"


def test_auth_is_passed_through() -> None:
    auth = {"user": "alice@example.com", "pass": "pw"}
    assert make_options(auth=auth).auth is auth
    pair = ("alice", "pw")
    assert make_options(auth=pair).auth is pair


def test_logger() -> None:
    logger = logging.getLogger("test")
    assert make_options(logger=logger).logger is logger
    assert make_options(logger=True).logger is True
    assert make_options(logger=None).logger is None
    assert config_error(logger="rawsmtp").option == "logger"


def test_tls_option() -> None:
    context = ssl.create_default_context()
    assert make_options(tls=context).tls is context
    assert make_options(tls={"rejectUnauthorized": False}).tls == {"reject_unauthorized": False}
    assert make_options(tls={"minVersion": "TLSv1.3"}).tls == {
        "min_version": ssl.TLSVersion.TLSv1_3
    }
    assert config_error(tls="insecure").option == "tls"
    assert config_error(tls={"verify": False}).option == "tls.verify"
    assert config_error(tls={"reject_unauthorized": "false"}).option == "tls.reject_unauthorized"


@pytest.mark.parametrize(
    "proxy",
    [
        "socks5://127.0.0.1:1080",
        "socks5h://proxy.example:1080",
        "socks4://p:1080",
        "socks4a://p",
        "http://user:pw@proxy.example:3128",
        "SOCKS5://p:1080",
        "socks5://[::1]:1080",
        "https://user:pw@proxy.example",
    ],
)
def test_proxy_accepted(proxy: str) -> None:
    assert make_options(proxy=proxy).proxy == proxy


@pytest.mark.parametrize(
    "proxy",
    [
        "ftp://p",
        "p:1080",
        "socks5://",
        "socks5://p:99999",
        "socks5://p:x",
        "",
        1080,
        "http:///x",
    ],
)
def test_proxy_rejected(proxy: Any) -> None:
    assert config_error(proxy=proxy).option == "proxy"


def test_option_text_value_converts_by_type() -> None:
    assert option_text_value("maxConnections", "3") == 3
    assert option_text_value("rate_delta", "0.5") == 0.5
    assert option_text_value("debug", "TRUE") is True
    assert option_text_value("ignoreTLS", "0") is False
    assert option_text_value("name", "client.example.com") == "client.example.com"
    for key, text in [("maxConnections", "3.5"), ("debug", "yes"), ("auth", "x")]:
        with pytest.raises(SMTPConfigError) as info:
            option_text_value(key, text)
        assert info.value.option == key


def test_tls_text_value() -> None:
    assert tls_text_value("rejectUnauthorized", "false") == ("reject_unauthorized", False)
    assert tls_text_value("reject_unauthorized", "1") == ("reject_unauthorized", True)
    assert tls_text_value("servername", "mx") == ("servername", "mx")
    assert tls_text_value("minVersion", "TLSv1.3") == ("min_version", "TLSv1.3")
    with pytest.raises(SMTPConfigError) as info:
        tls_text_value("rejectUnauthorized", "no")
    assert info.value.option == "tls.rejectUnauthorized"
    with pytest.raises(SMTPConfigError) as info:
        tls_text_value("verify", "no")
    assert info.value.option == "tls.verify"


@given(st.integers(min_value=1, max_value=10**9))
def test_any_positive_count_round_trips(n: int) -> None:
    assert make_options(max_connections=n).max_connections == n
    assert make_options(maxMessages=n).max_messages == n


@given(st.integers(max_value=0))
def test_no_non_positive_count_passes(n: int) -> None:
    with pytest.raises(SMTPConfigError):
        make_options(max_connections=n)


@given(st.integers(min_value=1, max_value=65535))
def test_any_port_in_range(port: int) -> None:
    assert make_options(port=port).port == port


@given(st.floats(min_value=1e-3, max_value=1e9))
def test_camel_time_is_snake_time_times_1000(seconds: float) -> None:
    camel = make_options(socketTimeout=seconds * 1000).socket_timeout
    assert camel == pytest.approx(make_options(socket_timeout=seconds).socket_timeout)
