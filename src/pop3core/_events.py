"""The events: what a client and a server say to each other, as typed objects.

Events built by an application are validated when built (`LocalProtocolError` on
bad input); events built by the parser skip that work (``_parsed=True``). Events
are immutable. Don't subclass them: the engine dispatches on ``type(event)``.

Commands flow from client to server; `Greeting`, `OkResponse`, `ErrResponse`,
`AuthChallenge`, `Data` and `EndOfMultiline` flow from server to client.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import ClassVar

from ._apop import find_apop_timestamp
from ._base64 import strict_b64decode
from ._codes import ResponseCode, split_response_code
from ._limits import MAX_STATUS_LINE
from ._protocol_errors import LocalProtocolError

__all__ = [
    "Apop",
    "Auth",
    "AuthCancel",
    "AuthChallenge",
    "AuthResponse",
    "BadCommand",
    "BadCommandReason",
    "Capa",
    "Command",
    "ConnectionClosed",
    "Data",
    "Dele",
    "EndOfMultiline",
    "ErrResponse",
    "Event",
    "Greeting",
    "Lang",
    "List",
    "Noop",
    "OkResponse",
    "Pass",
    "Quit",
    "RawCommand",
    "Retr",
    "Rset",
    "Stat",
    "Stls",
    "Top",
    "Uidl",
    "User",
    "Utf8",
    "parse_sasl_continuation",
]

_MECHANISM = re.compile(r"[A-Z0-9_-]{1,20}\Z")
LANG_RANGE = re.compile(r"(?:\*|[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*)\Z")
_HEX_DIGEST = re.compile(r"[0-9a-f]{32}\Z")
_FORBIDDEN = frozenset(b"\r\n\x00")
# Arguments are printable text (RFC 1939 section 3; RFC 6856 allows UTF-8, not
# controls): a CR or LF would inject a command (python/cpython#94019).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _check_text(value: str, what: str, *, secret: bool = False) -> None:
    if _CONTROL.search(value):
        # A secret is never shown: a password read with its newline lands here.
        shown = "<hidden>" if secret else repr(value)
        raise LocalProtocolError(
            f"{what} must not contain CR, LF, NUL or other control characters: {shown}"
        )


def _check_arg(value: str, what: str, *, secret: bool = False) -> None:
    _check_text(value, what, secret=secret)
    if not value:
        raise LocalProtocolError(f"{what} must not be empty")


def _check_number(value: int, what: str, *, minimum: int = 1) -> None:
    if type(value) is not int or value < minimum:
        kind = "a positive integer" if minimum == 1 else "a non-negative integer"
        raise LocalProtocolError(f"{what} must be {kind}, not {value!r}")


def _to_text(value: bytes | str, what: str) -> bytes:
    data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    if not _FORBIDDEN.isdisjoint(data):
        raise LocalProtocolError(f"{what} must not contain CR, LF or NUL: {data!r}")
    return data


class Event:
    """Base class of every event. Don't subclass it yourself."""

    __slots__ = ()


# ---------------------------------------------------------------- commands


class Command(Event):
    """A client command. The concrete classes below are the only valid ones."""

    __slots__ = ()

    keyword: ClassVar[str]
    """The command keyword in upper case, as sent on the wire."""

    @property
    def expects_multiline(self) -> bool:
        """Whether a positive reply to this command carries a multi-line body."""
        return False


@dataclass(frozen=True, slots=True, init=False)
class User(Command):
    """``USER name``. The name is everything after ``USER `` (spaces included)."""

    keyword: ClassVar[str] = "USER"
    name: str

    def __init__(self, name: str, *, _parsed: bool = False) -> None:
        if not _parsed:
            _check_arg(name, "USER name")
            if name != name.strip(" "):
                raise LocalProtocolError(f"USER name has leading or trailing spaces: {name!r}")
        object.__setattr__(self, "name", name)


@dataclass(frozen=True, slots=True, init=False)
class Pass(Command):
    """``PASS password``. The password is the rest of the line, spaces included."""

    keyword: ClassVar[str] = "PASS"
    password: str = field(repr=False)

    def __init__(self, password: str, *, _parsed: bool = False) -> None:
        if not _parsed:
            _check_arg(password, "PASS password", secret=True)
        object.__setattr__(self, "password", password)

    def __repr__(self) -> str:
        return "Pass(password=<hidden>)"


@dataclass(frozen=True, slots=True, init=False)
class Apop(Command):
    """``APOP name digest``; the digest is 32 lower-case hex digits (see `apop_digest`)."""

    keyword: ClassVar[str] = "APOP"
    name: str
    digest: str = field(repr=False)

    def __init__(self, name: str, digest: str, *, _parsed: bool = False) -> None:
        if not _parsed:
            _check_arg(name, "APOP name")
            if not _HEX_DIGEST.match(digest):
                # Not shown: with the greeting's timestamp, a digest lets the
                # password be guessed offline.
                raise LocalProtocolError("APOP digest must be 32 lower-case hex digits")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "digest", digest)

    def __repr__(self) -> str:
        return f"Apop(name={self.name!r}, digest=<hidden>)"


@dataclass(frozen=True, slots=True)
class Quit(Command):
    """``QUIT``: in TRANSACTION it commits the deletions (the UPDATE state)."""

    keyword: ClassVar[str] = "QUIT"


@dataclass(frozen=True, slots=True)
class Stat(Command):
    """``STAT``: message count and maildrop size."""

    keyword: ClassVar[str] = "STAT"


@dataclass(frozen=True, slots=True)
class Noop(Command):
    """``NOOP``."""

    keyword: ClassVar[str] = "NOOP"


@dataclass(frozen=True, slots=True)
class Rset(Command):
    """``RSET``: unmark every message marked deleted."""

    keyword: ClassVar[str] = "RSET"


@dataclass(frozen=True, slots=True)
class Capa(Command):
    """``CAPA`` (RFC 2449): the reply is a multi-line capability list."""

    keyword: ClassVar[str] = "CAPA"

    @property
    def expects_multiline(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Stls(Command):
    """``STLS`` (RFC 2595): after ``+OK`` the TLS handshake starts."""

    keyword: ClassVar[str] = "STLS"


@dataclass(frozen=True, slots=True)
class Utf8(Command):
    """``UTF8`` (RFC 6856): enter UTF-8 mode."""

    keyword: ClassVar[str] = "UTF8"


@dataclass(frozen=True, slots=True, init=False)
class _OptionalNumber(Command):
    """A command with an optional message number, multi-line without one."""

    which: int | None

    def __init__(self, which: int | None = None, *, _parsed: bool = False) -> None:
        if not _parsed and which is not None:
            _check_number(which, f"{self.keyword} message number")
        object.__setattr__(self, "which", which)

    @property
    def expects_multiline(self) -> bool:
        return self.which is None


@dataclass(frozen=True, slots=True, init=False)
class List(_OptionalNumber):
    """``LIST [msg]``: one scan listing, or all of them as a multi-line reply."""

    keyword: ClassVar[str] = "LIST"


@dataclass(frozen=True, slots=True, init=False)
class Uidl(_OptionalNumber):
    """``UIDL [msg]``: one unique-id listing, or all of them as a multi-line reply."""

    keyword: ClassVar[str] = "UIDL"


@dataclass(frozen=True, slots=True, init=False)
class _Number(Command):
    """A command with one message number."""

    which: int

    def __init__(self, which: int, *, _parsed: bool = False) -> None:
        if not _parsed:
            _check_number(which, f"{self.keyword} message number")
        object.__setattr__(self, "which", which)


@dataclass(frozen=True, slots=True, init=False)
class Retr(_Number):
    """``RETR msg``: the whole message as a multi-line reply."""

    keyword: ClassVar[str] = "RETR"

    @property
    def expects_multiline(self) -> bool:
        return True


@dataclass(frozen=True, slots=True, init=False)
class Dele(_Number):
    """``DELE msg``: mark a message deleted (removed only at QUIT)."""

    keyword: ClassVar[str] = "DELE"


@dataclass(frozen=True, slots=True, init=False)
class Top(Command):
    """``TOP msg n``: the headers, the blank line and the first ``n`` body lines."""

    keyword: ClassVar[str] = "TOP"
    which: int
    lines: int

    def __init__(self, which: int, lines: int, *, _parsed: bool = False) -> None:
        if not _parsed:
            _check_number(which, "TOP message number")
            _check_number(lines, "TOP line count", minimum=0)
        object.__setattr__(self, "which", which)
        object.__setattr__(self, "lines", lines)

    @property
    def expects_multiline(self) -> bool:
        return True


@dataclass(frozen=True, slots=True, init=False)
class Auth(Command):
    """``AUTH [mechanism [initial-response]]`` (RFC 5034).

    ``initial_response`` is the decoded bytes; ``b""`` is sent as ``=``. Without a
    mechanism this is the de facto ``AUTH`` that lists the mechanisms (multi-line).
    """

    keyword: ClassVar[str] = "AUTH"
    mechanism: str | None
    initial_response: bytes | None = field(repr=False)

    def __init__(
        self,
        mechanism: str | None = None,
        initial_response: bytes | None = None,
        *,
        _parsed: bool = False,
    ) -> None:
        if not _parsed:
            if mechanism is None:
                if initial_response is not None:
                    raise LocalProtocolError("an initial response needs a mechanism")
            else:
                mechanism = mechanism.upper()
                if not _MECHANISM.match(mechanism):
                    raise LocalProtocolError(f"invalid SASL mechanism name: {mechanism!r}")
            if initial_response is not None:
                initial_response = bytes(initial_response)
        object.__setattr__(self, "mechanism", mechanism)
        object.__setattr__(self, "initial_response", initial_response)

    def __repr__(self) -> str:
        ir = "" if self.initial_response is None else ", initial_response=<hidden>"
        return f"Auth(mechanism={self.mechanism!r}{ir})"

    @property
    def expects_multiline(self) -> bool:
        return self.mechanism is None


@dataclass(frozen=True, slots=True, init=False)
class Lang(Command):
    """``LANG [tag]`` (RFC 6856): list languages (multi-line) or select one (``*``)."""

    keyword: ClassVar[str] = "LANG"
    tag: str | None

    def __init__(self, tag: str | None = None, *, _parsed: bool = False) -> None:
        if not _parsed and tag is not None and not LANG_RANGE.match(tag):
            raise LocalProtocolError(f"invalid language range: {tag!r}")
        object.__setattr__(self, "tag", tag)

    @property
    def expects_multiline(self) -> bool:
        return self.tag is None


@dataclass(frozen=True, slots=True, init=False)
class RawCommand(Command):
    """Any other command line, for extensions and legacy commands (``RPOP``, ``XTND``).

    The client engine cannot know how such a command is answered, so the caller
    says whether a positive reply is multi-line. Servers never produce this event.
    """

    keyword: ClassVar[str] = ""
    line: str
    multiline: bool

    def __init__(self, line: str, *, multiline: bool = False) -> None:
        _check_arg(line, "command line", secret=True)
        object.__setattr__(self, "line", line)
        object.__setattr__(self, "multiline", multiline)

    @property
    def expects_multiline(self) -> bool:
        return self.multiline


@dataclass(frozen=True, slots=True, init=False)
class AuthResponse(Event):
    """One SASL response line from the client (decoded bytes; sent as base64)."""

    data: bytes = field(repr=False)

    def __init__(self, data: bytes, *, _parsed: bool = False) -> None:
        object.__setattr__(self, "data", data if _parsed else bytes(data))

    def __repr__(self) -> str:
        return f"AuthResponse(<{len(self.data)} bytes hidden>)"


@dataclass(frozen=True, slots=True)
class AuthCancel(Event):
    """The client's ``*``: abandon the SASL exchange. The server answers ``-ERR``."""


# --------------------------------------------------------------- responses


def _status_init(
    self: Event, text: bytes | str, code: ResponseCode | str | None, status: bytes
) -> None:
    data = _to_text(text, "response text")
    if code is not None and not isinstance(code, ResponseCode):
        try:
            code = ResponseCode(code)
        except ValueError as exc:
            raise LocalProtocolError(str(exc)) from None
    if code is None and data[:1] == b"[" and split_response_code(data)[0] is not None:
        # The peer would read this text as a response code: make that explicit.
        raise LocalProtocolError(f"response text starts with a response code; use code=: {data!r}")
    line = status
    if code is not None:
        line += b" [" + str(code).encode("ascii") + b"]"
    if data:
        line += b" " + data
    if len(line) + 2 > MAX_STATUS_LINE:
        raise LocalProtocolError(
            f"status line of {len(line) + 2} octets exceeds the {MAX_STATUS_LINE}-octet limit"
        )
    object.__setattr__(self, "text", data)
    object.__setattr__(self, "code", code)
    object.__setattr__(self, "line", line)


@dataclass(frozen=True, slots=True, init=False)
class OkResponse(Event):
    """A positive status line: ``+OK [CODE] text``.

    ``text`` is the text after the response code (bytes, may be empty); ``code`` is
    the parsed RFC 2449/3206 code or None. ``line`` is the whole status line without
    its line ending, exactly as received (or as it will be sent); it does not take
    part in comparisons.
    """

    text: bytes
    code: ResponseCode | None
    line: bytes = field(compare=False, repr=False)

    def __init__(
        self,
        text: bytes | str = b"",
        code: ResponseCode | str | None = None,
        *,
        _line: bytes | None = None,
    ) -> None:
        if _line is None:
            _status_init(self, text, code, b"+OK")
        else:
            _set_parsed(self, text, code, _line)


@dataclass(frozen=True, slots=True, init=False)
class ErrResponse(Event):
    """A negative status line: ``-ERR [CODE] text``. Always a single line."""

    text: bytes
    code: ResponseCode | None
    line: bytes = field(compare=False, repr=False)

    def __init__(
        self,
        text: bytes | str = b"",
        code: ResponseCode | str | None = None,
        *,
        _line: bytes | None = None,
    ) -> None:
        if _line is None:
            _status_init(self, text, code, b"-ERR")
        else:
            _set_parsed(self, text, code, _line)


@dataclass(frozen=True, slots=True, init=False)
class Greeting(Event):
    """The server's first line, a positive response: ``+OK [CODE] text``.

    The APOP `timestamp` (RFC 1939 section 7) is taken from the text. A server that
    refuses the session sends an `ErrResponse` instead.
    """

    text: bytes
    code: ResponseCode | None
    line: bytes = field(compare=False, repr=False)

    def __init__(
        self,
        text: bytes | str = b"",
        code: ResponseCode | str | None = None,
        *,
        _line: bytes | None = None,
    ) -> None:
        if _line is None:
            _status_init(self, text, code, b"+OK")
        else:
            _set_parsed(self, text, code, _line)

    @property
    def timestamp(self) -> bytes | None:
        """The first ``<...@...>`` of the greeting line, brackets included, or None."""
        return find_apop_timestamp(self.line)


def _set_parsed(self: Event, text: bytes | str, code: object, line: bytes) -> None:
    object.__setattr__(self, "text", text)
    object.__setattr__(self, "code", code)
    object.__setattr__(self, "line", line)


@dataclass(frozen=True, slots=True, init=False)
class AuthChallenge(Event):
    """A SASL server challenge, ``+ base64`` (or a bare ``+``), decoded to bytes.

    When the server sent something that is not valid base64, the parser sets
    ``valid=False`` and ``data`` to b""; RFC 5034 says the client must then cancel
    (send `AuthCancel`).
    """

    data: bytes = field(repr=False)
    valid: bool

    def __init__(self, data: bytes = b"", *, valid: bool = True, _parsed: bool = False) -> None:
        object.__setattr__(self, "data", data if _parsed else bytes(data))
        object.__setattr__(self, "valid", valid)

    def __repr__(self) -> str:
        return f"AuthChallenge(<{len(self.data)} bytes>, valid={self.valid})"


def parse_sasl_continuation(line: bytes) -> AuthChallenge | None:
    """The SASL challenge in a status line (without its EOL), or None if it is not one.

    RFC 5034's continuation is ``+`` alone or ``+ `` and base64; anything else
    (``+OK``, ``-ERR``, ``+x``) is not a continuation. Invalid base64 gives
    ``AuthChallenge(valid=False)``, which the client must answer with ``*``.
    """
    if line[:1] != b"+" or (len(line) > 1 and line[1] != 0x20):
        return None
    decoded = strict_b64decode(line[2:])
    if decoded is None:
        return AuthChallenge(b"", valid=False, _parsed=True)
    return AuthChallenge(decoded, _parsed=True)


@dataclass(frozen=True, slots=True, init=False)
class Data(Event):
    """Part of a multi-line body, unstuffed (client side) or still to be stuffed.

    Chunk boundaries carry no meaning: the same body may arrive split anywhere.
    Received data is always `bytes`; data given to `Connection.send` may be any
    bytes-like object and is handed back untouched where no stuffing is needed.
    """

    data: bytes | bytearray | memoryview

    def __init__(self, data: bytes | bytearray | memoryview, *, _parsed: bool = False) -> None:
        if not _parsed and not isinstance(data, (bytes, bytearray, memoryview)):
            raise LocalProtocolError(f"Data needs a bytes-like object, not {type(data)!r}")
        object.__setattr__(self, "data", data)

    def __repr__(self) -> str:
        return f"Data(<{len(self.data)} bytes>)"


@dataclass(frozen=True, slots=True)
class EndOfMultiline(Event):
    """The end of a multi-line body (the ``.`` line)."""


@dataclass(frozen=True, slots=True)
class ConnectionClosed(Event):
    """The session is over: the peer closed, or the QUIT exchange finished.

    This is an event *instance*, unlike the `NEED_DATA` and `PAUSED` sentinels.
    """


# ---------------------------------------------------------- server-side only


class BadCommandReason(enum.Enum):
    """Why the server could not accept a command line."""

    UNKNOWN = "unknown command"
    WRONG_STATE = "command not valid in this state"
    BAD_ARGUMENTS = "invalid arguments"
    NOT_SUPPORTED = "command not supported"


@dataclass(frozen=True, slots=True, init=False)
class BadCommand(Event):
    """A command the server must refuse with ``-ERR`` while the session goes on.

    ``hint`` is the reply to send. After `Connection`'s bad-command budget is
    spent the next bad line raises `RemoteProtocolError` instead.
    """

    line: bytes = field(repr=False)
    keyword: str | None
    reason: BadCommandReason
    hint: ErrResponse

    def __init__(
        self,
        line: bytes,
        keyword: str | None,
        reason: BadCommandReason,
        hint: ErrResponse,
    ) -> None:
        object.__setattr__(self, "line", line)
        object.__setattr__(self, "keyword", keyword)
        object.__setattr__(self, "reason", reason)
        object.__setattr__(self, "hint", hint)
