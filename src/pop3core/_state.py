"""The POP3 session state machine, one set of rules for both roles.

Two rules for this module, borrowed from h11: everything that decides which
command is legal and where a response leads lives here; and nothing here knows
which role we play. A client and a server fed the same exchanges end in the
same state, which the tests check after every exchange.

A session is in one `State` (the RFC 1939 states, plus STARTING_TLS, CLOSED and
ERROR). Within it, each command is an exchange; `Exchange` says who is to speak.
"""

from __future__ import annotations

import enum

from ._events import (
    Apop,
    Auth,
    Capa,
    Command,
    Dele,
    Lang,
    List,
    Noop,
    Pass,
    Quit,
    RawCommand,
    Retr,
    Rset,
    Stat,
    Stls,
    Top,
    Uidl,
    User,
    Utf8,
)

__all__ = ["Exchange", "Role", "SessionState", "State"]


class Role(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


class State(enum.Enum):
    """Where the session is, as both peers see it once an exchange completes."""

    GREETING = "GREETING"
    """The server has not greeted yet."""
    AUTHORIZATION = "AUTHORIZATION"
    TRANSACTION = "TRANSACTION"
    UPDATE = "UPDATE"
    """QUIT arrived in TRANSACTION; the server is committing deletions."""
    STARTING_TLS = "STARTING_TLS"
    """``+OK`` to STLS was sent: nothing more until the adapter reports TLS is up."""
    CLOSED = "CLOSED"
    ERROR = "ERROR"


class Exchange(enum.Enum):
    """Who speaks next within the current command's exchange."""

    IDLE = "IDLE"
    """No command is outstanding; the client may send one."""
    RESPONSE = "RESPONSE"
    """The server owes a status line (or the greeting)."""
    DATA = "DATA"
    """The server is sending a multi-line body."""
    SASL = "SASL"
    """The server sent a SASL challenge; the client owes a response line."""


# Which commands each state allows (RFC 1939, 2449, 2595, 5034, 6856).
_AUTHORIZATION_COMMANDS: frozenset[type[Command]] = frozenset(
    {User, Pass, Apop, Auth, Stls, Capa, Utf8, Lang, Quit}
)
_TRANSACTION_COMMANDS: frozenset[type[Command]] = frozenset(
    {Stat, List, Retr, Dele, Noop, Rset, Top, Uidl, Capa, Lang, Quit}
)
ALLOWED_COMMANDS: dict[State, frozenset[type[Command]]] = {
    State.AUTHORIZATION: _AUTHORIZATION_COMMANDS,
    State.TRANSACTION: _TRANSACTION_COMMANDS,
}

# Commands after which the client must wait for the whole exchange (and, for
# STLS, the TLS handshake) before sending anything else.
BARRIER_COMMANDS: frozenset[type[Command]] = frozenset({Stls, Auth, Quit})


class SessionState:
    """The state of one session; a client and a server each keep one.

    ``user_accepted`` is true only right after ``+OK`` to USER: RFC 1939 allows
    PASS only immediately after it, so any other exchange clears it.
    """

    __slots__ = ("authenticated", "state", "tls_active", "user_accepted", "utf8_active")

    def __init__(self, *, tls_active: bool = False) -> None:
        self.state = State.GREETING
        self.user_accepted = False
        self.tls_active = tls_active
        self.utf8_active = False
        self.authenticated = False

    def copy(self) -> SessionState:
        new = SessionState.__new__(SessionState)
        new.state = self.state
        new.user_accepted = self.user_accepted
        new.tls_active = self.tls_active
        new.utf8_active = self.utf8_active
        new.authenticated = self.authenticated
        return new

    def refusal(self, command: Command) -> str | None:
        """Why `command` is not allowed now, or None if it is (the text of the -ERR)."""
        kind = type(command)
        if kind is RawCommand:
            return None
        allowed = ALLOWED_COMMANDS.get(self.state)
        if allowed is None:
            return f"no command is allowed in state {self.state.value}"
        if kind not in allowed:
            if self.state is State.AUTHORIZATION:
                return "log in first"
            if kind in _AUTHORIZATION_COMMANDS:
                return "already authenticated"
            return "command not valid in this state"
        if kind is Pass and not self.user_accepted:
            return "send USER first"
        if kind is Stls:
            if self.tls_active:
                return "TLS is already active"
            if self.utf8_active:
                return "STLS is not allowed after UTF8"
        return None

    def command_started(self, command: Command) -> None:
        """Apply what a command does on its own, before any response."""
        if type(command) is not Pass:
            self.user_accepted = False
        if type(command) is Quit and self.state is State.TRANSACTION:
            self.state = State.UPDATE

    def greeted(self, ok: bool) -> None:
        self.state = State.AUTHORIZATION if ok else State.CLOSED

    def command_finished(self, command: Command, ok: bool) -> None:
        """Apply the outcome of an exchange: `ok` is the final ``+OK``/``-ERR``."""
        kind = type(command)
        self.user_accepted = False
        if kind is Quit:
            self.state = State.CLOSED
        elif not ok or self.state is not State.AUTHORIZATION:
            return
        elif kind is User:
            self.user_accepted = True
        elif kind is Pass or kind is Apop or (isinstance(command, Auth) and command.mechanism):
            self.state = State.TRANSACTION
            self.authenticated = True
        elif kind is Stls:
            self.state = State.STARTING_TLS
        elif kind is Utf8:
            self.utf8_active = True

    def tls_started(self) -> None:
        """TLS is up after STLS: AUTHORIZATION starts afresh (RFC 2595 section 4)."""
        self.state = State.AUTHORIZATION
        self.tls_active = True
        self.user_accepted = False
