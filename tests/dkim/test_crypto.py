"""The arithmetic and the key formats: RFC 8032 vectors, RSA's padding, CRT check and blinding,
and the DER reader's refusals."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from rawsmtp.dkim._der import DERError, Reader, pem_blocks
from rawsmtp.dkim._ed25519 import Ed25519Key
from rawsmtp.dkim._keys import load_private_key, public_key_data
from rawsmtp.dkim._rsa import RSAKey, _emsa_pkcs1_v15

KEYS = Path(__file__).with_name("keys")
ED25519_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")

# RFC 8032 section 7.1, tests 1, 2 and 3: (secret key, public key, message, signature).
RFC8032 = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
        "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
]


@pytest.mark.parametrize(("secret", "public", "message", "signature"), RFC8032)
def test_ed25519_matches_rfc8032_vectors(
    secret: str, public: str, message: str, signature: str
) -> None:
    key = Ed25519Key(bytes.fromhex(secret))
    assert key.public.hex() == public
    assert key.sign(bytes.fromhex(message)).hex() == signature


def test_ed25519_pkcs8_is_read_to_its_seed() -> None:
    seed = bytes.fromhex(RFC8032[0][0])
    key = load_private_key(ED25519_PKCS8_PREFIX + seed)
    assert isinstance(key, Ed25519Key)
    assert public_key_data(key) == "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="  # RFC 8463 A.2
    pem = "-----BEGIN PRIVATE KEY-----\n" + base64.b64encode(ED25519_PKCS8_PREFIX + seed).decode()
    assert load_private_key(pem + "\n-----END PRIVATE KEY-----\n").public == key.public


def _rsa(name: str = "rsa2048") -> RSAKey:
    key = load_private_key((KEYS / f"{name}.pem").read_text())
    assert isinstance(key, RSAKey)
    return key


def test_pkcs1_and_pkcs8_give_the_same_rsa_key() -> None:
    assert _rsa("rsa2048-pkcs1") == _rsa("rsa2048")


@pytest.mark.parametrize("bits", [1024, 2048, 4096])
def test_rsa_signature_is_the_padded_digest_to_the_power_d(bits: int) -> None:
    key = _rsa(f"rsa{bits}")
    assert key.bits == bits
    digest = bytes(range(32))
    signature = key.sign_digest(digest)
    assert len(signature) == bits // 8
    recovered = pow(int.from_bytes(signature, "big"), key.e, key.n).to_bytes(bits // 8, "big")
    # EMSA-PKCS1-v1_5: 00 01, at least 8 bytes of ff, 00, the SHA-256 DigestInfo, the digest.
    padding = bits // 8 - 3 - 19 - 32
    assert recovered == (
        b"\x00\x01" + b"\xff" * padding + b"\x00"
        + bytes.fromhex("3031300d060960864801650304020105000420") + digest
    )  # fmt: skip
    # Deterministic, though every computation is blinded differently.
    assert key.sign_digest(digest) == signature


def test_emsa_needs_eight_bytes_of_padding() -> None:
    with pytest.raises(ValueError, match="too short"):
        _emsa_pkcs1_v15(bytes(32), 61)


def test_a_faulty_crt_result_is_never_released(monkeypatch: pytest.MonkeyPatch) -> None:
    key = _rsa()
    real = RSAKey._private
    monkeypatch.setattr(RSAKey, "_private", lambda self, c: real(self, c) + 1)
    with pytest.raises(ArithmeticError, match="failed its check"):
        key.sign_digest(bytes(32))


def test_blinding_changes_what_is_exponentiated(monkeypatch: pytest.MonkeyPatch) -> None:
    key = _rsa()
    seen: list[int] = []
    real = RSAKey._private

    def spy(self: RSAKey, c: int) -> int:
        seen.append(c)
        return real(self, c)

    monkeypatch.setattr(RSAKey, "_private", spy)
    key.sign_digest(bytes(32))
    key.sign_digest(bytes(32))
    encoded = int.from_bytes(_emsa_pkcs1_v15(bytes(32), key.size), "big")
    assert len(set(seen)) == 2 and encoded not in seen


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"p": 3}, "do not multiply"),
        ({"e": 4}, "exponents do not match"),
        ({"d": 12345}, "exponents do not match"),
        ({"dp": 5}, "CRT values"),
        ({"qinv": 7}, "CRT values"),
    ],
)
def test_inconsistent_rsa_numbers_are_refused(change: dict[str, int], message: str) -> None:
    key = _rsa()
    numbers = {name: getattr(key, name) for name in ("n", "e", "d", "p", "q", "dp", "dq", "qinv")}
    with pytest.raises(ValueError, match=message):
        RSAKey(**{**numbers, **change})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ((KEYS / "rsa512.pem").read_text(), "at least 1024 bits, this one has 512"),
        (
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----",
            "encrypted",
        ),
        ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", "public key"),
        ("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----", "no '-----BEGIN"),
        ("-----BEGIN PRIVATE KEY-----\nMAA=\n", "no END line"),
        ("-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----", "invalid base64"),
        ("-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----", "malformed PRIVATE KEY"),
        ("not a key", "no '-----BEGIN"),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nAAAA\n-----END RSA PRIVATE KEY-----",
            "encrypted",
        ),
    ],
)
def test_bad_keys_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_private_key(text)


def test_an_ec_pkcs8_key_is_refused_by_algorithm() -> None:
    # PrivateKeyInfo with id-ecPublicKey (1.2.840.10045.2.1): DKIM has no algorithm for it.
    der = bytes.fromhex("301a020100301306072a8648ce3d020106082a8648ce3d0301070400")
    with pytest.raises(ValueError, match="only RSA and Ed25519"):
        load_private_key(der)


@pytest.mark.parametrize(
    "der",
    [
        b"\x30",  # truncated
        b"\x30\x05\x02\x01",  # runs past the end
        b"\x30\x81\x03\x02\x01\x00",  # long form for a short length
        b"\x02\x02\x00\x01",  # integer with a needless leading zero
        b"\x02\x01\x80",  # negative
    ],
)
def test_der_reader_refuses_what_is_not_der(der: bytes) -> None:
    reader = Reader(der)
    with pytest.raises(DERError):
        if der[0] == 0x30:
            reader.sequence().integer()
        else:
            reader.integer()


def test_pem_blocks_skip_text_around_them() -> None:
    text = "a comment\n-----BEGIN X-----\nAAEC\n-----END X-----\ntrailing"
    assert pem_blocks(text) == [("X", b"\x00\x01\x02")]
