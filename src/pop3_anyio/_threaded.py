"""A blocking store seen through the async store interface: its calls run in worker threads.

The session driver speaks only `pop3_stores.AsyncMailStore`. A blocking
`MailStore` (Maildir, memory, passwd-file...) does file I/O that must never
run on the event loop, so each of its calls goes to a worker thread, at most
``limiter.total_tokens`` at once.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from pop3_stores import AsyncMaildrop, AsyncMailStore, Maildrop, MailStore
from pop3core import MessageInfo

__all__ = ["ThreadedMaildrop", "ThreadedStore", "as_async_store"]

T = TypeVar("T")


class ThreadedMaildrop:
    """`AsyncMaildrop` over a blocking `Maildrop`."""

    __slots__ = ("_limiter", "maildrop")

    def __init__(self, maildrop: Maildrop, limiter: anyio.CapacityLimiter) -> None:
        self.maildrop = maildrop
        self._limiter = limiter

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(
            functools.partial(function, *args), limiter=self._limiter
        )

    async def listing(self) -> Sequence[MessageInfo]:
        return await self._run(self.maildrop.listing)

    async def read(self, index: int, chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
        """The chunks, each read in a worker thread; closing this closes the reader."""
        chunks = await self._run(_open_reader, self.maildrop, index, chunk_size)
        try:
            while (chunk := await self._run(next, chunks, None)) is not None:
                yield chunk
        finally:
            # The reader is not running (a thread call is never abandoned):
            # closing it here, on the loop, only releases its file.
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    async def commit(self, indexes: Sequence[int]) -> bool:
        return await self._run(self.maildrop.commit, indexes)

    async def close(self) -> None:
        """Release the lock (quick: an unlock and a close), on the loop itself.

        Not in a thread: a cancelled session must release it without a
        checkpoint that could raise before the call is made.
        """
        self.maildrop.close()


def _open_reader(maildrop: Maildrop, index: int, chunk_size: int) -> Any:
    return iter(maildrop.read(index, chunk_size))


class ThreadedStore:
    """`AsyncMailStore` over a blocking `MailStore`."""

    __slots__ = ("_limiter", "store")

    def __init__(self, store: MailStore, limiter: anyio.CapacityLimiter) -> None:
        self.store = store
        self._limiter = limiter

    async def open(self, username: str) -> AsyncMaildrop:
        maildrop = await anyio.to_thread.run_sync(self.store.open, username, limiter=self._limiter)
        return ThreadedMaildrop(maildrop, self._limiter)


def as_async_store(
    store: MailStore | AsyncMailStore, limiter: anyio.CapacityLimiter
) -> AsyncMailStore:
    """`store` itself if its `open` is a coroutine function, else a `ThreadedStore`."""
    if inspect.iscoroutinefunction(store.open):
        return store  # type: ignore[return-value]
    return ThreadedStore(store, limiter)  # type: ignore[arg-type]
