"""What a successful ``send()`` resolves to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ._message import Envelope
from .protocol import ClientConnection, SMTPResponseError
from .protocol._queue_id import parse_queue_id

__all__ = ["NO_CAPABILITIES", "NO_REJECTIONS", "SendResult", "capabilities_of"]

# The common case, shared: a queue of finished messages need not hold an empty dict each.
NO_REJECTIONS: Mapping[str, SMTPResponseError] = MappingProxyType({})
NO_CAPABILITIES: Mapping[str, tuple[str, ...]] = MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class SendResult:
    """The outcome of a delivered message (at least one recipient accepted it).

    ``rejected`` lists refused recipients, with each refusal in ``rejected_errors`` (read-only).
    ``response`` is the server's final reply; ``message_size`` the bytes handed to the encoder;
    ``envelope_time``/``message_time`` are seconds spent on the envelope and on the body.
    ``capabilities`` maps each EHLO (LHLO) keyword of the connection that carried the message to
    its parameters (``{"SIZE": ("35882577",), "PIPELINING": ()}``), read-only.

    Each recipient ends in ``accepted`` or ``rejected``, or, rarely, ``unconfirmed``: the
    recipients a server deferred (4xx) while accepting others were sent the message again, in
    a transaction of their own, until accepted, refused for good, out of retries or past the
    deadline (their last 4xx is then their refusal); ``deferred`` lists them, whatever their
    outcome. ``unconfirmed``: such a retry whose final reply was lost (they may have it).
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
    capabilities: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: NO_CAPABILITIES)
    deferred: tuple[str, ...] = ()
    unconfirmed: tuple[str, ...] = ()

    @property
    def queue_id(self) -> str | None:
        """The id the server queued the message under, read from ``response`` (None when its
        reply has none of the forms in :data:`rawsmtp.protocol._queue_id.QUEUE_ID_FORMS`)."""
        return parse_queue_id(self.response)


def capabilities_of(core: ClientConnection | None) -> Mapping[str, tuple[str, ...]]:
    """The ``capabilities`` of a SendResult: what the carrying connection's server advertised."""
    if core is None:
        return NO_CAPABILITIES
    # A view, not a copy: a connection's Extensions are replaced, never changed, by a new EHLO.
    return core.extensions.view
