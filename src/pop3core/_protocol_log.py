"""Protocol logs that are safe to keep: secrets never appear in them.

`describe` renders an event as one log line, the way it crosses the wire, but
with passwords, APOP digests, SASL initial responses, SASL responses and OAuth
tokens replaced by ``<hidden>``, and bodies summarised by their size.
"""

from __future__ import annotations

from ._events import (
    Apop,
    Auth,
    AuthCancel,
    AuthChallenge,
    AuthResponse,
    Command,
    Data,
    EndOfMultiline,
    ErrResponse,
    Event,
    Greeting,
    OkResponse,
    Pass,
    RawCommand,
)
from ._writers import command_arguments

__all__ = ["describe"]

_HIDDEN = "<hidden>"
# Raw command lines whose arguments are secrets (poplib-style callers send these).
_SECRET_KEYWORDS = frozenset({"PASS", "APOP", "AUTH", "RPOP"})


def describe(event: Event) -> str:
    """One log line for `event`, with every secret replaced by ``<hidden>``."""
    kind = type(event)
    if kind is Pass:
        return f"PASS {_HIDDEN}"
    if kind is Apop:
        assert isinstance(event, Apop)
        return f"APOP {event.name} {_HIDDEN}"
    if kind is Auth:
        assert isinstance(event, Auth)
        if event.mechanism is None:
            return "AUTH"
        if event.initial_response is None:
            return f"AUTH {event.mechanism}"
        return f"AUTH {event.mechanism} {_HIDDEN}"
    if kind is RawCommand:
        assert isinstance(event, RawCommand)
        keyword, _, rest = event.line.partition(" ")
        if keyword.upper() in _SECRET_KEYWORDS and rest:
            first, _, more = rest.partition(" ")
            # Keep a user name or mechanism, hide what follows it.
            if keyword.upper() == "PASS":
                return f"{keyword} {_HIDDEN}"
            return f"{keyword} {first} {_HIDDEN}" if more else f"{keyword} {first}"
        return event.line
    if isinstance(event, Command):
        args = command_arguments(event).decode("utf-8", "replace")
        return f"{event.keyword} {args}" if args else event.keyword
    if kind is AuthResponse:
        return f"{_HIDDEN} (SASL response)"
    if kind is AuthCancel:
        return "*"
    if kind is AuthChallenge:
        assert isinstance(event, AuthChallenge)
        # Challenges can carry tokens' error details, never secrets; keep them short.
        return f"+ <SASL challenge, {len(event.data)} octets>"
    if kind is OkResponse or kind is ErrResponse or kind is Greeting:
        assert isinstance(event, (OkResponse, ErrResponse, Greeting))
        return event.line.decode("utf-8", "replace")
    if kind is Data:
        assert isinstance(event, Data)
        return f"<{len(event.data)} octets of data>"
    if kind is EndOfMultiline:
        return "."
    return kind.__name__
