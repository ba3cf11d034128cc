"""Response codes: RFC 2449 section 8, RFC 3206, RFC 6856.

A code is optional and counts only at the very start of a response's text
(``-ERR [IN-USE] mailbox locked``); a bracket later in the text is just text.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "AUTH",
    "IN_USE",
    "LOGIN_DELAY",
    "SYS_PERM",
    "SYS_TEMP",
    "UTF8",
    "ResponseCode",
    "split_response_code",
]

# rchar = %x21-2E / %x30-5C / %x5E-7F: printable, excluding "/" and "]".
_RCHARS = frozenset(range(0x21, 0x80)) - {0x2F, 0x5D}


def _split_levels(code: str) -> list[str]:
    levels = code.split("/")
    if len(levels) > 1 and levels[0].upper() == "REFERRAL":
        # Dovecot's [REFERRAL/pop://host/...]: the rest is one URL, slashes and all.
        return [levels[0], "/".join(levels[1:])]
    return levels


class ResponseCode:
    """A hierarchical, case-insensitive response code such as ``SYS/TEMP``.

    ``levels`` keeps the spelling that was received or given. Comparison and
    `matches` ignore case, as RFC 2449 requires.
    """

    __slots__ = ("_key", "levels")

    levels: tuple[str, ...]
    _key: tuple[str, ...]

    def __init__(self, code: str | Iterable[str]) -> None:
        levels = tuple(_split_levels(code)) if isinstance(code, str) else tuple(code)
        if not levels:
            raise ValueError("a response code needs at least one level")
        for level in levels:
            if not level or not all(ord(c) in _RCHARS or c == "/" for c in level):
                raise ValueError(f"invalid response code level: {level!r}")
        object.__setattr__(self, "levels", levels)
        object.__setattr__(self, "_key", tuple(level.upper() for level in levels))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("ResponseCode is immutable")

    def matches(self, other: ResponseCode | str) -> bool:
        """True if this code is `other` or one of its sub-levels.

        ``ResponseCode("SYS/TEMP/DISK").matches("SYS/TEMP")`` is true: clients must
        treat unknown sub-levels as their parent.
        """
        key = other._key if isinstance(other, ResponseCode) else ResponseCode(other)._key
        return self._key[: len(key)] == key

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            try:
                other = ResponseCode(other)
            except ValueError:
                return False
        if isinstance(other, ResponseCode):
            return self._key == other._key
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._key)

    def __str__(self) -> str:
        return "/".join(self.levels)

    def __repr__(self) -> str:
        return f"ResponseCode({str(self)!r})"


IN_USE = ResponseCode("IN-USE")
"""Authenticated, but the maildrop is locked by another session (RFC 2449)."""
LOGIN_DELAY = ResponseCode("LOGIN-DELAY")
"""Logged in too soon after the previous session (RFC 2449)."""
SYS_TEMP = ResponseCode("SYS/TEMP")
"""A temporary system problem; retry later (RFC 3206)."""
SYS_PERM = ResponseCode("SYS/PERM")
"""A permanent system problem; tell the user (RFC 3206)."""
AUTH = ResponseCode("AUTH")
"""A problem with the user's credentials (RFC 3206)."""
UTF8 = ResponseCode("UTF8")
"""The message needs UTF8 mode (RFC 6856)."""


def split_response_code(text: bytes) -> tuple[ResponseCode | None, bytes]:
    """Split ``b"[SYS/TEMP] try later"`` into ``(ResponseCode("SYS/TEMP"), b"try later")``.

    Text that does not start with a well-formed code is returned whole with ``None``.
    One space after the closing bracket is removed.
    """
    if text[:1] != b"[":
        return None, text
    end = text.find(b"]", 1)
    if end < 0:
        return None, text
    inner = text[1:end]
    if not inner.isascii():
        return None, text
    levels = _split_levels(inner.decode("ascii"))
    for level in levels:
        if not level or not all(ord(c) in _RCHARS or c == "/" for c in level):
            return None, text
    code = ResponseCode.__new__(ResponseCode)
    object.__setattr__(code, "levels", tuple(levels))
    object.__setattr__(code, "_key", tuple(level.upper() for level in levels))
    rest = text[end + 1 :]
    if rest[:1] == b" ":
        rest = rest[1:]
    return code, rest
