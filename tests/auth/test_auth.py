"""rawsmtp.auth: RFC test vectors, mechanism selection, credentials, tokens, transport policy."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rawsmtp import SMTPAuthenticationError, SMTPConfigError
from rawsmtp.auth import (
    MAX_ITERATIONS,
    CramMD5,
    Credentials,
    Login,
    OAuthBearer,
    Plain,
    Scram,
    XOAuth2,
    check_auth_transport,
    credentials_from,
    select_mechanisms,
)
from rawsmtp.pool._tokens import TokenSource
from rawsmtp.protocol import (
    NEED_DATA,
    Authenticated,
    AuthenticationFailed,
    ClientConfig,
    ClientConnection,
    Event,
    SASLMechanism,
)

PENCIL = Credentials(user="user", password="pencil")

# RFC 5802 section 5 (SCRAM-SHA-1) and RFC 7677 section 3 (SCRAM-SHA-256).
SCRAM_VECTORS = {
    "SHA-1": (
        "fyko+d2lbbFgONRv9qkxdawL",
        b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
        b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
        b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
    ),
    "SHA-256": (
        "rOprNGfwEbeRWgbNEkqO",
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
    ),
}


def scram_after_first(hash_name: str) -> Scram:
    nonce, _, _, _ = SCRAM_VECTORS[hash_name]
    scram = Scram(hash_name, PENCIL, nonce=nonce)
    scram.initial_response()
    return scram


# --- PLAIN, LOGIN, CRAM-MD5 ------------------------------------------------------------------


def test_plain_rfc4616_bytes() -> None:
    plain = Plain(Credentials(user="tim", password="tanstaaftanstaaf"))
    assert plain.name == "PLAIN"
    assert plain.initial_response() == b"\0tim\0tanstaaftanstaaf"
    plain.complete()
    assert plain.failure_detail is None


def test_plain_with_authzid_and_utf8() -> None:
    plain = Plain(Credentials(user="Kurt", password="xipj3plmq\u00e9", authzid="Ursel"))
    assert plain.initial_response() == "Ursel\0Kurt\0xipj3plmq\u00e9".encode()


def test_plain_refuses_a_challenge() -> None:
    with pytest.raises(SMTPAuthenticationError):
        Plain(PENCIL).respond(b"what?")


@given(
    user=st.text(min_size=1).filter(lambda s: all(ord(c) >= 0x20 and ord(c) != 0x7F for c in s)),
    password=st.text().filter(lambda s: "\0" not in s),
)
def test_plain_round_trips(user: str, password: str) -> None:
    response = Plain(Credentials(user=user, password=password)).initial_response()
    assert response.decode("utf-8").split("\0") == ["", user, password]


def test_login_answers_prompts_by_their_words() -> None:
    login = Login(Credentials(user="alice", password="s3cret"))
    assert login.initial_response() is None
    assert login.respond(b"Username:") == b"alice"
    assert login.respond(b"Password:") == b"s3cret"


def test_login_matches_prompts_case_insensitively_in_any_order() -> None:
    login = Login(Credentials(user="alice", password="s3cret"))
    assert login.respond(b"PASSWORD") == b"s3cret"
    assert login.respond(b"user name") == b"alice"


def test_login_answers_unknown_prompts_by_order() -> None:
    login = Login(Credentials(user="alice", password="s3cret"))
    assert login.respond(b"") == b"alice"
    assert login.respond(b"\xff\xfe") == b"s3cret"


def test_login_refuses_a_third_challenge() -> None:
    login = Login(Credentials(user="alice", password="s3cret"))
    login.respond(b"Username:")
    login.respond(b"Password:")
    with pytest.raises(SMTPAuthenticationError):
        login.respond(b"Password:")


def test_cram_md5_rfc2195_example() -> None:
    cram = CramMD5(Credentials(user="tim", password="tanstaaftanstaaf"))
    assert cram.initial_response() is None
    answer = cram.respond(b"<1896.697170952@postoffice.reston.mci.net>")
    assert answer == b"tim b913a602c7eda7a495b4e6e7334d3890"


def test_cram_md5_refuses_empty_and_second_challenges() -> None:
    cram = CramMD5(PENCIL)
    with pytest.raises(SMTPAuthenticationError):
        cram.respond(b"")
    cram.respond(b"<1@example>")
    with pytest.raises(SMTPAuthenticationError):
        cram.respond(b"<2@example>")


def test_password_mechanisms_need_a_password() -> None:
    token_credentials = Credentials(user="u", access_token="t")
    for make in (Plain, Login, CramMD5, lambda c: Scram("SHA-256", c)):
        with pytest.raises(SMTPConfigError):
            make(token_credentials)


# --- SCRAM -----------------------------------------------------------------------------------


@pytest.mark.parametrize("hash_name", ["SHA-1", "SHA-256"])
def test_scram_rfc_vectors(hash_name: str) -> None:
    nonce, server_first, client_final, server_final = SCRAM_VECTORS[hash_name]
    scram = Scram(hash_name, PENCIL, nonce=nonce)
    assert scram.name == f"SCRAM-{hash_name}"
    assert scram.initial_response() == f"n,,n=user,r={nonce}".encode()
    assert scram.respond(server_first) == client_final
    assert scram.respond(server_final) == b""
    scram.complete()


def test_scram_escapes_names_and_sends_authzid() -> None:
    credentials = Credentials(user="a=b,c", password="p", authzid="x,y")
    first = Scram("SHA-256", credentials, nonce="abc").initial_response()
    assert first == b"n,a=x=2Cy,n=a=3Db=2Cc,r=abc"


def test_scram_random_nonces_differ() -> None:
    first = Scram("SHA-256", PENCIL).initial_response()
    second = Scram("SHA-256", PENCIL).initial_response()
    assert first != second and first.startswith(b"n,,n=user,r=")


def test_scram_rejects_bad_server_signature() -> None:
    scram = scram_after_first("SHA-256")
    scram.respond(SCRAM_VECTORS["SHA-256"][1])
    with pytest.raises(SMTPAuthenticationError, match="signature"):
        scram.respond(b"v=" + b"A" * 44)
    with pytest.raises(SMTPAuthenticationError):
        scram.complete()


def test_scram_reports_server_error() -> None:
    scram = scram_after_first("SHA-1")
    scram.respond(SCRAM_VECTORS["SHA-1"][1])
    with pytest.raises(SMTPAuthenticationError, match="invalid-proof") as failure:
        scram.respond(b"e=invalid-proof")
    assert failure.value.detail == "invalid-proof"
    assert scram.failure_detail == "invalid-proof"


def test_scram_235_without_server_proof_is_refused() -> None:
    scram = scram_after_first("SHA-256")
    scram.respond(SCRAM_VECTORS["SHA-256"][1])
    with pytest.raises(SMTPAuthenticationError, match="without proving"):
        scram.complete()


@pytest.mark.parametrize(
    "server_first",
    [
        b"r=someoneelse123,s=QSXCR+Q6sek8bf92,i=4096",  # does not extend our nonce
        b"r=fyko+d2lbbFgONRv9qkxdawL,s=QSXCR+Q6sek8bf92,i=4096",  # adds nothing
        b"m=ext,r=fyko+d2lbbFgONRv9qkxdawLx,s=QSXCR+Q6sek8bf92,i=4096",  # mandatory extension
        b"r=fyko+d2lbbFgONRv9qkxdawLx,s=not base64!,i=4096",
        b"r=fyko+d2lbbFgONRv9qkxdawLx,s=,i=4096",
        b"r=fyko+d2lbbFgONRv9qkxdawLx,s=QSXCR+Q6sek8bf92,i=0",
        b"r=fyko+d2lbbFgONRv9qkxdawLx,s=QSXCR+Q6sek8bf92,i=-1",
        b"r=fyko+d2lbbFgONRv9qkxdawLx,s=QSXCR+Q6sek8bf92,i=1000000000",
        b"r=fyko+d2lbbFgONRv9qkxdawLx,s=QSXCR+Q6sek8bf92,i=" + b"9" * 5000,
        b"r=fyko+d2lbbFgONRv9qkxdawLx,s=QSXCR+Q6sek8bf92,i=\xd9\xa1",
        b"r=fyko+d2lbbFgONRv9qkxdawLx,s=QSXCR+Q6sek8bf92",
        b"r=fyko+d2lbbFgONRv9qkxdawL\xff,s=QSXCR+Q6sek8bf92,i=1",
        b"",
    ],
)
def test_scram_rejects_bad_server_first(server_first: bytes) -> None:
    scram = scram_after_first("SHA-1")
    started = time.monotonic()
    with pytest.raises(SMTPAuthenticationError):
        scram.respond(server_first)
    assert time.monotonic() - started < 0.5  # refused before any key stretching


def test_scram_accepts_iteration_cap_and_extensions() -> None:
    scram = Scram("SHA-1", PENCIL, nonce="abc")
    scram.initial_response()
    scram.respond(b"r=abcdef,s=QSXCR+Q6sek8bf92,i=1,x=ext")
    assert MAX_ITERATIONS >= 4096


def test_scram_rejects_bad_configuration() -> None:
    with pytest.raises(SMTPConfigError):
        Scram("MD5", PENCIL)
    with pytest.raises(SMTPConfigError):
        Scram("SHA-1", PENCIL, nonce="a,b")


def test_scram_refuses_challenges_after_verification() -> None:
    scram = scram_after_first("SHA-1")
    scram.respond(SCRAM_VECTORS["SHA-1"][1])
    scram.respond(SCRAM_VECTORS["SHA-1"][3])
    with pytest.raises(SMTPAuthenticationError):
        scram.respond(b"more")


# --- XOAUTH2, OAUTHBEARER --------------------------------------------------------------------

ERROR_JSON = json.dumps({"status": "401", "schemes": "bearer", "scope": "mail"}).encode()


def test_xoauth2_bytes() -> None:
    xoauth2 = XOAuth2("someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg")
    assert xoauth2.name == "XOAUTH2"
    assert xoauth2.initial_response() == (
        b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"
        b"\x01\x01"
    )


def test_xoauth2_error_challenge() -> None:
    xoauth2 = XOAuth2("u@example.com", "token")
    assert xoauth2.respond(ERROR_JSON) == b""
    assert xoauth2.failure_detail == ERROR_JSON.decode()
    with pytest.raises(SMTPAuthenticationError):
        xoauth2.respond(ERROR_JSON)


def test_oauthbearer_rfc7628_bytes() -> None:
    bearer = OAuthBearer(
        "user@example.com",
        "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==",
        host="server.example.com",
        port=143,
    )
    assert bearer.name == "OAUTHBEARER"
    assert bearer.initial_response() == (
        b"n,a=user@example.com,\x01host=server.example.com\x01port=143"
        b"\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
    )


def test_oauthbearer_without_port_and_escaped_user() -> None:
    bearer = OAuthBearer("a,b=c", "t", host="h", port=None)
    assert bearer.initial_response() == b"n,a=a=2Cb=3Dc,\x01host=h\x01auth=Bearer t\x01\x01"


def test_oauthbearer_error_challenge_answered_with_ctrl_a() -> None:
    bearer = OAuthBearer("u", "t", host="h", port=587)
    assert bearer.respond(ERROR_JSON) == b"\x01"
    assert bearer.failure_detail is not None and "401" in bearer.failure_detail


# --- every mechanism on hostile input ---------------------------------------------------------

MECHANISMS: dict[str, Callable[[], SASLMechanism]] = {
    "PLAIN": lambda: Plain(PENCIL),
    "LOGIN": lambda: Login(PENCIL),
    "CRAM-MD5": lambda: CramMD5(PENCIL),
    "SCRAM-SHA-1": lambda: Scram("SHA-1", PENCIL, nonce="abc"),
    "SCRAM-SHA-256": lambda: Scram("SHA-256", PENCIL),
    "XOAUTH2": lambda: XOAuth2("u", "t"),
    "OAUTHBEARER": lambda: OAuthBearer("u", "t", host="h", port=25),
}


@settings(max_examples=300)
@given(
    name=st.sampled_from(sorted(MECHANISMS)),
    challenges=st.lists(
        st.one_of(
            st.binary(max_size=200),
            # Near-valid SCRAM messages reach the deeper parsing paths.
            st.builds(
                lambda r, s, i: f"r=abc{r},s={s},i={i}".encode(),
                st.text(max_size=5),
                st.text(max_size=8),
                st.text(max_size=6) | st.integers(-2, 5).map(str),
            ),
            st.text(max_size=40).map(lambda t: ("v=" + t).encode()),
        ),
        max_size=4,
    ),
)
def test_mechanisms_raise_only_authentication_errors(name: str, challenges: list[bytes]) -> None:
    mechanism = MECHANISMS[name]()
    try:
        mechanism.initial_response()
        for challenge in challenges:
            assert isinstance(mechanism.respond(challenge), bytes)
        mechanism.complete()
    except SMTPAuthenticationError:
        pass
    detail = mechanism.failure_detail
    assert detail is None or isinstance(detail, str)


# --- select_mechanisms -----------------------------------------------------------------------

ALL_PASSWORD = frozenset({"SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN", "LOGIN", "CRAM-MD5"})
TOKEN_CREDENTIALS = Credentials(user="u@example.com", access_token="tok")


def select(
    offered: Iterable[str], credentials: Credentials = PENCIL, **kwargs: Any
) -> SASLMechanism:
    options: dict[str, Any] = {"preferred": None, "token": None, "host": "h", "port": 587}
    options.update(kwargs)
    return select_mechanisms(frozenset(offered), credentials, **options)[0]


@pytest.mark.parametrize(
    ("offered", "expected"),
    [
        (ALL_PASSWORD, "SCRAM-SHA-256"),
        (ALL_PASSWORD - {"SCRAM-SHA-256"}, "SCRAM-SHA-1"),
        ({"PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"}, "PLAIN"),
        ({"LOGIN", "CRAM-MD5"}, "LOGIN"),
        ({"CRAM-MD5", "GSSAPI"}, "CRAM-MD5"),
    ],
)
def test_select_password_preference_order(offered: Iterable[str], expected: str) -> None:
    assert select(offered).name == expected


def test_select_returns_fresh_objects() -> None:
    assert select({"PLAIN"}) is not select({"PLAIN"})


def test_select_token_mechanisms() -> None:
    both = {"XOAUTH2", "OAUTHBEARER", "PLAIN"}
    assert select(both, TOKEN_CREDENTIALS, token="tok").name == "XOAUTH2"
    bearer = select({"OAUTHBEARER", "PLAIN"}, TOKEN_CREDENTIALS, token="tok", host="mx", port=25)
    assert bearer.name == "OAUTHBEARER"
    assert bearer.initial_response() == (
        b"n,a=u@example.com,\x01host=mx\x01port=25\x01auth=Bearer tok\x01\x01"
    )
    xoauth2 = select({"XOAUTH2"}, TOKEN_CREDENTIALS, token="renewed")
    assert xoauth2.initial_response() == b"user=u@example.com\x01auth=Bearer renewed\x01\x01"


def test_select_preferred_wins_case_insensitively() -> None:
    assert select(ALL_PASSWORD, preferred="login").name == "LOGIN"
    both = {"XOAUTH2", "OAUTHBEARER"}
    assert select(both, TOKEN_CREDENTIALS, token="t", preferred="oauthbearer").name == "OAUTHBEARER"


def test_select_preferred_not_offered() -> None:
    with pytest.raises(SMTPAuthenticationError, match="LOGIN, PLAIN"):
        select({"PLAIN", "LOGIN"}, preferred="cram-md5")


def test_select_unknown_or_unusable_preferred_is_a_config_error() -> None:
    with pytest.raises(SMTPConfigError) as failure:
        select(ALL_PASSWORD, preferred="NTLM")
    assert failure.value.option == "auth_method"
    assert isinstance(failure.value, ValueError)
    with pytest.raises(SMTPConfigError):
        select({"XOAUTH2", "PLAIN"}, preferred="XOAUTH2")


def test_select_nothing_usable() -> None:
    with pytest.raises(SMTPAuthenticationError, match=r"no mechanism usable.*GSSAPI, XOAUTH2"):
        select({"XOAUTH2", "GSSAPI"})
    with pytest.raises(SMTPAuthenticationError, match="no mechanism usable"):
        select({"PLAIN", "LOGIN"}, TOKEN_CREDENTIALS, token="t")
    with pytest.raises(SMTPAuthenticationError, match=r"\(none\)"):
        select(set())


def test_select_with_authzid_skips_mechanisms_that_cannot_carry_it() -> None:
    credentials = Credentials(user="u", password="p", authzid="other")
    with pytest.raises(SMTPAuthenticationError):
        select({"LOGIN", "CRAM-MD5"}, credentials)
    assert select({"LOGIN", "PLAIN"}, credentials).name == "PLAIN"


def test_select_token_credentials_without_token_is_a_config_error() -> None:
    with pytest.raises(SMTPConfigError):
        select({"PLAIN"}, TOKEN_CREDENTIALS)


# --- Credentials and credentials_from --------------------------------------------------------


def provider(renew: bool) -> str:
    return "renewed" if renew else "first"


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        (("alice", "pw"), Credentials(user="alice", password="pw")),
        ({"user": "alice", "pass": "pw"}, Credentials(user="alice", password="pw")),
        ({"user": "alice", "password": "pw"}, Credentials(user="alice", password="pw")),
        ({"user": "a", "access_token": "t"}, Credentials(user="a", access_token="t")),
        ({"user": "a", "accessToken": "t"}, Credentials(user="a", access_token="t")),
        ({"user": "a", "token_provider": provider}, Credentials(user="a", token_provider=provider)),
        (
            {"user": "a", "pass": "pw", "authzid": "z"},
            Credentials(user="a", password="pw", authzid="z"),
        ),
    ],
)
def test_credentials_from_accepted_forms(auth: object, expected: Credentials) -> None:
    assert credentials_from(auth) == expected


def test_credentials_from_passes_credentials_through() -> None:
    assert credentials_from(PENCIL) is PENCIL


@pytest.mark.parametrize(
    "auth",
    [
        None,
        "alice:pw",
        ["alice", "pw"],
        ("alice",),
        ("alice", "pw", "x"),
        (1, "pw"),
        ("alice", None),
        ("", "pw"),
        ("al\0ice", "pw"),
        ("alice", "p\0w"),
        ("ali\r\nce", "pw"),
        {"pass": "pw"},
        {"user": "a"},
        {"user": "a", "pass": "pw", "clientId": "x"},
        {"user": "a", "pass": "pw", "access_token": "t"},
        {"user": "a", "pass": "pw", "password": "pw"},
        {"user": "a", "access_token": ""},
        {"user": "a", "access_token": "t\x01"},
        {"user": "a", "access_token": 5},
        {"user": "a", "token_provider": "not callable"},
        {"user": "a", "pass": 123},
        {"user": "a", "pass": "pw", "authzid": "z\0"},
        {1: "a"},
    ],
)
def test_credentials_from_rejects_bad_input(auth: object) -> None:
    with pytest.raises(SMTPConfigError) as failure:
        credentials_from(auth)
    assert failure.value.option == "auth"
    assert isinstance(failure.value, ValueError)


def test_repr_never_shows_secrets() -> None:
    for credentials in (
        Credentials(user="alice", password="hunter2"),
        Credentials(user="alice", access_token="ya29.secret"),
        Credentials(user="alice", token_provider=lambda renew: "x", authzid="bob"),
    ):
        text = repr(credentials)
        assert "alice" in text and "<redacted>" in text
        assert "hunter2" not in text and "ya29" not in text and "lambda" not in text
    assert "bob" in repr(Credentials(user="a", password="p", authzid="bob"))


# --- TokenSource -----------------------------------------------------------------------------


class CountingProvider:
    """A token provider that records its calls and can be slowed down to widen races."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[bool] = []
        self.delay = delay
        self._lock = threading.Lock()

    def __call__(self, renew: bool) -> str:
        time.sleep(self.delay)
        with self._lock:
            self.calls.append(renew)
            return f"token-{len(self.calls)}"


def run_threads(count: int, target: Callable[[], str]) -> list[str]:
    results: list[str] = []
    barrier = threading.Barrier(count)

    def run() -> None:
        barrier.wait()
        results.append(target())

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_static_token_is_returned_and_not_renewable() -> None:
    tokens = TokenSource(Credentials(user="u", access_token="static"))
    assert tokens.token() == "static"
    assert tokens.renew("static") == "static"
    assert tokens.renew(None) == "static"


def test_provider_called_once_across_threads() -> None:
    calls = CountingProvider(delay=0.02)
    tokens = TokenSource(Credentials(user="u", token_provider=calls))
    assert run_threads(8, tokens.token) == ["token-1"] * 8
    assert calls.calls == [False]


def test_renew_once_for_the_same_stale_token() -> None:
    calls = CountingProvider(delay=0.02)
    tokens = TokenSource(Credentials(user="u", token_provider=calls))
    stale = tokens.token()
    assert run_threads(6, lambda: tokens.renew(stale)) == ["token-2"] * 6
    assert calls.calls == [False, True]
    # A later failure of the renewed token renews again.
    assert tokens.renew("token-2") == "token-3"
    assert calls.calls == [False, True, True]


def test_renew_before_any_token_asks_for_a_fresh_one() -> None:
    calls = CountingProvider()
    tokens = TokenSource(Credentials(user="u", token_provider=calls))
    assert tokens.renew(None) == "token-1"
    assert calls.calls == [True]


@pytest.mark.parametrize("answer", [None, "", 42, "bad\r\ntoken"])
def test_provider_bad_value(answer: object) -> None:
    def bad_provider(renew: bool) -> Any:
        return answer

    tokens = TokenSource(Credentials(user="u", token_provider=bad_provider))
    with pytest.raises(SMTPAuthenticationError, match="token_provider"):
        tokens.token()


def test_provider_exception_is_chained_without_its_message() -> None:
    def failing(renew: bool) -> str:
        raise RuntimeError("refresh_token=SECRET rejected")

    tokens = TokenSource(Credentials(user="u", token_provider=failing))
    with pytest.raises(SMTPAuthenticationError, match="RuntimeError") as failure:
        tokens.token()
    assert isinstance(failure.value.__cause__, RuntimeError)
    assert "SECRET" not in str(failure.value)


def test_provider_failure_on_renew_keeps_the_old_token() -> None:
    answers = iter(["first"])

    def flaky(renew: bool) -> str:
        if renew:
            raise OSError("network down")
        return next(answers)

    tokens = TokenSource(Credentials(user="u", token_provider=flaky))
    assert tokens.token() == "first"
    with pytest.raises(SMTPAuthenticationError, match="renew=True"):
        tokens.renew("first")
    assert tokens.token() == "first"


def test_token_source_needs_a_token() -> None:
    with pytest.raises(ValueError):
        TokenSource(PENCIL)


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class ExpiringProvider:
    """Tokens that live ``lifetime`` seconds on ``clock``; records its calls."""

    def __init__(self, clock: FakeClock, lifetime: float = 3600.0, delay: float = 0.0) -> None:
        self.clock, self.lifetime, self.delay = clock, lifetime, delay
        self.calls: list[bool] = []
        self._lock = threading.Lock()

    def __call__(self, renew: bool) -> tuple[str, float]:
        time.sleep(self.delay)
        with self._lock:
            self.calls.append(renew)
            return f"token-{len(self.calls)}", self.clock.now + self.lifetime


def expiring_source(
    lifetime: float = 3600.0, delay: float = 0.0
) -> tuple[TokenSource, ExpiringProvider, FakeClock]:
    clock = FakeClock()
    provider = ExpiringProvider(clock, lifetime, delay)
    source = TokenSource(Credentials(user="u", token_provider=provider), clock=clock)
    return source, provider, clock


def test_token_with_expiry_is_cached_until_60_seconds_before_it_expires() -> None:
    tokens, provider, clock = expiring_source()
    assert tokens.token() == "token-1"
    clock.now += 3600 - 61
    assert tokens.token() == "token-1"
    assert provider.calls == [False]
    clock.now += 1  # now within the 60-second margin: renewed before use
    assert tokens.token() == "token-2"
    assert provider.calls == [False, True]
    assert tokens.token() == "token-2"  # the renewed one lives another hour


def test_token_already_expired_when_given_is_renewed_at_once() -> None:
    tokens, provider, _ = expiring_source(lifetime=-5)
    # token-1 arrives expired, so a fresh one is asked for; token-2 is expired too, but is
    # used rather than asking again in a loop (the provider knows best).
    assert tokens.token() == "token-2"
    assert provider.calls == [False, True]


def test_expired_token_is_renewed_once_across_threads() -> None:
    tokens, provider, clock = expiring_source(delay=0.02)
    tokens.token()
    clock.now += 3600
    assert run_threads(8, tokens.token) == ["token-2"] * 8
    assert provider.calls == [False, True]


def test_refused_token_with_expiry_is_renewed_and_keeps_the_new_expiry() -> None:
    tokens, provider, clock = expiring_source()
    assert tokens.renew(tokens.token()) == "token-2"
    clock.now += 3000
    assert tokens.token() == "token-2"
    assert provider.calls == [False, True]


def test_failed_renewal_before_expiry_keeps_the_old_token() -> None:
    clock = FakeClock()
    answers: list[object] = [("first", clock.now + 100)]

    def provider(renew: bool) -> Any:
        if renew:
            raise OSError("offline")
        return answers.pop()

    tokens = TokenSource(Credentials(user="u", token_provider=provider), clock=clock)
    assert tokens.token() == "first"
    clock.now += 50
    with pytest.raises(SMTPAuthenticationError, match="renew=True"):
        tokens.token()
    assert tokens.renew("other") == "first"  # still the current token


@pytest.mark.parametrize(
    "answer",
    [("t",), ("t", 1.0, 2.0), ("t", "soon"), ("t", True), ("t", float("nan")), ("", 1.0)],
)
def test_provider_bad_expiry(answer: object) -> None:
    def provider(renew: bool) -> Any:
        return answer

    tokens = TokenSource(Credentials(user="u", token_provider=provider))
    with pytest.raises(SMTPAuthenticationError, match="token_provider"):
        tokens.token()


def test_static_token_never_expires() -> None:
    clock = FakeClock()
    tokens = TokenSource(Credentials(user="u", access_token="static"), clock=clock)
    clock.now += 10**9
    assert tokens.token() == "static"


# --- check_auth_transport --------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "LOCALHOST",
        "localhost.",
        "mail.localhost",
        "127.0.0.1",
        "127.3.2.1",
        "::1",
        "[::1]",
        "::ffff:127.0.0.1",
    ],
)
def test_clear_auth_allowed_to_loopback(host: str) -> None:
    check_auth_transport(host, False, False)


@pytest.mark.parametrize(
    "host", ["smtp.example.com", "10.0.0.1", "::2", "localhost.example.com", "128.0.0.1", ""]
)
def test_clear_auth_refused_to_remote_hosts(host: str) -> None:
    with pytest.raises(SMTPAuthenticationError, match="allow_insecure_auth=True"):
        check_auth_transport(host, False, False)
    check_auth_transport(host, True, False)
    check_auth_transport(host, False, True)


# --- through the client state machine ---------------------------------------------------------


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def events(client: ClientConnection) -> list[Event]:
    found = []
    while (event := client.next_event()) is not NEED_DATA:
        found.append(event)
    return found


def authenticating(mechanism: SASLMechanism) -> ClientConnection:
    """A client past EHLO on an encrypted link that has just sent AUTH."""
    client = ClientConnection(
        ClientConfig(local_hostname="client.example", tls_active=True), now=0.0
    )
    client.receive_data(b"220 mx.example ESMTP\r\n250-mx.example\r\n250 AUTH SCRAM-SHA-1\r\n", 0.0)
    events(client)
    client.authenticate(mechanism)
    client.data_to_send(0.0)
    return client


def exchange(client: ClientConnection, reply: bytes) -> bytes:
    client.receive_data(reply + b"\r\n", 0.0)
    return client.data_to_send(0.0)


def test_client_scram_with_server_final_as_challenge() -> None:
    _, server_first, client_final, server_final = SCRAM_VECTORS["SHA-1"]
    client = authenticating(scram_after_first("SHA-1"))
    assert exchange(client, b"334 " + b64(server_first)) == b64(client_final) + b"\r\n"
    assert exchange(client, b"334 " + b64(server_final)) == b"\r\n"
    exchange(client, b"235 2.7.0 Authentication successful")
    assert [type(e) for e in events(client)] == [Authenticated]


def test_client_scram_bad_signature_cancels() -> None:
    client = authenticating(scram_after_first("SHA-1"))
    exchange(client, b"334 " + b64(SCRAM_VECTORS["SHA-1"][1]))
    assert exchange(client, b"334 " + b64(b"v=" + b64(b"x" * 20))) == b"*\r\n"
    exchange(client, b"501 5.0.0 Authentication aborted")
    (failed,) = events(client)
    assert isinstance(failed, AuthenticationFailed) and "signature" in str(failed.error)


def test_client_scram_server_final_in_235_is_not_trusted() -> None:
    # The documented choice: data on the 235 line is not passed to the mechanism, so a server
    # that sends its proof there is refused (the lead checks this against Dovecot).
    client = authenticating(scram_after_first("SHA-1"))
    exchange(client, b"334 " + b64(SCRAM_VECTORS["SHA-1"][1]))
    exchange(client, b"235 " + b64(SCRAM_VECTORS["SHA-1"][3]))
    (failed,) = events(client)
    assert isinstance(failed, AuthenticationFailed)


def test_client_xoauth2_error_challenge_then_535() -> None:
    client = authenticating(XOAuth2("u@example.com", "expired"))
    assert exchange(client, b"334 " + b64(ERROR_JSON)) == b"\r\n"
    exchange(client, b"535 5.7.8 Username and Password not accepted")
    (failed,) = events(client)
    assert isinstance(failed, AuthenticationFailed)
    assert failed.error.code == 535 and failed.error.detail == ERROR_JSON.decode()
    assert "expired" not in str(failed.error)
