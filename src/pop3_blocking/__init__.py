"""POP3 over blocking sockets: a client, a threaded server, mail stores, and a poplib drop-in.

* `Client`: the modern client (verified TLS, the strongest login, typed
  results, streaming and pipelined bulk fetches).
* `POP3`, `POP3_SSL`, `error_proto`: the standard library's `poplib` API, faster
  (`pop3_blocking.poplib` is the whole drop-in module).
* `Server`: a thread per connection, plain + STLS and implicit TLS.
* Stores shared with `pop3_anyio`: `MemoryStore`, `MaildirStore`,
  `MemoryAuthenticator`, `PasswdFileAuthenticator`, and the interfaces
  (`MailStore`, `Maildrop`, `Authenticator`) to write others.

All protocol logic lives in `pop3core`; this package only moves bytes.
"""

from pop3_stores import (
    Authenticator,
    MaildirMaildrop,
    MaildirStore,
    Maildrop,
    MaildropError,
    MaildropLocked,
    MailStore,
    MemoryAuthenticator,
    MemoryMaildrop,
    MemoryStore,
    PasswdFileAuthenticator,
)

from ._client import MAX_MESSAGE_SIZE, Client, SizeLimitExceeded
from ._server import MINIMUM_AUTOLOGOUT, Server
from .poplib import POP3, POP3_PORT, POP3_SSL, POP3_SSL_PORT, error_proto

__all__ = [
    "MAX_MESSAGE_SIZE",
    "MINIMUM_AUTOLOGOUT",
    "POP3",
    "POP3_PORT",
    "POP3_SSL",
    "POP3_SSL_PORT",
    "Authenticator",
    "Client",
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
    "Server",
    "SizeLimitExceeded",
    "error_proto",
]
