"""What a successful ``send()`` resolves to."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._message import Envelope
from .protocol import SMTPResponseError

__all__ = ["SendResult"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SendResult:
    """The outcome of a delivered message (at least one recipient accepted it).

    ``rejected`` lists refused recipients, with each refusal in ``rejected_errors``.
    ``response`` is the server's final reply; ``message_size`` the bytes handed to the encoder;
    ``envelope_time``/``message_time`` are seconds spent on the envelope and on the body.
    """

    accepted: tuple[str, ...]
    rejected: tuple[str, ...]
    rejected_errors: dict[str, SMTPResponseError] = field(default_factory=dict)
    response: str
    envelope: Envelope
    message_id: str | None
    message_size: int
    envelope_time: float = 0.0
    message_time: float = 0.0
