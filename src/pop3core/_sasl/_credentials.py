"""Credentials as data: what a server knows about a user's password, and users files.

`Credential` holds a plaintext secret, SCRAM stored keys, or a one-way password
hash, says which login methods it can serve, and answers the session's
authentication requests. The users-file functions read and write lines in
Dovecot's passwd-file format, ``user:{SCHEME}data[:uid:gid:gecos:home:shell:extra]``,
for the schemes the standard library can compute; they take and return text,
reading and writing the file is the caller's business.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import overload

from .._base64 import strict_b64decode
from ._base import PasswordCheck, ScramKeysRequest, SecretRequest
from ._saslprep import SASLprepError, saslprep
from ._scram import DEFAULT_SCRAM_ITERATIONS, ScramKeys

__all__ = [
    "HASH_SCHEMES",
    "Credential",
    "PasswdEntry",
    "format_passwd_line",
    "hash_password",
    "parse_passwd_file",
    "parse_passwd_line",
]

# Login methods a plaintext password can serve; a one-way hash serves the ones
# that carry the password itself.
_ALL_METHODS = frozenset(
    {"USER", "PLAIN", "LOGIN", "APOP", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"}
)
_PASSWORD_METHODS = frozenset({"USER", "PLAIN", "LOGIN"})

# Dovecot's plain digests: name -> (hashlib name, digest size, salted).
_DIGESTS = {
    "SHA": ("sha1", 20, False),
    "SHA1": ("sha1", 20, False),
    "SHA256": ("sha256", 32, False),
    "SHA512": ("sha512", 64, False),
    "SSHA": ("sha1", 20, True),
    "SSHA256": ("sha256", 32, True),
    "SSHA512": ("sha512", 64, True),
}
_PLAIN_NAMES = frozenset({"PLAIN", "CLEAR", "CLEARTEXT"})
_SCRAM_NAMES = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256"}
HASH_SCHEMES = frozenset({*_DIGESTS, "PBKDF2", *_SCRAM_NAMES})
"""The one-way schemes this module can check and produce (besides ``PLAIN``)."""

# Dovecot refuses SCRAM entries outside this range (password-scheme-scram.c).
_SCRAM_MIN_ITERATIONS = 4096
_SCRAM_MAX_ITERATIONS = 2**31 - 1
_PBKDF2_DEFAULT_ROUNDS = 5000  # Dovecot's default
_PBKDF2_SALT_CHARS = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SALT_LEN = 4  # Dovecot's SSHA* salts
_HEX = re.compile(r"[0-9a-fA-F]*\Z")
_PBKDF2 = re.compile(r"\$1\$([^$]*)\$([0-9]{1,10})\$([0-9a-fA-F]{40})\Z")


def _split_scheme(value: str) -> tuple[str | None, str | None, str]:
    """``{NAME.ENCODING}data`` -> (NAME upper, ENCODING upper or None, data)."""
    if not value.startswith("{"):
        return None, None, value
    end = value.find("}")
    if end < 0:
        return None, None, value
    scheme = value[1:end].upper()
    name, _, encoding = scheme.partition(".")
    return name, encoding or None, value[end + 1 :]


def _decode_data(data: str, encoding: str | None, raw_length: int) -> bytes:
    """Decode hash data as Dovecot does: a suffix decides, else hex for the exact hex length."""
    guessed = encoding is None
    if encoding is None:
        encoding = "HEX" if raw_length and len(data) == raw_length * 2 else "BASE64"
    if encoding == "HEX":
        if _HEX.match(data) and len(data) % 2 == 0:
            return bytes.fromhex(data)
        if not guessed:
            raise ValueError("invalid hex data in password hash")
        encoding = "BASE64"  # a guess: some lengths fit both encodings
    if encoding in ("B64", "BASE64"):
        decoded = strict_b64decode(data.encode("ascii", "replace"))
        if decoded is None:
            raise ValueError("invalid base64 data in password hash")
        return decoded
    raise ValueError(f"unknown password encoding {encoding!r}")


def _parse_scram(data: str, hash_name: str) -> ScramKeys:
    """Dovecot's ``iterations,salt,stored_key,server_key`` (base64 each)."""
    fields = data.split(",")
    if len(fields) != 4:
        raise ValueError("a SCRAM entry is iterations,salt,stored_key,server_key")
    count = fields[0]
    if not (count.isascii() and count.isdigit()) or len(count) > 10:
        raise ValueError("invalid SCRAM iteration count")
    iterations = int(count)
    if not _SCRAM_MIN_ITERATIONS <= iterations <= _SCRAM_MAX_ITERATIONS:
        raise ValueError(f"SCRAM iteration count {iterations} is below {_SCRAM_MIN_ITERATIONS}")
    salt, stored, server = (strict_b64decode(f.encode("ascii", "replace")) for f in fields[1:])
    size = 20 if hash_name == "sha1" else 32
    if not salt or stored is None or server is None or len(stored) != size:
        raise ValueError("invalid base64 or key length in SCRAM entry")
    return ScramKeys(salt, iterations, stored, server)


def _format_scram(keys: ScramKeys) -> str:
    parts = [keys.salt, keys.stored_key, keys.server_key]
    encoded = ",".join(base64.b64encode(part).decode("ascii") for part in parts)
    return f"{{{keys.mechanism}}}{keys.iterations},{encoded}"


def _digest(hash_name: str, password: bytes, salt: bytes) -> bytes:
    return hashlib.new(hash_name, password + salt).digest()


def _password_candidates(password: str) -> Iterator[bytes]:
    """The password as given, then its SASLprep form if that differs."""
    raw = password.encode("utf-8")
    yield raw
    try:
        prepared = saslprep(password).encode("utf-8")
    except SASLprepError:
        return
    if prepared != raw:
        yield prepared


@dataclass(frozen=True, slots=True)
class Credential:
    """What a server knows about one user's password.

    Any of: ``secret``, the plaintext (serves every method, APOP and CRAM-MD5
    included); ``scram_sha1``/``scram_sha256``, stored SCRAM keys (serve that
    SCRAM mechanism, and password checks); ``password_hash``, a one-way
    ``{SCHEME}data`` value (serves only methods that send the password: USER,
    PLAIN, LOGIN). A hash in a scheme this module cannot compute (say
    ``{SHA512-CRYPT}``) is kept, so it can be written back, but serves nothing.
    """

    secret: str | None = field(default=None, repr=False)
    scram_sha1: ScramKeys | None = None
    scram_sha256: ScramKeys | None = None
    password_hash: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        pairs = ((self.scram_sha1, "SCRAM-SHA-1"), (self.scram_sha256, "SCRAM-SHA-256"))
        for keys, mechanism in pairs:
            if keys is not None and keys.mechanism != mechanism:
                raise ValueError(f"{keys.mechanism} keys given as {mechanism} keys")

    # ----------------------------------------------------------- building

    @classmethod
    def from_password(cls, password: str) -> Credential:
        """A credential holding the plaintext `password`."""
        return cls(secret=password)

    @classmethod
    def parse(cls, value: str) -> Credential:
        """A credential from a Dovecot password field (``{SCHEME}data``).

        ``PLAIN``/``CLEAR``/``CLEARTEXT`` (optionally ``.B64``/``.HEX`` encoded) give
        a secret; ``SCRAM-SHA-1``/``SCRAM-SHA-256`` give stored keys; the other
        known schemes are checked now and kept as ``password_hash``; unknown ones
        (and a value without ``{SCHEME}``) are kept as they are. Raises
        `ValueError` for malformed data of a known scheme.
        """
        name, encoding, data = _split_scheme(value)
        if name in _PLAIN_NAMES:
            if encoding is None:
                return cls(secret=data)
            try:
                return cls(secret=_decode_data(data, encoding, 0).decode("utf-8"))
            except UnicodeDecodeError:
                raise ValueError("the plaintext password is not UTF-8") from None
        if name in _SCRAM_NAMES:
            keys = _parse_scram(data, _SCRAM_NAMES[name])
            if name == "SCRAM-SHA-1":
                return cls(scram_sha1=keys)
            return cls(scram_sha256=keys)
        if name in _DIGESTS:
            _, size, salted = _DIGESTS[name]
            raw = _decode_data(data, encoding, 0 if salted else size)
            if (salted and len(raw) <= size) or (not salted and len(raw) != size):
                raise ValueError(f"{name} data has the wrong length")
        elif name == "PBKDF2" and not _PBKDF2.match(data):
            raise ValueError("a PBKDF2 entry is $1$salt$rounds$hex (40 hex digits)")
        return cls(password_hash=value or None)

    # ----------------------------------------------------------- queries

    @property
    def scheme(self) -> str | None:
        """The scheme of `password_hash` (upper case, no encoding suffix), if any."""
        if self.password_hash is None:
            return None
        return _split_scheme(self.password_hash)[0]

    @property
    def mechanisms(self) -> frozenset[str]:
        """The login methods this credential can serve (SASL names, ``APOP``, ``USER``)."""
        if self.secret is not None:
            return _ALL_METHODS
        methods: set[str] = set()
        if self.scram_sha1 is not None:
            methods |= {"SCRAM-SHA-1", *_PASSWORD_METHODS}
        if self.scram_sha256 is not None:
            methods |= {"SCRAM-SHA-256", *_PASSWORD_METHODS}
        if self.scheme in HASH_SCHEMES:
            methods |= _PASSWORD_METHODS
        return frozenset(methods)

    def scram_keys(self, mechanism: str) -> ScramKeys | None:
        """Stored keys for `mechanism`; derived (fresh salt) from a plaintext secret."""
        mechanism = mechanism.upper()
        keys = {"SCRAM-SHA-1": self.scram_sha1, "SCRAM-SHA-256": self.scram_sha256}.get(mechanism)
        if keys is None and self.secret is not None and mechanism in _SCRAM_NAMES:
            keys = ScramKeys.from_password(self.secret, mechanism)
        return keys

    def verify_password(self, password: str) -> bool:
        """Whether `password` is this user's password (constant-time comparisons).

        The password is tried as given and in its SASLprep form (RFC 4616 asks
        servers to compare prepared strings). One that is not valid Unicode (a
        PASS argument that was not UTF-8 arrives with lone surrogates) matches
        nothing.
        """
        try:
            return self._verify_password(password)
        except UnicodeEncodeError:
            return False

    def _verify_password(self, password: str) -> bool:
        if self.secret is not None:
            stored = list(_password_candidates(self.secret))
            found = False
            for candidate in _password_candidates(password):
                for reference in stored:
                    found |= hmac.compare_digest(candidate, reference)
            return found
        if self.password_hash is not None and self.scheme in HASH_SCHEMES:
            return _verify_hash(self.password_hash, password)
        for keys in (self.scram_sha256, self.scram_sha1):
            if keys is not None:
                return keys.matches_password(password)
        return False

    @overload
    def answer(self, request: PasswordCheck) -> bool: ...
    @overload
    def answer(self, request: SecretRequest) -> str | None: ...
    @overload
    def answer(self, request: ScramKeysRequest) -> ScramKeys | None: ...

    def answer(
        self, request: PasswordCheck | SecretRequest | ScramKeysRequest
    ) -> bool | str | ScramKeys | None:
        """The answer to a session's request about this user.

        A bool for `PasswordCheck`, the secret (or None) for `SecretRequest`,
        `ScramKeys` (or None) for `ScramKeysRequest`: pass it to the matching
        `ServerSession` method.
        """
        if isinstance(request, PasswordCheck):
            return self.verify_password(request.password)
        if isinstance(request, SecretRequest):
            return self.secret
        return self.scram_keys(request.mechanism)

    # ----------------------------------------------------------- writing

    def to_password_field(self) -> str:
        """The Dovecot password field for this credential.

        A secret is written as ``{PLAIN}`` (``{PLAIN.B64}`` if it holds a ``:`` or
        a control character); otherwise the one representation held. Raises
        `ValueError` if there is none, or several that one field cannot hold.
        """
        if self.secret is not None:
            if any(c == ":" or c < " " or c == "\x7f" for c in self.secret):
                encoded = base64.b64encode(self.secret.encode("utf-8")).decode("ascii")
                return "{PLAIN.B64}" + encoded
            return "{PLAIN}" + self.secret
        held = [
            value
            for value in (
                self.password_hash,
                None if self.scram_sha256 is None else _format_scram(self.scram_sha256),
                None if self.scram_sha1 is None else _format_scram(self.scram_sha1),
            )
            if value is not None
        ]
        if len(held) != 1:
            raise ValueError(
                f"a passwd-file line holds exactly one password; this credential has {len(held)}"
            )
        return held[0]


def _verify_hash(value: str, password: str) -> bool:
    name, encoding, data = _split_scheme(value)
    found = False
    for candidate in _password_candidates(password):
        if name == "PBKDF2":
            match = _PBKDF2.match(data)
            if match is None:
                return False
            salt, rounds, key = match.groups()
            computed = hashlib.pbkdf2_hmac("sha1", candidate, salt.encode("utf-8"), int(rounds))
            found |= hmac.compare_digest(computed, bytes.fromhex(key))
        elif name in _DIGESTS:
            hash_name, size, salted = _DIGESTS[name]
            try:
                raw = _decode_data(data, encoding, 0 if salted else size)
            except ValueError:
                return False
            digest, salt = raw[:size], raw[size:]
            found |= hmac.compare_digest(_digest(hash_name, candidate, salt), digest)
    return found


def hash_password(
    password: str,
    scheme: str = "SCRAM-SHA-256",
    *,
    rounds: int | None = None,
    salt: bytes | str | None = None,
) -> str:
    """A Dovecot password field (``{SCHEME}data``) for `password`.

    Schemes: ``SCRAM-SHA-256`` (the default: serves SCRAM-SHA-256, PLAIN, LOGIN
    and USER), ``SCRAM-SHA-1``, ``PBKDF2`` (Dovecot's PBKDF2-HMAC-SHA1), the
    digests ``SSHA512``, ``SHA512``, ``SSHA256``, ``SHA256``, ``SSHA``, ``SHA1``
    (append ``.HEX`` for hex instead of base64), and ``PLAIN``. ``rounds`` is the
    iteration count of SCRAM (default and minimum 4096) and PBKDF2 (default
    5000); ``salt`` is random unless given (a string for PBKDF2, bytes otherwise).
    """
    name, _, encoding = scheme.upper().partition(".")
    if name in _PLAIN_NAMES:
        return Credential(secret=password).to_password_field()
    if name in _SCRAM_NAMES:
        iterations = DEFAULT_SCRAM_ITERATIONS if rounds is None else rounds
        if not _SCRAM_MIN_ITERATIONS <= iterations <= _SCRAM_MAX_ITERATIONS:
            raise ValueError(f"SCRAM needs at least {_SCRAM_MIN_ITERATIONS} iterations")
        salt_bytes = None if salt is None else _salt_bytes(salt)
        keys = ScramKeys.from_password(password, name, salt=salt_bytes, iterations=iterations)
        return _format_scram(keys)
    if name == "PBKDF2":
        count = _PBKDF2_DEFAULT_ROUNDS if rounds is None else rounds
        if not 1 <= count < 10**10:
            raise ValueError("invalid PBKDF2 round count")
        if salt is None:
            salt = "".join(secrets.choice(_PBKDF2_SALT_CHARS) for _ in range(16))
        elif isinstance(salt, bytes):
            salt = salt.decode("ascii")
        if "$" in salt or ":" in salt or not salt.isprintable():
            raise ValueError("a PBKDF2 salt must be printable, without '$' or ':'")
        key = hashlib.pbkdf2_hmac("sha1", password.encode("utf-8"), salt.encode("utf-8"), count)
        return f"{{PBKDF2}}$1${salt}${count}${key.hex()}"
    if name in _DIGESTS:
        if encoding not in ("", "HEX", "B64", "BASE64"):
            raise ValueError(f"unknown password encoding {encoding!r}")
        hash_name, _size, salted = _DIGESTS[name]
        salt_bytes = b""
        if salted:
            salt_bytes = secrets.token_bytes(_SALT_LEN) if salt is None else _salt_bytes(salt)
        raw = _digest(hash_name, password.encode("utf-8"), salt_bytes) + salt_bytes
        if encoding == "HEX":
            return f"{{{name}.HEX}}{raw.hex()}"
        return f"{{{name}}}{base64.b64encode(raw).decode('ascii')}"
    raise ValueError(f"unsupported password scheme {scheme!r}")


def _salt_bytes(salt: bytes | str) -> bytes:
    value = salt.encode("utf-8") if isinstance(salt, str) else bytes(salt)
    if not value:
        raise ValueError("a salt must not be empty")
    return value


# ---------------------------------------------------------------- users files


@dataclass(frozen=True, slots=True)
class PasswdEntry:
    """One line of a Dovecot passwd-file: the user, the credential, and the rest.

    ``uid``, ``gid``, ``gecos``, ``home`` and ``shell`` are kept as text;
    ``extra_fields`` are the space-separated ``key=value`` items of the last field.
    """

    username: str
    credential: Credential
    uid: str = ""
    gid: str = ""
    gecos: str = ""
    home: str = ""
    shell: str = ""
    extra_fields: tuple[str, ...] = ()


def parse_passwd_line(line: str) -> PasswdEntry | None:
    """Parse one line; None for a line Dovecot skips (blank, ``#`` comment, no user name).

    Raises `ValueError` for malformed data in a known password scheme.
    """
    line = line.rstrip("\r\n")
    if not line.strip() or line[0] in "#:":
        return None
    fields = line.split(":", 7)
    fields += [""] * (8 - len(fields))
    username, password, uid, gid, gecos, home, shell, extra = fields
    return PasswdEntry(
        username=username,
        credential=Credential.parse(password) if password else Credential(),
        uid=uid,
        gid=gid,
        gecos=gecos,
        home=home,
        shell=shell,
        extra_fields=tuple(extra.split()),
    )


def parse_passwd_file(text: str) -> dict[str, PasswdEntry]:
    """Parse a whole users file into entries by user name, in file order.

    As in Dovecot, the first line for a user wins. A malformed line raises
    `ValueError` naming its line number.
    """
    entries: dict[str, PasswdEntry] = {}
    for number, line in enumerate(text.splitlines(), 1):
        try:
            entry = parse_passwd_line(line)
        except ValueError as exc:
            raise ValueError(f"line {number}: {exc}") from None
        if entry is not None:
            entries.setdefault(entry.username, entry)
    return entries


def format_passwd_line(entry: PasswdEntry) -> str:
    """The passwd-file line for `entry` (no line ending; empty trailing fields left off)."""
    fields = [
        entry.username,
        entry.credential.to_password_field() if _has_password(entry.credential) else "",
        entry.uid,
        entry.gid,
        entry.gecos,
        entry.home,
        entry.shell,
        " ".join(entry.extra_fields),
    ]
    if not entry.username or entry.username.startswith("#"):
        raise ValueError(f"invalid user name for a passwd-file: {entry.username!r}")
    for value in fields[:7]:
        if ":" in value or "\n" in value or "\r" in value:
            raise ValueError(f"a passwd-file field cannot hold ':' or a line break: {value!r}")
    for item in entry.extra_fields:
        if not item or any(c.isspace() for c in item):
            raise ValueError(f"an extra field cannot be empty or hold spaces: {item!r}")
    while len(fields) > 2 and not fields[-1]:
        fields.pop()
    return ":".join(fields)


def _has_password(credential: Credential) -> bool:
    return any(
        value is not None
        for value in (
            credential.secret,
            credential.scram_sha1,
            credential.scram_sha256,
            credential.password_hash,
        )
    )
