"""Errors and sentinels shared by every part of the engine."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from ._events import ErrResponse

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "Sentinel",
]


class Sentinel(enum.Enum):
    """The values `Connection.next_event` returns when it has no event.

    They are enum members, so ``if event is NEED_DATA`` narrows the type for mypy.
    """

    NEED_DATA = "NEED_DATA"
    PAUSED = "PAUSED"

    def __repr__(self) -> str:
        return self.value


NEED_DATA: Literal[Sentinel.NEED_DATA] = Sentinel.NEED_DATA
"""More bytes must arrive (`Connection.receive_data`) before the next event."""

PAUSED: Literal[Sentinel.PAUSED] = Sentinel.PAUSED
"""Nothing more is parsed until we act: the server owes a response, or TLS must start."""


class ProtocolError(Exception):
    """Base class of the engine's protocol errors; never raised itself.

    ``event_hint`` is what a server should send before closing, if anything
    (for example ``ErrResponse(b"line too long")``).
    """

    def __init__(self, msg: str, *, event_hint: ErrResponse | None = None) -> None:
        if type(self) is ProtocolError:
            raise TypeError("ProtocolError is abstract; raise a subclass")
        super().__init__(msg)
        self.event_hint = event_hint


class LocalProtocolError(ProtocolError):
    """We (the caller of the engine) tried to do something the protocol forbids.

    Building an invalid event raises it too; that leaves the connection untouched.
    """


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol in a way the session cannot recover from."""
