"""Every row of the state tables, driven through a real client and server.

`SESSION_TRANSITIONS` and `EXCHANGE_TRANSITIONS` are the protocol as data. For
each session row, a client and a server are brought to the row's state, the
exchange that makes its trigger is run over a fake wire, and both sides must
land in the row's state with its flags. For the exchange table, every step
each side takes is recorded: the steps taken must be exactly the rows.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

import pop3core as p
from pop3core import _connection, _readers, _writers
from pop3core._state import (
    EXCHANGE_TRANSITIONS,
    SESSION_TRANSITIONS,
    Exchange,
    Outcome,
    Signal,
    State,
    Step,
    Transition,
    Trigger,
    next_exchange,
)
from tests.core.helpers import ConnectionPair

OK, ERR, SENT = Outcome.OK, Outcome.ERR, Outcome.SENT
PLAIN = p.Auth("PLAIN", b"\x00alice\x00secret")
APOP = p.Apop("alice", "0" * 32)


def in_state(state: State) -> ConnectionPair:
    """A client and a server that agree the session is in `state`."""
    pair = ConnectionPair()
    if state is State.GREETING:
        return pair
    pair.greet(p.Greeting(b"ready"))
    if state is State.STARTING_TLS:
        pair.exchange(p.Stls(), p.OkResponse())
    elif state in (State.TRANSACTION, State.UPDATE):
        pair.exchange(p.User("alice"), p.OkResponse())
        pair.exchange(p.Pass("secret"), p.OkResponse())
        if state is State.UPDATE:
            pair.send(p.CLIENT, [p.Quit()])
    assert pair.client.state is pair.server.state is state
    return pair


def command_for(kind: type[p.Command]) -> p.Command:
    made = {p.Apop: APOP, p.Auth: PLAIN, p.Retr: p.Retr(1), p.User: p.User("alice")}
    return made.get(kind) or kind()


def run_trigger(pair: ConnectionPair, key: Trigger) -> None:
    """Make `key` happen on both sides."""
    if key is Signal.GREETED:
        pair.greet(p.Greeting(b"ready"))
    elif key is Signal.REFUSED:
        refusal = p.ErrResponse(b"go away")
        pair.send(p.SERVER, [refusal], expect=[refusal, p.ConnectionClosed()])
    elif key is Signal.TLS_ESTABLISHED:
        pair.client.tls_established()
        pair.server.tls_established()
    else:
        assert isinstance(key, tuple)
        kind, outcome = key
        if kind is p.Pass:
            pair.exchange(p.User("alice"), p.OkResponse())  # PASS needs it first
            command: p.Command = p.Pass("secret")
        else:
            command = command_for(kind)
        if outcome is SENT:
            pair.send(p.CLIENT, [command])
            return
        if pair.client.exchange is not Exchange.RESPONSE:  # not sent yet (QUIT in UPDATE is)
            pair.send(p.CLIENT, [command])
        reply = p.OkResponse() if outcome is OK else p.ErrResponse(b"no")
        # The client sees the end of a session that the reply closes.
        closes = kind is p.Quit
        pair.send(p.SERVER, [reply], expect=[reply, p.ConnectionClosed()] if closes else "match")


def name(key: Trigger) -> str:
    return key.name if isinstance(key, Signal) else f"{key[0].__name__}-{key[1].name}"


ROWS = [
    pytest.param(state, key, transition, id=f"{state.name}-{name(key)}")
    for state, rows in SESSION_TRANSITIONS.items()
    for key, transition in rows.items()
]


@pytest.mark.parametrize(("state", "key", "transition"), ROWS)
def test_every_session_row(state: State, key: Trigger, transition: Transition) -> None:
    pair = in_state(state)
    run_trigger(pair, key)
    for side in (pair.client, pair.server):
        assert side.state is transition.state, (side.our_role, side.state)
        for flag in transition.sets:
            assert getattr(side, flag) is True, flag
    pair.assert_agree()


@pytest.mark.parametrize(
    ("state", "key"),
    [
        (State.AUTHORIZATION, (p.User, ERR)),
        (State.AUTHORIZATION, (p.Pass, ERR)),
        (State.AUTHORIZATION, (p.Capa, OK)),
        (State.TRANSACTION, (p.Stat, OK)),
        (State.TRANSACTION, (p.Retr, ERR)),
    ],
)
def test_a_trigger_without_a_row_leaves_the_state(state: State, key: Trigger) -> None:
    pair = in_state(state)
    run_trigger(pair, key)
    assert pair.client.state is pair.server.state is state
    assert not pair.client.user_accepted  # every finished exchange clears it


def test_user_accepted_holds_only_right_after_user() -> None:
    pair = in_state(State.AUTHORIZATION)
    pair.exchange(p.User("alice"), p.OkResponse())
    assert pair.client.user_accepted
    assert pair.server.user_accepted
    pair.exchange(p.Capa(), p.OkResponse(), p.Data(b"USER\r\n"), p.EndOfMultiline())
    assert not pair.client.user_accepted
    assert not pair.server.user_accepted


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Exchange, Step, Exchange]]:
    """Every exchange step any connection takes, recorded."""
    taken: list[tuple[Exchange, Step, Exchange]] = []
    real: Callable[[Exchange, Step], Exchange] = next_exchange

    def recording(exchange: Exchange, step: Step) -> Exchange:
        after = real(exchange, step)
        taken.append((exchange, step, after))
        return after

    monkeypatch.setattr(_connection, "next_exchange", recording)
    return taken


def test_every_exchange_row_is_taken_and_no_other(
    steps: list[tuple[Exchange, Step, Exchange]],
) -> None:
    pair = ConnectionPair()
    pair.greet(p.Greeting(b"ready"))  # RESPONSE -> IDLE
    pair.exchange(p.Capa(), p.OkResponse(), p.Data(b"SASL PLAIN\r\n"), p.EndOfMultiline())
    pair.exchange(p.User("alice"), p.ErrResponse(b"no"))
    pair.exchange(p.Auth("PLAIN"), p.AuthChallenge(b""))
    pair.send(p.CLIENT, [p.AuthResponse(b"\x00alice\x00secret")])
    pair.send(p.SERVER, [p.OkResponse()])
    pair.exchange(p.Noop(), p.OkResponse())
    rows = {
        (exchange, step, after)
        for exchange, row in EXCHANGE_TRANSITIONS.items()
        for step, after in row.items()
    }
    assert set(steps) == rows


@pytest.mark.parametrize(
    ("exchange", "step"),
    [(Exchange.IDLE, Step.END), (Exchange.DATA, Step.COMMAND), (Exchange.SASL, Step.OK)],
)
def test_a_step_without_a_row_is_a_bug(exchange: Exchange, step: Step) -> None:
    with pytest.raises(AssertionError, match="no step"):
        next_exchange(exchange, step)


# ---------------------------------------------------------------- unexpected exceptions


class Boom(Exception):
    pass


@pytest.mark.parametrize("role", [p.CLIENT, p.SERVER])
def test_an_unexpected_exception_leaves_the_connection_in_error(
    role: p.Role, monkeypatch: pytest.MonkeyPatch
) -> None:
    pair = ConnectionPair()
    pair.greet(p.Greeting(b"ready"))
    conn = pair.conns[role]
    conn.receive_data(b"+OK\r\n" if role is p.CLIENT else b"CAPA\r\n")
    if role is p.CLIENT:
        conn.send(p.User("alice"))

    def broken(*args: object) -> p.Event:
        raise Boom("a bug below next_event")

    monkeypatch.setitem(_readers.READERS, (role, conn.exchange), broken)
    with pytest.raises(Boom):
        conn.next_event()
    assert conn.state is State.ERROR
    with pytest.raises(p.RemoteProtocolError, match="ERROR state"):
        conn.next_event()


def test_an_unexpected_exception_in_send_leaves_our_side_in_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = p.Connection(p.SERVER)

    def broken(event: object) -> bytes:
        raise Boom("a bug in a writer")

    monkeypatch.setitem(_writers.WRITERS, (p.SERVER, p.Greeting), broken)
    with pytest.raises(Boom):
        server.send(p.Greeting(b"ready"))
    assert server.state is State.ERROR
    with pytest.raises(p.LocalProtocolError, match="ERROR state"):
        server.send(p.ErrResponse(b"bye"))
