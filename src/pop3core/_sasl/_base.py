"""The mechanism interfaces: what a SASL mechanism must provide to the engine.

Server side, a mechanism is a generator (`ServerMechanism.exchange`) that yields
*steps*: a `Challenge` to send to the client (the generator receives the client's
decoded response), or a request to the application (`PasswordCheck`,
`SecretRequest`, ...; the generator receives the application's answer). It
returns the authenticated user name, or raises `AuthenticationFailed`.

Client side, a mechanism is an object that produces the initial response and
answers each challenge; `ClientMechanism.finish` is called on ``+OK`` so that a
mechanism which authenticates the server too (SCRAM) can insist that it did.

Everything here is pure: no I/O, no clocks.
"""

from __future__ import annotations

import abc
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .._codes import AUTH, SYS_TEMP, ResponseCode

__all__ = [
    "AuthenticationFailed",
    "Challenge",
    "ClientMechanism",
    "ExternalCheck",
    "PasswordCheck",
    "SASLError",
    "ScramKeysRequest",
    "SecretRequest",
    "ServerMechanism",
    "ServerStep",
    "TokenCheck",
]


class SASLError(Exception):
    """A client mechanism cannot go on (bad challenge, server not verified, ...).

    The client then cancels the exchange with ``*``.
    """


class AuthenticationFailed(Exception):
    """A server mechanism refuses the login; the reply is ``-ERR [code] text``.

    ``code`` is `AUTH` for credential problems and `SYS_TEMP` for backend
    trouble (RFC 3206, AUTH-RESP-CODE).
    """

    def __init__(self, text: str = "authentication failed", code: ResponseCode = AUTH) -> None:
        super().__init__(text)
        self.text = text
        self.code = code

    @classmethod
    def temporary(cls, text: str = "temporary authentication failure") -> AuthenticationFailed:
        return cls(text, SYS_TEMP)


@dataclass(frozen=True, slots=True)
class Challenge:
    """Send these bytes as a challenge; the mechanism receives the client's response."""

    data: bytes = b""


@dataclass(frozen=True, slots=True)
class PasswordCheck:
    """Application: is `password` right for `username`? Answer with a bool.

    ``authzid`` is the identity the client asked to act as ("" for itself).
    """

    username: str
    password: str = field(repr=False)
    mechanism: str
    authzid: str = ""


@dataclass(frozen=True, slots=True)
class SecretRequest:
    """Application: the shared secret (plaintext password) of `username`, or None.

    Used by APOP and CRAM-MD5, which need the secret itself to check a digest.
    """

    username: str
    mechanism: str


@dataclass(frozen=True, slots=True)
class ScramKeysRequest:
    """Application: the stored SCRAM keys of `username` for `mechanism`, or None."""

    username: str
    mechanism: str


@dataclass(frozen=True, slots=True)
class TokenCheck:
    """Application: is this OAuth 2.0 bearer token valid for `username`?

    Answer with ``True``/``False``, or a ``dict`` (the JSON error object sent to
    the client in the failure challenge) to refuse with details.
    """

    username: str
    token: str = field(repr=False)
    mechanism: str
    host: str | None = None
    port: int | None = None


@dataclass(frozen=True, slots=True)
class ExternalCheck:
    """Application: whom does the TLS client certificate authenticate as?

    ``authzid`` is the identity the client asked for ("" for the default).
    Answer with the user name, or None to refuse.
    """

    authzid: str


ServerStep = (
    Challenge | PasswordCheck | SecretRequest | ScramKeysRequest | TokenCheck | ExternalCheck
)


class ServerMechanism(abc.ABC):
    """A server-side mechanism. Subclass and implement `exchange`."""

    name: ClassVar[str]
    """The SASL name, upper case (``"SCRAM-SHA-256"``)."""
    cleartext: ClassVar[bool] = False
    """True if the password crosses the wire recoverably: offered only over TLS
    unless the server allows cleartext logins."""

    @abc.abstractmethod
    def exchange(self, initial_response: bytes | None) -> Generator[ServerStep, Any, str]:
        """Run one authentication; return the user name, or raise AuthenticationFailed.

        `initial_response` is None when the client sent none (a mechanism that
        needs one then yields ``Challenge(b"")`` first, as RFC 5034 says).
        """


class ClientMechanism(abc.ABC):
    """A client-side mechanism. Subclass and implement the three methods."""

    name: ClassVar[str]
    cleartext: ClassVar[bool] = False

    @abc.abstractmethod
    def initial_response(self) -> bytes | None:
        """The initial response, or None if this mechanism lets the server speak first."""

    @abc.abstractmethod
    def respond(self, challenge: bytes) -> bytes:
        """Answer a server challenge; raise SASLError to cancel."""

    def finish(self) -> None:  # noqa: B027  (optional hook, not abstract)
        """Called on ``+OK``; raise SASLError if the exchange is not really complete."""
