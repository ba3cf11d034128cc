"""Typed errors for client APIs: what a ``-ERR`` means, from its response code.

These are shared by every client adapter. `error_for` turns a server's
``-ERR`` into the most specific exception: a caller can retry later on
`TemporaryError` or `MailboxInUse`, re-prompt for a password only on
`AuthenticationError` (RFC 3206, AUTH-RESP-CODE), and so on.
"""

from __future__ import annotations

from ._codes import AUTH, IN_USE, LOGIN_DELAY, SYS_PERM, SYS_TEMP, UTF8, ResponseCode
from ._events import Apop, Auth, Command, ErrResponse, Pass, User

__all__ = [
    "AuthenticationError",
    "LoginDelayError",
    "MailboxInUse",
    "PermanentError",
    "ResponseError",
    "TLSNotOffered",
    "TemporaryError",
    "UTF8Required",
    "error_for",
]

_LOGIN_COMMANDS = (User, Pass, Apop, Auth)


class ResponseError(Exception):
    """The server answered ``-ERR``. ``reply`` is the response, ``command`` what it answered."""

    def __init__(self, reply: ErrResponse, command: Command | None = None) -> None:
        self.reply = reply
        self.command = command
        what = f"{command.keyword or 'command'}: " if command is not None else ""
        super().__init__(f"{what}{reply.line.decode('utf-8', 'replace')}")

    @property
    def code(self) -> ResponseCode | None:
        return self.reply.code

    @property
    def text(self) -> str:
        """The human-readable text of the reply (without the response code)."""
        return self.reply.text.decode("utf-8", "replace")


class AuthenticationError(ResponseError):
    """The login was refused: wrong credentials (``[AUTH]``), or no reason given."""


class MailboxInUse(ResponseError):
    """Authenticated, but another session holds the maildrop (``[IN-USE]``): retry later."""


class LoginDelayError(ResponseError):
    """Logged in again too soon (``[LOGIN-DELAY]``, RFC 2449): wait and retry."""


class TemporaryError(ResponseError):
    """A temporary problem on the server (``[SYS/TEMP]``): retry later."""


class PermanentError(ResponseError):
    """A permanent problem on the server (``[SYS/PERM]``): tell the user."""


class UTF8Required(ResponseError):
    """The message needs UTF8 mode (``[UTF8]``, RFC 6856): send UTF8 and retry."""


class TLSNotOffered(Exception):
    """TLS was required, but the server does not offer STLS (RFC 2595: refuse to go on)."""


_BY_CODE: tuple[tuple[ResponseCode, type[ResponseError]], ...] = (
    (IN_USE, MailboxInUse),
    (LOGIN_DELAY, LoginDelayError),
    (SYS_TEMP, TemporaryError),
    (SYS_PERM, PermanentError),
    (AUTH, AuthenticationError),
    (UTF8, UTF8Required),
)


def error_for(reply: ErrResponse, command: Command | None = None) -> ResponseError:
    """The exception for `reply`, the ``-ERR`` to `command`.

    A response code decides (unknown sub-levels count as their parent); without
    one, a refused login command is an `AuthenticationError` and anything else
    a plain `ResponseError`.
    """
    code = reply.code
    if code is not None:
        for known, cls in _BY_CODE:
            if code.matches(known):
                return cls(reply, command)
    if isinstance(command, _LOGIN_COMMANDS):
        return AuthenticationError(reply, command)
    return ResponseError(reply, command)
