"""Connections brought to the point of a multi-line reply, and the poplib shim.

These run in the untimed setup of each round.
"""

from __future__ import annotations

import io
import poplib

from pop3core import (
    CLIENT,
    NEED_DATA,
    PAUSED,
    SERVER,
    Command,
    Connection,
    Event,
    Greeting,
    OkResponse,
    Pass,
    User,
)

TERMINATOR = b"\r\n.\r\n"


def drain(conn: Connection) -> list[Event]:
    events: list[Event] = []
    while True:
        event = conn.next_event()
        if event is NEED_DATA or event is PAUSED:
            return events
        events.append(event)


def client_awaiting(command: Command) -> Connection:
    """A client that was greeted, logged in, and has just sent `command`."""
    client = Connection(CLIENT)
    client.receive_data(b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n")
    assert [type(e) for e in drain(client)] == [Greeting]
    for login in (User("bench"), Pass("secret")):
        client.send(login)
        client.receive_data(b"+OK\r\n")
        assert [type(e) for e in drain(client)] == [OkResponse]
    client.send(command)
    return client


def server_in_reply(command_line: bytes, status: OkResponse) -> Connection:
    """A server that greeted, logged the client in, and sent `status` to `command_line`.

    It is then in the body of the multi-line reply: `Data` events go out next.
    """
    server = Connection(SERVER)
    server.send(Greeting(b"POP3 server ready"))
    for line in (b"USER bench\r\n", b"PASS secret\r\n", command_line):
        server.receive_data(line)
        assert isinstance(server.next_event(), Command)
        if line is not command_line:
            server.send(OkResponse())
    server.send(status)
    return server


def poplib_reading(wire: bytes) -> poplib.POP3:
    """A stdlib `poplib.POP3` whose socket file is an in-memory copy of `wire`.

    Its own ``_getlongresp`` / ``_getline`` (readline, strip the line end, ``..`` to
    ``.``, stop at ``.``) are then the baseline, unchanged.
    """
    pop = poplib.POP3.__new__(poplib.POP3)
    pop._debugging = 0  # type: ignore[attr-defined]
    pop.file = io.BytesIO(wire)
    return pop


def poplib_longresp(pop: poplib.POP3) -> tuple[bytes, list[bytes], int]:
    """``POP3._getlongresp()``: the status line, the unstuffed lines, the octet count."""
    result: tuple[bytes, list[bytes], int] = pop._getlongresp()  # type: ignore[attr-defined]
    return result
