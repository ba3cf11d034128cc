"""Small helpers shared by the mechanisms."""

from __future__ import annotations

import secrets

from ._base import AuthenticationFailed, SASLError
from ._saslprep import SASLprepError, saslprep

__all__ = [
    "decode_saslname",
    "decode_utf8",
    "encode_saslname",
    "make_nonce",
    "prepare_password",
    "prepare_username",
    "to_bytes",
]


def to_bytes(value: str | bytes) -> bytes:
    """A secret as bytes: a ``str`` is encoded as UTF-8."""
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def decode_utf8(data: bytes, what: str) -> str:
    """Decode a client's message strictly; invalid UTF-8 fails the login."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise AuthenticationFailed(f"invalid UTF-8 in the {what}") from None


def encode_saslname(name: str) -> str:
    """Escape ``,`` and ``=`` for a GS2/SCRAM ``saslname`` (RFC 5802 section 5.1)."""
    return name.replace("=", "=3D").replace(",", "=2C")


def decode_saslname(value: str) -> str | None:
    """Undo `encode_saslname`; None if an ``=`` is not followed by ``2C`` or ``3D``."""
    if "=" not in value:
        return value
    out: list[str] = []
    i = 0
    while i < len(value):
        char = value[i]
        if char == "=":
            escape = value[i + 1 : i + 3]
            if escape == "2C":
                out.append(",")
            elif escape == "3D":
                out.append("=")
            else:
                return None
            i += 3
        else:
            out.append(char)
            i += 1
    return "".join(out)


def make_nonce() -> str:
    """A fresh random nonce of printable characters without ``,`` (24 characters)."""
    return secrets.token_urlsafe(18)


def prepare_username(username: str) -> str:
    """SASLprep a user name as a query (RFC 5802 section 5.1); SASLError if impossible."""
    try:
        prepared = saslprep(username, allow_unassigned=True)
    except SASLprepError as exc:
        raise SASLError(f"the user name cannot be prepared: {exc}") from None
    if not prepared:
        raise SASLError("the user name is empty")
    return prepared


def prepare_password(password: str | bytes) -> bytes:
    """The SCRAM ``Normalize(password)`` (RFC 5802 section 2.2) as UTF-8 bytes.

    SASLprep with stored-string semantics; a password SASLprep refuses is used
    as it is (what PostgreSQL does), and ``bytes`` are used as they are. Client
    and server keys both go through this function, so they always agree.
    """
    if isinstance(password, bytes):
        return password
    try:
        return saslprep(password).encode("utf-8")
    except SASLprepError:
        return password.encode("utf-8")
