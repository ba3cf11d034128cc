"""The engine's protocol errors: we broke the protocol, or the peer did (h11's model)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for the annotation only: the events import these errors
    from ._events import ErrResponse

__all__ = ["LocalProtocolError", "ProtocolError", "RemoteProtocolError"]


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
