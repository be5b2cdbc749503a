"""What a successful ``send()`` resolves to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ._message import Envelope
from .protocol import SMTPResponseError

__all__ = ["NO_REJECTIONS", "SendResult"]

# The common case, shared: a queue of finished messages need not hold an empty dict each.
NO_REJECTIONS: Mapping[str, SMTPResponseError] = MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class SendResult:
    """The outcome of a delivered message (at least one recipient accepted it).

    ``rejected`` lists refused recipients, with each refusal in ``rejected_errors`` (read-only).
    ``response`` is the server's final reply; ``message_size`` the bytes handed to the encoder;
    ``envelope_time``/``message_time`` are seconds spent on the envelope and on the body.
    """

    accepted: tuple[str, ...]
    rejected: tuple[str, ...]
    rejected_errors: Mapping[str, SMTPResponseError] = field(default_factory=lambda: NO_REJECTIONS)
    response: str
    envelope: Envelope
    message_id: str | None
    message_size: int
    envelope_time: float = 0.0
    message_time: float = 0.0
