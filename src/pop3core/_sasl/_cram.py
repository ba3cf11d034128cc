"""CRAM-MD5 (RFC 2195): an HMAC-MD5 of a server challenge, keyed with the secret."""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Generator
from typing import Any, ClassVar

from ._base import (
    AuthenticationFailed,
    Challenge,
    ClientMechanism,
    SASLError,
    SecretRequest,
    ServerMechanism,
    ServerStep,
)
from ._common import decode_utf8, to_bytes

__all__ = ["CramMD5Client", "CramMD5Server", "cram_md5_digest"]

_DIGEST = re.compile(r"[0-9a-fA-F]{32}\Z")
_BAD_LOGIN = "invalid user name or password"


def cram_md5_digest(secret: str | bytes, challenge: bytes) -> str:
    """HMAC-MD5 of `challenge` keyed with `secret`, as 32 lower-case hex digits."""
    return hmac.new(to_bytes(secret), challenge, "md5").hexdigest()


class CramMD5Client(ClientMechanism):
    """CRAM-MD5, client side: answers the one challenge with ``user SP digest``."""

    name: ClassVar[str] = "CRAM-MD5"

    def __init__(self, username: str, password: str | bytes) -> None:
        if not username:
            raise ValueError("CRAM-MD5 needs a user name")
        self._username = username
        self._password = password
        self._answered = False

    def __repr__(self) -> str:
        return "CramMD5Client(<credentials hidden>)"

    def initial_response(self) -> bytes | None:
        return None

    def respond(self, challenge: bytes) -> bytes:
        if self._answered:
            raise SASLError("CRAM-MD5 got a second challenge")
        if not challenge:
            raise SASLError("CRAM-MD5 got an empty challenge")
        self._answered = True
        return f"{self._username} {cram_md5_digest(self._password, challenge)}".encode()


class CramMD5Server(ServerMechanism):
    """CRAM-MD5, server side: asks the application for the secret (`SecretRequest`).

    The challenge is ``<random.random@hostname>``, fresh for every exchange;
    ``challenge`` fixes it instead (for tests only: a repeated challenge lets a
    recorded answer be replayed).
    """

    name: ClassVar[str] = "CRAM-MD5"

    def __init__(self, hostname: str = "localhost", *, challenge: bytes | None = None) -> None:
        self._hostname = hostname.encode("idna")
        if not self._hostname:
            raise ValueError("CramMD5Server needs a host name")
        self._challenge = None if challenge is None else bytes(challenge)

    def make_challenge(self) -> bytes:
        """A new challenge in the RFC 2195 style (random digits, not a clock)."""
        if self._challenge is not None:
            return self._challenge
        return b"<%d.%d@%s>" % (
            secrets.randbits(40),
            secrets.randbits(40),
            self._hostname,
        )

    def exchange(self, initial_response: bytes | None) -> Generator[ServerStep, Any, str]:
        if initial_response is not None:
            raise AuthenticationFailed("CRAM-MD5 takes no initial response")
        challenge = self.make_challenge()
        response = yield Challenge(challenge)
        text = decode_utf8(response, "CRAM-MD5 response")
        username, _, digest = text.rpartition(" ")
        if not username or not _DIGEST.match(digest):
            raise AuthenticationFailed("malformed CRAM-MD5 response")
        secret = yield SecretRequest(username, self.name)
        if secret is None:
            raise AuthenticationFailed(_BAD_LOGIN)
        expected = cram_md5_digest(secret, challenge)
        if not hmac.compare_digest(expected, digest.lower()):
            raise AuthenticationFailed(_BAD_LOGIN)
        return username
