"""How lines on the wire become events, by role and exchange (see `READERS`).

A server reads command lines (in `Exchange.IDLE`) and SASL response lines (in
`Exchange.SASL`); a client reads status lines (in `Exchange.RESPONSE`: the
greeting, ``+OK``, ``-ERR``, SASL challenges). Multi-line bodies are read by
`BodyDecoder`, which keeps state across chunks. A reader gets one whole line
(its line ending included) and what it needs to know of the session; it never
changes the session: the connection applies what the event means.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ._base64 import strict_b64decode
from ._codes import split_response_code
from ._events import (
    LANG_RANGE,
    Apop,
    Auth,
    AuthCancel,
    AuthResponse,
    BadCommand,
    BadCommandReason,
    Capa,
    Command,
    Dele,
    ErrResponse,
    Event,
    Greeting,
    Lang,
    List,
    Noop,
    OkResponse,
    Pass,
    Quit,
    Retr,
    Rset,
    Stat,
    Stls,
    Top,
    Uidl,
    User,
    Utf8,
    parse_sasl_continuation,
)
from ._protocol_errors import RemoteProtocolError
from ._state import Exchange, Role, SessionState, State

__all__ = ["READERS", "Reader", "strip_eol"]

_CRLF = b"\r\n"
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")


def strip_eol(line: bytes) -> bytes:
    """`line` without its line ending: CRLF, or (tolerated, as real peers send it) a bare LF."""
    return line[:-2] if line[-2:] == _CRLF else line[:-1]


# ------------------------------------------------------------ server, IDLE: commands


def read_command(
    line: bytes, session: SessionState, command: Command | None, strict: bool
) -> Event:
    """A command line as the `Command` it is, or a `BadCommand` to answer with ``-ERR``.

    A command that is not allowed in the session's state is a `BadCommand`
    too; a NUL is fatal (`RemoteProtocolError`).
    """
    body = strip_eol(line)
    if b"\x00" in body:
        raise RemoteProtocolError(
            "NUL in command line", event_hint=ErrResponse(b"invalid command line")
        )
    keyword_bytes, _, rest = body.partition(b" ")
    keyword = keyword_bytes.decode("ascii", "replace").upper()

    def bad(reason: BadCommandReason, text: str) -> BadCommand:
        return BadCommand(line, keyword or None, reason, ErrResponse(text.encode()))

    if _CONTROL.search(body):
        # A bare CR, an escape sequence...: never let them into an argument.
        return bad(BadCommandReason.BAD_ARGUMENTS, "control characters in command line")

    parser = _COMMAND_PARSERS.get(keyword)
    if parser is None:
        if keyword in ("LAST", "RPOP"):
            return bad(BadCommandReason.NOT_SUPPORTED, f"{keyword} is not supported")
        return bad(BadCommandReason.UNKNOWN, "unknown command")
    try:
        parsed = parser(rest)
    except _BadArguments as exc:
        # A command in the wrong state is refused as such, whatever its arguments.
        refusal = session.refusal(_STATE_PROBES[keyword])
        if refusal is not None:
            return bad(BadCommandReason.WRONG_STATE, refusal)
        return bad(BadCommandReason.BAD_ARGUMENTS, str(exc))
    refusal = session.refusal(parsed)
    if refusal is not None:
        return bad(BadCommandReason.WRONG_STATE, refusal)
    return parsed


# ------------------------------------------------------------ server, SASL: responses


def read_sasl_response(
    line: bytes, session: SessionState, command: Command | None, strict: bool
) -> Event:
    """A SASL response line: `AuthResponse`, `AuthCancel` (``*``), or a `BadCommand`."""
    payload = strip_eol(line)
    if payload == b"*":
        return AuthCancel()
    decoded = strict_b64decode(payload)
    if decoded is None:
        return BadCommand(
            line,
            "AUTH",
            BadCommandReason.BAD_ARGUMENTS,
            ErrResponse(b"invalid base64 in SASL response"),
        )
    return AuthResponse(decoded, _parsed=True)


# ------------------------------------------------------------ client, RESPONSE: status lines


def read_status(
    line: bytes, session: SessionState, command: Command | None, strict: bool
) -> Event:
    """A status line: the `Greeting` (or its refusal), `OkResponse`, `ErrResponse`, or
    an `AuthChallenge` while `command` is ``AUTH <mechanism>``.

    ``strict=False`` takes what poplib takes: any line starting with ``+`` is
    positive, any other negative.
    """
    line = strip_eol(line)
    head = line[:4].upper()
    ok: bool
    if head[:3] == b"+OK" and (len(line) == 3 or line[3] == 0x20):
        ok = True
        code, text = split_response_code(line[4:])
    elif head == b"-ERR" and (len(line) == 4 or line[4] == 0x20):
        ok = False
        code, text = split_response_code(line[5:])
    elif (
        type(command) is Auth
        and command.mechanism is not None
        and (challenge := parse_sasl_continuation(line)) is not None
    ):
        return challenge
    elif not strict:
        ok = line[:1] == b"+"
        code, text = None, line[1:].lstrip(b" ") if ok else line
    else:
        raise RemoteProtocolError(f"malformed status line: {line[:80]!r}")
    if ok:
        if session.state is State.GREETING:
            return Greeting(text, code, _line=line)
        return OkResponse(text, code, _line=line)
    return ErrResponse(text, code, _line=line)


Reader = Callable[[bytes, SessionState, "Command | None", bool], Event]

READERS: dict[tuple[Role, Exchange], Reader] = {
    (Role.SERVER, Exchange.IDLE): read_command,
    (Role.SERVER, Exchange.SASL): read_sasl_response,
    (Role.CLIENT, Exchange.RESPONSE): read_status,
}
"""(role, exchange) -> the reader of the next line. A reader takes the line, the
session, the command being answered (client) and the strictness (client)."""


# ------------------------------------------------------------ command arguments


class _BadArguments(Exception):
    pass


_Parser = Callable[[bytes], Command]


def _no_args(command: Command) -> _Parser:
    def parse(rest: bytes) -> Command:
        if rest.strip(b" "):
            raise _BadArguments(f"{command.keyword} takes no arguments")
        return command

    return parse


def _number(token: bytes, what: str, *, minimum: int = 1, max_digits: int | None = 10) -> int:
    if not token.isdigit() or (max_digits is not None and len(token) > max_digits):
        raise _BadArguments(f"invalid {what}")
    value = int(token)
    if value < minimum:
        raise _BadArguments(f"invalid {what}")
    return value


def _args(rest: bytes) -> list[bytes]:
    # One SP separates arguments (RFC 1939); extra spaces are tolerated.
    return rest.split()


def _text_arg(rest: bytes) -> str:
    return rest.decode("utf-8", "surrogateescape")


def _parse_user(rest: bytes) -> Command:
    name = rest.strip(b" ")
    if not name:
        raise _BadArguments("USER needs a user name")
    return User(_text_arg(name), _parsed=True)


def _parse_pass(rest: bytes) -> Command:
    # The password is the rest of the line, spaces included (RFC 1939 section 7).
    if not rest:
        raise _BadArguments("PASS needs a password")
    return Pass(_text_arg(rest), _parsed=True)


def _parse_apop(rest: bytes) -> Command:
    name, _, digest = rest.strip(b" ").rpartition(b" ")
    name = name.rstrip(b" ")
    if not name or len(digest) != 32 or not all(c in b"0123456789abcdefABCDEF" for c in digest):
        raise _BadArguments("APOP needs a name and a 32-digit hex digest")
    return Apop(_text_arg(name), digest.decode("ascii").lower(), _parsed=True)


def _parse_optional_number(cls: type[List] | type[Uidl]) -> _Parser:
    def parse(rest: bytes) -> Command:
        args = _args(rest)
        if not args:
            return cls(None, _parsed=True)
        if len(args) > 1:
            raise _BadArguments(f"{cls.keyword} takes at most one argument")
        return cls(_number(args[0], "message number"), _parsed=True)

    return parse


def _parse_one_number(cls: type[Retr] | type[Dele]) -> _Parser:
    def parse(rest: bytes) -> Command:
        args = _args(rest)
        if len(args) != 1:
            raise _BadArguments(f"{cls.keyword} needs a message number")
        return cls(_number(args[0], "message number"), _parsed=True)

    return parse


def _parse_top(rest: bytes) -> Command:
    args = _args(rest)
    if len(args) != 2:
        raise _BadArguments("TOP needs a message number and a line count")
    return Top(
        _number(args[0], "message number"),
        # RFC 1939: a count beyond the body sends it all; any count of digits
        # is valid (the line limit bounds its length).
        _number(args[1], "line count", minimum=0, max_digits=None),
        _parsed=True,
    )


def _parse_auth(rest: bytes) -> Command:
    args = _args(rest)
    if not args:
        return Auth(None, _parsed=True)
    if len(args) > 2:
        raise _BadArguments("AUTH takes a mechanism and an optional initial response")
    mechanism = args[0].decode("ascii", "replace").upper()
    if not mechanism.replace("-", "").replace("_", "").isalnum() or len(mechanism) > 20:
        raise _BadArguments("invalid SASL mechanism name")
    initial: bytes | None = None
    if len(args) == 2:
        if args[1] == b"=":
            initial = b""
        else:
            initial = strict_b64decode(args[1])
            if initial is None:
                raise _BadArguments("invalid base64 in initial response")
    return Auth(mechanism, initial, _parsed=True)


def _parse_lang(rest: bytes) -> Command:
    args = _args(rest)
    if not args:
        return Lang(None, _parsed=True)
    tag = args[0].decode("ascii", "replace")
    if len(args) > 1 or not LANG_RANGE.match(tag):
        raise _BadArguments("invalid language range")
    return Lang(tag, _parsed=True)


_COMMAND_PARSERS: dict[str, _Parser] = {
    "USER": _parse_user,
    "PASS": _parse_pass,
    "APOP": _parse_apop,
    "QUIT": _no_args(Quit()),
    "STAT": _no_args(Stat()),
    "NOOP": _no_args(Noop()),
    "RSET": _no_args(Rset()),
    "CAPA": _no_args(Capa()),
    "STLS": _no_args(Stls()),
    "UTF8": _no_args(Utf8()),
    "LIST": _parse_optional_number(List),
    "UIDL": _parse_optional_number(Uidl),
    "RETR": _parse_one_number(Retr),
    "DELE": _parse_one_number(Dele),
    "TOP": _parse_top,
    "AUTH": _parse_auth,
    "LANG": _parse_lang,
}

# A representative of each command, to ask the state machine about a command
# whose arguments did not parse.
_STATE_PROBES: dict[str, Command] = {
    "USER": User("x"),
    "PASS": Pass("x"),
    "APOP": Apop("x", "0" * 32),
    "QUIT": Quit(),
    "STAT": Stat(),
    "NOOP": Noop(),
    "RSET": Rset(),
    "CAPA": Capa(),
    "STLS": Stls(),
    "UTF8": Utf8(),
    "LIST": List(),
    "UIDL": Uidl(),
    "RETR": Retr(1),
    "DELE": Dele(1),
    "TOP": Top(1, 0),
    "AUTH": Auth(),
    "LANG": Lang(),
}
