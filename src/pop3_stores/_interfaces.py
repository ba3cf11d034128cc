"""The contract between a POP3 server and where mail and credentials live.

Both servers (`pop3_blocking`'s threaded one and `pop3_anyio`'s) use these
interfaces and the stores that implement them; the async server calls them in
worker threads, so every method here may block on file I/O.

`AsyncMailStore` and `AsyncMaildrop` are the same contract with coroutine
methods, for a store that is natively async; the async server takes either
(a blocking store's calls go to worker threads).

A `MailStore` opens one user's maildrop for one session and locks it
exclusively; the returned `Maildrop` answers for that session only and must
be closed (which releases the lock) however the session ends. Deletions reach
a store only through `Maildrop.commit`, which a server calls only for QUIT in
TRANSACTION.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

from pop3core import Credential, MessageInfo

__all__ = [
    "AsyncMailStore",
    "AsyncMaildrop",
    "Authenticator",
    "MailStore",
    "Maildrop",
    "MaildropError",
    "MaildropLocked",
]


class MaildropError(Exception):
    """The maildrop cannot be opened or read (the client gets ``-ERR [SYS/TEMP]``)."""


class MaildropLocked(MaildropError):
    """Another session holds the maildrop (the client gets ``-ERR [IN-USE]``)."""


@runtime_checkable
class Maildrop(Protocol):
    """One user's maildrop, opened and locked for one session."""

    def listing(self) -> Sequence[MessageInfo]:
        """The messages, in the order they are numbered (1-based on the wire).

        Sizes are exact wire sizes (see `pop3core.wire_size`); unique ids are
        stable across sessions. The listing does not change during the session.
        """
        ...

    def read(self, index: int, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
        """The bytes of message `index` (0-based), CRLF-normalised, in chunks.

        Exactly ``listing()[index].size`` octets in all. Raises `MaildropError`
        (or `OSError`) if the message cannot be read; the iterator may be closed
        early (TOP needs only the start of a message).
        """
        ...

    def commit(self, indexes: Sequence[int]) -> bool:
        """Remove the messages at these 0-based indexes; True if all were removed.

        Called only for QUIT in TRANSACTION (RFC 1939's UPDATE state). Never
        removes a message that is not listed in `indexes`.
        """
        ...

    def close(self) -> None:
        """Release the lock. Idempotent; called however the session ends."""
        ...


@runtime_checkable
class MailStore(Protocol):
    """Where maildrops live."""

    def open(self, username: str) -> Maildrop:
        """Open and lock `username`'s maildrop.

        Raises `MaildropLocked` if another session (in any process) holds it,
        `MaildropError` if it cannot be opened.
        """
        ...


@runtime_checkable
class AsyncMaildrop(Protocol):
    """`Maildrop` for an async store: the same contract, awaited.

    `read` returns an async iterator; a server closes it (``aclose``) when it
    stops early. `close` must not block the event loop for long: a server
    calls it shielded from cancellation, for a few seconds at most.
    """

    async def listing(self) -> Sequence[MessageInfo]: ...

    def read(self, index: int, chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]: ...

    async def commit(self, indexes: Sequence[int]) -> bool: ...

    async def close(self) -> None: ...


@runtime_checkable
class AsyncMailStore(Protocol):
    """`MailStore` for an async store: `open` is a coroutine."""

    async def open(self, username: str) -> AsyncMaildrop: ...


@runtime_checkable
class Authenticator(Protocol):
    """Where credentials live."""

    def credential(self, username: str) -> Credential | None:
        """The credential record of `username`, or None if there is no such user."""
        ...

    def mechanisms(self) -> list[str]:
        """The SASL mechanisms every user's record can serve (`pop3core.store_mechanisms`)."""
        ...

    def check_token(
        self, username: str, token: str, mechanism: str
    ) -> str | bool | dict[str, Any]:
        """Whom an OAuth 2.0 bearer token (XOAUTH2/OAUTHBEARER) was issued to.

        `username` is whom the client named (``""`` if nobody). Return the
        owner's user name (the session compares it with `username`), True to
        say the owner is `username`, or refuse with False or a JSON error
        object to send in the failure challenge. Stores without OAuth return
        False.
        """
        ...
