"""SCRAM beyond the RFC vectors: SASLprep (RFC 4013), tls-server-end-point channel binding
(RFC 5929), SCRAM-*-PLUS and the GS2 flags (RFC 5802 section 6), and their selection.

The -PLUS exchange is checked against a small server side written here from RFC 5802's
algorithm, so the test does not trust the client's own arithmetic.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ssl
from pathlib import Path
from types import SimpleNamespace

import pytest

from rawsmtp import SMTPAuthenticationError, SMTPConfigError
from rawsmtp.auth import (
    Credentials,
    Plain,
    Scram,
    saslprep,
    select_mechanisms,
    tls_server_end_point,
)
from rawsmtp.config._options import make_options
from rawsmtp.pool._wiring import _authenticator
from rawsmtp.protocol import SASLMechanism

CERTS = Path(__file__).parent.parent / "certs"
PENCIL = Credentials(user="user", password="pencil")
BINDING = ("tls-server-end-point", bytes(range(32)))


def prep(text: str, *, allow_unassigned: bool = False) -> str:
    return saslprep(text, what="the test string", allow_unassigned=allow_unassigned)


# --- SASLprep --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        # RFC 4013 section 3
        ("I\u00adX", "IX"),  # SOFT HYPHEN mapped to nothing
        ("user", "user"),
        ("USER", "USER"),  # case preserved
        ("\u00aa", "a"),  # NFKC
        ("\u2168", "IX"),  # ROMAN NUMERAL NINE, NFKC
        # more of the profile
        ("a\u00a0b\u3000c", "a b c"),  # non-ASCII spaces become SPACE
        ("p\u200bw\ufeff", "pw"),  # zero-width space and BOM mapped to nothing
        ("pa\u0308sswo\u0308rd", "pässwörd"),  # NFKC composes
        ("pässwörd-ü€", "pässwörd-ü€"),  # the integration password is unchanged
        ("\u0627\u0031\u0628", "\u0627\u0031\u0628"),  # RTL at both ends: allowed
        ("", ""),
    ],
)
def test_saslprep_maps_and_normalises(given: str, expected: str) -> None:
    assert prep(given) == expected


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("\u0007", "control character"),  # RFC 4013 section 3
        ("\u0627\u0031", "right-to-left"),  # RFC 4013 section 3: must end with an RTL char
        ("a\u0627", "mixes"),  # LTR and RTL together
        ("pass\u0000word", "control character"),
        ("\ue000", "private-use"),
        ("\ufdd0", "non-character"),
        ("\ufffd", "plain text"),
        ("\u2ff0", "canonical representation"),
        ("\u200e", "display-changing"),
        ("\U000e0001", "tagging"),
    ],
)
def test_saslprep_prohibits(given: str, reason: str) -> None:
    with pytest.raises(SMTPConfigError, match=reason) as failure:
        prep(given)
    assert isinstance(failure.value, ValueError) and failure.value.option == "auth"
    assert given not in str(failure.value)


def test_saslprep_unassigned_code_points_only_in_queries() -> None:
    emoji = "pw\U0001f600"  # unassigned in Unicode 3.2, the version of the stringprep tables
    assert prep(emoji, allow_unassigned=True) == emoji
    with pytest.raises(SMTPConfigError, match="unassigned"):
        prep(emoji)


def test_scram_applies_saslprep_to_user_and_password() -> None:
    plain = Scram("SHA-256", Credentials(user="IX", password="IX"), nonce="abc")
    mapped = Scram("SHA-256", Credentials(user="I\u00adX", password="\u2168"), nonce="abc")
    assert mapped.initial_response() == plain.initial_response() == b"n,,n=IX,r=abc"
    server_first = b"r=abcdef,s=QSXCR+Q6sek8bf92,i=4096"
    assert mapped.respond(server_first) == plain.respond(server_first)


def test_scram_refuses_a_password_saslprep_prohibits() -> None:
    with pytest.raises(SMTPConfigError, match="the password contains a control"):
        Scram("SHA-1", Credentials(user="u", password="bell\u0007"))


def test_selection_falls_back_from_scram_when_saslprep_refuses() -> None:
    bad = Credentials(user="u", password="bell\u0007")
    offered = frozenset({"SCRAM-SHA-256", "PLAIN"})
    (chosen, *_) = select_mechanisms(offered, bad, preferred=None, token=None, host="h", port=None)
    assert chosen.name == "PLAIN"
    with pytest.raises(SMTPConfigError, match="SASLprep"):
        select_mechanisms(offered, bad, preferred="SCRAM-SHA-256", token=None, host="h", port=None)
    with pytest.raises(SMTPAuthenticationError, match="SASLprep"):
        select_mechanisms(
            frozenset({"SCRAM-SHA-1"}), bad, preferred=None, token=None, host="h", port=None
        )


# --- tls-server-end-point --------------------------------------------------------------------


def der(name: str) -> bytes:
    return ssl.PEM_cert_to_DER_cert((CERTS / name).read_text())


@pytest.mark.parametrize(
    ("name", "hash_name"),
    [
        ("rsa-sha256.pem", "sha256"),
        ("rsa-md5.pem", "sha256"),  # MD5 and SHA-1 are replaced by SHA-256
        ("ecdsa-sha1.pem", "sha256"),
        ("ecdsa-sha384.pem", "sha384"),
        ("rsa-pss-sha384.pem", "sha384"),  # the hash is in the PSS parameters
        ("rsa-pss-default-sha1.pem", "sha256"),  # PSS parameters without a hash: SHA-1
    ],
)
def test_tls_server_end_point_hash(name: str, hash_name: str) -> None:
    certificate = der(name)
    assert tls_server_end_point(certificate) == (
        "tls-server-end-point",
        hashlib.new(hash_name, certificate).digest(),
    )


@pytest.mark.parametrize(
    "certificate",
    [
        der("ed25519.pem"),  # no single hash: RFC 5929 leaves the binding undefined
        b"",
        b"\x30",
        b"\x30\x84\xff\xff\xff\xff",
        b"not a certificate",
        der("rsa-sha256.pem")[:100],
    ],
)
def test_tls_server_end_point_undefined(certificate: bytes) -> None:
    assert tls_server_end_point(certificate) is None


# --- SCRAM-*-PLUS ----------------------------------------------------------------------------

DIGESTS = {"SHA-1": "sha1", "SHA-256": "sha256"}


class ScramServer:
    """The server side of RFC 5802 for one exchange, with a fixed salt and nonce suffix."""

    def __init__(self, hash_name: str, password: str, binding: bytes) -> None:
        self.digest = DIGESTS[hash_name]
        self.salt, self.iterations = b"salt-for-tests", 4096
        salted = hashlib.pbkdf2_hmac(self.digest, password.encode(), self.salt, self.iterations)
        self.client_key = self.mac(salted, b"Client Key")
        self.server_key = self.mac(salted, b"Server Key")
        self.binding = binding

    def mac(self, key: bytes, message: bytes) -> bytes:
        return hmac.new(key, message, self.digest).digest()

    def first(self, client_first: bytes) -> bytes:
        self.gs2_header, self.client_first_bare = self._split_gs2(client_first)
        client_nonce = self.client_first_bare.split(b",r=")[1]
        self.server_first = b"r=%s-server,s=%s,i=%d" % (
            client_nonce,
            base64.b64encode(self.salt),
            self.iterations,
        )
        return self.server_first

    @staticmethod
    def _split_gs2(message: bytes) -> tuple[bytes, bytes]:
        flag, authzid, bare = message.split(b",", 2)
        return flag + b"," + authzid + b",", bare

    def final(self, client_final: bytes) -> bytes:
        without_proof, proof = client_final.rsplit(b",p=", 1)
        channel = base64.b64decode(without_proof.split(b",")[0][2:])
        assert channel == self.gs2_header + self.binding, "c= must carry gs2 header + binding"
        auth_message = b",".join([self.client_first_bare, self.server_first, without_proof])
        stored_key = hashlib.new(self.digest, self.client_key).digest()
        signature = self.mac(stored_key, auth_message)
        recovered = bytes(a ^ b for a, b in zip(base64.b64decode(proof), signature, strict=True))
        assert hashlib.new(self.digest, recovered).digest() == stored_key, "bad client proof"
        return b"v=" + base64.b64encode(self.mac(self.server_key, auth_message))


@pytest.mark.parametrize("hash_name", ["SHA-1", "SHA-256"])
def test_scram_plus_exchange(hash_name: str) -> None:
    credentials = Credentials(user="user", password="p\u00e4ss", authzid="admin")
    scram = Scram(hash_name, credentials, nonce="fixed-nonce", channel_binding=BINDING, plus=True)
    assert scram.name == f"SCRAM-{hash_name}-PLUS"
    client_first = scram.initial_response()
    assert client_first == b"p=tls-server-end-point,a=admin,n=user,r=fixed-nonce"
    server = ScramServer(hash_name, "p\u00e4ss", BINDING[1])
    client_final = scram.respond(server.first(client_first))
    header = b"p=tls-server-end-point,a=admin,"
    assert client_final.startswith(b"c=" + base64.b64encode(header + BINDING[1]) + b",r=")
    assert scram.respond(server.final(client_final)) == b""
    scram.complete()


def test_scram_plus_known_answer() -> None:
    # RFC 7677's exchange (SCRAM-SHA-256, user "user", password "pencil") with channel binding
    # added: the expected client-final is computed here step by step from RFC 5802 section 3.
    nonce = "rOprNGfwEbeRWgbNEkqO"
    scram = Scram("SHA-256", PENCIL, nonce=nonce, channel_binding=BINDING, plus=True)
    client_first = scram.initial_response()
    assert client_first == b"p=tls-server-end-point,,n=user,r=" + nonce.encode()
    server_first = (
        b"r=" + nonce.encode() + b"%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )
    c = b"cD10bHMtc2VydmVyLWVuZC1wb2ludCwsAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    assert base64.b64decode(c) == b"p=tls-server-end-point,," + BINDING[1]
    without_proof = b"c=" + c + b"," + server_first.split(b",")[0]
    auth_message = b",".join([b"n=user,r=" + nonce.encode(), server_first, without_proof])
    salted = hashlib.pbkdf2_hmac(
        "sha256", b"pencil", base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096
    )
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    signature = hmac.new(hashlib.sha256(client_key).digest(), auth_message, "sha256").digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature, strict=True)))
    assert scram.respond(server_first) == without_proof + b",p=" + proof
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    verifier = base64.b64encode(hmac.new(server_key, auth_message, "sha256").digest())
    assert scram.respond(b"v=" + verifier) == b""
    scram.complete()


def test_scram_plus_rejects_a_server_that_does_not_bind() -> None:
    scram = Scram("SHA-256", PENCIL, nonce="n0nce", channel_binding=BINDING, plus=True)
    server = ScramServer("SHA-256", "pencil", b"another certificate's hash")
    client_final = scram.respond(server.first(scram.initial_response()))
    with pytest.raises(AssertionError, match="binding"):
        server.final(client_final)
    with pytest.raises(SMTPAuthenticationError, match="channel-bindings-dont-match"):
        scram.respond(b"e=channel-bindings-dont-match")


@pytest.mark.parametrize(
    ("binding", "plus", "header"),
    [(None, False, b"n,,"), (BINDING, False, b"y,,")],
)
def test_scram_gs2_flags_without_plus(
    binding: tuple[str, bytes] | None, plus: bool, header: bytes
) -> None:
    scram = Scram("SHA-1", PENCIL, nonce="n0nce", channel_binding=binding, plus=plus)
    assert scram.name == "SCRAM-SHA-1"
    client_first = scram.initial_response()
    assert client_first == header + b"n=user,r=n0nce"
    server = ScramServer("SHA-1", "pencil", b"")  # y and n: c= carries the header alone
    client_final = scram.respond(server.first(client_first))
    assert scram.respond(server.final(client_final)) == b""
    scram.complete()


def test_scram_plus_needs_binding_data() -> None:
    with pytest.raises(SMTPConfigError, match="channel binding"):
        Scram("SHA-256", PENCIL, plus=True)


# --- selection with channel binding ----------------------------------------------------------

ALL_SCRAM = frozenset(
    {"SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS", "PLAIN"}
)


def choose(
    offered: frozenset[str], binding: tuple[str, bytes] | None, preferred: str | None = None
) -> SASLMechanism:
    return select_mechanisms(
        offered,
        PENCIL,
        preferred=preferred,
        token=None,
        host="mx.example",
        port=587,
        channel_binding=binding,
    )[0]


def first_message(mechanism: object) -> bytes:
    assert isinstance(mechanism, Scram | Plain)
    response = mechanism.initial_response()
    assert response is not None
    return response


@pytest.mark.parametrize(
    ("offered", "binding", "name", "flag"),
    [
        (ALL_SCRAM, BINDING, "SCRAM-SHA-256-PLUS", b"p=tls-server-end-point,,"),
        (ALL_SCRAM - {"SCRAM-SHA-256-PLUS"}, BINDING, "SCRAM-SHA-1-PLUS", b"p=tls-"),
        (ALL_SCRAM, None, "SCRAM-SHA-256", b"n,,"),  # no binding data: -PLUS is not usable
        # The server offers no -PLUS: the client says it could have bound ("y").
        (frozenset({"SCRAM-SHA-256", "PLAIN"}), BINDING, "SCRAM-SHA-256", b"y,,"),
        (frozenset({"SCRAM-SHA-256", "PLAIN"}), None, "SCRAM-SHA-256", b"n,,"),
    ],
)
def test_select_prefers_plus_when_binding_is_available(
    offered: frozenset[str], binding: tuple[str, bytes] | None, name: str, flag: bytes
) -> None:
    mechanism = choose(offered, binding)
    assert mechanism.name == name
    assert first_message(mechanism).startswith(flag)


def test_select_explicit_plain_scram_with_plus_offered_declines_binding() -> None:
    # "y" would tell a -PLUS server that a downgrade happened; the user chose not to bind: "n".
    mechanism = choose(ALL_SCRAM, BINDING, preferred="scram-sha-256")
    assert mechanism.name == "SCRAM-SHA-256"
    assert first_message(mechanism).startswith(b"n,,")


def test_select_explicit_plus_needs_binding_data() -> None:
    assert choose(ALL_SCRAM, BINDING, preferred="SCRAM-SHA-1-PLUS").name == "SCRAM-SHA-1-PLUS"
    with pytest.raises(SMTPAuthenticationError, match="channel binding"):
        choose(ALL_SCRAM, None, preferred="SCRAM-SHA-256-PLUS")
    with pytest.raises(SMTPAuthenticationError, match="not offered"):
        choose(frozenset({"SCRAM-SHA-256"}), BINDING, preferred="SCRAM-SHA-256-PLUS")


# --- the pool's authenticator: certificate in, channel-bound mechanism out --------------------


class FakeCore:
    """What the authenticator reads from a ClientConnection."""

    def __init__(self, offered: set[str], *, tls: bool) -> None:
        self.tls = tls
        self.extensions = SimpleNamespace(auth=frozenset(offered))


@pytest.mark.parametrize(
    ("offered", "certificate", "name", "header"),
    [
        ({"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}, "rsa-sha256.pem", "SCRAM-SHA-256-PLUS", b"p="),
        ({"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}, "ed25519.pem", "SCRAM-SHA-256", b"n,,"),
        ({"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}, None, "SCRAM-SHA-256", b"n,,"),
        ({"SCRAM-SHA-256"}, "rsa-sha256.pem", "SCRAM-SHA-256", b"y,,"),
    ],
)
def test_pool_authenticator_binds_to_the_certificate(
    offered: set[str], certificate: str | None, name: str, header: bytes
) -> None:
    authenticate = _authenticator(make_options(host="mx.example", auth=("user", "pencil")))
    peer = der(certificate) if certificate else None
    mechanism = authenticate(FakeCore(offered, tls=True), "mx.example", False, peer)[0]
    assert mechanism.name == name
    assert isinstance(mechanism, Scram)
    first = mechanism.initial_response()
    assert first.startswith(header)
    if header == b"p=":
        assert peer is not None
        client_final = mechanism.respond(b"r=" + first.split(b",r=")[1] + b"x,s=c2FsdA==,i=1")
        channel = base64.b64decode(client_final.split(b",")[0][2:])
        assert channel == b"p=tls-server-end-point,," + hashlib.sha256(peer).digest()
