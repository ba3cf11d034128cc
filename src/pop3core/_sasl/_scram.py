"""SCRAM-SHA-1 (RFC 5802) and SCRAM-SHA-256 (RFC 7677), without channel binding.

The server side works from stored keys (`ScramKeys`), so it never needs the
plaintext password; the client side checks the server's signature, so a server
that does not know the keys cannot pretend to.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .._base64 import strict_b64decode
from ._base import (
    AuthenticationFailed,
    Challenge,
    ClientMechanism,
    Identity,
    SASLError,
    ScramKeysRequest,
    ServerMechanism,
    ServerStep,
)
from ._common import (
    decode_saslname,
    encode_saslname,
    make_nonce,
    prepare_password,
    prepare_username,
)

__all__ = [
    "DEFAULT_SCRAM_ITERATIONS",
    "ScramKeys",
    "ScramSHA1Client",
    "ScramSHA1Server",
    "ScramSHA256Client",
    "ScramSHA256Server",
]

DEFAULT_SCRAM_ITERATIONS = 4096
"""The iteration count RFC 5802/7677 call the minimum (and Dovecot's default)."""

_HASHES = {
    "SCRAM-SHA-1": "sha1",
    "SCRAM-SHA-256": "sha256",
    "SHA1": "sha1",
    "SHA-1": "sha1",
    "SHA256": "sha256",
    "SHA-256": "sha256",
}
_DIGEST_SIZES = {"sha1": 20, "sha256": 32}
_BAD_LOGIN = "invalid user name or password"
# nonce chars: printable ASCII except "," (RFC 5802 section 7).
_NONCE_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F)) - {","}


def _hash_name(mechanism: str) -> str:
    name = _HASHES.get(mechanism.upper())
    if name is None:
        raise ValueError(f"not a supported SCRAM mechanism or hash: {mechanism!r}")
    return name


def _hmac(hash_name: str, key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hash_name).digest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _xor(left: bytes, right: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(left, right, strict=True))


def _valid_nonce(nonce: str) -> bool:
    return bool(nonce) and _NONCE_CHARS.issuperset(nonce)


@dataclass(frozen=True, slots=True)
class ScramKeys:
    """What a SCRAM server stores for a user instead of the password (RFC 5802 section 3).

    ``stored_key`` is H(ClientKey) and ``server_key`` is HMAC(SaltedPassword,
    "Server Key"); their length (20 or 32 octets) tells SHA-1 from SHA-256.
    """

    salt: bytes
    iterations: int
    stored_key: bytes = field(repr=False)
    server_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if type(self.iterations) is not int or self.iterations < 1:
            raise ValueError(f"invalid SCRAM iteration count: {self.iterations!r}")
        if not self.salt:
            raise ValueError("a SCRAM salt must not be empty")
        if len(self.stored_key) not in (20, 32) or len(self.server_key) != len(self.stored_key):
            raise ValueError("SCRAM keys must be 20 (SHA-1) or 32 (SHA-256) octets each")

    @property
    def mechanism(self) -> str:
        """The mechanism these keys serve: ``SCRAM-SHA-1`` or ``SCRAM-SHA-256``."""
        return "SCRAM-SHA-1" if len(self.stored_key) == 20 else "SCRAM-SHA-256"

    @property
    def hash_name(self) -> str:
        """The `hashlib` name of the hash function (``sha1`` or ``sha256``)."""
        return "sha1" if len(self.stored_key) == 20 else "sha256"

    @classmethod
    def from_password(
        cls,
        password: str | bytes,
        mechanism: str = "SCRAM-SHA-256",
        *,
        salt: bytes | None = None,
        iterations: int = DEFAULT_SCRAM_ITERATIONS,
    ) -> ScramKeys:
        """Derive the keys of `password` (SASLprep applied, RFC 5802 section 2.2).

        ``mechanism`` is ``SCRAM-SHA-1`` or ``SCRAM-SHA-256`` (``sha1``/``sha256``
        also work); the salt is 16 random octets unless given.
        """
        hash_name = _hash_name(mechanism)
        if salt is None:
            salt = secrets.token_bytes(16)
        salted = hashlib.pbkdf2_hmac(hash_name, prepare_password(password), salt, iterations)
        client_key = _hmac(hash_name, salted, b"Client Key")
        return cls(
            salt=salt,
            iterations=iterations,
            stored_key=hashlib.new(hash_name, client_key).digest(),
            server_key=_hmac(hash_name, salted, b"Server Key"),
        )

    def matches_password(self, password: str | bytes) -> bool:
        """Whether `password` gives these keys (checked in constant time)."""
        candidates = [prepare_password(password)]
        if isinstance(password, str) and password.encode("utf-8") != candidates[0]:
            # Keys made without SASLprep (Dovecot's own) match the raw UTF-8.
            candidates.append(password.encode("utf-8"))
        hash_name = self.hash_name
        found = False
        for candidate in candidates:
            salted = hashlib.pbkdf2_hmac(hash_name, candidate, self.salt, self.iterations)
            client_key = _hmac(hash_name, salted, b"Client Key")
            stored = hashlib.new(hash_name, client_key).digest()
            found |= hmac.compare_digest(stored, self.stored_key)
        return found


# ---------------------------------------------------------------- client


class _ScramClient(ClientMechanism):
    _hash: ClassVar[str]

    def __init__(
        self,
        username: str,
        password: str | bytes,
        *,
        authzid: str = "",
        nonce: str | None = None,
        min_iterations: int = DEFAULT_SCRAM_ITERATIONS,
        max_iterations: int = 10_000_000,
    ) -> None:
        user = prepare_username(username)
        if nonce is None:
            nonce = make_nonce()
        elif not _valid_nonce(nonce):
            raise ValueError("a SCRAM nonce is printable ASCII without ','")
        self._password = prepare_password(password)
        self._nonce = nonce
        self._min_iterations = min_iterations
        self._max_iterations = max_iterations
        authz = f"a={encode_saslname(prepare_username(authzid))}" if authzid else ""
        self._gs2_header = f"n,{authz},"
        self._first_bare = f"n={encode_saslname(user)},r={nonce}"
        self._step = 0
        self._server_signature: bytes | None = None
        self.server_verified = False
        """True once the server proved it knows the keys (its final message)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<credentials hidden>)"

    def initial_response(self) -> bytes:
        return (self._gs2_header + self._first_bare).encode("utf-8")

    def respond(self, challenge: bytes) -> bytes:
        step = self._step
        self._step += 1
        if step == 0:
            return self._client_final(challenge)
        if step == 1:
            self._verify_server(challenge)
            return b""
        raise SASLError(f"{self.name} got more challenges than it has answers")

    def _client_final(self, challenge: bytes) -> bytes:
        hash_name = self._hash
        try:
            server_first = challenge.decode("utf-8")
        except UnicodeDecodeError:
            raise SASLError("the server's first SCRAM message is not UTF-8") from None
        attributes = server_first.split(",")
        if attributes[0].startswith("e="):
            raise SASLError(f"the SCRAM server reported an error: {attributes[0][2:]}")
        if attributes[0].startswith("m="):
            raise SASLError("the SCRAM server demands an extension this client lacks")
        if len(attributes) < 3 or [a[:2] for a in attributes[:3]] != ["r=", "s=", "i="]:
            raise SASLError("malformed server-first SCRAM message")
        nonce = attributes[0][2:]
        salt = strict_b64decode(attributes[1][2:].encode("ascii", "replace"))
        count = attributes[2][2:]
        if not _valid_nonce(nonce) or not nonce.startswith(self._nonce):
            raise SASLError("the SCRAM server's nonce does not extend ours")
        if len(nonce) == len(self._nonce):
            raise SASLError("the SCRAM server added nothing to the nonce")
        if not salt:
            raise SASLError("invalid salt in the server-first SCRAM message")
        if not (count.isascii() and count.isdigit()) or len(count) > 10:
            raise SASLError("invalid iteration count in the server-first SCRAM message")
        iterations = int(count)
        if not self._min_iterations <= iterations <= self._max_iterations:
            raise SASLError(
                f"the SCRAM iteration count {iterations} is outside "
                f"{self._min_iterations}..{self._max_iterations}"
            )
        channel_binding = _b64(self._gs2_header.encode("utf-8"))
        without_proof = f"c={channel_binding},r={nonce}"
        auth_message = f"{self._first_bare},{server_first},{without_proof}".encode()
        salted = hashlib.pbkdf2_hmac(hash_name, self._password, salt, iterations)
        client_key = _hmac(hash_name, salted, b"Client Key")
        stored_key = hashlib.new(hash_name, client_key).digest()
        proof = _xor(client_key, _hmac(hash_name, stored_key, auth_message))
        server_key = _hmac(hash_name, salted, b"Server Key")
        self._server_signature = _hmac(hash_name, server_key, auth_message)
        return f"{without_proof},p={_b64(proof)}".encode()

    def _verify_server(self, challenge: bytes) -> None:
        expected = self._server_signature
        assert expected is not None
        final = challenge.decode("ascii", "replace")
        first = final.split(",", 1)[0]
        if first.startswith("e="):
            raise SASLError(f"the SCRAM server reported an error: {first[2:]}")
        signature = strict_b64decode(first[2:].encode("ascii")) if first[:2] == "v=" else None
        if signature is None or not hmac.compare_digest(signature, expected):
            raise SASLError("the SCRAM server's signature is wrong: it does not know the keys")
        self.server_verified = True

    def finish(self) -> None:
        if not self.server_verified:
            raise SASLError(f"+OK arrived before the {self.name} server proved its identity")


class ScramSHA1Client(_ScramClient):
    """SCRAM-SHA-1, client side (gs2 header ``n,,``: no channel binding)."""

    name: ClassVar[str] = "SCRAM-SHA-1"
    _hash: ClassVar[str] = "sha1"


class ScramSHA256Client(_ScramClient):
    """SCRAM-SHA-256, client side (gs2 header ``n,,``: no channel binding)."""

    name: ClassVar[str] = "SCRAM-SHA-256"
    _hash: ClassVar[str] = "sha256"


# ---------------------------------------------------------------- server


class _ScramServer(ServerMechanism):
    _hash: ClassVar[str]

    def __init__(self, *, nonce: str | None = None) -> None:
        if nonce is not None and not _valid_nonce(nonce):
            raise ValueError("a SCRAM nonce is printable ASCII without ','")
        self._fixed_nonce = nonce
        # Keyed salts for unknown users, stable for this server object, so that a
        # client cannot tell "no such user" from "wrong password" (RFC 5802 s. 9).
        self._decoy_key = secrets.token_bytes(32)

    def _decoy_keys(self, username: str) -> ScramKeys:
        size = _DIGEST_SIZES[self._hash]
        salt = hmac.new(self._decoy_key, username.encode("utf-8"), "sha256").digest()[:16]
        return ScramKeys(
            salt, DEFAULT_SCRAM_ITERATIONS, secrets.token_bytes(size), secrets.token_bytes(size)
        )

    def exchange(self, initial_response: bytes | None) -> Generator[ServerStep, Any, Identity]:
        hash_name = self._hash
        message = initial_response
        if message is None:
            message = yield Challenge(b"")
        try:
            client_first = message.decode("utf-8")
        except UnicodeDecodeError:
            raise AuthenticationFailed("invalid UTF-8 in the SCRAM message") from None

        # gs2-header = gs2-cbind-flag "," [authzid] ","
        flag, sep1, rest = client_first.partition(",")
        authz_field, sep2, first_bare = rest.partition(",")
        if not (sep1 and sep2):
            raise AuthenticationFailed("malformed client-first SCRAM message")
        if flag.startswith("p="):
            raise AuthenticationFailed("channel binding is not supported")
        if flag not in ("n", "y"):
            raise AuthenticationFailed("malformed client-first SCRAM message")
        gs2_header = client_first[: len(flag) + len(authz_field) + 2]
        authzid = ""
        if authz_field:
            decoded = decode_saslname(authz_field[2:]) if authz_field[:2] == "a=" else None
            if not decoded:
                raise AuthenticationFailed("malformed authorization identity in SCRAM")
            authzid = decoded

        attributes = first_bare.split(",")
        if attributes[0].startswith("m="):
            raise AuthenticationFailed("unsupported mandatory SCRAM extension")
        if len(attributes) < 2 or attributes[0][:2] != "n=" or attributes[1][:2] != "r=":
            raise AuthenticationFailed("malformed client-first SCRAM message")
        raw_username = decode_saslname(attributes[0][2:])
        client_nonce = attributes[1][2:]
        if not raw_username or not _valid_nonce(client_nonce):
            raise AuthenticationFailed("malformed client-first SCRAM message")
        try:
            username = prepare_username(raw_username)
        except SASLError:
            raise AuthenticationFailed("the SCRAM user name cannot be prepared") from None

        keys = yield ScramKeysRequest(username, self.name)
        known = keys is not None
        if keys is None:
            keys = self._decoy_keys(username)
        elif not isinstance(keys, ScramKeys):
            raise TypeError(f"answer a ScramKeysRequest with ScramKeys or None, not {keys!r}")
        elif len(keys.stored_key) != _DIGEST_SIZES[hash_name]:
            raise ValueError(f"the ScramKeys given are {keys.mechanism} keys, not {self.name}")

        nonce = client_nonce + (self._fixed_nonce or make_nonce())
        server_first = f"r={nonce},s={_b64(keys.salt)},i={keys.iterations}"
        response = yield Challenge(server_first.encode("ascii"))

        try:
            client_final = response.decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed("malformed client-final SCRAM message") from None
        without_proof, _, proof_field = client_final.rpartition(",")
        attributes = without_proof.split(",")
        if (
            proof_field[:2] != "p="
            or len(attributes) < 2
            or attributes[0][:2] != "c="
            or attributes[1][:2] != "r="
        ):
            raise AuthenticationFailed("malformed client-final SCRAM message")
        if strict_b64decode(attributes[0][2:].encode()) != gs2_header.encode("utf-8"):
            raise AuthenticationFailed("SCRAM channel binding data does not match")
        if attributes[1][2:] != nonce:
            raise AuthenticationFailed("SCRAM nonce mismatch")
        proof = strict_b64decode(proof_field[2:].encode())
        if proof is None or len(proof) != len(keys.stored_key):
            raise AuthenticationFailed("malformed SCRAM client proof")

        auth_message = f"{first_bare},{server_first},{without_proof}".encode()
        client_key = _xor(proof, _hmac(hash_name, keys.stored_key, auth_message))
        computed = hashlib.new(hash_name, client_key).digest()
        if not (hmac.compare_digest(computed, keys.stored_key) and known):
            raise AuthenticationFailed(_BAD_LOGIN)

        signature = _hmac(hash_name, keys.server_key, auth_message)
        last = yield Challenge(b"v=" + _b64(signature).encode("ascii"))
        if last:
            raise AuthenticationFailed("unexpected data after the SCRAM exchange")
        return Identity(username, authzid)


class ScramSHA1Server(_ScramServer):
    """SCRAM-SHA-1, server side: asks for stored keys with a `ScramKeysRequest`."""

    name: ClassVar[str] = "SCRAM-SHA-1"
    _hash: ClassVar[str] = "sha1"


class ScramSHA256Server(_ScramServer):
    """SCRAM-SHA-256, server side: asks for stored keys with a `ScramKeysRequest`."""

    name: ClassVar[str] = "SCRAM-SHA-256"
    _hash: ClassVar[str] = "sha256"
