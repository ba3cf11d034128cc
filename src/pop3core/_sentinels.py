"""The sentinels `Connection.next_event` returns when it has no event."""

from __future__ import annotations

import enum
from typing import Literal

__all__ = ["NEED_DATA", "PAUSED", "Sentinel"]


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
