"""Pure helpers for clients: turn reply texts and bodies into typed results.

Every function takes the bytes the engine delivered (a status line's text, or a
multi-line body already unstuffed, without its terminator) and raises
`RemoteProtocolError` when the server sent something malformed. RFC 1939 allows
free text after the numbers of STAT and of scan listings; it is ignored.
"""

from __future__ import annotations

from typing import NamedTuple

from ._protocol_errors import RemoteProtocolError

__all__ = [
    "MaildropStat",
    "ScanListing",
    "UniqueIdListing",
    "parse_auth_listing",
    "parse_lang_listing",
    "parse_list_line",
    "parse_stat",
    "parse_uidl_line",
]


class MaildropStat(NamedTuple):
    """The reply to ``STAT``: messages not marked deleted, and their total octets."""

    messages: int
    octets: int


class ScanListing(NamedTuple):
    """The reply to ``LIST n``."""

    number: int
    size: int


class UniqueIdListing(NamedTuple):
    """The reply to ``UIDL n``."""

    number: int
    uid: str


# No real count or size needs more digits; the cap keeps int() cheap and safe.
_MAX_DIGITS = 20


def _decimal(token: bytes, what: str, *, minimum: int) -> int:
    """A number field of a reply (STAT, LIST, UIDL): digits only, at least `minimum`."""
    if not token.isdigit() or len(token) > _MAX_DIGITS:
        raise RemoteProtocolError(f"{what} is not a decimal number: {token[:40]!r}")
    value = int(token)
    if value < minimum:
        raise RemoteProtocolError(f"{what} out of range: {value}")
    return value


def _fields(text: bytes, what: str) -> list[bytes]:
    """The fields of a reply of two or more (free text may follow, RFC 1939)."""
    parts = text.split(None, 2)
    if len(parts) < 2:
        raise RemoteProtocolError(f"malformed {what}: {text[:80]!r}")
    return parts


def parse_stat(text: bytes) -> MaildropStat:
    """Parse the text of a ``+OK`` to ``STAT`` (``b"2 320"``, maybe more text after)."""
    parts = _fields(text, "STAT reply")
    return MaildropStat(
        _decimal(parts[0], "STAT message count", minimum=0),
        _decimal(parts[1], "STAT maildrop size", minimum=0),
    )


def parse_list_line(text: bytes) -> ScanListing:
    """Parse one scan listing, ``b"1 120"``: the ``+OK`` text of ``LIST n`` or a body line."""
    parts = _fields(text, "scan listing")
    return ScanListing(
        _decimal(parts[0], "message number", minimum=1),
        _decimal(parts[1], "message size", minimum=0),
    )


def parse_uidl_line(text: bytes) -> UniqueIdListing:
    """Parse one unique-id listing, ``b"1 whqtswO00WBw418f9t5JxYwZ"``.

    RFC 1939 limits a unique id to 1-70 characters in 0x21-0x7E; longer ones are
    accepted, since real servers send them. Octets outside ASCII come back as
    lone surrogates, so ``uid.encode("ascii", "surrogateescape")`` gives the bytes.
    """
    parts = _fields(text, "unique-id listing")
    return UniqueIdListing(
        _decimal(parts[0], "message number", minimum=1),
        parts[1].decode("ascii", "surrogateescape"),
    )


def _body_lines(body: bytes) -> list[bytes]:
    lines = body.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    return [line[:-1] if line[-1:] == b"\r" else line for line in lines]


def parse_lang_listing(body: bytes) -> list[tuple[str, str]]:
    """Parse the body of ``LANG`` (RFC 6856) into ``[(tag, description)]``."""
    result = []
    for line in _body_lines(body):
        if not line.strip():
            continue
        tag, _, description = line.strip().partition(b" ")
        result.append(
            (tag.decode("ascii", "replace"), description.strip().decode("utf-8", "replace"))
        )
    return result


def parse_auth_listing(body: bytes) -> list[str]:
    """Parse the body of a bare ``AUTH`` (the de facto mechanism list) into names."""
    return [
        token.decode("ascii", "replace").upper()
        for line in _body_lines(body)
        for token in line.split()
    ]
