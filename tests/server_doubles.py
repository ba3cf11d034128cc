"""Helpers for tests of pop3_blocking: certificates, and a small in-memory store."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import trustme

import pop3core as p
from pop3_stores import MaildropLocked


class Certificates:
    """A throwaway CA and a certificate for ``localhost`` and 127.0.0.1."""

    def __init__(self) -> None:
        self.ca = trustme.CA()
        # a CN too: fetchmail checks names against the Common Name
        self.cert = self.ca.issue_cert("localhost", "127.0.0.1", common_name="localhost")

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.cert.configure_cert(context)
        return context

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


class DictMaildrop:
    def __init__(self, store: DictStore, user: str) -> None:
        self.store = store
        self.user = user
        self.messages = list(store.mail[user])
        self.closed = False

    def listing(self) -> Sequence[p.MessageInfo]:
        return [p.MessageInfo(len(m), uid) for uid, m in self.messages]

    def read(self, index: int, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
        data = self.messages[index][1]
        for start in range(0, len(data), chunk_size):
            yield data[start : start + chunk_size]

    def commit(self, indexes: Sequence[int]) -> bool:
        doomed = {self.messages[i][0] for i in indexes}
        with self.store.lock:
            self.store.mail[self.user] = [
                m for m in self.store.mail[self.user] if m[0] not in doomed
            ]
            self.store.commits.append((self.user, sorted(doomed)))
        return True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with self.store.lock:
                self.store.locked.discard(self.user)


class DictStore:
    """Just enough of a MailStore for driver tests (the real stores are tested apart)."""

    def __init__(self, mail: dict[str, list[bytes]]) -> None:
        self.lock = threading.Lock()
        self.mail = {
            user: [(f"{user}-{i}", p.normalize_newlines(m)) for i, m in enumerate(messages)]
            for user, messages in mail.items()
        }
        self.locked: set[str] = set()
        self.commits: list[tuple[str, list[str]]] = []

    def open(self, username: str) -> DictMaildrop:
        with self.lock:
            if username in self.locked:
                raise MaildropLocked(username)
            self.locked.add(username)
            self.mail.setdefault(username, [])
        return DictMaildrop(self, username)


class DictAuthenticator:
    def __init__(self, users: dict[str, str], tokens: dict[str, str] | None = None) -> None:
        self.users = {name: p.Credential.from_password(pw) for name, pw in users.items()}
        self.tokens = tokens or {}

    def credential(self, username: str) -> p.Credential | None:
        return self.users.get(username)

    def mechanisms(self) -> list[str]:
        return p.store_mechanisms(self.users.values())

    def check_token(self, username: str, token: str, mechanism: str) -> bool | dict[str, Any]:
        return self.tokens.get(username) == token
