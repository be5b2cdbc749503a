"""The bearer-token mechanisms: Google's XOAUTH2 and the standard OAUTHBEARER (RFC 7628).

Both send the whole token in the initial response. When the token is refused, both servers send
a 334 challenge carrying a JSON error before the final 535; the client must answer it, and the
JSON is kept as the failure detail because it says why (expired, wrong scope...).
"""

from __future__ import annotations

from ._base import Mechanism, decode_text, fail, saslname

__all__ = ["OAuthBearer", "XOAuth2"]


class _BearerMechanism(Mechanism):
    """One initial response, then at most one error challenge answered with ``_ERROR_REPLY``."""

    __slots__ = ("_message",)

    _ERROR_REPLY = b""

    def __init__(self, message: str) -> None:
        super().__init__()
        self._message = message.encode("utf-8")

    def initial_response(self) -> bytes:
        return self._message

    def respond(self, challenge: bytes) -> bytes:
        if self._detail is not None:
            fail(f"{self.name}: unexpected second challenge from the server", detail=self._detail)
        self._detail = decode_text(challenge).strip() or "(empty error challenge)"
        return self._ERROR_REPLY


class XOAuth2(_BearerMechanism):
    """Google's format: ``user=U ^A auth=Bearer T ^A ^A``; the error challenge gets an empty line."""

    __slots__ = ()

    _NAME = "XOAUTH2"

    def __init__(self, user: str, token: str) -> None:
        super().__init__(f"user={user}\x01auth=Bearer {token}\x01\x01")


class OAuthBearer(_BearerMechanism):
    """RFC 7628: a GS2 header, then host, port and auth key-value pairs separated by ^A.

    The error challenge is answered with a single ^A, as section 3.2.3 requires.
    """

    __slots__ = ()

    _NAME = "OAUTHBEARER"
    _ERROR_REPLY = b"\x01"

    def __init__(self, user: str, token: str, *, host: str, port: int | None) -> None:
        pairs = [f"host={host}"] + ([f"port={port}"] if port is not None else [])
        pairs.append(f"auth=Bearer {token}")
        super().__init__(f"n,a={saslname(user)},\x01" + "\x01".join(pairs) + "\x01\x01")
