"""How events become bytes on the wire, by role.

A client writes command lines and SASL response lines; a server writes status
lines (the greeting, ``+OK``, ``-ERR``) and SASL challenges. Multi-line bodies
are written by `BodyEncoder`, which keeps state across chunks, so the
connection holds one for each body. Everything here is a pure function of the
event; the connection decides whether the event may be sent now.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable
from typing import Any

from ._events import (
    Apop,
    Auth,
    AuthCancel,
    AuthChallenge,
    AuthResponse,
    Command,
    Dele,
    ErrResponse,
    Event,
    Greeting,
    Lang,
    List,
    OkResponse,
    Pass,
    RawCommand,
    Retr,
    Top,
    Uidl,
    User,
)
from ._state import Role

__all__ = ["CRLF", "WRITERS", "command_arguments", "write_command"]

CRLF = b"\r\n"


def _text(value: str) -> bytes:
    # A parsed argument may hold undecodable octets as lone surrogates: they go
    # back out as they came in.
    return value.encode("utf-8", "surrogateescape")


def _optional_number(command: Any) -> bytes:
    return b"" if command.which is None else b"%d" % command.which


def _auth(command: Auth) -> bytes:
    if command.mechanism is None:
        return b""
    if command.initial_response is None:
        return command.mechanism.encode("ascii")
    ir = binascii.b2a_base64(command.initial_response, newline=False) or b"="
    return command.mechanism.encode("ascii") + b" " + ir


_ARGUMENTS: dict[type[Command], Callable[[Any], bytes]] = {
    User: lambda command: _text(command.name),
    Pass: lambda command: _text(command.password),
    Apop: lambda command: _text(f"{command.name} {command.digest}"),
    List: _optional_number,
    Uidl: _optional_number,
    Retr: lambda command: b"%d" % command.which,
    Dele: lambda command: b"%d" % command.which,
    Top: lambda command: b"%d %d" % (command.which, command.lines),
    Auth: _auth,
    Lang: lambda command: b"" if command.tag is None else command.tag.encode("ascii"),
}


def command_arguments(command: Command) -> bytes:
    """The arguments of `command` as sent, without the keyword and the separating SP."""
    arguments = _ARGUMENTS.get(type(command))
    return b"" if arguments is None else arguments(command)


def write_command(command: Command) -> bytes:
    """The command line for `command`, CRLF included (length not checked here)."""
    if type(command) is RawCommand:
        assert isinstance(command, RawCommand)
        return _text(command.line) + CRLF
    arguments = command_arguments(command)
    keyword = command.keyword.encode("ascii")
    return keyword + b" " + arguments + CRLF if arguments else keyword + CRLF


def _write_sasl_response(event: AuthResponse) -> bytes:
    return binascii.b2a_base64(event.data, newline=False) + CRLF


def _write_status(event: Greeting | OkResponse | ErrResponse) -> bytes:
    # A status event carries its line, built (and checked against the 512-octet
    # limit) when the event was made.
    return event.line + CRLF


def _write_challenge(event: AuthChallenge) -> bytes:
    return b"+ " + binascii.b2a_base64(event.data, newline=False) + CRLF


WRITERS: dict[tuple[Role, type[Event]], Callable[[Any], bytes]] = {
    (Role.CLIENT, AuthResponse): _write_sasl_response,
    (Role.CLIENT, AuthCancel): lambda event: b"*" + CRLF,
    (Role.SERVER, Greeting): _write_status,
    (Role.SERVER, OkResponse): _write_status,
    (Role.SERVER, ErrResponse): _write_status,
    (Role.SERVER, AuthChallenge): _write_challenge,
}
"""(role, event type) -> the bytes of a single-line event. Commands go through
`write_command`; `Data` and `EndOfMultiline` through the connection's `BodyEncoder`."""
