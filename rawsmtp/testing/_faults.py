"""Fault injection: what the test server does instead of (or on top of) its normal reply.

The server asks its policy at every *point* of a session: ``"CONNECT"`` (before the greeting),
each command by verb (``"EHLO"``, ``"MAIL"``, ``"RCPT"``, ``"DATA"`` for the 354, ``"BDAT"``,
``"STARTTLS"``, ``"AUTH"``, ``"RSET"``...) and ``"DATA_END"`` (the final reply after the message
content: after the dot, or after ``BDAT ... LAST``; in LMTP mode once per recipient). A policy is
a list of :class:`Fault` rules (the first that matches wins) or any callable taking a
:class:`FaultContext` and returning a :class:`Fault` or None (behave normally).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = ["ACTIONS", "POINTS", "Fault", "FaultContext", "FaultPolicy", "ScriptedPolicy"]

Action = Literal["reply", "silent", "drop", "close", "garbage", "endless"]

ACTIONS: frozenset[str] = frozenset({"reply", "silent", "drop", "close", "garbage", "endless"})
POINTS: frozenset[str] = frozenset(
    {
        "CONNECT",
        "EHLO",
        "HELO",
        "LHLO",
        "STARTTLS",
        "AUTH",
        "MAIL",
        "RCPT",
        "DATA",
        "BDAT",
        "DATA_END",
        "RSET",
        "NOOP",
        "VRFY",
        "QUIT",
        "*",
    }
)

DEFAULT_CLOSE_REPLY = "421 4.3.2 Service shutting down, closing connection"
DEFAULT_GARBAGE = b"\x00\xff\xfe\x80 this is not SMTP \x1b[0m\xc3\x28\r\n"


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultContext:
    """Where the session is when the policy is asked.

    ``argument`` is the command line after the verb (``"TO:<bob@example.com> NOTIFY=NEVER"``);
    for ``CONNECT`` the peer's address; for ``DATA_END`` the recipient in LMTP mode, else the
    accepted recipients joined by spaces. ``connection`` numbers connections from 1 in accept
    order; ``message`` numbers transactions (MAIL commands) server-wide from 1, 0 before any.
    """

    point: str
    argument: str
    connection: int
    message: int
    tls: bool
    auth_user: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """One scripted misbehaviour.

    Matching (for scripted lists): ``on`` is the point (see the module docstring; ``"*"`` means
    every command); ``match`` a case-insensitive substring of :attr:`FaultContext.argument`;
    ``connection`` restricts the rule to the n-th accepted connection; ``nth`` fires the rule
    only on its n-th match (counted server-wide from 1), otherwise it fires on every match.

    What happens, after waiting ``delay`` seconds:

    - ``"reply"`` (default): ``reply``, if given, is sent instead of the normal reply. A 4xx/5xx
      reply refuses the command (no effect: a refused RCPT adds no recipient, a refused
      ``DATA_END`` records no message, a refused ``CONNECT`` greeting leaves a session that
      answers 503 to all but QUIT); a 2xx/3xx reply only replaces the text. Several lines
      separated by ``"\\n"`` make a multi-line reply. With no ``reply`` the normal one is sent
      (a pure delay). ``inject`` bytes are sent in the same write right after the reply: on
      ``STARTTLS`` that is the command-injection attack (bytes after 220, before the handshake).
    - ``"silent"``: never answer; input is read and ignored until the client closes.
    - ``"drop"``: close the connection without a word.
    - ``"close"``: send ``reply`` (default a 421) and close.
    - ``"garbage"``: send ``payload`` (non-SMTP bytes by default), then ignore input.
    - ``"endless"``: send one line that never ends until the client closes or the server stops.

    ``then_refuse``: every command read in the same segment as this point's (after it) gets
    this reply instead, as Haraka answers 503 to commands pipelined after the dot; with
    ``on="DATA_END"`` and no ``reply`` the message itself is accepted.
    """

    on: str = "*"
    match: str | None = None
    nth: int | None = None
    connection: int | None = None
    action: Action = "reply"
    reply: str | None = None
    delay: float = 0.0
    inject: bytes = b""
    payload: bytes = DEFAULT_GARBAGE
    then_refuse: str | None = None

    def __post_init__(self) -> None:
        if self.on.upper() not in POINTS:
            raise ValueError(f"unknown fault point {self.on!r}; one of {sorted(POINTS)}")
        object.__setattr__(self, "on", self.on.upper())
        if self.action not in ACTIONS:
            raise ValueError(f"unknown fault action {self.action!r}; one of {sorted(ACTIONS)}")
        if self.nth is not None and self.nth < 1:
            raise ValueError("nth counts from 1")
        if self.delay < 0:
            raise ValueError("delay must be >= 0")
        if self.reply is not None:
            for line in self.reply.split("\n"):
                if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in ("", " ", "-"):
                    raise ValueError(f"reply line must start with a 3-digit code: {line!r}")
        idle = self.reply is None and not self.delay and not self.inject
        if self.action == "reply" and idle and self.then_refuse is None:
            raise ValueError("a 'reply' fault needs a reply, a delay, inject or then_refuse")

    def matches(self, context: FaultContext) -> bool:
        """Whether this rule applies at ``context`` (``nth`` aside: the policy counts that)."""
        if self.on == "*":
            if context.point in ("CONNECT", "DATA_END"):
                return False
        elif self.on != context.point:
            return False
        if self.connection is not None and self.connection != context.connection:
            return False
        return self.match is None or self.match.lower() in context.argument.lower()

    @property
    def refuses(self) -> bool:
        """Whether the reply is a refusal (4xx/5xx), so the command must have no effect."""
        return self.reply is not None and self.reply[0] in "45"


FaultPolicy = Callable[[FaultContext], "Fault | None"]
"""A callable the server asks at each command: the :class:`Fault` to apply there, or None."""


class ScriptedPolicy:
    """A list of faults as a policy: the first rule that matches (and is due) wins."""

    def __init__(self, faults: Iterable[Fault]) -> None:
        self._faults = tuple(faults)
        self._counts = [0] * len(self._faults)

    def __call__(self, context: FaultContext) -> Fault | None:
        chosen: Fault | None = None
        for index, fault in enumerate(self._faults):
            if not fault.matches(context):
                continue
            self._counts[index] += 1
            if chosen is None and (fault.nth is None or fault.nth == self._counts[index]):
                chosen = fault
        return chosen
