"""protocol._frozen.builder: the fast constructor is the dataclass's own, field for field."""

from __future__ import annotations

import dataclasses
from collections import deque

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rawsmtp._message import PreparedMessage, _in_memory
from rawsmtp.pool._engine import Submission, _new_submission
from rawsmtp.protocol._frozen import builder
from rawsmtp.protocol._mailflow import MailFlow
from rawsmtp.protocol._transaction import Transaction


@dataclasses.dataclass(slots=True, eq=False, kw_only=True)
class _Sample:
    given_one: object
    given_two: object
    plain: int = 7
    listed: list[int] = dataclasses.field(default_factory=list)
    queued: deque[int] = dataclasses.field(default_factory=deque)


def _fields(made: object) -> dict[str, object]:
    return {f.name: getattr(made, f.name) for f in dataclasses.fields(made)}  # type: ignore[arg-type]


@given(st.integers() | st.text() | st.none(), st.binary())
def test_the_builder_makes_what_the_init_makes(one: object, two: bytes) -> None:
    build = builder(_Sample, "given_one", "given_two")
    made, expected = build(one, two), _Sample(given_one=one, given_two=two)
    assert type(made) is _Sample
    assert _fields(made) == _fields(expected)


def test_each_made_object_has_its_own_mutable_defaults() -> None:
    build = builder(_Sample, "given_one", "given_two")
    first, second = build(1, 2), build(1, 2)
    first.listed.append(1)
    assert second.listed == [] and first.queued is not second.queued


def test_the_library_builders_cover_every_field_as_the_dataclass_does() -> None:
    prepared = _in_memory(None, "<id@x>", 3, False, True, False, b"hi\r\n")
    assert _fields(prepared) == _fields(
        PreparedMessage(
            envelope=None,  # type: ignore[arg-type]
            message_id="<id@x>",
            size=3,
            eight_bit=False,
            restartable=True,
            utf8_headers=False,
            _source=b"hi\r\n",
        )
    )
    made = _fields(_new_submission(prepared, None, 5.0, None))
    expected = _fields(Submission(prepared=prepared, future=None, timeout=5.0))  # type: ignore[arg-type]
    made.pop("submitted_at"), expected.pop("submitted_at")  # the clock, read by each
    assert made == expected


@pytest.mark.parametrize(
    ("cls", "names", "reason"),
    [
        (Transaction, ("mail_from",), "frozen"),
        (_Sample, ("plain",), "no default"),
        (MailFlow, ("nonsense",), "no field"),
    ],
)
def test_a_builder_is_refused_where_it_could_not_be_the_init(
    cls: type, names: tuple[str, ...], reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        builder(cls, *names)
