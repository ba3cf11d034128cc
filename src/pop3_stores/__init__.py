"""Mail and credential stores for POP3 servers: the interfaces and the stores we ship.

Both servers (`pop3_blocking.Server`, threads, and `pop3_anyio.Server`, which
calls these from worker threads) use them. Standard library and `pop3core`
only; everything here does blocking file I/O and is thread-safe.

* Interfaces: `MailStore` (opens and locks one user's `Maildrop` for one
  session), `Authenticator` (credentials and OAuth tokens), and the errors
  `MaildropError` and `MaildropLocked` (``-ERR [IN-USE]``); `AsyncMailStore`
  and `AsyncMaildrop` for natively async stores (the anyio server only).
* `MemoryStore` and `MemoryAuthenticator`: in memory, for tests and embedding.
* `MaildirStore`: one Maildir per user (``flock``-locked, Dovecot-compatible).
* `PasswdFileAuthenticator`: a Dovecot-style passwd-file, re-read when it changes.
"""

from ._credentials import MemoryAuthenticator, PasswdFileAuthenticator
from ._interfaces import (
    AsyncMaildrop,
    AsyncMailStore,
    Authenticator,
    Maildrop,
    MaildropError,
    MaildropLocked,
    MailStore,
)
from ._maildir import MaildirMaildrop, MaildirStore
from ._memory import MemoryMaildrop, MemoryStore

__all__ = [
    "AsyncMailStore",
    "AsyncMaildrop",
    "Authenticator",
    "MailStore",
    "MaildirMaildrop",
    "MaildirStore",
    "Maildrop",
    "MaildropError",
    "MaildropLocked",
    "MemoryAuthenticator",
    "MemoryMaildrop",
    "MemoryStore",
    "PasswdFileAuthenticator",
]
