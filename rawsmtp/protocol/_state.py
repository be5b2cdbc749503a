"""Where a session is, what its next reply answers, and which moves between states are legal.

Two enums that are easy to confuse, so they live here side by side:

- :class:`State` is where the *session* is (greeting awaited, EHLO sent, ready for mail...).
  It changes a few times per session, always through ``ClientConnection._enter``, which looks
  the move up in :data:`_TRANSITIONS`.
- :class:`_Awaiting` is what the *next reply* answers (MAIL, RCPT, the final dot...). The
  client queues one per command written; with pipelining many are queued at once while the
  state stays READY. ``_REPLY_HANDLERS`` in ``_client`` is keyed by it.

``_ALLOWED`` says in which states each API call may be made: a call outside them is the
caller's mistake (:class:`LocalProtocolError`). A move missing from ``_TRANSITIONS`` is the
core's own mistake, since every move is made by the core in answer to a reply or to an allowed
call; ``_enter`` raises AssertionError for it (explicitly, so ``python -O`` keeps the check).

    GREETING -> EHLO -> READY <-> AUTH
                 |  \\-> HELO -> READY
                 \\-> STARTTLS -> TLS_HANDSHAKE -> EHLO (again, over TLS)
                         \\-> READY (refused, opportunistic)
    READY -> QUIT -> CLOSED;   any state -> CLOSED
"""

from __future__ import annotations

import enum

__all__ = ["State"]


class State(enum.Enum):
    """Where a client session is (``ClientConnection.state``): greeting awaited, EHLO sent,
    ready for mail, closed... The moves between states are listed in this module's
    ``_TRANSITIONS``; which calls each state allows, in ``_ALLOWED``."""

    # Members are singletons: identity hashing is correct and far cheaper than Enum's own
    # (the state is looked up on every API call and every reply).
    __hash__ = object.__hash__

    GREETING = "GREETING"  # connected, waiting for the server's 220
    EHLO = "EHLO"  # EHLO or LHLO sent
    HELO = "HELO"  # HELO sent after EHLO was refused
    STARTTLS = "STARTTLS"  # STARTTLS sent
    TLS_HANDSHAKE = "TLS_HANDSHAKE"  # the driver is doing the TLS handshake
    READY = "READY"  # transactions may run
    AUTH = "AUTH"  # an AUTH exchange is under way
    QUIT = "QUIT"  # QUIT sent
    CLOSED = "CLOSED"


class _Awaiting(enum.Enum):
    """What an awaited reply answers; the value names it in errors and timeouts."""

    __hash__ = object.__hash__  # see State

    GREETING = "greeting"
    EHLO = "EHLO"
    HELO = "HELO"
    STARTTLS = "STARTTLS"
    AUTH = "AUTH"
    MAIL = "MAIL"
    RCPT = "RCPT"
    DATA = "DATA"
    BDAT = "BDAT"
    DATA_END = "end of data"
    RSET = "RSET"
    QUIT = "QUIT"


_SETTING_UP = frozenset({State.GREETING, State.EHLO, State.HELO, State.STARTTLS})

# Which API calls are legal in which states; anything else is a LocalProtocolError.
_ALLOWED: dict[str, frozenset[State]] = {
    # Queued while the session is set up, sent once it is READY (and authenticated, if asked).
    "send_mail": _SETTING_UP | {State.TLS_HANDSHAKE, State.READY, State.AUTH},
    # Asked for at any time before it can go; one exchange at a time.
    "authenticate": _SETTING_UP | {State.TLS_HANDSHAKE, State.READY},
    "start_tls_done": frozenset({State.TLS_HANDSHAKE}),
}

# Every legal move, from -> to. CLOSED is reachable from anywhere (a 421, a timeout, a lost
# connection) and leads nowhere.
_TRANSITIONS: dict[State, frozenset[State]] = {
    State.GREETING: frozenset({State.EHLO, State.CLOSED}),
    State.EHLO: frozenset({State.HELO, State.STARTTLS, State.READY, State.CLOSED}),
    State.HELO: frozenset({State.READY, State.CLOSED}),  # HELO offers no STARTTLS
    State.STARTTLS: frozenset({State.TLS_HANDSHAKE, State.READY, State.CLOSED}),
    State.TLS_HANDSHAKE: frozenset({State.EHLO, State.CLOSED}),
    State.READY: frozenset({State.AUTH, State.QUIT, State.CLOSED}),
    State.AUTH: frozenset({State.READY, State.CLOSED}),
    State.QUIT: frozenset({State.CLOSED}),
    State.CLOSED: frozenset(),
}


def _check_transition(current: State, new: State) -> None:
    if new not in _TRANSITIONS[current]:
        raise AssertionError(f"rawsmtp bug: no transition from {current.name} to {new.name}")
