"""What every mechanism shares: the failure helper, the default steps, and SASL name escaping.

A mechanism object is one attempt: the client state machine calls ``initial_response()`` once,
``respond()`` for each 334 challenge and ``complete()`` on the 235. Everything a server sends is
untrusted, so the only exception that may leave a mechanism is SMTPAuthenticationError.
"""

from __future__ import annotations

from typing import NoReturn

from .._errors import SMTPAuthenticationError

__all__ = ["Mechanism", "decode_text", "fail", "saslname"]

# Server text kept for an error message is bounded: the reply parser bounds lines, but an error
# object may outlive the connection and be logged many times.
_MAX_DETAIL = 1000


def fail(message: str, *, detail: str | None = None) -> NoReturn:
    raise SMTPAuthenticationError(message, detail=detail)


def decode_text(data: bytes) -> str:
    """Server text for messages and matching: never fails, whatever the bytes."""
    return data.decode("utf-8", errors="replace")[:_MAX_DETAIL]


def saslname(name: str) -> str:
    """Escape a name for a GS2 header or a SCRAM attribute (RFC 5802 section 5.1)."""
    # "=" first, or the "=" of "=2C" would be escaped again.
    return name.replace("=", "=3D").replace(",", "=2C")


class Mechanism:
    """Defaults for the SASLMechanism protocol: no challenges expected, nothing to verify."""

    __slots__ = ("_detail",)

    _NAME = ""

    def __init__(self) -> None:
        self._detail: str | None = None

    @property
    def name(self) -> str:
        return self._NAME

    @property
    def failure_detail(self) -> str | None:
        return self._detail

    def initial_response(self) -> bytes | None:
        return None

    def respond(self, challenge: bytes) -> bytes:
        fail(f"{self.name}: unexpected challenge from the server: {decode_text(challenge)!r}")

    def complete(self) -> None:
        return None
