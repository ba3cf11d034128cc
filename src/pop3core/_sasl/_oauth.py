"""OAuth 2.0 bearer tokens: XOAUTH2 (Google, Microsoft) and OAUTHBEARER (RFC 7628).

A bearer token is a credential (whoever has it can log in), so both count as
cleartext mechanisms: offered and used only over TLS unless cleartext is allowed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Generator
from typing import Any, ClassVar

from ._base import (
    AuthenticationFailed,
    Challenge,
    ClientMechanism,
    Identity,
    SASLError,
    ServerMechanism,
    ServerStep,
    TokenCheck,
)
from ._common import decode_saslname, decode_utf8, encode_saslname

__all__ = ["OAuthBearerClient", "OAuthBearerServer", "XOAuth2Client", "XOAuth2Server"]

_SEP = "\x01"
_KEY = re.compile(r"[A-Za-z]+\Z")
_BAD_TOKEN = "invalid or expired token"
# RFC 7628 section 3.2.2: a refusal always comes as an error challenge.
_DEFAULT_ERROR: dict[str, Any] = {"status": "invalid_token"}


def _parse_error(challenge: bytes) -> dict[str, Any] | None:
    """The JSON object of an error challenge, or None if it is not one."""
    try:
        value = json.loads(challenge.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _error_json(error: dict[str, Any]) -> bytes:
    return json.dumps(error, separators=(",", ":")).encode("utf-8")


def _check_field(value: str, what: str) -> None:
    if _SEP in value or "\x00" in value:
        raise ValueError(f"the {what} must not contain ^A or NUL")


def _bearer_token(auth: str | None) -> str | None:
    """The token of an ``auth=Bearer <token>`` value (the scheme is case-insensitive)."""
    if auth is None:
        return None
    scheme, _, token = auth.partition(" ")
    token = token.strip(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    return token


class _OAuthClient(ClientMechanism):
    cleartext: ClassVar[bool] = True
    _failure_answer: ClassVar[bytes]

    error: dict[str, Any] | None
    """The server's JSON error object, once a failure challenge has arrived."""

    def __init__(self) -> None:
        self.error = None
        self._failed = False

    def respond(self, challenge: bytes) -> bytes:
        # The only challenge after the initial response is the failure report;
        # the answer is fixed, and the server then replies -ERR.
        if self._failed:
            raise SASLError(f"{self.name} got a second challenge")
        self._failed = True
        self.error = _parse_error(challenge)
        return self._failure_answer


class XOAuth2Client(_OAuthClient):
    """XOAUTH2: ``user=U ^A auth=Bearer T ^A ^A``.

    On failure the server sends a JSON error (kept in `error`) as a challenge;
    the client answers with an empty line and gets ``-ERR``.
    """

    name: ClassVar[str] = "XOAUTH2"
    _failure_answer: ClassVar[bytes] = b""

    def __init__(self, username: str, token: str) -> None:
        super().__init__()
        if not username or not token:
            raise ValueError("XOAUTH2 needs a user name and a token")
        _check_field(username, "user name")
        _check_field(token, "token")
        self._message = f"user={username}\x01auth=Bearer {token}\x01\x01".encode()

    def __repr__(self) -> str:
        return "XOAuth2Client(<credentials hidden>)"

    def initial_response(self) -> bytes:
        return self._message


class OAuthBearerClient(_OAuthClient):
    """OAUTHBEARER (RFC 7628): a GS2 header, then ``auth=Bearer T`` and optional host/port.

    On failure the server sends a JSON error (kept in `error`); the client
    answers with the dummy response ``^A`` and gets ``-ERR``.
    """

    name: ClassVar[str] = "OAUTHBEARER"
    _failure_answer: ClassVar[bytes] = b"\x01"

    def __init__(
        self, username: str, token: str, *, host: str | None = None, port: int | None = None
    ) -> None:
        super().__init__()
        if not token:
            raise ValueError("OAUTHBEARER needs a token")
        _check_field(username, "user name")
        _check_field(token, "token")
        authz = f"a={encode_saslname(username)}" if username else ""
        parts = [f"n,{authz},"]
        if host is not None:
            _check_field(host, "host")
            parts.append(f"host={host}")
        if port is not None:
            parts.append(f"port={int(port)}")
        parts.append(f"auth=Bearer {token}")
        self._message = (_SEP.join(parts) + _SEP + _SEP).encode()

    def __repr__(self) -> str:
        return "OAuthBearerClient(<credentials hidden>)"

    def initial_response(self) -> bytes:
        return self._message


def _parse_pairs(text: str) -> dict[str, str] | None:
    """``key=value ^A key=value ^A ... ^A ^A`` into a dict (None if malformed)."""
    if not text.endswith(_SEP + _SEP):
        return None
    pairs: dict[str, str] = {}
    for item in text[:-2].split(_SEP):
        key, sep, value = item.partition("=")
        if not sep or not _KEY.match(key):
            return None
        pairs.setdefault(key.lower(), value)
    return pairs


def _token_owner(result: object, named: str) -> str | dict[str, Any]:
    """Whom the application says the token belongs to, or the error object to report.

    ``True`` means the identity the client `named`; without one it cannot say
    whom, and is a refusal.
    """
    if isinstance(result, str) and result:
        return result
    if result is True and named:
        return named
    if isinstance(result, dict):
        return result
    if result is True or result is False or result is None:
        return _DEFAULT_ERROR
    raise TypeError(f"answer a TokenCheck with a user name, True, False or a dict, not {result!r}")


class XOAuth2Server(ServerMechanism):
    """XOAUTH2, server side: asks the application with a `TokenCheck`.

    Returns the token's owner, as the application reports it, and the ``user=``
    the client named (the session refuses a mismatch). A refusal of ``False``
    gives a plain ``-ERR``; a ``dict`` is sent first as the error challenge
    (base64 JSON, what Google sends), then ``-ERR``.
    """

    name: ClassVar[str] = "XOAUTH2"
    cleartext: ClassVar[bool] = True

    def exchange(self, initial_response: bytes | None) -> Generator[ServerStep, Any, Identity]:
        message = initial_response
        if message is None:
            message = yield Challenge(b"")
        text = decode_utf8(message, "XOAUTH2 message")
        pairs = _parse_pairs(text)
        username = None if pairs is None else pairs.get("user")
        token = None if pairs is None else _bearer_token(pairs.get("auth"))
        if not username or token is None:
            raise AuthenticationFailed("malformed XOAUTH2 message")
        owner = _token_owner((yield TokenCheck(username, token, self.name)), username)
        if isinstance(owner, str):
            return Identity(owner, username)
        if owner is not _DEFAULT_ERROR:
            yield Challenge(_error_json(owner))  # the client answers with an empty line
        raise AuthenticationFailed(_BAD_TOKEN)


class OAuthBearerServer(ServerMechanism):
    """OAUTHBEARER, server side: asks the application with a `TokenCheck`.

    Returns the token's owner, as the application reports it, and the GS2
    authorization identity (``a=``, optional) the client named; without ``a=``
    the application must name the owner. Any refusal is reported with an error
    challenge (RFC 7628 section 3.2.2): the application's ``dict``, or
    ``{"status":"invalid_token"}``; the client's dummy answer is followed by
    ``-ERR``.
    """

    name: ClassVar[str] = "OAUTHBEARER"
    cleartext: ClassVar[bool] = True

    def exchange(self, initial_response: bytes | None) -> Generator[ServerStep, Any, Identity]:
        message = initial_response
        if message is None:
            message = yield Challenge(b"")
        text = decode_utf8(message, "OAUTHBEARER message")
        gs2_header, sep, rest = text.partition(_SEP)
        fields = gs2_header.split(",")
        if not sep or len(fields) != 3 or fields[2]:
            raise AuthenticationFailed("malformed OAUTHBEARER message")
        flag, authz = fields[0], fields[1]
        if flag.startswith("p="):
            raise AuthenticationFailed("channel binding is not supported")
        if flag not in ("n", "y"):
            raise AuthenticationFailed("malformed OAUTHBEARER message")
        authzid = ""
        if authz:
            decoded = decode_saslname(authz[2:]) if authz[:2] == "a=" else None
            if not decoded:
                raise AuthenticationFailed("malformed OAUTHBEARER authorization identity")
            authzid = decoded
        pairs = _parse_pairs(rest)
        token = None if pairs is None else _bearer_token(pairs.get("auth"))
        if pairs is None or token is None:
            raise AuthenticationFailed("malformed OAUTHBEARER message")
        port_text = pairs.get("port")
        port: int | None = None
        if port_text is not None:
            if not (port_text.isascii() and port_text.isdigit()) or len(port_text) > 5:
                raise AuthenticationFailed("malformed OAUTHBEARER port")
            port = int(port_text)
        result = yield TokenCheck(authzid, token, self.name, pairs.get("host"), port)
        owner = _token_owner(result, authzid)
        if isinstance(owner, str):
            return Identity(owner, authzid)
        yield Challenge(_error_json(owner))  # the client answers with the dummy ^A
        raise AuthenticationFailed(_BAD_TOKEN)
