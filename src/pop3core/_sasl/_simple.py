"""PLAIN (RFC 4616), LOGIN, EXTERNAL (RFC 4422 appendix A) and ANONYMOUS (RFC 4505)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, ClassVar

from ._base import (
    AuthenticationFailed,
    Challenge,
    ClientMechanism,
    ExternalCheck,
    Identity,
    PasswordCheck,
    SASLError,
    ServerMechanism,
    ServerStep,
)
from ._common import decode_utf8

__all__ = [
    "AnonymousClient",
    "AnonymousServer",
    "ExternalClient",
    "ExternalServer",
    "LoginClient",
    "LoginServer",
    "PlainClient",
    "PlainServer",
]

_BAD_LOGIN = "invalid user name or password"
# RFC 4505 section 2: the trace is at most 255 characters.
_MAX_TRACE = 255


def _check_no_nul(value: str, what: str) -> None:
    if "\x00" in value:
        raise ValueError(f"the {what} must not contain NUL")


class _OneShot(ClientMechanism):
    """A client mechanism that says everything in its initial response."""

    def respond(self, challenge: bytes) -> bytes:
        raise SASLError(f"{self.name} expects no challenge, but the server sent one")


# ---------------------------------------------------------------- PLAIN


class PlainClient(_OneShot):
    """PLAIN (RFC 4616): ``authzid NUL authcid NUL password`` in one message.

    The password crosses the wire as it is: use it over TLS only.
    """

    name: ClassVar[str] = "PLAIN"
    cleartext: ClassVar[bool] = True

    def __init__(self, username: str, password: str, *, authzid: str = "") -> None:
        if not username:
            raise ValueError("PLAIN needs a user name")
        if not password:
            raise ValueError("PLAIN needs a non-empty password")
        _check_no_nul(username, "user name")
        _check_no_nul(password, "password")
        _check_no_nul(authzid, "authorization identity")
        self._message = f"{authzid}\x00{username}\x00{password}".encode()

    def __repr__(self) -> str:
        return "PlainClient(<credentials hidden>)"

    def initial_response(self) -> bytes:
        return self._message


class PlainServer(ServerMechanism):
    """PLAIN, server side: asks the application with a `PasswordCheck`.

    Returns both identities: the user name whose password was checked, and the
    authorization identity the client asked for (the session decides on it).
    """

    name: ClassVar[str] = "PLAIN"
    cleartext: ClassVar[bool] = True

    def exchange(self, initial_response: bytes | None) -> Generator[ServerStep, Any, Identity]:
        message = initial_response
        if message is None:
            message = yield Challenge(b"")
        parts = message.split(b"\x00")
        if len(parts) != 3:
            raise AuthenticationFailed("malformed PLAIN message")
        authzid, username, password = (decode_utf8(part, "PLAIN message") for part in parts)
        if not username or not password:
            raise AuthenticationFailed("malformed PLAIN message")
        ok = yield PasswordCheck(username, password, self.name, authzid)
        if not ok:
            raise AuthenticationFailed(_BAD_LOGIN)
        return Identity(username, authzid)


# ---------------------------------------------------------------- LOGIN


class LoginClient(ClientMechanism):
    """LOGIN (draft-murchison-sasl-login): the user name, then the password.

    The server speaks first (``Username:``, ``Password:``); the answers go in
    that order whatever the prompts say. The password crosses the wire as it is.
    """

    name: ClassVar[str] = "LOGIN"
    cleartext: ClassVar[bool] = True

    def __init__(self, username: str, password: str) -> None:
        if not username:
            raise ValueError("LOGIN needs a user name")
        self._answers = [username.encode(), password.encode()]

    def __repr__(self) -> str:
        return "LoginClient(<credentials hidden>)"

    def initial_response(self) -> bytes | None:
        return None

    def respond(self, challenge: bytes) -> bytes:
        if not self._answers:
            raise SASLError("LOGIN got more than two challenges")
        return self._answers.pop(0)


class LoginServer(ServerMechanism):
    """LOGIN, server side: prompts for both, then asks with a `PasswordCheck`.

    An initial response, which some clients send, is taken as the user name.
    """

    name: ClassVar[str] = "LOGIN"
    cleartext: ClassVar[bool] = True

    def exchange(self, initial_response: bytes | None) -> Generator[ServerStep, Any, str]:
        raw_username = initial_response
        if raw_username is None:
            raw_username = yield Challenge(b"Username:")
        raw_password = yield Challenge(b"Password:")
        username = decode_utf8(raw_username, "LOGIN user name")
        password = decode_utf8(raw_password, "LOGIN password")
        if not username or not password or "\x00" in username:
            raise AuthenticationFailed(_BAD_LOGIN)
        ok = yield PasswordCheck(username, password, self.name)
        if not ok:
            raise AuthenticationFailed(_BAD_LOGIN)
        return username


# ---------------------------------------------------------------- EXTERNAL


class ExternalClient(_OneShot):
    """EXTERNAL: the identity comes from outside SASL (a TLS client certificate).

    The message is the authorization identity, empty to act as whoever the
    certificate names.
    """

    name: ClassVar[str] = "EXTERNAL"

    def __init__(self, authzid: str = "") -> None:
        _check_no_nul(authzid, "authorization identity")
        self._authzid = authzid.encode()

    def initial_response(self) -> bytes:
        return self._authzid


class ExternalServer(ServerMechanism):
    """EXTERNAL, server side: the application answers an `ExternalCheck`.

    Returns whom the certificate names and the identity the client asked for.
    """

    name: ClassVar[str] = "EXTERNAL"

    def exchange(self, initial_response: bytes | None) -> Generator[ServerStep, Any, Identity]:
        message = initial_response
        if message is None:
            message = yield Challenge(b"")
        authzid = decode_utf8(message, "EXTERNAL authorization identity")
        if "\x00" in authzid:
            raise AuthenticationFailed("malformed EXTERNAL message")
        username = yield ExternalCheck()
        if not username:
            raise AuthenticationFailed("no valid client certificate")
        if not isinstance(username, str):
            raise TypeError(f"answer an ExternalCheck with a user name, not {username!r}")
        return Identity(username, authzid)


# ---------------------------------------------------------------- ANONYMOUS


class AnonymousClient(_OneShot):
    """ANONYMOUS (RFC 4505): an optional trace (an e-mail address or a token)."""

    name: ClassVar[str] = "ANONYMOUS"

    def __init__(self, trace: str = "") -> None:
        if len(trace) > _MAX_TRACE:
            raise ValueError(f"the ANONYMOUS trace is limited to {_MAX_TRACE} characters")
        _check_no_nul(trace, "trace")
        self._trace = trace.encode()

    def initial_response(self) -> bytes:
        return self._trace


class AnonymousServer(ServerMechanism):
    """ANONYMOUS, server side: every client is let in as `username`.

    Nothing is asked of the application here; it sees the login as a
    `MaildropRequest` for `username` with mechanism ``ANONYMOUS``, and may refuse
    it there. ``trace`` values longer than RFC 4505 allows are refused.
    """

    name: ClassVar[str] = "ANONYMOUS"

    def __init__(self, username: str = "anonymous") -> None:
        if not username:
            raise ValueError("AnonymousServer needs a user name to log the client in as")
        self.username = username

    def exchange(self, initial_response: bytes | None) -> Generator[ServerStep, Any, str]:
        message = initial_response
        if message is None:
            message = yield Challenge(b"")
        trace = decode_utf8(message, "ANONYMOUS trace")
        if len(trace) > _MAX_TRACE or "\x00" in trace:
            raise AuthenticationFailed("malformed ANONYMOUS trace")
        return self.username
