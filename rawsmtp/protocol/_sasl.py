"""The interface between the client state machine and a SASL mechanism.

The client runs the AUTH exchange (RFC 4954): base64, 334 challenges, the 512-octet line limit,
cancelling with ``*``. A mechanism only turns decoded challenges into raw responses, so
mechanisms stay small and testable on their own (``rawsmtp.auth`` implements them).
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["MECHANISM_REFUSED", "SASLMechanism"]

# Replies to AUTH that refuse the mechanism, not the credentials (RFC 4954 section 6: 504
# unrecognized, 534 too weak, 538 needs encryption): the next mechanism may be tried. A 535 is a
# failed login and never retried with another mechanism.
MECHANISM_REFUSED = frozenset({504, 534, 538})


class SASLMechanism(Protocol):
    """One authentication attempt with one mechanism (a fresh object for each attempt).

    Methods raise :class:`rawsmtp.protocol.SMTPAuthenticationError` when the server's data is
    unacceptable (e.g. a SCRAM server signature that does not verify); the client then cancels
    the exchange.
    """

    @property
    def name(self) -> str:
        """The mechanism name as sent on the AUTH line, e.g. ``"PLAIN"``."""
        ...

    def initial_response(self) -> bytes | None:
        """The SASL initial response, or None when the mechanism starts with a challenge."""
        ...

    def respond(self, challenge: bytes) -> bytes:
        """Answer one decoded 334 challenge with the raw (not yet base64) response."""
        ...

    def complete(self) -> None:
        """Called on the server's 235: raise if the server has not proved what it must."""
        ...

    @property
    def failure_detail(self) -> str | None:
        """What the mechanism learnt about a failure (e.g. XOAUTH2's JSON), for the error."""
        ...
