"""The tls option: verifying defaults, the explicit way out, CA and client certificates.

Handshakes run between two in-memory SSL objects, so certificate checks are tested for real
without a socket.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest

from rawsmtp import SMTPConfigError
from rawsmtp.config._tls import TLS_FLAGS, build_ssl_context, normalize_tls, server_name_override

HOST = "mx.example.test"


def make_cert(directory: Path, name: str = HOST) -> tuple[Path, Path]:
    """A self-signed certificate for ``name`` and its key, made by the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}",
         "-addext", f"subjectAltName=DNS:{name}"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def cert_and_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_cert(tmp_path_factory.mktemp("certs"))


def handshake(client_context: ssl.SSLContext, cert: Path, key: Path, server_hostname: str) -> None:
    """Run a TLS handshake in memory against a server presenting cert; raise what it raises."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    bios = [ssl.MemoryBIO() for _ in range(4)]
    client = client_context.wrap_bio(bios[0], bios[1], server_hostname=server_hostname)
    server = server_context.wrap_bio(bios[2], bios[3], server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for side, obj in (("client", client), ("server", server)):
            try:
                obj.do_handshake()
                done[side] = True
            except ssl.SSLWantReadError:
                pass
            bios[2].write(bios[1].read())
            bios[0].write(bios[3].read())
        if all(done.values()):
            return
    raise AssertionError("handshake did not finish")


def test_default_context_verifies() -> None:
    context = build_ssl_context(None)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_empty_dict_is_the_default() -> None:
    context = build_ssl_context({})
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname is True
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_a_context_is_used_as_given() -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    assert build_ssl_context(context) is context
    assert server_name_override(context) is None


@pytest.mark.parametrize("key", ["reject_unauthorized", "rejectUnauthorized"])
def test_reject_unauthorized_false_turns_verification_off(key: str) -> None:
    context = build_ssl_context({key: False})
    assert context.verify_mode == ssl.CERT_NONE
    assert context.check_hostname is False


@pytest.fixture
def strict_defaults(monkeypatch: pytest.MonkeyPatch) -> int:
    """Default contexts as Python 3.13 makes them (strict, partial chains) on any Python."""
    original = ssl.create_default_context
    strict = ssl.VERIFY_X509_STRICT | ssl.VERIFY_X509_PARTIAL_CHAIN

    def create(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        context = original(*args, **kwargs)
        context.verify_flags |= strict
        return context

    monkeypatch.setattr(ssl, "create_default_context", create)
    return int(ssl.create_default_context().verify_flags)


@pytest.mark.parametrize("key", ["x509_strict", "x509Strict"])
def test_x509_strict_false_clears_only_that_flag(strict_defaults: int, key: str) -> None:
    context = build_ssl_context({key: False})
    assert int(context.verify_flags) == strict_defaults & ~ssl.VERIFY_X509_STRICT
    assert context.verify_flags & ssl.VERIFY_X509_PARTIAL_CHAIN
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname is True


def test_x509_strict_true_or_absent_keeps_the_default(strict_defaults: int) -> None:
    assert int(build_ssl_context({"x509_strict": True}).verify_flags) == strict_defaults
    assert int(build_ssl_context({}).verify_flags) == strict_defaults


def test_x509_strict_from_a_url() -> None:
    from rawsmtp.config._options import make_options
    from rawsmtp.config._url import options_from_url

    options = make_options(**options_from_url("smtps://h?tls.x509Strict=false"))
    assert options.tls == {"x509_strict": False}
    assert not build_ssl_context(options.tls).verify_flags & ssl.VERIFY_X509_STRICT


def test_x509_strict_must_be_a_bool() -> None:
    with pytest.raises(SMTPConfigError) as info:
        build_ssl_context({"x509Strict": "no"})
    assert info.value.option == "tls.x509_strict"


def test_reject_unauthorized_true_keeps_verification() -> None:
    context = build_ssl_context({"rejectUnauthorized": True})
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname is True


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("min_version", "TLSv1.3", ssl.TLSVersion.TLSv1_3),
        ("minVersion", "TLSv1.2", ssl.TLSVersion.TLSv1_2),
        ("min_version", ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3),
    ],
)
def test_min_version(key: str, value: Any, expected: ssl.TLSVersion) -> None:
    assert build_ssl_context({key: value}).minimum_version == expected


def test_max_version() -> None:
    assert build_ssl_context({"maxVersion": "TLSv1.2"}).maximum_version == ssl.TLSVersion.TLSv1_2


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_old_min_version_is_accepted_on_request() -> None:
    # Documented: for old servers only; Python warns and OpenSSL may still refuse at handshake.
    assert normalize_tls({"min_version": "TLSv1"}) == {"min_version": ssl.TLSVersion.TLSv1}


def test_ciphers() -> None:
    build_ssl_context({"ciphers": "ECDHE+AESGCM"})
    with pytest.raises(SMTPConfigError) as info:
        build_ssl_context({"ciphers": "NO-SUCH-CIPHER"})
    assert info.value.option == "tls.ciphers"


@pytest.mark.parametrize(
    ("tls", "option"),
    [
        ({"verify": False}, "tls.verify"),
        ({"rejectUnauthorised": False}, "tls.rejectUnauthorised"),
        ({"reject_unauthorized": "false"}, "tls.reject_unauthorized"),
        ({"reject_unauthorized": 0}, "tls.reject_unauthorized"),
        ({"min_version": "SSLv3"}, "tls.min_version"),
        ({"minVersion": "1.2"}, "tls.min_version"),
        ({"ciphers": ""}, "tls.ciphers"),
        ({"servername": ""}, "tls.servername"),
        ({"ca_file": 42}, "tls.ca_file"),
        ({"key_file": "client.key"}, "tls.key_file"),
        ({"cafile": "a", "ca_file": "b"}, "tls.ca_file"),
    ],
)
def test_bad_tls_settings(tls: dict[str, Any], option: str) -> None:
    with pytest.raises(SMTPConfigError) as info:
        build_ssl_context(tls)
    assert isinstance(info.value, ValueError)
    assert info.value.option == option


def test_unknown_key_suggests_the_spelling() -> None:
    with pytest.raises(SMTPConfigError, match="rejectUnauthorized"):
        normalize_tls({"rejectUnauthorised": False})


def test_server_name_override() -> None:
    assert server_name_override(None) is None
    assert server_name_override({}) is None
    assert server_name_override({"servername": "mx.example.com"}) == "mx.example.com"
    assert server_name_override({"server_hostname": "mx.example.com"}) == "mx.example.com"


def test_normalize_is_idempotent(tmp_path: Path) -> None:
    tls = {"rejectUnauthorized": False, "minVersion": "TLSv1.3", "cafile": str(tmp_path)}
    once = normalize_tls(tls)
    assert once == {
        "reject_unauthorized": False,
        "min_version": ssl.TLSVersion.TLSv1_3,
        "ca_file": str(tmp_path),
    }
    assert normalize_tls(once) == once
    assert {"reject_unauthorized", "x509_strict"} == TLS_FLAGS


def test_missing_ca_file() -> None:
    with pytest.raises(SMTPConfigError) as info:
        build_ssl_context({"ca_file": "/nonexistent/ca.pem"})
    assert info.value.option == "tls.ca_file"


def test_bad_ca_data() -> None:
    with pytest.raises(SMTPConfigError) as info:
        build_ssl_context({"ca_data": "-----BEGIN CERTIFICATE-----\nnot base64\n"})
    assert info.value.option == "tls.ca_data"


# -- with real certificates --------------------------------------------------------------------


@pytest.mark.parametrize("key", ["ca_file", "cafile", "caFile", "ca"])
def test_ca_file_is_loaded(cert_and_key: tuple[Path, Path], key: str) -> None:
    cert, _ = cert_and_key
    context = build_ssl_context({key: str(cert)})
    assert context.cert_store_stats()["x509_ca"] == 1
    assert context.verify_mode == ssl.CERT_REQUIRED


def test_ca_file_as_path_object(cert_and_key: tuple[Path, Path]) -> None:
    context = build_ssl_context({"ca_file": cert_and_key[0]})
    assert context.cert_store_stats()["x509_ca"] == 1


@pytest.mark.parametrize("key", ["ca_data", "ca"])
def test_ca_pem_text_is_loaded(cert_and_key: tuple[Path, Path], key: str) -> None:
    pem = cert_and_key[0].read_text()
    assert normalize_tls({key: pem}) == {"ca_data": pem}
    assert build_ssl_context({key: pem}).cert_store_stats()["x509_ca"] == 1
    assert build_ssl_context({key: [pem]}).cert_store_stats()["x509_ca"] == 1


def test_client_certificate(cert_and_key: tuple[Path, Path]) -> None:
    cert, key = cert_and_key
    build_ssl_context({"cert_file": str(cert), "key_file": str(key)})
    build_ssl_context({"certFile": cert, "keyFile": key})
    with pytest.raises(SMTPConfigError) as info:
        build_ssl_context({"cert_file": str(key)})  # a key is not a certificate
    assert info.value.option == "tls.cert_file"


def test_default_context_refuses_an_unknown_ca(cert_and_key: tuple[Path, Path]) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(build_ssl_context(None), *cert_and_key, server_hostname=HOST)


def test_trusted_ca_is_accepted(cert_and_key: tuple[Path, Path]) -> None:
    context = build_ssl_context({"ca_file": str(cert_and_key[0])})
    handshake(context, *cert_and_key, server_hostname=HOST)


def test_hostname_is_checked_even_with_a_trusted_ca(cert_and_key: tuple[Path, Path]) -> None:
    context = build_ssl_context({"ca_file": str(cert_and_key[0])})
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(context, *cert_and_key, server_hostname="other.example.test")


def test_servername_names_the_certificate_to_expect(cert_and_key: tuple[Path, Path]) -> None:
    tls = {"ca_file": str(cert_and_key[0]), "servername": HOST}
    # The pool connects to some address and checks the certificate against the override.
    handshake(
        build_ssl_context(tls), *cert_and_key, server_hostname=server_name_override(tls) or ""
    )


def test_reject_unauthorized_false_accepts_anything(cert_and_key: tuple[Path, Path]) -> None:
    context = build_ssl_context({"rejectUnauthorized": False})
    handshake(context, *cert_and_key, server_hostname="other.example.test")
