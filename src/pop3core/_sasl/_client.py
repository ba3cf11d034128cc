"""Client-side SASL driving: which login method to use, and one AUTH exchange.

Both are pure: `choose_login_method` looks at what the server announced, and
`AuthExchange` turns received events into the events to send. An adapter's
login is then "send `start()`, feed each reply to `receive()`, send what it
returns".
"""

from __future__ import annotations

import binascii

from .._capabilities import Capabilities
from .._events import (
    Auth,
    AuthCancel,
    AuthChallenge,
    AuthResponse,
    ErrResponse,
    OkResponse,
)
from .._limits import MAX_COMMAND_LINE
from .._protocol_errors import LocalProtocolError, RemoteProtocolError
from ._base import ClientMechanism, SASLError

__all__ = [
    "AuthExchange",
    "LoginMethodUnavailable",
    "choose_login_method",
    "initial_response_fits",
]

_PASSWORD_METHODS = ("SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "APOP", "PLAIN", "LOGIN", "USER")
_TOKEN_METHODS = ("OAUTHBEARER", "XOAUTH2")
# Methods that hand the server a reusable secret (a password or a bearer token).
_CLEARTEXT_METHODS = frozenset({"PLAIN", "LOGIN", "USER", "XOAUTH2", "OAUTHBEARER"})


class LoginMethodUnavailable(Exception):
    """No login method fits what the server offers, the connection and the credentials."""


def choose_login_method(
    capabilities: Capabilities | None,
    apop_timestamp: bytes | None,
    *,
    tls_active: bool,
    allow_cleartext: bool = False,
    have_password: bool = True,
    have_token: bool = False,
    method: str | None = None,
) -> str:
    """The login method to use: a SASL mechanism name, ``"APOP"`` or ``"USER"``.

    With a password the strongest offered wins: SCRAM-SHA-256, SCRAM-SHA-1,
    CRAM-MD5, APOP (when the greeting has a timestamp), then PLAIN, LOGIN and
    USER, which reveal the password and so are chosen only over TLS or when
    ``allow_cleartext`` is set. With a token (``have_token``): OAUTHBEARER, then
    XOAUTH2, also only over TLS unless allowed. ``capabilities`` is the CAPA
    reply (None without one: then no SASL is tried, as RFC 5034 advises, and
    USER is assumed available).

    ``method`` asks for one method by name (RFC 2384's ``;AUTH=``); it is checked
    rather than replaced by another. Raises `LoginMethodUnavailable` with the
    reason when nothing fits.
    """
    secure = tls_active or allow_cleartext
    sasl = frozenset(capabilities.sasl) if capabilities is not None else frozenset()

    def offered(name: str) -> bool:
        if name == "APOP":
            return apop_timestamp is not None
        if name == "USER":
            return capabilities is None or capabilities.user
        return name in sasl

    if method is not None:
        name = method.upper()
        # A named SASL mechanism is tried even without CAPA: the caller insists.
        if not offered(name) and not (capabilities is None and name not in ("APOP", "USER")):
            raise LoginMethodUnavailable(f"the server does not offer {name}")
        if name in _CLEARTEXT_METHODS and not secure:
            raise LoginMethodUnavailable(
                f"{name} would reveal the credentials without TLS (use STLS or implicit TLS)"
            )
        if name in _TOKEN_METHODS and not have_token:
            raise LoginMethodUnavailable(f"{name} needs an OAuth 2.0 token")
        if name in _PASSWORD_METHODS and not have_password:
            raise LoginMethodUnavailable(f"{name} needs a password")
        return name

    candidates: list[str] = []
    if have_token:
        candidates.extend(_TOKEN_METHODS)
    if have_password:
        candidates.extend(_PASSWORD_METHODS)
    if not candidates:
        raise LoginMethodUnavailable("no credentials to log in with")
    refused: list[str] = []
    for name in candidates:
        if not offered(name):
            continue
        if name in _CLEARTEXT_METHODS and not secure:
            refused.append(name)
            continue
        return name
    if refused:
        raise LoginMethodUnavailable(
            "the server offers only methods that reveal the credentials without TLS "
            f"({', '.join(refused)}); use TLS, or allow cleartext logins"
        )
    offered_names = sorted(sasl) + (["APOP"] if apop_timestamp is not None else [])
    raise LoginMethodUnavailable(
        "no login method in common with the server"
        + (f" (it offers {', '.join(offered_names)})" if offered_names else "")
    )


def initial_response_fits(mechanism: str, initial_response: bytes) -> bool:
    """Whether ``AUTH mechanism initial-response CRLF`` fits in 255 octets (RFC 5034 s. 4)."""
    encoded = binascii.b2a_base64(initial_response, newline=False) or b"="
    return len(b"AUTH ") + len(mechanism) + 1 + len(encoded) + 2 <= MAX_COMMAND_LINE


class AuthExchange:
    """One client SASL exchange with `mechanism`, from ``AUTH`` to ``+OK``/``-ERR``.

    `start` gives the `Auth` command. The initial response goes on the AUTH
    line only if the server announced SASL in `capabilities` and the line fits
    in 255 octets (RFC 5034 section 4); otherwise it answers the server's empty
    challenge (this two-step form is what Office 365 needs for XOAUTH2).

    Feed every reply event to `receive`: a challenge gives the `AuthResponse` to
    send, or `AuthCancel` when the challenge is not valid base64 or the
    mechanism gives up (the reason is kept in `error`); ``+OK`` calls the
    mechanism's ``finish()``, which raises `SASLError` if the server was not
    authenticated (SCRAM): then close the connection, the server thinks the
    login succeeded. ``strict=False`` tolerates a non-empty first challenge
    where the empty one was due.
    """

    def __init__(
        self,
        mechanism: ClientMechanism,
        capabilities: Capabilities | None,
        *,
        strict: bool = True,
    ) -> None:
        self.mechanism = mechanism
        self.capabilities = capabilities
        self.strict = strict
        self.done = False
        """The server has given its final reply."""
        self.succeeded = False
        """The final reply was ``+OK`` and the mechanism's ``finish()`` accepted it."""
        self.cancelled = False
        """We sent ``*``."""
        self.error: SASLError | None = None
        """Why we cancelled, if we did."""
        self.reply: OkResponse | ErrResponse | None = None
        """The server's final reply."""
        self._started = False
        self._initial: bytes | None = None
        self._initial_pending = False

    def start(self) -> Auth:
        """The AUTH command to send (once)."""
        if self._started:
            raise LocalProtocolError("this AUTH exchange has already started")
        self._started = True
        name = self.mechanism.name
        initial = self.mechanism.initial_response()
        self._initial = initial
        capabilities = self.capabilities
        if (
            initial is not None
            and capabilities is not None
            and capabilities.sasl
            and initial_response_fits(name, initial)
        ):
            return Auth(name, initial)
        self._initial_pending = initial is not None
        return Auth(name)

    def receive(
        self, event: AuthChallenge | OkResponse | ErrResponse
    ) -> AuthResponse | AuthCancel | None:
        """Take the server's next event; return the event to send, if any."""
        if not self._started or self.done:
            raise LocalProtocolError("no AUTH exchange is waiting for the server")
        kind = type(event)
        if kind is AuthChallenge:
            assert isinstance(event, AuthChallenge)
            return self._challenge(event)
        if kind is OkResponse or kind is ErrResponse:
            assert isinstance(event, (OkResponse, ErrResponse))
            self.done = True
            self.reply = event
            if kind is ErrResponse:
                return None
            try:
                if self.cancelled:
                    raise SASLError("the server accepted an exchange we cancelled")
                self.mechanism.finish()
            except SASLError as exc:
                self.error = exc
                raise
            self.succeeded = True
            return None
        raise LocalProtocolError(f"{kind.__name__} is not part of an AUTH exchange")

    def _challenge(self, event: AuthChallenge) -> AuthResponse | AuthCancel:
        if self.cancelled:
            raise RemoteProtocolError("a challenge after the client cancelled; -ERR was due")
        if not event.valid:
            return self._cancel(SASLError("the server's challenge is not valid base64"))
        if self._initial_pending:
            self._initial_pending = False
            if event.data and self.strict:
                return self._cancel(
                    SASLError("the server sent data where the empty challenge was due")
                )
            assert self._initial is not None
            return AuthResponse(self._initial)
        try:
            return AuthResponse(self.mechanism.respond(event.data))
        except SASLError as exc:
            return self._cancel(exc)

    def _cancel(self, error: SASLError) -> AuthCancel:
        self.error = error
        self.cancelled = True
        return AuthCancel()
