"""Framing: line limits, fatal violations, and end of file, in both roles.

Limits must give the same outcome however the input is split (h11#182), so
every limit case runs whole, byte by byte, and in odd-sized chunks.
"""

from __future__ import annotations

import pytest

from pop3core import (
    CLIENT,
    NEED_DATA,
    PAUSED,
    SERVER,
    Capa,
    Connection,
    ConnectionClosed,
    Data,
    EndOfMultiline,
    ErrResponse,
    Exchange,
    Greeting,
    LocalProtocolError,
    Noop,
    OkResponse,
    Pass,
    RemoteProtocolError,
    Retr,
    Stat,
    State,
    User,
)
from tests.core.helpers import ConnectionPair, drain, merge_data

CHUNKINGS = ["whole", "bytewise", "chunks-7", "split-before-lf"]


def feed_chunked(conn: Connection, data: bytes, chunking: str) -> list[object]:
    """Feed `data` in the given chunking, draining after each piece."""
    if chunking == "whole":
        pieces = [data]
    elif chunking == "bytewise":
        pieces = [data[i : i + 1] for i in range(len(data))]
    elif chunking == "chunks-7":
        pieces = [data[i : i + 7] for i in range(0, len(data), 7)]
    else:  # everything but the final LF, then the LF
        pieces = [data[:-1], data[-1:]]
    events: list[object] = []
    for piece in pieces:
        conn.receive_data(piece)
        events.extend(drain(conn))
    return merge_data(events)  # type: ignore[arg-type]


def logged_in_pair(**kwargs: object) -> ConnectionPair:
    pair = ConnectionPair("whole", **kwargs)
    pair.greet(Greeting(b"ready"))
    pair.exchange(User("alice"), OkResponse())
    pair.exchange(Pass("secret"), OkResponse())
    return pair


def greeted_server(**kwargs: object) -> Connection:
    server = Connection(SERVER, **kwargs)  # type: ignore[arg-type]
    server.send(Greeting())
    return server


def client_awaiting_reply(**kwargs: object) -> Connection:
    client = logged_in_pair(**kwargs).client
    client.send(Noop())
    return client


# ------------------------------------------------------------------ limits


@pytest.mark.parametrize("chunking", CHUNKINGS)
@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])
@pytest.mark.parametrize(("limit", "kwargs"), [(255, {}), (100, {"max_line_length": 100})])
def test_server_accepts_command_line_of_exactly_the_limit(
    chunking: str, eol: bytes, limit: int, kwargs: dict[str, int]
) -> None:
    server = greeted_server(**kwargs)
    line = b"USER " + b"a" * (limit - 5 - len(eol)) + eol
    assert len(line) == limit
    assert feed_chunked(server, line, chunking) == [User("a" * (limit - 5 - len(eol)))]


@pytest.mark.parametrize("chunking", CHUNKINGS)
@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])
@pytest.mark.parametrize(("limit", "kwargs"), [(255, {}), (100, {"max_line_length": 100})])
def test_server_refuses_command_line_one_octet_over_the_limit(
    chunking: str, eol: bytes, limit: int, kwargs: dict[str, int]
) -> None:
    server = greeted_server(**kwargs)
    line = b"USER " + b"a" * (limit + 1 - 5 - len(eol)) + eol
    assert len(line) == limit + 1
    with pytest.raises(RemoteProtocolError) as exc_info:
        feed_chunked(server, line, chunking)
    assert server.state is State.ERROR
    hint = exc_info.value.event_hint
    assert type(hint) is ErrResponse
    assert server.send(hint) == hint.line + b"\r\n"


def test_server_limit_can_be_raised() -> None:
    # Dovecot accepts 2048 octets; a server may be configured like it.
    server = greeted_server(max_line_length=2048)
    line = b"USER " + b"a" * 2041 + b"\r\n"
    assert feed_chunked(server, line, "whole") == [User("a" * 2041)]


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_server_refuses_endless_line_without_waiting_for_lf(chunking: str) -> None:
    server = greeted_server()
    with pytest.raises(RemoteProtocolError):
        feed_chunked(server, b"A" * 300, chunking)


@pytest.mark.parametrize("chunking", CHUNKINGS)
@pytest.mark.parametrize(("limit", "kwargs"), [(512, {}), (1024, {"max_line_length": 1024})])
@pytest.mark.parametrize("over", [0, 1])
def test_client_status_line_limit(
    chunking: str, limit: int, kwargs: dict[str, int], over: int
) -> None:
    client = client_awaiting_reply(**kwargs)
    text = b"x" * (limit + over - 6)
    line = b"+OK " + text + b"\r\n"
    assert len(line) == limit + over
    if over:
        with pytest.raises(RemoteProtocolError):
            feed_chunked(client, line, chunking)
        assert client.state is State.ERROR
    else:
        (event,) = feed_chunked(client, line, chunking)
        assert type(event) is OkResponse
        assert event.text == text


@pytest.mark.parametrize("chunking", CHUNKINGS)
@pytest.mark.parametrize("over", [0, 1])
def test_client_greeting_limit(chunking: str, over: int) -> None:
    client = Connection(CLIENT)
    text = b"x" * (512 + over - 6)
    if over:
        with pytest.raises(RemoteProtocolError):
            feed_chunked(client, b"+OK " + text + b"\r\n", chunking)
    else:
        assert feed_chunked(client, b"+OK " + text + b"\r\n", chunking) == [Greeting(text)]


@pytest.mark.parametrize("chunk_size", [None, 65536, 1000])
def test_body_lines_are_unlimited(chunk_size: int | None) -> None:
    body_line = b"x" * (1 << 20) + b"\r\n"  # one 1 MiB line
    wire = b"+OK\r\n" + body_line + b".\r\n+OK 1 2\r\n"
    client = logged_in_pair().client
    client.send(Retr(1))
    client.send(Stat())
    if chunk_size is None:
        pieces = [wire]
    else:
        pieces = [wire[i : i + chunk_size] for i in range(0, len(wire), chunk_size)]
    events = []
    for piece in pieces:
        client.receive_data(piece)
        events.extend(drain(client))
    assert merge_data(events) == [
        OkResponse(),
        Data(body_line),
        EndOfMultiline(),
        OkResponse(b"1 2"),
    ]


def test_status_line_after_a_body_is_still_limited() -> None:
    client = logged_in_pair().client
    client.send(Retr(1))
    client.send(Stat())
    client.receive_data(b"+OK\r\n" + b"x" * 5000 + b"\r\n.\r\n+OK " + b"x" * 600 + b"\r\n")
    with pytest.raises(RemoteProtocolError):
        drain(client)


def test_server_body_lines_are_unlimited() -> None:
    pair = logged_in_pair()
    pair.send(CLIENT, [Retr(1)])
    body = b"y" * (1 << 20) + b"\r\n"
    wire = pair.server.send(OkResponse()) + pair.server.send(Data(body))
    wire += pair.server.send(EndOfMultiline())
    assert wire == b"+OK\r\n" + body + b".\r\n"


# --------------------------------------------------- fatal framing violations


@pytest.mark.parametrize("chunking", CHUNKINGS)
@pytest.mark.parametrize(
    "line",
    [b"USER al\x00ice\r\n", b"\x00\r\n", b"NO\x00OP\r\n", b"PASS \x00\r\n", b"NOOP \x00\r\n"],
)
def test_nul_in_command_is_fatal(chunking: str, line: bytes) -> None:
    server = greeted_server()
    if line.startswith(b"PASS"):
        server.receive_data(b"USER alice\r\n")
        drain(server)
        server.send(OkResponse())
    with pytest.raises(RemoteProtocolError) as exc_info:
        feed_chunked(server, line, chunking)
    assert server.state is State.ERROR
    assert type(exc_info.value.event_hint) is ErrResponse


# The start of a real TLS 1.2/1.3 ClientHello: handshake record, version, length.
CLIENT_HELLO = bytes.fromhex("1603010200010001fc0303") + bytes(range(0x20, 0x7F))


@pytest.mark.parametrize("chunking", ["whole", "bytewise"])
@pytest.mark.parametrize("tail", [b"\r\n", b"\n", b""], ids=["crlf", "lf", "no-lf"])
def test_tls_client_hello_on_plain_server_is_fatal(chunking: str, tail: bytes) -> None:
    # h11#121: reject on the first byte instead of waiting for a line end that a
    # ClientHello need not contain (the client would wait for a ServerHello forever).
    server = greeted_server()
    with pytest.raises(RemoteProtocolError) as exc_info:
        feed_chunked(server, CLIENT_HELLO + tail, chunking)
    assert server.state is State.ERROR
    assert type(exc_info.value.event_hint) is ErrResponse


@pytest.mark.parametrize("chunking", ["whole", "bytewise"])
@pytest.mark.parametrize(
    "line",
    [
        b"HELLO\r\n",
        b"OK\r\n",
        b"+OKAY\r\n",
        b"+OK\tfine\r\n",
        b"-ERROR\r\n",
        b"\r\n",
        b" +OK\r\n",
        b"+\r\n",  # a bare "+" is a SASL continuation, not a reply to NOOP
        b"+ Hola mundo\r\n",
        b"* OK IMAP4rev1\r\n",
    ],
)
def test_malformed_status_line_is_fatal_in_strict_mode(chunking: str, line: bytes) -> None:
    client = client_awaiting_reply()
    with pytest.raises(RemoteProtocolError):
        feed_chunked(client, line, chunking)
    assert client.state is State.ERROR
    with pytest.raises(RemoteProtocolError):
        client.next_event()


@pytest.mark.parametrize(
    "line", [b"+ Hola mundo\n", b"HELLO\r\n", b"\r\n", b"* OK IMAP4 ready\r\n"]
)
def test_malformed_greeting_is_fatal_in_strict_mode(line: bytes) -> None:
    client = Connection(CLIENT)
    with pytest.raises(RemoteProtocolError):
        feed_chunked(client, line, "whole")
    assert client.state is State.ERROR


def test_after_a_remote_error_the_server_may_still_send_err() -> None:
    server = greeted_server()
    server.receive_data(b"USER a\x00\r\n")
    with pytest.raises(RemoteProtocolError) as exc_info:
        server.next_event()
    assert server.state is State.ERROR
    hint = exc_info.value.event_hint
    assert hint is not None
    assert server.send(hint) == hint.line + b"\r\n"
    assert server.send(ErrResponse(b"bye")) == b"-ERR bye\r\n"
    for event in (OkResponse(), Greeting(), Data(b"x")):
        with pytest.raises(LocalProtocolError):
            server.send(event)
    with pytest.raises(RemoteProtocolError):
        server.next_event()


def test_send_failed_puts_our_side_in_error() -> None:
    pair = logged_in_pair()
    pair.client.send(Noop())
    pair.client.send_failed()
    assert pair.client.state is State.ERROR
    with pytest.raises(LocalProtocolError):
        pair.client.send(Noop())


# ------------------------------------------------------------------ EOF


@pytest.mark.parametrize("point", ["AUTHORIZATION", "USER", "TRANSACTION"])
def test_server_eof_while_idle_closes_without_update(point: str) -> None:
    pair = ConnectionPair("whole")
    pair.greet(Greeting())
    if point in ("USER", "TRANSACTION"):
        pair.exchange(User("alice"), OkResponse())
    if point == "TRANSACTION":
        pair.exchange(Pass("secret"), OkResponse())
    server = pair.server
    server.receive_data(b"")
    assert server.next_event() == ConnectionClosed()
    # RFC 1939: a session that ends other than by QUIT never enters UPDATE.
    assert server.state is State.CLOSED
    assert server.next_event() == ConnectionClosed()


def test_server_eof_with_a_partial_command_closes() -> None:
    server = greeted_server()
    server.receive_data(b"DELE 1")
    server.receive_data(b"")
    assert server.next_event() == ConnectionClosed()
    assert server.state is State.CLOSED
    assert server.trailing_data == (b"DELE 1", True)


def test_server_eof_while_it_owes_a_reply() -> None:
    pair = logged_in_pair()
    pair.client.send(Retr(1))
    pair.server.receive_data(b"RETR 1\r\n")
    pair.server.receive_data(b"")
    assert pair.server.next_event() == Retr(1)
    assert pair.server.next_event() is PAUSED
    pair.server.send(OkResponse())
    assert pair.server.next_event() is PAUSED
    pair.server.send(EndOfMultiline())
    assert pair.server.next_event() == ConnectionClosed()
    assert pair.server.state is State.CLOSED


def test_server_eof_before_greeting() -> None:
    server = Connection(SERVER)
    server.receive_data(b"")
    assert server.next_event() is PAUSED  # the greeting is owed first
    server.send(Greeting())
    assert server.next_event() == ConnectionClosed()


@pytest.mark.parametrize("point", ["greeted", "transaction"])
def test_client_eof_while_idle_closes(point: str) -> None:
    if point == "greeted":
        client = Connection(CLIENT)
        feed_chunked(client, b"+OK\r\n", "whole")
    else:
        client = logged_in_pair().client
    client.receive_data(b"")
    assert client.next_event() == ConnectionClosed()
    assert client.state is State.CLOSED
    with pytest.raises(LocalProtocolError):
        client.send(Noop())


@pytest.mark.parametrize(
    ("command", "partial"),
    [
        (Noop(), b""),
        (Noop(), b"+O"),
        (Noop(), b"+OK fine"),
        (Noop(), b"+OK fine\r"),
        (Retr(1), b"+OK\r\n"),
        (Retr(1), b"+OK\r\nbody\r\n"),
        (Retr(1), b"+OK\r\nbody\r\n."),
        (Retr(1), b"+OK\r\nbody\r\n.\r"),
        (Capa(), b"+OK\r\nTOP\r\n"),
    ],
)
def test_client_eof_mid_response_is_fatal(command: object, partial: bytes) -> None:
    client = logged_in_pair().client
    client.send(command)  # type: ignore[arg-type]
    client.receive_data(partial)
    client.receive_data(b"")
    with pytest.raises(RemoteProtocolError):
        drain(client)
    assert client.state is State.ERROR


def test_client_eof_before_greeting_is_fatal() -> None:
    client = Connection(CLIENT)
    client.receive_data(b"+OK hel")
    client.receive_data(b"")
    with pytest.raises(RemoteProtocolError):
        client.next_event()


def test_client_eof_after_complete_reply_is_clean() -> None:
    client = logged_in_pair().client
    client.send(Noop())
    client.receive_data(b"+OK\r\n")
    client.receive_data(b"")
    assert drain(client) == [OkResponse(), ConnectionClosed()]
    assert client.exchange is Exchange.IDLE


@pytest.mark.parametrize("role", [CLIENT, SERVER])
def test_no_data_after_eof(role: object) -> None:
    conn = Connection(role)  # type: ignore[arg-type]
    conn.receive_data(b"")
    with pytest.raises(RuntimeError):
        conn.receive_data(b"+OK\r\n")


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_receive_data_takes_any_bytes_like(kind: type) -> None:
    client = Connection(CLIENT)
    client.receive_data(kind(b"+OK ready\r\n"))
    assert client.next_event() == Greeting(b"ready")
    assert client.next_event() is NEED_DATA
