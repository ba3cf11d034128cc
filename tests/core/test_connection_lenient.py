"""Lenient client mode (``strict=False``): what poplib accepts, and strict mode's contrast.

POPLIB-COMPAT.md section 3.4: any line starting with ``+`` is success (test_poplib
greets with ``+ Hola mundo``), any other line an error; ``.`` LF ends a body;
an unstuffed ``.x`` line keeps its dot; commands go out in any state.
"""

from __future__ import annotations

import pytest

from pop3core import (
    CLIENT,
    Apop,
    Auth,
    AuthChallenge,
    Capa,
    Command,
    Connection,
    Data,
    EndOfMultiline,
    ErrResponse,
    Greeting,
    List,
    Noop,
    OkResponse,
    Pass,
    RemoteProtocolError,
    Retr,
    Stat,
    State,
    Stls,
    Top,
    Uidl,
)
from tests.core.helpers import SPLITS, Split, feed

END = EndOfMultiline()
DIGEST = "c4c9334bac560ecc979e58001b3e22fb"


def lenient_client(greeting: bytes = b"+OK ready\r\n") -> Connection:
    client = Connection(CLIENT, strict=False)
    feed(client, greeting)
    return client


@pytest.mark.parametrize("split", SPLITS)
def test_test_poplib_greeting(split: Split) -> None:
    client = Connection(CLIENT, strict=False)
    (event,) = feed(client, b"+ Hola mundo\n", split)
    assert type(event) is Greeting
    assert event.line == b"+ Hola mundo"
    assert event.text == b"Hola mundo"
    assert client.state is State.AUTHORIZATION


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize(
    ("wire", "ok", "line"),
    [
        (b"+OK fine\r\n", True, b"+OK fine"),
        (b"+ fine\r\n", True, b"+ fine"),
        (b"+\r\n", True, b"+"),
        (b"+OKAY\r\n", True, b"+OKAY"),
        (b"+ok\n", True, b"+ok"),
        (b"-ERR no\r\n", False, b"-ERR no"),
        (b"-err no\r\n", False, b"-err no"),
        (b"-ERROR\r\n", False, b"-ERROR"),
        (b"garbage\r\n", False, b"garbage"),
        (b"OK\n", False, b"OK"),
        (b"\r\n", False, b""),
        (b" +OK\r\n", False, b" +OK"),
    ],
)
def test_lenient_status_lines(split: Split, wire: bytes, ok: bool, line: bytes) -> None:
    client = lenient_client()
    client.send(Noop())
    (event,) = feed(client, wire, split)
    assert type(event) is (OkResponse if ok else ErrResponse)
    assert event.line == line
    assert client.pending_commands == ()


def test_lenient_lower_case_err_keeps_response_code() -> None:
    client = lenient_client()
    client.send(Noop())
    (event,) = feed(client, b"-err [IN-USE] locked\r\n")
    assert type(event) is ErrResponse
    assert event.code == "IN-USE"
    assert event.text == b"locked"


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize(
    ("body", "data"),
    [
        # "." LF ends the body, as poplib accepts.
        (b"line1\n.\n", b"line1\n"),
        (b"line1\r\n.\n", b"line1\r\n"),
        (b"line1\r\n.\r\n", b"line1\r\n"),
        # Unstuffed ".x" lines are kept; ".." still loses one dot.
        (b".x\r\n..y\r\n...\r\n.\r\n", b".x\r\n.y\r\n..\r\n"),
        (b"a\n.x\n..y\n.\n", b"a\n.x\n.y\n"),
    ],
)
def test_lenient_bodies(split: Split, body: bytes, data: bytes) -> None:
    client = lenient_client()
    client.send(Retr(1))
    client.send(Noop())
    events = feed(client, b"+OK\r\n" + body + b"+OK next\r\n", split)
    assert events == [OkResponse(), Data(data), END, OkResponse(b"next")]


@pytest.mark.parametrize("split", SPLITS)
def test_strict_body_drops_the_dot_of_unstuffed_lines(split: Split) -> None:
    # RFC 1939 section 3: a line starting with "." loses that octet.
    client = Connection(CLIENT)
    feed(client, b"+OK ready\r\n")
    client.send(Capa())
    events = feed(client, b"+OK\r\n.x\r\n..y\r\n...\r\n.\r\n", split)
    assert events == [OkResponse(), Data(b"x\r\n.y\r\n..\r\n"), END]


@pytest.mark.parametrize(
    "command",
    [Stat(), List(), Retr(1), Top(1, 0), Uidl(), Pass("secret"), Apop("mrose", DIGEST)],
)
def test_lenient_client_sends_commands_in_any_state(command: Command) -> None:
    client = lenient_client()
    assert client.state is State.AUTHORIZATION
    assert client.send(command).endswith(b"\r\n")


def test_lenient_client_sends_stls_even_when_tls_is_active() -> None:
    client = Connection(CLIENT, strict=False, tls_active=True)
    feed(client, b"+OK\r\n")
    assert client.send(Stls()) == b"STLS\r\n"
    assert feed(client, b"-ERR TLS session already established\r\n") == [
        ErrResponse(b"TLS session already established")
    ]


@pytest.mark.parametrize("split", SPLITS)
def test_lenient_err_to_multiline_is_single_line(split: Split) -> None:
    client = lenient_client()
    client.send(Retr(1))
    client.send(Noop())
    events = feed(client, b"-err no such message\r\n+OK\r\n", split)
    assert events == [ErrResponse(b"no such message"), OkResponse()]


def test_lenient_client_still_reads_sasl_challenges() -> None:
    client = lenient_client()
    client.send(Auth("PLAIN"))
    assert feed(client, b"+ \r\n") == [AuthChallenge()]


def test_lenient_err_greeting_closes() -> None:
    client = Connection(CLIENT, strict=False)
    events = feed(client, b"-ERR go away\r\n")
    assert type(events[0]) is ErrResponse
    assert client.state is State.CLOSED


@pytest.mark.parametrize("wire", [b"+ Hola mundo\n", b"+\r\n", b"+OKAY\r\n"])
def test_strict_mode_refuses_what_lenient_mode_accepts(wire: bytes) -> None:
    client = Connection(CLIENT)
    with pytest.raises(RemoteProtocolError):
        feed(client, wire)
    assert client.state is State.ERROR


def test_strict_mode_reads_lower_case_err_greeting() -> None:
    client = Connection(CLIENT)
    assert feed(client, b"-err busy\r\n")[0] == ErrResponse(b"busy")
    assert client.state is State.CLOSED
