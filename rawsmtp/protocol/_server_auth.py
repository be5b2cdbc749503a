"""Server side of SASL (RFC 4954): the mechanism interface, PLAIN, LOGIN and XOAUTH2.

A server mechanism turns each decoded client response into the next step: a challenge to send
(334), credentials for the driver to judge, or a refusal. The :class:`ServerConnection` does the
base64, the ``*`` cancel and the line limit; mechanisms only see raw bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "SASLCredentials",
    "SASLRefusal",
    "ServerLogin",
    "ServerMechanism",
    "ServerPlain",
    "ServerXOAuth2",
    "decode_response",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class SASLCredentials:
    """The exchange is complete; ``password`` None means the mechanism checked them itself."""

    username: str
    password: str | None = None
    authzid: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SASLRefusal:
    """The exchange failed; ``reply`` is sent (e.g. ``"535 5.7.8 Authentication failed"``)."""

    reply: str


Step = bytes | SASLCredentials | SASLRefusal


class ServerMechanism(Protocol):
    """One exchange (a fresh object per AUTH command)."""

    def step(self, response: bytes | None) -> Step:
        """The client's decoded response (None: AUTH had no initial response) -> next step."""
        ...


def decode_response(text: str) -> bytes | None:
    """A base64 SASL response (``=`` is the empty one); None when it is not base64."""
    if text == "=":
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


class ServerPlain:
    """RFC 4616: one message ``authzid NUL user NUL password``, asked for with an empty 334."""

    def step(self, response: bytes | None) -> Step:
        if response is None:
            return b""
        parts = _text(response).split("\0")
        if len(parts) != 3 or not parts[1]:
            return SASLRefusal(reply="501 5.5.2 Malformed PLAIN response")
        return SASLCredentials(username=parts[1], password=parts[2], authzid=parts[0] or None)


class ServerLogin:
    """The LOGIN mechanism: ``Username:`` then ``Password:`` prompts."""

    def __init__(self) -> None:
        self._user: str | None = None

    def step(self, response: bytes | None) -> Step:
        if response is None and self._user is None:
            return b"Username:"
        if self._user is None:
            self._user = _text(response or b"")
            return b"Password:"
        return SASLCredentials(username=self._user, password=_text(response or b""))


# What Gmail sends when it refuses a bearer token (as a 334 challenge, before the 535).
_XOAUTH2_ERROR = json.dumps(
    {"status": "401", "schemes": "Bearer", "scope": "https://mail.google.com/"}
).encode()


class ServerXOAuth2:
    """Google's XOAUTH2: ``user=U ^A auth=Bearer T ^A ^A`` in one message, judged by ``check``.

    A refused token gets Gmail's answer: a 334 carrying the error as JSON, and once the client
    has answered it (with an empty line), 535.
    """

    def __init__(self, check: Callable[[str, str], bool]) -> None:
        self._check = check
        self._refused = False

    def step(self, response: bytes | None) -> Step:
        if self._refused:
            return SASLRefusal(reply="535 5.7.8 Username and Password not accepted")
        if response is None:
            return b""
        fields = dict(part.partition("=")[::2] for part in _text(response).split("\1"))
        user, token = fields.get("user", ""), fields.get("auth", "").removeprefix("Bearer ")
        if user and self._check(user, token):
            return SASLCredentials(username=user)
        self._refused = True
        return _XOAUTH2_ERROR
