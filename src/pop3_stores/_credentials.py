"""Where users and their credentials come from: a mapping, or a Dovecot passwd-file."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

from pop3core import Credential, PasswdEntry, parse_passwd_line, store_mechanisms

__all__ = ["MemoryAuthenticator", "PasswdFileAuthenticator"]

logger = logging.getLogger("pop3_stores")


class MemoryAuthenticator:
    """Users from a mapping: a plaintext password or a prepared `Credential` each.

    ``tokens`` maps user names to the OAuth 2.0 bearer token issued to each
    (XOAUTH2, OAUTHBEARER); a token is looked up by its SHA-256 digest, so its
    owner is found without comparing secrets byte by byte.
    """

    def __init__(
        self,
        users: Mapping[str, str | Credential],
        *,
        tokens: Mapping[str, str] | None = None,
    ) -> None:
        self._users = {
            name: value if isinstance(value, Credential) else Credential.from_password(value)
            for name, value in users.items()
        }
        self._token_owners = {_token_key(token): name for name, token in (tokens or {}).items()}
        if len(self._token_owners) != len(tokens or {}):
            raise ValueError("two users have the same token")

    def credential(self, username: str) -> Credential | None:
        """The credential of `username`, or None."""
        return self._users.get(username)

    def mechanisms(self) -> list[str]:
        """The SASL mechanisms every user's credential can serve."""
        return store_mechanisms(self._users.values())

    def check_token(self, username: str, token: str, mechanism: str) -> str | bool:
        """The user `token` was issued to, or False (any mechanism).

        The owner, not a yes for `username`: the session itself refuses a
        client that names one user and holds another's token.
        """
        return self._token_owners.get(_token_key(token), False)


def _token_key(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


_Signature = tuple[int, int, int, int, int]


class PasswdFileAuthenticator:
    """Users from a Dovecot-style passwd-file (``user:{SCHEME}data[:...]`` lines).

    The file is read at construction and again whenever its inode, size, mtime
    or ctime change (checked on every call: one ``stat``), so it can be edited
    or replaced while the server runs. A missing or unreadable file means no
    users; a malformed line (or one that is not UTF-8) is skipped. Both are
    logged as warnings to the ``pop3_stores`` logger, once per version of
    the file. As in Dovecot, the first line for a user wins; user names are
    matched exactly. There are no OAuth tokens: `check_token` returns False.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._signature: _Signature | None = None
        self._loaded = False
        self._failure: str | None = None  # the last reason for no users, logged once
        self._entries: dict[str, PasswdEntry] = {}
        self._current()

    def credential(self, username: str) -> Credential | None:
        """The credential of `username` in the file as it is now, or None."""
        entry = self._current().get(username)
        return None if entry is None else entry.credential

    def mechanisms(self) -> list[str]:
        """The SASL mechanisms every user's record in the file can serve."""
        return store_mechanisms(entry.credential for entry in self._current().values())

    def check_token(self, username: str, token: str, mechanism: str) -> bool | dict[str, Any]:
        """Always False: a passwd-file holds no OAuth tokens."""
        return False

    @staticmethod
    def _signature_of(st: os.stat_result) -> _Signature:
        # ctime too: a chmod that makes the file readable must trigger a reload.
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def _current(self) -> dict[str, PasswdEntry]:
        with self._lock:
            try:
                st = os.stat(self.path)
            except OSError as exc:
                if not self._loaded or self._signature is not None:
                    self._loaded, self._signature = True, None
                    self._fail(f"cannot read the users file {self.path}: {exc}")
                return self._entries
            signature = self._signature_of(st)
            if not self._loaded or signature != self._signature:
                self._loaded = True
                self._load(signature)
            return self._entries

    def _fail(self, reason: str) -> None:
        self._entries = {}
        if reason != self._failure:
            logger.warning("%s; no users", reason)
        self._failure = reason

    def _load(self, signature: _Signature) -> None:
        # Until the file changes, this version (even an unreadable one) stands.
        self._signature = signature
        try:
            with open(self.path, "rb") as file:
                # The signature of what is read, in case it was replaced since the stat.
                self._signature = self._signature_of(os.fstat(file.fileno()))
                data = file.read()
        except OSError as exc:
            self._fail(f"cannot read the users file {self.path}: {exc}")
            return
        self._failure = None
        entries: dict[str, PasswdEntry] = {}
        # bytes.splitlines splits only at CR and LF, unlike str.splitlines.
        for number, raw in enumerate(data.splitlines(), 1):
            try:
                entry = parse_passwd_line(raw.decode("utf-8"))
            except UnicodeDecodeError:
                logger.warning("%s line %d: not UTF-8; skipped", self.path, number)
                continue
            except ValueError as exc:
                logger.warning("%s line %d: %s; skipped", self.path, number, exc)
                continue
            if entry is not None:
                entries.setdefault(entry.username, entry)
        self._entries = entries
