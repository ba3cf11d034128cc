"""`MemoryStore`: maildrops held in memory, for tests, demonstrations and embedding."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass

from pop3core import MessageInfo, normalize_newlines

from ._interfaces import MaildropLocked
from ._maildrops import DEFAULT_CHUNK, SessionMaildrop, check_indexes

__all__ = ["MemoryMaildrop", "MemoryStore"]


@dataclass(frozen=True, slots=True)
class _Stored:
    uid: str
    data: bytes  # CRLF-normalised: what RETR sends


class MemoryStore:
    """Maildrops in memory: ``{user: [message, ...]}``.

    Messages may use LF or CRLF line ends (or a mix); they are stored
    CRLF-normalised, so sizes are exact. A message's unique id is a digest of
    its normalised bytes plus how many identical messages the user got before
    it: stable for as long as the store lives, different for every delivery,
    and the same again when a restarted program delivers the same mail in the
    same order (so a client that leaves mail on the server does not fetch it
    twice). Any user name opens a maildrop (empty if it never got mail):
    deciding who exists is the authenticator's job. One session per user at
    a time, within this process.
    """

    def __init__(self, mail: Mapping[str, Sequence[bytes]] | None = None) -> None:
        self._lock = threading.Lock()
        self._mail: dict[str, list[_Stored]] = {}
        self._deliveries: dict[tuple[str, str], int] = {}  # (user, digest) -> count so far
        self._locked: set[str] = set()
        for user, messages in (mail or {}).items():
            if isinstance(messages, (bytes, bytearray, memoryview, str)):
                raise TypeError(f"the mail of {user!r} must be a sequence of messages")
            for message in messages:
                self.deliver(user, message)

    def deliver(self, user: str, message: bytes | bytearray | memoryview) -> str:
        """Append `message` to `user`'s maildrop; return its unique id.

        Sessions already open keep the listing they started with and see it
        next time.
        """
        if not isinstance(message, (bytes, bytearray, memoryview)):
            raise TypeError(f"a message must be bytes, not {type(message).__name__}")
        data = normalize_newlines(bytes(message))
        digest = hashlib.sha256(data).hexdigest()[:32]
        with self._lock:
            copies = self._deliveries.get((user, digest), 0)
            self._deliveries[user, digest] = copies + 1
            stored = _Stored(f"{digest}.{copies}", data)
            self._mail.setdefault(user, []).append(stored)
        return stored.uid

    def messages(self, user: str) -> list[bytes]:
        """The messages `user` has now, CRLF-normalised, in order."""
        with self._lock:
            return [stored.data for stored in self._mail.get(user, ())]

    def open(self, username: str) -> MemoryMaildrop:
        """Lock `username`'s maildrop and take a snapshot of it for one session.

        Raises `MaildropLocked` while another session has it open.
        """
        with self._lock:
            if username in self._locked:
                raise MaildropLocked(f"the maildrop of {username!r} is in use")
            self._locked.add(username)
            snapshot = list(self._mail.get(username, ()))
        return MemoryMaildrop(self, username, snapshot)

    def _remove(self, user: str, uids: set[str]) -> bool:
        with self._lock:
            kept = [stored for stored in self._mail.get(user, ()) if stored.uid not in uids]
            removed = len(self._mail.get(user, ())) - len(kept)
            self._mail[user] = kept
        return removed == len(uids)

    def _release(self, user: str) -> None:
        with self._lock:
            self._locked.discard(user)


class MemoryMaildrop(SessionMaildrop):
    """One session's view of a `MemoryStore` maildrop (see `pop3_stores.Maildrop`)."""

    def __init__(self, store: MemoryStore, user: str, messages: list[_Stored]) -> None:
        self._store = store
        self.user = user
        self._messages = messages
        self._listing = [MessageInfo(len(stored.data), stored.uid) for stored in messages]
        self._closed = False

    def listing(self) -> Sequence[MessageInfo]:
        """The messages as they were when the session opened the maildrop."""
        return list(self._listing)

    def read(self, index: int, chunk_size: int = DEFAULT_CHUNK) -> Generator[bytes, None, None]:
        """Message `index` (0-based) in chunks of at most `chunk_size` octets."""
        self._check_open()
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        (index,) = check_indexes((index,), len(self._messages))
        return self._chunks(self._messages[index].data, chunk_size)

    @staticmethod
    def _chunks(data: bytes, chunk_size: int) -> Generator[bytes, None, None]:
        for start in range(0, len(data), chunk_size):
            yield data[start : start + chunk_size]

    def commit(self, indexes: Sequence[int]) -> bool:
        """Remove exactly these messages of this session's listing.

        Mail delivered since the session opened is kept, whatever its position.
        """
        self._check_open()
        doomed = {self._messages[i].uid for i in check_indexes(indexes, len(self._messages))}
        return self._store._remove(self.user, doomed) if doomed else True

    def close(self) -> None:
        """Release the lock. Idempotent."""
        if not self._closed:
            self._closed = True
            self._store._release(self.user)


# ---------------------------------------------------------------- Maildir
