"""The POP3 session state machine as tables: one set of rules for both roles.

Two rules for this module, borrowed from h11: everything that decides which
command is legal and where an exchange leads lives here, as data; and nothing
here knows which role we play. A client and a server fed the same exchanges end
in the same state, which the tests check after every exchange.

Two machines run side by side:

* the **session** (`State`: the RFC 1939 states, plus STARTING_TLS, CLOSED and
  ERROR, and four flags), moved by what happens to whole commands
  (`SESSION_TRANSITIONS`, applied by `SessionState.apply`);
* the **exchange** (`Exchange`: who is to speak next within the current
  command), moved by each step of a reply (`EXCHANGE_TRANSITIONS`, applied by
  `next_exchange`).

Read the two tables below first: they are the protocol.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

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

__all__ = [
    "ALLOWED_COMMANDS",
    "BARRIER_COMMANDS",
    "EXCHANGE_TRANSITIONS",
    "SESSION_TRANSITIONS",
    "STATE_CHANGING",
    "AuthListing",
    "Exchange",
    "Outcome",
    "Role",
    "SessionState",
    "Signal",
    "State",
    "Step",
    "Transition",
    "Unparsed",
    "next_exchange",
    "trigger",
]


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


# ------------------------------------------------------------ the session table


class Outcome(enum.Enum):
    """What happened to a command: the session table is keyed by it."""

    SENT = "sent"
    """The command was sent (client) or read (server); no reply yet."""
    OK = "+OK"
    """Its exchange ended with ``+OK`` (after the body, if any)."""
    ERR = "-ERR"
    """Its exchange ended with ``-ERR``."""


class Signal(enum.Enum):
    """What moves the session besides a command."""

    GREETED = "greeting +OK"
    REFUSED = "greeting -ERR"
    TLS_ESTABLISHED = "TLS handshake done (after STLS)"


class AuthListing(Command):
    """The key of a bare ``AUTH`` (the de facto mechanism listing) in the tables.

    It is not a login: only ``AUTH <mechanism>`` (the key `Auth`) is.
    """

    __slots__ = ()


Trigger = tuple[type[Command], Outcome] | Signal


class Transition(NamedTuple):
    """A row's result: the new state, and the flags it sets."""

    state: State
    sets: frozenset[str] = frozenset()


OK, ERR, SENT = Outcome.OK, Outcome.ERR, Outcome.SENT
_LOGGED_IN = Transition(State.TRANSACTION, frozenset({"authenticated"}))

SESSION_TRANSITIONS: dict[State, dict[Trigger, Transition]] = {
    State.GREETING: {
        Signal.GREETED: Transition(State.AUTHORIZATION),
        Signal.REFUSED: Transition(State.CLOSED),
    },
    State.AUTHORIZATION: {
        (User, OK): Transition(State.AUTHORIZATION, frozenset({"user_accepted"})),
        (Pass, OK): _LOGGED_IN,
        (Apop, OK): _LOGGED_IN,
        (Auth, OK): _LOGGED_IN,
        (Stls, OK): Transition(State.STARTING_TLS),
        (Utf8, OK): Transition(State.AUTHORIZATION, frozenset({"utf8_active"})),
        (Quit, OK): Transition(State.CLOSED),
        (Quit, ERR): Transition(State.CLOSED),
    },
    State.STARTING_TLS: {
        Signal.TLS_ESTABLISHED: Transition(State.AUTHORIZATION, frozenset({"tls_active"})),
    },
    State.TRANSACTION: {
        (Quit, SENT): Transition(State.UPDATE),
    },
    State.UPDATE: {
        (Quit, OK): Transition(State.CLOSED),
        (Quit, ERR): Transition(State.CLOSED),
    },
}
"""state -> {trigger: transition}. A trigger with no row leaves the state alone.

One rule is not a row, because it concerns every row: ``user_accepted`` (PASS
may follow) holds only right after ``+OK`` to USER, as RFC 1939 says
("immediately after"): any other command started, and any exchange ended,
clears it before the row applies.
"""


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


class Unparsed(Command):
    """The key of a line the server refused as a command (a `BadCommand`)."""

    __slots__ = ()


def trigger(command: Command | None, outcome: Outcome) -> tuple[type[Command], Outcome]:
    """The table key for `outcome` of `command` (None: a line that was not one)."""
    if command is None:
        return Unparsed, outcome
    if isinstance(command, Auth) and command.mechanism is None:
        return AuthListing, outcome
    return type(command), outcome


# Commands whose success changes the session: a client that pipelines replays
# its prediction when one of them fails.
STATE_CHANGING: frozenset[type[Command]] = frozenset(
    kind
    for rows in SESSION_TRANSITIONS.values()
    for key in rows
    if isinstance(key, tuple)
    for kind, outcome in [key]
    if outcome is Outcome.OK
)


class SessionState:
    """The state of one session; a client and a server each keep one.

    ``user_accepted``: PASS may follow (see `SESSION_TRANSITIONS`);
    ``tls_active``, ``utf8_active``: TLS and UTF-8 mode are on;
    ``authenticated``: a login succeeded.
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

    def apply(self, key: Trigger) -> None:
        """Move by one row of `SESSION_TRANSITIONS` (or stay, if there is none)."""
        if type(key) is tuple and key != (Pass, SENT):
            self.user_accepted = False
        row = SESSION_TRANSITIONS.get(self.state, {}).get(key)
        if row is not None:
            self.state = row.state
            for flag in row.sets:
                setattr(self, flag, True)

    def refusal(self, command: Command) -> str | None:
        """Why `command` is not allowed now, or None if it is (the text of the -ERR)."""
        kind = type(command)
        if kind is RawCommand:
            return None
        allowed = ALLOWED_COMMANDS.get(self.state)
        if allowed is None:
            return f"no command is allowed in state {self.state.value}"
        if kind not in allowed:
            # Every command is allowed in AUTHORIZATION or in TRANSACTION.
            return "log in first" if self.state is State.AUTHORIZATION else "already authenticated"
        if kind is Pass and not self.user_accepted:
            return "send USER first"
        if kind is Stls:
            if self.tls_active:
                return "TLS is already active"
            if self.utf8_active:
                return "STLS is not allowed after UTF8"
        return None


# ------------------------------------------------------------ the exchange table


class Step(enum.Enum):
    """A step within an exchange: the exchange table is keyed by it."""

    COMMAND = "a command line"
    GREETING = "the greeting (+OK or -ERR)"
    OK = "+OK, no body follows"
    OK_BODY = "+OK, a multi-line body follows"
    ERR = "-ERR"
    CHALLENGE = "+ challenge"
    SASL_RESPONSE = "a SASL response line (or *)"
    END = "the terminating ."


EXCHANGE_TRANSITIONS: dict[Exchange, dict[Step, Exchange]] = {
    Exchange.IDLE: {Step.COMMAND: Exchange.RESPONSE},
    Exchange.RESPONSE: {
        Step.GREETING: Exchange.IDLE,
        Step.OK: Exchange.IDLE,
        Step.OK_BODY: Exchange.DATA,
        Step.ERR: Exchange.IDLE,
        Step.CHALLENGE: Exchange.SASL,
    },
    Exchange.DATA: {Step.END: Exchange.IDLE},
    Exchange.SASL: {Step.SASL_RESPONSE: Exchange.RESPONSE},
}
"""exchange -> {step: next exchange}. A step with no row is a bug in the engine.

The connection starts in RESPONSE (the greeting is owed). A pipelining client
takes COMMAND again at once when a reply ends and another command is queued;
a server reads the next command only once it has sent the whole reply.
"""


def next_exchange(exchange: Exchange, step: Step) -> Exchange:
    """The exchange after `step`; `AssertionError` if the table has no such row."""
    try:
        return EXCHANGE_TRANSITIONS[exchange][step]
    except KeyError:
        raise AssertionError(f"no step {step.name} from exchange {exchange.name}") from None
