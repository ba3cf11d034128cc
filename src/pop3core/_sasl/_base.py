"""The mechanism interfaces: what a SASL mechanism must provide to the engine.

Server side, a mechanism is a generator (`ServerMechanism.exchange`) that yields
*steps*: a `Challenge` to send to the client (the generator receives the client's
decoded response), or a request to the application (`PasswordCheck`,
`SecretRequest`, ...; the generator receives the application's answer). It
returns who authenticated (an `Identity`, or just the user name), or raises
`AuthenticationFailed`. A mechanism never decides whether one user may act as
another: it reports both identities, and the session applies the one rule
(`ServerOptions.authorize`).

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
    "Identity",
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
class Identity:
    """What a server mechanism established.

    ``authcid`` is the identity whose credentials were proved (the user name, the
    owner of the token, whom the certificate names). ``authzid`` is the identity
    the client asked to act as, ``""`` if it asked for none. The session lets
    the client in as ``authcid`` when ``authzid`` is empty or the same, and as
    ``authzid`` only if `ServerOptions.authorize` grants it.
    """

    authcid: str
    authzid: str = ""


@dataclass(frozen=True, slots=True)
class Challenge:
    """Send these bytes as a challenge; the mechanism receives the client's response."""

    data: bytes = b""


@dataclass(frozen=True, slots=True)
class PasswordCheck:
    """Application: is `password` right for `username`? Answer with a bool.

    ``authzid`` is the identity the client asked to act as ("" for itself), for
    logging only: answer for `username` alone. Whether `username` may act as
    ``authzid`` is decided afterwards, by `ServerOptions.authorize`.
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
    """Application: whom does this OAuth 2.0 bearer token belong to?

    `username` is the identity the client named (XOAUTH2's ``user=``,
    OAUTHBEARER's ``a=``; ``""`` if it named none). Answer with the user name
    the token was issued to (best: the session then compares it with
    `username`), with ``True`` to say it was issued to `username` itself, or
    refuse with ``False`` or a ``dict`` (the JSON error object sent to the
    client in the failure challenge).
    """

    username: str
    token: str = field(repr=False)
    mechanism: str
    host: str | None = None
    port: int | None = None


@dataclass(frozen=True, slots=True)
class ExternalCheck:
    """Application: whom does the TLS client certificate authenticate as?

    Answer with the user name the certificate maps to, or None to refuse. The
    identity the client asked for is deliberately not part of the question: it
    is compared with the answer by the session (`ServerOptions.authorize`).
    """


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
    def exchange(
        self, initial_response: bytes | None
    ) -> Generator[ServerStep, Any, str | Identity]:
        """Run one authentication; return who authenticated, or raise AuthenticationFailed.

        Return an `Identity` when the client can name an identity to act as
        (even an empty one), else the user name whose credentials were proved.

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
