"""SASLprep (RFC 4013), the stringprep profile SCRAM applies to user names and passwords.

The stdlib ``stringprep`` module holds the RFC 3454 tables (Unicode 3.2); this module is the
profile: map, normalise (NFKC), refuse prohibited characters, check the bidi rule, and (for
stored strings) refuse code points unassigned in Unicode 3.2.

A string that cannot be prepared is an input problem that no retry fixes, so the error is an
:class:`~rawsmtp.SMTPConfigError` (also a ``ValueError``), raised before anything is sent. Its
message names the rule that was broken, never the string: it may be a password.
"""

from __future__ import annotations

import stringprep
import unicodedata
from typing import NoReturn

from .._errors import SMTPConfigError

__all__ = ["saslprep"]

# RFC 4013 section 2.3, in the order the RFC lists them, with what to call them in an error.
_PROHIBITED = (
    (stringprep.in_table_c12, "a non-ASCII space"),
    (stringprep.in_table_c21_c22, "a control character"),
    (stringprep.in_table_c3, "a private-use character"),
    (stringprep.in_table_c4, "a non-character code point"),
    (stringprep.in_table_c5, "a surrogate code point"),
    (stringprep.in_table_c6, "a character inappropriate for plain text"),
    (stringprep.in_table_c7, "a character inappropriate for canonical representation"),
    (stringprep.in_table_c8, "a display-changing or deprecated character"),
    (stringprep.in_table_c9, "a tagging character"),
)


def saslprep(text: str, *, what: str, allow_unassigned: bool) -> str:
    """``text`` prepared by RFC 4013; ``what`` names it in errors ("the SCRAM password").

    ``allow_unassigned`` is True for a query string and False for a stored string (RFC 3454
    section 7); RFC 5802 treats the user name as a query and the password as stored.
    """
    if text.isascii() and text.isprintable():
        return text  # nothing to map, normalise or refuse: the common case stays cheap
    # 2.1 mapping: non-ASCII spaces become SPACE, "commonly mapped to nothing" characters go.
    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c for c in text if not stringprep.in_table_b1(c)
    )
    # 2.2 normalisation, with the Unicode version the tables are from.
    prepared = unicodedata.ucd_3_2_0.normalize("NFKC", mapped)
    for char in prepared:
        for test, name in _PROHIBITED:
            if test(char):
                _refuse(what, f"contains {name}")
        if not allow_unassigned and stringprep.in_table_a1(char):
            _refuse(what, "contains a code point unassigned in Unicode 3.2")
    _check_bidi(prepared, what)
    return prepared


def _check_bidi(text: str, what: str) -> None:
    """RFC 3454 section 6: right-to-left text is all RTL-or-neutral and starts and ends RTL."""
    if not any(stringprep.in_table_d1(c) for c in text):
        return
    if any(stringprep.in_table_d2(c) for c in text):
        _refuse(what, "mixes right-to-left and left-to-right characters")
    if not (stringprep.in_table_d1(text[0]) and stringprep.in_table_d1(text[-1])):
        _refuse(what, "has right-to-left text that does not start and end right-to-left")


def _refuse(what: str, reason: str) -> NoReturn:
    raise SMTPConfigError(f"{what} {reason}, which SASLprep (RFC 4013) prohibits", option="auth")
