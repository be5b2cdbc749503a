"""The password mechanisms that send the password or a plain digest of it: PLAIN, LOGIN, CRAM-MD5.

SCRAM, which also proves the server knows the password, lives in :mod:`._scram`.
"""

from __future__ import annotations

from .._errors import SMTPConfigError
from ._base import Mechanism, decode_text, fail
from ._credentials import Credentials

__all__ = ["CramMD5", "Login", "Plain"]


def _password(credentials: Credentials) -> str:
    if credentials.password is None:
        raise SMTPConfigError("this mechanism needs credentials with a password", option="auth")
    return credentials.password


class Plain(Mechanism):
    """RFC 4616: ``authzid NUL user NUL password`` in UTF-8, as the initial response."""

    __slots__ = ("_message",)

    _NAME = "PLAIN"

    def __init__(self, credentials: Credentials) -> None:
        super().__init__()
        parts = (credentials.authzid or "", credentials.user, _password(credentials))
        self._message = "\0".join(parts).encode("utf-8")

    def initial_response(self) -> bytes:
        return self._message


class Login(Mechanism):
    """The de-facto LOGIN mechanism: the user name, then the password, each asked for by a 334.

    Servers word the prompts differently (``Username:``, ``User Name``, ``Password:``), so a
    prompt mentioning "user" or "pass" is answered accordingly and any other goes by order.
    """

    __slots__ = ("_answers", "_sent")

    _NAME = "LOGIN"

    def __init__(self, credentials: Credentials) -> None:
        super().__init__()
        self._answers = (credentials.user.encode("utf-8"), _password(credentials).encode("utf-8"))
        self._sent = 0

    def respond(self, challenge: bytes) -> bytes:
        if self._sent >= len(self._answers):
            fail(f"LOGIN: unexpected third challenge from the server: {decode_text(challenge)!r}")
        prompt = decode_text(challenge).lower()
        if "user" in prompt:
            index = 0
        elif "pass" in prompt:
            index = 1
        else:
            index = self._sent
        self._sent += 1
        return self._answers[index]


class CramMD5(Mechanism):
    """RFC 2195: ``user SP hex(HMAC-MD5(password, challenge))``."""

    __slots__ = ("_answered", "_password", "_user")

    _NAME = "CRAM-MD5"

    def __init__(self, credentials: Credentials) -> None:
        super().__init__()
        self._user = credentials.user.encode("utf-8")
        self._password = _password(credentials).encode("utf-8")
        self._answered = False

    def respond(self, challenge: bytes) -> bytes:
        if self._answered:
            return super().respond(challenge)
        if not challenge:
            fail("CRAM-MD5: the server sent an empty challenge")
        self._answered = True
        import hashlib  # on use, with hmac: they load OpenSSL (see rawsmtp.config._tls)
        import hmac

        digest = hmac.new(self._password, challenge, hashlib.md5).hexdigest()
        return self._user + b" " + digest.encode("ascii")
