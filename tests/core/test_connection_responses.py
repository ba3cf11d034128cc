"""Responses on the wire: what a server sends and what a client makes of it.

As for commands, one table of ``(state, command, reply events, wire bytes)``
drives both the writer (the server's ``send``) and the reader (the client
parses the bytes back), whole, byte by byte and with trailing data.
"""

from __future__ import annotations

from typing import Literal

import pytest

from pop3core import (
    AUTH,
    CLIENT,
    IN_USE,
    NEED_DATA,
    SERVER,
    SYS_PERM,
    SYS_TEMP,
    UTF8,
    Apop,
    Auth,
    AuthChallenge,
    Capa,
    Command,
    Connection,
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
    RawCommand,
    Retr,
    Rset,
    Stat,
    State,
    Stls,
    Top,
    Uidl,
    User,
    Utf8,
)
from tests.core.helpers import SPLITS, ConnectionPair, Split, feed, merge_data

DIGEST = "c4c9334bac560ecc979e58001b3e22fb"
END = EndOfMultiline()

SessionPoint = Literal["AUTHORIZATION", "USER", "TRANSACTION"]


def pair_in(point: SessionPoint, **kwargs: object) -> ConnectionPair:
    pair = ConnectionPair("whole", **kwargs)
    pair.greet(Greeting(b"POP3 server ready"))
    if point in ("USER", "TRANSACTION"):
        pair.exchange(User("alice"), OkResponse())
    if point == "TRANSACTION":
        pair.exchange(Pass("secret"), OkResponse(b"logged in"))
    return pair


def client_reads(client: Connection, wire: bytes, split: Split) -> list[Event]:
    """Feed `wire` to `client` as `split` says (`helpers.feed` checks trailing data)."""
    events = feed(client, wire, split)
    assert client.trailing_data == (b"", False)
    return events


RESPONSES: list[tuple[SessionPoint, Command, list[Event], bytes]] = [
    (
        "AUTHORIZATION",
        User("mrose"),
        [OkResponse(b"mrose is a real hoopy frood")],
        b"+OK mrose is a real hoopy frood\r\n",
    ),
    (
        "AUTHORIZATION",
        User("frated"),
        [ErrResponse(b"sorry, no mailbox for frated here")],
        b"-ERR sorry, no mailbox for frated here\r\n",
    ),
    (
        "USER",
        Pass("secret"),
        [OkResponse(b"mrose's maildrop has 2 messages (320 octets)")],
        b"+OK mrose's maildrop has 2 messages (320 octets)\r\n",
    ),
    (
        "USER",
        Pass("secret"),
        [ErrResponse(b"maildrop already locked", IN_USE)],
        b"-ERR [IN-USE] maildrop already locked\r\n",
    ),
    ("AUTHORIZATION", Apop("mrose", DIGEST), [OkResponse()], b"+OK\r\n"),
    (
        "AUTHORIZATION",
        Apop("mrose", DIGEST),
        [ErrResponse(b"permission denied", AUTH)],
        b"-ERR [AUTH] permission denied\r\n",
    ),
    ("TRANSACTION", Stat(), [OkResponse(b"2 320")], b"+OK 2 320\r\n"),
    (
        "TRANSACTION",
        Stat(),
        [ErrResponse(b"mailbox corrupt", SYS_PERM)],
        b"-ERR [SYS/PERM] mailbox corrupt\r\n",
    ),
    (
        "TRANSACTION",
        List(),
        [OkResponse(b"2 messages (320 octets)"), Data(b"1 120\r\n2 200\r\n"), END],
        b"+OK 2 messages (320 octets)\r\n1 120\r\n2 200\r\n.\r\n",
    ),
    # An empty maildrop: the status line, then the terminator at once.
    ("TRANSACTION", List(), [OkResponse(), END], b"+OK\r\n.\r\n"),
    # -ERR to a multi-line command is a single line (curl#14801).
    (
        "TRANSACTION",
        List(),
        [ErrResponse(b"try later", SYS_TEMP)],
        b"-ERR [SYS/TEMP] try later\r\n",
    ),
    ("TRANSACTION", List(2), [OkResponse(b"2 200")], b"+OK 2 200\r\n"),
    (
        "TRANSACTION",
        List(3),
        [ErrResponse(b"no such message, only 2 messages in maildrop")],
        b"-ERR no such message, only 2 messages in maildrop\r\n",
    ),
    (
        "TRANSACTION",
        Retr(1),
        [
            OkResponse(b"120 octets"),
            Data(b"Subject: hi\r\n\r\n.hidden dot\r\n..two dots\r\n.\r\nend\r\n"),
            END,
        ],
        b"+OK 120 octets\r\nSubject: hi\r\n\r\n..hidden dot\r\n...two dots\r\n..\r\nend\r\n.\r\n",
    ),
    ("TRANSACTION", Retr(9), [ErrResponse(b"no such message")], b"-ERR no such message\r\n"),
    (
        "TRANSACTION",
        Retr(1),
        [ErrResponse(b"message needs UTF8 mode", UTF8)],
        b"-ERR [UTF8] message needs UTF8 mode\r\n",
    ),
    (
        "TRANSACTION",
        Top(1, 0),
        [OkResponse(b"top of message follows"), Data(b"Subject: hi\r\n\r\n"), END],
        b"+OK top of message follows\r\nSubject: hi\r\n\r\n.\r\n",
    ),
    ("TRANSACTION", Top(9, 0), [ErrResponse(b"no such message")], b"-ERR no such message\r\n"),
    (
        "TRANSACTION",
        Uidl(),
        [OkResponse(), Data(b"1 whqtswO00WBw418f9t5JxYwZ\r\n2 QhdPYR:00WBw1Ph7x7\r\n"), END],
        b"+OK\r\n1 whqtswO00WBw418f9t5JxYwZ\r\n2 QhdPYR:00WBw1Ph7x7\r\n.\r\n",
    ),
    ("TRANSACTION", Uidl(), [ErrResponse()], b"-ERR\r\n"),
    (
        "TRANSACTION",
        Uidl(2),
        [OkResponse(b"2 QhdPYR:00WBw1Ph7x7")],
        b"+OK 2 QhdPYR:00WBw1Ph7x7\r\n",
    ),
    ("TRANSACTION", Uidl(3), [ErrResponse(b"no such message")], b"-ERR no such message\r\n"),
    ("TRANSACTION", Dele(1), [OkResponse(b"message 1 deleted")], b"+OK message 1 deleted\r\n"),
    (
        "TRANSACTION",
        Dele(1),
        [ErrResponse(b"message 1 already deleted")],
        b"-ERR message 1 already deleted\r\n",
    ),
    ("TRANSACTION", Noop(), [OkResponse()], b"+OK\r\n"),
    (
        "TRANSACTION",
        Rset(),
        [OkResponse(b"maildrop has 2 messages")],
        b"+OK maildrop has 2 messages\r\n",
    ),
    (
        "AUTHORIZATION",
        Capa(),
        [OkResponse(b"Capability list follows"), Data(b"TOP\r\nUSER\r\nSASL PLAIN\r\n"), END],
        b"+OK Capability list follows\r\nTOP\r\nUSER\r\nSASL PLAIN\r\n.\r\n",
    ),
    # Dovecot answers CAPA with a bare "+OK".
    (
        "TRANSACTION",
        Capa(),
        [OkResponse(), Data(b"CAPA\r\nTOP\r\nUIDL\r\n"), END],
        b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\n.\r\n",
    ),
    ("AUTHORIZATION", Capa(), [ErrResponse(b"unknown command")], b"-ERR unknown command\r\n"),
    (
        "AUTHORIZATION",
        Stls(),
        [ErrResponse(b"Command not permitted when TLS active")],
        b"-ERR Command not permitted when TLS active\r\n",
    ),
    ("AUTHORIZATION", Utf8(), [OkResponse(b"UTF8 enabled")], b"+OK UTF8 enabled\r\n"),
    ("AUTHORIZATION", Utf8(), [ErrResponse()], b"-ERR\r\n"),
    (
        "AUTHORIZATION",
        Lang(),
        [OkResponse(b"Language listing follows"), Data(b"en English\r\nde Deutsch\r\n"), END],
        b"+OK Language listing follows\r\nen English\r\nde Deutsch\r\n.\r\n",
    ),
    ("AUTHORIZATION", Lang(), [ErrResponse()], b"-ERR\r\n"),
    (
        "TRANSACTION",
        Lang("*"),
        [OkResponse(b"en English selected")],
        b"+OK en English selected\r\n",
    ),
    ("TRANSACTION", Lang("tlh"), [ErrResponse(b"no such language")], b"-ERR no such language\r\n"),
    # The bare AUTH of Outlook: a multi-line listing on +OK (Dovecot, Twisted) ...
    (
        "AUTHORIZATION",
        Auth(),
        [OkResponse(), Data(b"PLAIN\r\nLOGIN\r\n"), END],
        b"+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n",
    ),
    # ... and a single line on -ERR (hMailServer#230).
    ("AUTHORIZATION", Auth(), [ErrResponse(b"unknown command")], b"-ERR unknown command\r\n"),
    # SASL continuations: "+ " and base64; an empty challenge keeps its space.
    ("AUTHORIZATION", Auth("PLAIN"), [AuthChallenge()], b"+ \r\n"),
    (
        "AUTHORIZATION",
        Auth("CRAM-MD5"),
        [AuthChallenge(b"<1896.697170952@postoffice.reston.mci.net>")],
        b"+ PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+\r\n",
    ),
    (
        "AUTHORIZATION",
        Auth("PLAIN", b"\x00alice\x00secret"),
        [OkResponse(b"logged in")],
        b"+OK logged in\r\n",
    ),
    (
        "AUTHORIZATION",
        Auth("PLAIN", b"\x00alice\x00wrong"),
        [ErrResponse(b"authentication failed", AUTH)],
        b"-ERR [AUTH] authentication failed\r\n",
    ),
]
RESPONSE_IDS = [
    type(command).__name__ + "-" + wire.split(b"\r\n")[0].decode()
    for _, command, _, wire in RESPONSES
]


@pytest.mark.parametrize(("point", "command", "replies", "wire"), RESPONSES, ids=RESPONSE_IDS)
def test_server_writes_response(
    point: SessionPoint, command: Command, replies: list[Event], wire: bytes
) -> None:
    pair = pair_in(point)
    pair.send(CLIENT, [command])
    assert b"".join(pair.server.send(event) for event in replies) == wire


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize(("point", "command", "replies", "wire"), RESPONSES, ids=RESPONSE_IDS)
def test_client_reads_response(
    point: SessionPoint, command: Command, replies: list[Event], wire: bytes, split: Split
) -> None:
    pair = pair_in(point)
    pair.send(CLIENT, [command])
    for event in replies:
        pair.server.send(event)
    events = client_reads(pair.client, wire, split)
    assert events == merge_data(replies)
    # Received data is always bytes (never a bytearray or memoryview).
    assert all(type(event.data) is bytes for event in events if type(event) is Data)
    # Both sides agree on where the session is now.
    pair.assert_agree()
    if type(replies[0]) is AuthChallenge:
        assert pair.client.exchange is Exchange.SASL
    else:
        # The reply is complete: nothing is pending, the client may send again.
        assert pair.client.exchange is Exchange.IDLE
        assert pair.client.pending_commands == ()


CLIENT_READS: list[tuple[SessionPoint, Command, bytes, list[Event]]] = [
    # RFC 1939 allows "+OK" with no text; a trailing SP with empty text is common too.
    ("TRANSACTION", Noop(), b"+OK \r\n", [OkResponse()]),
    # Servers MUST send upper case, but a client parses the status case-insensitively.
    ("TRANSACTION", Noop(), b"+ok lower case\r\n", [OkResponse(b"lower case")]),
    ("TRANSACTION", Noop(), b"-err lower case\r\n", [ErrResponse(b"lower case")]),
    # A bare LF ends a status line too.
    ("TRANSACTION", Noop(), b"+OK fine\n", [OkResponse(b"fine")]),
    ("TRANSACTION", Noop(), b"-ERR\n", [ErrResponse()]),
    # Response codes: hierarchical, case-insensitive, only at the start of the text.
    ("TRANSACTION", Noop(), b"-ERR [sys/temp] later\r\n", [ErrResponse(b"later", SYS_TEMP)]),
    (
        "TRANSACTION",
        Noop(),
        b"-ERR [SYS/TEMP/DISK] disk full\r\n",
        [ErrResponse(b"disk full", "SYS/TEMP/DISK")],
    ),
    ("TRANSACTION", Noop(), b"+OK done [IN-USE]\r\n", [OkResponse(b"done [IN-USE]")]),
    ("TRANSACTION", Noop(), b"-ERR [not a code\r\n", [ErrResponse(b"[not a code")]),
    ("TRANSACTION", Noop(), b"-ERR [] empty\r\n", [ErrResponse(b"[] empty")]),
    ("TRANSACTION", Noop(), b"-ERR [SYS//TEMP] x\r\n", [ErrResponse(b"[SYS//TEMP] x")]),
    # RFC 1939: an unstuffed ".x" line loses its first dot in strict mode.
    ("TRANSACTION", Retr(1), b"+OK\r\n.x\r\n.\r\n", [OkResponse(), Data(b"x\r\n"), END]),
    # Bare CR and LF inside a body line are content.
    (
        "TRANSACTION",
        Retr(1),
        b"+OK\r\na\rb\nc\r\n.\r\n",
        [OkResponse(), Data(b"a\rb\nc\r\n"), END],
    ),
    # Status lines that look like the terminator or a body are still status lines.
    ("TRANSACTION", List(1), b"+OK 1 120\r\n", [OkResponse(b"1 120")]),
    # Extensions and legacy commands: the caller says whether +OK is multi-line.
    (
        "TRANSACTION",
        RawCommand("XTND XLST Message-Id", multiline=True),
        b"+OK\r\n1 Message-Id: <a@b>\r\n.\r\n",
        [OkResponse(), Data(b"1 Message-Id: <a@b>\r\n"), END],
    ),
    (
        "TRANSACTION",
        RawCommand("XTND XLST Message-Id", multiline=True),
        b"-ERR not supported\r\n",
        [ErrResponse(b"not supported")],
    ),
    ("TRANSACTION", RawCommand("LAST"), b"+OK 0\r\n", [OkResponse(b"0")]),
    # SASL continuations (RFC 5034): "+ base64", a bare "+" (Microsoft), "+ " (empty).
    ("AUTHORIZATION", Auth("PLAIN"), b"+\r\n", [AuthChallenge()]),
    ("AUTHORIZATION", Auth("PLAIN"), b"+ \r\n", [AuthChallenge()]),
    ("AUTHORIZATION", Auth("PLAIN"), b"+\n", [AuthChallenge()]),
    ("AUTHORIZATION", Auth("LOGIN"), b"+ VXNlcm5hbWU6\r\n", [AuthChallenge(b"Username:")]),
    # A challenge that is not strict base64 is flagged; the client must cancel.
    ("AUTHORIZATION", Auth("PLAIN"), b"+ !!!\r\n", [AuthChallenge(valid=False)]),
    ("AUTHORIZATION", Auth("PLAIN"), b"+ dGVzdA\r\n", [AuthChallenge(valid=False)]),
    ("AUTHORIZATION", Auth("PLAIN"), b"+ dGVz dA==\r\n", [AuthChallenge(valid=False)]),
    ("AUTHORIZATION", Auth("PLAIN"), b"+ dG=VzdA==\r\n", [AuthChallenge(valid=False)]),
    ("AUTHORIZATION", Auth("PLAIN"), b"+ Go Ahead\r\n", [AuthChallenge(valid=False)]),
]


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize(("point", "command", "wire", "expected"), CLIENT_READS)
def test_client_reads_response_variants(
    point: SessionPoint, command: Command, wire: bytes, expected: list[Event], split: Split
) -> None:
    client = pair_in(point).client
    client.send(command)
    assert client_reads(client, wire, split) == expected


def test_response_code_is_parsed_into_the_event() -> None:
    client = pair_in("USER").client
    client.send(Pass("secret"))
    (event,) = feed(client, b"-ERR [IN-USE/Session] mailbox locked by another session\r\n")
    assert type(event) is ErrResponse
    assert event.code is not None
    assert event.code.matches(IN_USE)
    assert event.code != IN_USE
    assert event.text == b"mailbox locked by another session"
    assert event.line == b"-ERR [IN-USE/Session] mailbox locked by another session"


# ------------------------------------------------ -ERR to multi-line commands

MULTILINE_COMMANDS: list[tuple[SessionPoint, Command]] = [
    ("TRANSACTION", List()),
    ("TRANSACTION", Uidl()),
    ("TRANSACTION", Retr(1)),
    ("TRANSACTION", Top(1, 5)),
    ("TRANSACTION", Capa()),
    ("TRANSACTION", Lang()),
    ("TRANSACTION", RawCommand("XTND XLST Message-Id", multiline=True)),
    ("AUTHORIZATION", Capa()),
    ("AUTHORIZATION", Lang()),
]


@pytest.mark.parametrize("split", ["whole", "bytewise"])
@pytest.mark.parametrize(("point", "command"), MULTILINE_COMMANDS)
def test_err_to_multiline_command_is_a_single_line(
    point: SessionPoint, command: Command, split: Literal["whole", "bytewise"]
) -> None:
    # curl#14801: treating this -ERR as the start of a body hangs or desyncs the client.
    client = pair_in(point).client
    client.send(command)
    client.send(Noop() if point == "TRANSACTION" else Capa())
    wire = b"-ERR no\r\n+OK next reply\r\n" + (b".\r\n" if point != "TRANSACTION" else b"")
    events = feed(client, wire, split)
    assert events[:2] == [ErrResponse(b"no"), OkResponse(b"next reply")]


@pytest.mark.parametrize("command", [List(1), Uidl(1)])
def test_list_and_uidl_with_an_argument_are_single_line(command: Command) -> None:
    client = pair_in("TRANSACTION").client
    client.send(command)
    client.send(Noop())
    events = feed(client, b"+OK 1 120\r\n+OK\r\n")
    assert events == [OkResponse(b"1 120"), OkResponse()]
    assert client.pending_commands == ()


def test_bare_auth_err_is_single_line_and_auth_may_follow() -> None:
    pair = pair_in("AUTHORIZATION")
    pair.exchange(Auth(), ErrResponse(b"unknown command"))
    pair.exchange(Auth("PLAIN", b"\x00a\x00b"), OkResponse())
    assert pair.client.state is State.TRANSACTION


# ----------------------------------------------------------------- QUIT


@pytest.mark.parametrize("split", ["whole", "bytewise"])
@pytest.mark.parametrize(
    ("point", "reply"),
    [
        ("AUTHORIZATION", OkResponse(b"bye")),
        ("TRANSACTION", OkResponse(b"dewey POP3 server signing off (maildrop empty)")),
        ("TRANSACTION", ErrResponse(b"some deleted messages not removed")),
    ],
)
def test_quit_closes_the_session(
    point: SessionPoint, reply: Event, split: Literal["whole", "bytewise"]
) -> None:
    pair = pair_in(point)
    pair.split = split
    pair.send(CLIENT, [Quit()])
    # UPDATE is entered only by QUIT in TRANSACTION, and lasts until the reply.
    expected = State.UPDATE if point == "TRANSACTION" else State.AUTHORIZATION
    assert pair.server.state is expected
    assert pair.client.state is expected
    pair.send(SERVER, [reply], expect=[reply, ConnectionClosed()])
    assert pair.client.state is State.CLOSED
    assert pair.server.state is State.CLOSED
    assert pair.server.next_event() == ConnectionClosed()
    with pytest.raises(LocalProtocolError):
        pair.client.send(Noop())


# ------------------------------------------------------------------ greeting

GREETINGS: list[tuple[Greeting, bytes, bytes | None]] = [
    (
        Greeting(b"POP3 server ready <1896.697170952@dbc.mtview.ca.us>"),
        b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n",
        b"<1896.697170952@dbc.mtview.ca.us>",
    ),
    (Greeting(), b"+OK\r\n", None),
    (Greeting(b"Dovecot ready."), b"+OK Dovecot ready.\r\n", None),
    # Dovecot prefixes [XCLIENT] for trusted peers: a response code.
    (Greeting(b"Dovecot ready.", "XCLIENT"), b"+OK [XCLIENT] Dovecot ready.\r\n", None),
    # Office 365: the trailing [...] is not a response code (not at the start).
    (
        Greeting(
            b"The Microsoft Exchange POP3 service is ready. "
            b"[UwBOADIAUABSADAAMQBDAEEAMAAwADAAMwAuAG4AYQBtAHAAcgBkADAAMQAuAHAAcgBvAGQA]"
        ),
        b"+OK The Microsoft Exchange POP3 service is ready. "
        b"[UwBOADIAUABSADAAMQBDAEEAMAAwADAAMwAuAG4AYQBtAHAAcgBkADAAMQAuAHAAcgBvAGQA]\r\n",
        None,
    ),
    (
        Greeting(b"<abc> ready <42.1700000000@mail.example.org> <x@y>"),
        b"+OK <abc> ready <42.1700000000@mail.example.org> <x@y>\r\n",
        b"<42.1700000000@mail.example.org>",
    ),
]


@pytest.mark.parametrize(("greeting", "wire", "timestamp"), GREETINGS)
def test_server_writes_greeting(greeting: Greeting, wire: bytes, timestamp: bytes | None) -> None:
    server = Connection(SERVER)
    assert server.state is State.GREETING
    assert server.send(greeting) == wire
    assert server.state is State.AUTHORIZATION
    assert greeting.timestamp == timestamp


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize(("greeting", "wire", "timestamp"), GREETINGS)
def test_client_reads_greeting(
    greeting: Greeting, wire: bytes, timestamp: bytes | None, split: Split
) -> None:
    client = Connection(CLIENT)
    assert client.state is State.GREETING
    events = client_reads(client, wire, split)
    assert events == [greeting]
    (event,) = events
    assert type(event) is Greeting
    assert event.code == greeting.code
    assert event.timestamp == timestamp
    assert event.line == wire.rstrip(b"\r\n")
    assert client.state is State.AUTHORIZATION


@pytest.mark.parametrize("split", ["whole", "bytewise"])
def test_err_greeting_closes_the_session(split: Literal["whole", "bytewise"]) -> None:
    pair = ConnectionPair(split)
    refusal = ErrResponse(b"too busy, try later", SYS_TEMP)
    assert pair.server.send(refusal) == b"-ERR [SYS/TEMP] too busy, try later\r\n"
    assert pair.server.state is State.CLOSED
    events = feed(pair.client, b"-ERR [SYS/TEMP] too busy, try later\r\n", split)
    assert events == [refusal, ConnectionClosed()]
    assert pair.client.state is State.CLOSED
    with pytest.raises(LocalProtocolError):
        pair.client.send(Capa())


def test_client_waits_for_the_greeting_before_sending() -> None:
    client = Connection(CLIENT)
    with pytest.raises(LocalProtocolError):
        client.send(Capa())
    assert client.next_event() is NEED_DATA


@pytest.mark.parametrize("event", [OkResponse(), AuthChallenge(), Data(b"x"), END])
def test_server_must_greet_first(event: Event) -> None:
    server = Connection(SERVER)
    with pytest.raises(LocalProtocolError):
        server.send(event)
    assert server.state is State.GREETING
    assert server.send(Greeting()) == b"+OK\r\n"


@pytest.mark.parametrize(
    "build",
    [
        lambda: OkResponse(b"a\r\nb"),
        lambda: OkResponse("a\nb"),
        lambda: ErrResponse(b"\x00"),
        lambda: ErrResponse(b"x", "NOT A CODE"),
        lambda: ErrResponse(b"x", "SYS//TEMP"),
        lambda: Greeting(b"ready\r\n+OK injected"),
        # RFC 1939/2449: a status line is at most 512 octets, CRLF included.
        lambda: OkResponse(b"x" * 507),
        lambda: Greeting(b"x" * 507),
        lambda: ErrResponse(b"x" * 506),
    ],
)
def test_invalid_responses_refused_when_building(build: object) -> None:
    with pytest.raises(LocalProtocolError):
        build()  # type: ignore[operator]


@pytest.mark.parametrize(("cls", "status"), [(OkResponse, b"+OK"), (ErrResponse, b"-ERR")])
def test_status_line_of_512_octets_can_be_built(cls: type[OkResponse], status: bytes) -> None:
    text = b"x" * (512 - len(status) - 3)
    event = cls(text)
    assert len(event.line) + 2 == 512


def test_server_cannot_answer_twice() -> None:
    pair = pair_in("TRANSACTION")
    pair.send(CLIENT, [Noop()])
    pair.server.send(OkResponse())
    with pytest.raises(LocalProtocolError):
        pair.server.send(OkResponse())


def test_challenge_answers_only_auth_with_a_mechanism() -> None:
    pair = pair_in("AUTHORIZATION")
    pair.send(CLIENT, [Auth()])
    with pytest.raises(LocalProtocolError):
        pair.server.send(AuthChallenge())
    pair.send(SERVER, [ErrResponse()])
    pair.send(CLIENT, [Capa()])
    with pytest.raises(LocalProtocolError):
        pair.server.send(AuthChallenge())


@pytest.mark.parametrize("event", [Greeting(), AuthChallenge(), OkResponse()])
def test_server_cannot_send_other_events_inside_a_body(event: Event) -> None:
    pair = pair_in("TRANSACTION")
    pair.send(CLIENT, [Retr(1)])
    pair.server.send(OkResponse())
    with pytest.raises(LocalProtocolError):
        pair.server.send(event)
    assert pair.server.send(END) == b".\r\n"
