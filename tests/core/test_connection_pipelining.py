"""Pipelining (RFC 2449): the client matches replies in order, the server
parses one command at a time, and nothing is pipelined across STLS, AUTH or QUIT."""

from __future__ import annotations

import pytest

from pop3core import (
    NEED_DATA,
    PAUSED,
    Auth,
    AuthChallenge,
    BadCommand,
    Capa,
    Command,
    ConnectionClosed,
    Data,
    Dele,
    EndOfMultiline,
    ErrResponse,
    Event,
    Exchange,
    Greeting,
    Lang,
    List,
    LocalProtocolError,
    Noop,
    OkResponse,
    Pass,
    Quit,
    Retr,
    Rset,
    Stat,
    State,
    Stls,
    Top,
    Uidl,
    User,
)
from tests.core.helpers import SPLITS, ConnectionPair, Split, drain, feed

END = EndOfMultiline()

# (command, the server's reply) in TRANSACTION: single-line, multi-line, and
# -ERR to multi-line commands, mixed.
SCRIPT: list[tuple[Command, list[Event]]] = [
    (Stat(), [OkResponse(b"2 320")]),
    (List(), [OkResponse(b"2 messages"), Data(b"1 120\r\n2 200\r\n"), END]),
    (Retr(1), [OkResponse(b"120 octets"), Data(b"Subject: a\r\n\r\n.dot\r\n"), END]),
    (List(2), [OkResponse(b"2 200")]),
    (Retr(9), [ErrResponse(b"no such message")]),
    (Uidl(), [OkResponse(), Data(b"1 a\r\n2 b\r\n"), END]),
    (Top(1, 0), [OkResponse(), Data(b"Subject: a\r\n\r\n"), END]),
    (Uidl(2), [OkResponse(b"2 b")]),
    (Top(9, 0), [ErrResponse(b"no such message")]),
    (Dele(1), [OkResponse(b"deleted")]),
    (Retr(1), [ErrResponse(b"message 1 already deleted")]),
    (List(), [ErrResponse(b"try later", "SYS/TEMP")]),
    (Capa(), [OkResponse(), Data(b"TOP\r\nPIPELINING\r\n"), END]),
    (Lang(), [ErrResponse()]),
    (Rset(), [OkResponse()]),
    (Noop(), [OkResponse()]),
]


def logged_in_pair(split: Split = "whole") -> ConnectionPair:
    pair = ConnectionPair(split)
    pair.greet(Greeting(b"ready"))
    pair.exchange(User("alice"), OkResponse())
    pair.exchange(Pass("secret"), OkResponse())
    return pair


@pytest.mark.parametrize("split", SPLITS)
def test_pipelined_commands_and_replies_in_order(split: Split) -> None:
    pair = logged_in_pair(split)
    client, server = pair.client, pair.server
    commands = [command for command, _ in SCRIPT]
    wire = b"".join(client.send(command) for command in commands)
    assert client.pending_commands == tuple(commands)
    assert client.current_command == commands[0]

    # The server takes one command at a time and waits for its own reply.
    server.receive_data(wire)
    replies = b""
    for command, reply in SCRIPT:
        assert server.next_event() == command
        for event in reply:
            assert server.next_event() is PAUSED
            replies += server.send(event)
    assert server.next_event() is NEED_DATA
    assert server.trailing_data == (b"", False)

    # The client matches the replies to its commands in order.
    received = feed(client, replies, split)
    expected = [event for _, reply in SCRIPT for event in reply]
    assert received == expected
    assert client.pending_commands == ()
    pair.assert_agree()


def test_client_tracks_the_head_of_the_queue() -> None:
    pair = logged_in_pair()
    client = pair.client
    client.send(Stat())
    client.send(Retr(1))
    client.send(Noop())
    client.receive_data(b"+OK 1 5\r\n+OK\r\nabc\r\n")
    assert client.next_event() == OkResponse(b"1 5")
    assert client.pending_commands == (Retr(1), Noop())
    assert client.next_event() == OkResponse()
    assert client.current_command == Retr(1)
    assert client.exchange is Exchange.DATA
    assert client.next_event() == Data(b"abc\r\n")
    assert client.next_event() is NEED_DATA
    client.receive_data(b".\r\n+OK\r\n")
    assert drain(client) == [END, OkResponse()]
    assert client.current_command is None


def test_server_pauses_during_its_own_multiline_reply() -> None:
    pair = logged_in_pair()
    server = pair.server
    server.receive_data(b"RETR 1\r\nSTAT\r\n")
    assert server.next_event() == Retr(1)
    server.send(OkResponse())
    assert server.next_event() is PAUSED
    server.send(Data(b"body\r\n"))
    assert server.next_event() is PAUSED
    server.send(END)
    assert server.next_event() == Stat()


def test_server_pauses_after_a_bad_command_until_answered() -> None:
    server = logged_in_pair().server
    server.receive_data(b"FOO\r\nSTAT\r\n")
    bad = server.next_event()
    assert type(bad) is BadCommand
    assert server.next_event() is PAUSED
    server.send(bad.hint)
    assert server.next_event() == Stat()


@pytest.mark.parametrize("split", SPLITS)
def test_pipelined_login_that_succeeds(split: Split) -> None:
    pair = ConnectionPair(split)
    pair.greet(Greeting())
    client, server = pair.client, pair.server
    wire = b"".join(client.send(c) for c in (User("alice"), Pass("secret"), Stat(), List()))
    server.receive_data(wire)
    replies = b""
    for reply in ([OkResponse()], [OkResponse()], [OkResponse(b"0 0")], [OkResponse(), END]):
        server.next_event()
        replies += b"".join(server.send(event) for event in reply)
    assert feed(client, replies, split) == [
        OkResponse(),
        OkResponse(),
        OkResponse(b"0 0"),
        OkResponse(),
        END,
    ]
    pair.assert_agree()
    assert client.state is State.TRANSACTION


@pytest.mark.parametrize("split", SPLITS)
def test_pipelined_login_that_fails(split: Split) -> None:
    # The client predicted success; after the -ERR to USER the server refuses
    # PASS and STAT, and the client follows without getting out of step.
    pair = ConnectionPair(split)
    pair.greet(Greeting())
    client, server = pair.client, pair.server
    server.receive_data(b"".join(client.send(c) for c in (User("nobody"), Pass("x"), Stat())))
    assert server.next_event() == User("nobody")
    replies = server.send(ErrResponse(b"no such user"))
    for hint in (b"send USER first", b"log in first"):
        bad = server.next_event()
        assert type(bad) is BadCommand
        assert bad.hint.text == hint
        replies += server.send(bad.hint)
    assert feed(client, replies, split) == [
        ErrResponse(b"no such user"),
        ErrResponse(b"send USER first"),
        ErrResponse(b"log in first"),
    ]
    pair.assert_agree()
    assert client.state is State.AUTHORIZATION
    # Once the queue is empty the client is back to the real state.
    with pytest.raises(LocalProtocolError):
        client.send(Stat())
    assert client.send(User("alice")) == b"USER alice\r\n"


@pytest.mark.parametrize(
    ("point", "barrier"),
    [
        ("AUTHORIZATION", Stls()),
        ("AUTHORIZATION", Auth("PLAIN")),
        ("AUTHORIZATION", Auth("PLAIN", b"\x00a\x00b")),
        ("AUTHORIZATION", Auth()),
        ("AUTHORIZATION", Quit()),
        ("TRANSACTION", Quit()),
    ],
)
@pytest.mark.parametrize("after", [Noop(), Capa(), Quit()])
def test_no_pipelining_after_stls_auth_or_quit(
    point: str, barrier: Command, after: Command
) -> None:
    pair = logged_in_pair() if point == "TRANSACTION" else ConnectionPair("whole")
    if point == "AUTHORIZATION":
        pair.greet(Greeting())
    pair.client.send(barrier)
    with pytest.raises(LocalProtocolError):
        pair.client.send(after)
    assert pair.client.pending_commands == (barrier,)


def test_commands_queued_before_a_barrier_are_fine() -> None:
    pair = ConnectionPair("whole")
    pair.greet(Greeting())
    client = pair.client
    client.send(Capa())
    client.send(Auth("PLAIN"))
    assert client.pending_commands == (Capa(), Auth("PLAIN"))
    events = feed(client, b"+OK\r\nSASL PLAIN\r\n.\r\n+ \r\n")
    assert events == [OkResponse(), Data(b"SASL PLAIN\r\n"), END, AuthChallenge()]
    assert client.capabilities is not None
    assert client.capabilities.sasl == ("PLAIN",)


@pytest.mark.parametrize("split", SPLITS)
def test_pipelined_quit_at_the_end(split: Split) -> None:
    pair = logged_in_pair(split)
    client, server = pair.client, pair.server
    server.receive_data(client.send(Dele(1)) + client.send(Quit()))
    assert server.next_event() == Dele(1)
    replies = server.send(OkResponse())
    assert server.next_event() == Quit()
    assert server.state is State.UPDATE
    replies += server.send(OkResponse(b"bye"))
    assert server.next_event() == ConnectionClosed()
    assert feed(client, replies, split) == [OkResponse(), OkResponse(b"bye"), ConnectionClosed()]
    assert client.state is State.CLOSED


def test_states_agree_after_every_exchange() -> None:
    # A long scripted session, checking agreement after each exchange.
    pair = ConnectionPair("bytewise")
    pair.greet(Greeting(b"<1.2@x>"))
    pair.exchange(Capa(), OkResponse(), Data(b"USER\r\n"), END)
    pair.exchange(User("alice"), OkResponse())
    assert pair.client.user_accepted is True
    pair.exchange(Pass("secret"), OkResponse())
    for command, reply in SCRIPT:
        pair.exchange(command, *reply)
    pair.exchange(Quit(), OkResponse(), expect=[OkResponse(), ConnectionClosed()])
    assert pair.client.state is State.CLOSED
    assert pair.server.state is State.CLOSED
