"""The CAPA reply (RFC 2449) as a typed, case-insensitive object."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import NamedTuple

__all__ = ["Capabilities", "ExpirePolicy", "LoginDelay", "parse_capa"]


class LoginDelay(NamedTuple):
    """``LOGIN-DELAY secs [USER]``: seconds between logins; per-user if ``per_user``."""

    seconds: int
    per_user: bool


class ExpirePolicy(NamedTuple):
    """``EXPIRE days|NEVER [USER]``: ``days`` is None for NEVER; 0 forbids leaving mail."""

    days: int | None
    per_user: bool


def _int_arg(args: tuple[str, ...]) -> int | None:
    if args and args[0].isascii() and args[0].isdigit():
        return int(args[0])
    return None


class Capabilities(Mapping[str, tuple[str, ...]]):
    """What a server announced in its CAPA reply.

    It maps each tag to its arguments; tag lookups ignore case
    (``"sasl" in caps``), and the tags keep the server's spelling when iterated.
    The properties interpret the standard tags; unknown and private (``X-``) tags
    stay available through the mapping. ``lines`` holds each line as received.
    """

    __slots__ = ("_entries", "lines")

    def __init__(self, lines: Iterable[str] = ()) -> None:
        self.lines: tuple[str, ...] = tuple(line for line in lines if line.strip())
        self._entries: dict[str, tuple[str, tuple[str, ...], str]] = {}
        for line in self.lines:
            tag, _, rest = line.strip().partition(" ")
            # The first announcement of a tag wins, as a line-by-line client would see it.
            self._entries.setdefault(tag.upper(), (tag, tuple(rest.split()), rest.strip()))

    @classmethod
    def parse(cls, body: bytes) -> Capabilities:
        """Build from the body of a CAPA reply (unstuffed, without the terminator)."""
        text = body.decode("ascii", "surrogateescape")
        return cls(line.rstrip("\r") for line in text.split("\n"))

    def __getitem__(self, tag: str) -> tuple[str, ...]:
        return self._entries[tag.upper()][1]

    def __contains__(self, tag: object) -> bool:
        return isinstance(tag, str) and tag.upper() in self._entries

    def __iter__(self) -> Iterator[str]:
        return (entry[0] for entry in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Capabilities({list(self.lines)!r})"

    def rest_of_line(self, tag: str) -> str | None:
        """Everything after the tag, spacing inside kept (for IMPLEMENTATION)."""
        entry = self._entries.get(tag.upper())
        return None if entry is None else entry[2]

    @property
    def top(self) -> bool:
        return "TOP" in self

    @property
    def user(self) -> bool:
        """USER/PASS is available now."""
        return "USER" in self

    @property
    def uidl(self) -> bool:
        return "UIDL" in self

    @property
    def stls(self) -> bool:
        return "STLS" in self

    @property
    def pipelining(self) -> bool:
        return "PIPELINING" in self

    @property
    def resp_codes(self) -> bool:
        return "RESP-CODES" in self

    @property
    def auth_resp_code(self) -> bool:
        """Only credential problems carry ``[AUTH]`` (RFC 3206)."""
        return "AUTH-RESP-CODE" in self

    @property
    def sasl(self) -> tuple[str, ...]:
        """The SASL mechanisms offered, upper case; empty if AUTH is not announced."""
        return tuple(mech.upper() for mech in self.get("SASL", ()))

    @property
    def utf8(self) -> bool:
        return "UTF8" in self

    @property
    def utf8_user(self) -> bool:
        """UTF-8 user names and passwords are accepted (``UTF8 USER``)."""
        return any(arg.upper() == "USER" for arg in self.get("UTF8", ()))

    @property
    def lang(self) -> bool:
        return "LANG" in self

    @property
    def login_delay(self) -> LoginDelay | None:
        args = self.get("LOGIN-DELAY")
        seconds = None if args is None else _int_arg(args)
        if args is None or seconds is None:
            return None
        return LoginDelay(seconds, any(arg.upper() == "USER" for arg in args[1:]))

    @property
    def expire(self) -> ExpirePolicy | None:
        args = self.get("EXPIRE")
        if not args:
            return None
        per_user = any(arg.upper() == "USER" for arg in args[1:])
        if args[0].upper() == "NEVER":
            return ExpirePolicy(None, per_user)
        days = _int_arg(args)
        return None if days is None else ExpirePolicy(days, per_user)

    @property
    def implementation(self) -> str | None:
        """Free text about the server; clients must not change behaviour on it."""
        return self.rest_of_line("IMPLEMENTATION")


def parse_capa(body: bytes) -> Capabilities:
    """Parse the body of a CAPA reply; see `Capabilities`."""
    return Capabilities.parse(body)
