"""SASLprep (RFC 4013): the stringprep profile for user names and passwords.

Built on the standard library's `stringprep` tables (Unicode 3.2, as RFC 3454
requires), with the normalisation done by the Unicode 3.2 database too.
"""

from __future__ import annotations

import stringprep
import unicodedata

__all__ = ["SASLprepError", "saslprep"]


class SASLprepError(ValueError):
    """The string cannot be prepared: a prohibited character or a bidi violation."""


_NFKC = unicodedata.ucd_3_2_0.normalize

# RFC 4013 section 2.3 (C.1.2 is mapped to SPACE first, so it cannot survive).
_PROHIBITED = (
    ("non-ASCII space", stringprep.in_table_c12),
    ("ASCII control character", stringprep.in_table_c21),
    ("non-ASCII control character", stringprep.in_table_c22),
    ("private use character", stringprep.in_table_c3),
    ("non-character code point", stringprep.in_table_c4),
    ("surrogate code point", stringprep.in_table_c5),
    ("character inappropriate for plain text", stringprep.in_table_c6),
    ("character inappropriate for canonical representation", stringprep.in_table_c7),
    ("change display property or deprecated character", stringprep.in_table_c8),
    ("tagging character", stringprep.in_table_c9),
)


def saslprep(text: str, *, allow_unassigned: bool = False) -> str:
    """Prepare `text` with SASLprep (RFC 4013) and return the result.

    ``allow_unassigned`` selects the "query" semantics of RFC 3454 section 7
    (unassigned code points pass); the default is the "stored string" semantics.
    Raises `SASLprepError` for a prohibited character, an unassigned code point
    (stored strings only) or a violation of the bidi rules (RFC 3454 section 6).
    The result may be empty (``"\\u00ad"`` prepares to ``""``): callers that need a
    non-empty string check that themselves.
    """
    if text.isascii():
        # Fast path: ASCII maps to itself except for the controls, which are prohibited.
        for char in text:
            if char < " " or char == "\x7f":
                raise SASLprepError(f"prohibited ASCII control character {char!r}")
        return text
    # 2.1 Mapping: non-ASCII spaces to SPACE, "commonly mapped to nothing" removed.
    mapped = "".join(
        " " if stringprep.in_table_c12(char) else char
        for char in text
        if not stringprep.in_table_b1(char)
    )
    # 2.2 Normalisation: NFKC.
    prepared: str = _NFKC("NFKC", mapped)
    # 2.3 Prohibited output, 2.5 unassigned code points.
    for char in prepared:
        for what, in_table in _PROHIBITED:
            if in_table(char):
                raise SASLprepError(f"prohibited {what} U+{ord(char):04X}")
        if not allow_unassigned and stringprep.in_table_a1(char):
            raise SASLprepError(f"unassigned code point U+{ord(char):04X}")
    # 2.4 Bidirectional characters (RFC 3454 section 6).
    if any(stringprep.in_table_d1(char) for char in prepared):
        if any(stringprep.in_table_d2(char) for char in prepared):
            raise SASLprepError("a string with right-to-left characters has left-to-right ones")
        if not (stringprep.in_table_d1(prepared[0]) and stringprep.in_table_d1(prepared[-1])):
            raise SASLprepError(
                "a string with right-to-left characters must start and end with one"
            )
    return prepared
