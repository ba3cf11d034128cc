"""What the stores' maildrops share: index checks, refusing use after close, ``with``."""

from __future__ import annotations

import abc
from collections.abc import Iterable
from types import TracebackType
from typing import TypeVar

from ._interfaces import MaildropError

__all__ = ["DEFAULT_CHUNK", "SessionMaildrop", "check_indexes"]

DEFAULT_CHUNK = 256 * 1024


def check_indexes(indexes: Iterable[int], count: int) -> list[int]:
    """The distinct indexes, sorted; IndexError for any outside ``0 <= i < count``.

    Negative indexes are refused rather than counted from the end: a store must
    never remove a message that was not asked for.
    """
    checked = sorted(set(indexes))
    for index in checked:
        if not 0 <= index < count:
            raise IndexError(f"no message at index {index} (there are {count})")
    return checked


class SessionMaildrop(abc.ABC):
    """What both stores' maildrops share: refusing use after `close`, and ``with``."""

    _closed: bool

    @abc.abstractmethod
    def close(self) -> None:
        """Release the lock. Idempotent."""

    def _check_open(self) -> None:
        if self._closed:
            raise MaildropError("the maildrop is closed")

    def __enter__(self: _M) -> _M:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


_M = TypeVar("_M", bound=SessionMaildrop)
