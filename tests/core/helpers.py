"""Test helpers: draining events, feeding bytes in every split, and ConnectionPair.

Every core test that feeds bytes runs in the three `SPLITS`: the bytes whole,
one at a time, and whole with `TRAILING` octets after them, which must come
out of the exchange unparsed (`Connection.trailing_data`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from pop3core import (
    CLIENT,
    NEED_DATA,
    PAUSED,
    SERVER,
    Connection,
    ConnectionClosed,
    Data,
    Event,
    Exchange,
    Role,
    State,
)
from pop3core._receivebuffer import ReceiveBuffer

Split = Literal["whole", "bytewise", "trailing"]
SPLITS: tuple[Split, ...] = ("whole", "bytewise", "trailing")

TRAILING = b"\x00\x16 trailing octets that belong to no exchange\r\n"
"""Never valid where they land: a parser that read them would fail loudly."""


def drain(conn: Connection) -> list[Event]:
    """Every event `conn` can produce now (stops at NEED_DATA, PAUSED or close)."""
    events: list[Event] = []
    while True:
        event = conn.next_event()
        if event is NEED_DATA or event is PAUSED:
            return events
        events.append(event)
        if type(event) is ConnectionClosed:
            return events


def merge_data(events: Iterable[Event]) -> list[Event]:
    """Join runs of Data events: chunk boundaries carry no meaning."""
    merged: list[Event] = []
    for event in events:
        if type(event) is Data and merged and type(merged[-1]) is Data:
            previous = merged[-1]
            assert isinstance(previous, Data)
            merged[-1] = Data(bytes(previous.data) + bytes(event.data))
        else:
            merged.append(event)
    return merged


def drain_owed(conn: Connection) -> list[Event]:
    """`drain`, but a client stops as soon as it is to speak: what follows is not
    parsed (it would be the server's error, raised at the next look)."""
    events: list[Event] = []
    while not (
        events
        and conn.our_role is CLIENT
        and conn.exchange in (Exchange.IDLE, Exchange.SASL)  # the client speaks next
        and conn.state is not State.CLOSED
    ):
        event = conn.next_event()
        if event is NEED_DATA or event is PAUSED:
            break
        events.append(event)
        if type(event) is ConnectionClosed:
            break
    return events


def feed(conn: Connection, data: bytes, split: Split = "whole") -> list[Event]:
    """Feed `data` as `split` says, draining after each piece.

    ``"trailing"`` feeds `data` and `TRAILING` at once, and checks that the
    trailing octets are left exactly as they were.
    """
    events: list[Event] = []
    if split == "whole":
        conn.receive_data(data)
        events.extend(drain(conn))
    elif split == "trailing":
        before, _ = conn.trailing_data
        conn.receive_data(data + TRAILING)
        events.extend(drain_owed(conn))
        assert conn.trailing_data == (before + TRAILING, False), conn.trailing_data
        # Take them back out, as if they had never come, so the session can go on.
        conn._buffer = ReceiveBuffer()
        if before:
            conn._buffer.append(before)
    else:
        for i in range(len(data)):
            conn.receive_data(data[i : i + 1])
            events.extend(drain(conn))
    return merge_data(events)


class ConnectionPair:
    """A client and a server Connection joined by a fake wire.

    Every transfer can be whole or byte by byte. `exchange` runs one command and
    its reply, checks that each side received what the other sent, and that both
    sides agree on the state afterwards.
    """

    def __init__(self, split: Split = "whole", **kwargs: object) -> None:
        self.split = split
        client_kwargs = {k: v for k, v in kwargs.items() if k != "max_bad_commands"}
        server_kwargs = {k: v for k, v in kwargs.items() if k != "strict"}
        self.client = Connection(CLIENT, **client_kwargs)  # type: ignore[arg-type]
        self.server = Connection(SERVER, **server_kwargs)  # type: ignore[arg-type]
        self.conns = {CLIENT: self.client, SERVER: self.server}

    def send(
        self,
        role: Role,
        events: Sequence[Event],
        expect: Sequence[Event] | Literal["match"] = "match",
    ) -> list[Event]:
        """`role` sends `events`; return what the other side received."""
        sender = self.conns[role]
        receiver = self.conns[SERVER if role is CLIENT else CLIENT]
        data = b"".join(sender.send(event) for event in events)
        received = feed(receiver, data, self.split)
        wanted = merge_data(events) if expect == "match" else list(expect)
        assert received == wanted, (received, wanted)
        return received

    def greet(self, greeting: Event) -> None:
        self.send(SERVER, [greeting])
        self.assert_agree()

    def exchange(
        self,
        command: Event,
        *replies: Event,
        expect: Sequence[Event] | Literal["match"] = "match",
    ) -> list[Event]:
        """Client sends `command`, server answers with `replies`; states must agree."""
        self.send(CLIENT, [command])
        received = self.send(SERVER, replies, expect)
        self.assert_agree()
        return received

    def assert_agree(self) -> None:
        client, server = self.client, self.server
        assert client.state is server.state, (client.state, server.state)
        assert client.exchange is server.exchange, (client.exchange, server.exchange)
        assert client.tls_active == server.tls_active
        assert client.utf8_active == server.utf8_active
        assert client.user_accepted == server.user_accepted
        assert client.authenticated == server.authenticated
