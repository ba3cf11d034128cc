"""Commands on the wire: what a client sends and what a server makes of it.

One table of ``(state, event, wire bytes)`` drives both the writer test (the
client's ``send(event) == wire``) and the reader test (the server parses
``wire`` back into ``event``), so the round trip is symmetric by construction.
The reader runs every case whole, byte by byte, and with trailing data.
"""

from __future__ import annotations

import contextlib
from typing import Literal

import pytest

from pop3core import (
    CLIENT,
    NEED_DATA,
    PAUSED,
    SERVER,
    Apop,
    Auth,
    AuthCancel,
    AuthChallenge,
    AuthResponse,
    BadCommand,
    BadCommandReason,
    Capa,
    Command,
    Connection,
    Dele,
    EndOfMultiline,
    ErrResponse,
    Greeting,
    Lang,
    List,
    LocalProtocolError,
    Noop,
    OkResponse,
    Pass,
    Quit,
    RawCommand,
    RemoteProtocolError,
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
from tests.core.helpers import SPLITS, ConnectionPair, Split, drain, feed

# RFC 1939 section 7's APOP example.
DIGEST = "c4c9334bac560ecc979e58001b3e22fb"

SessionPoint = Literal["AUTHORIZATION", "USER", "TRANSACTION"]


def pair_in(point: SessionPoint, **kwargs: object) -> ConnectionPair:
    """A client and a server that agree they are at `point` of a session.

    ``USER`` is AUTHORIZATION right after ``+OK`` to USER, where PASS is allowed.
    """
    pair = ConnectionPair("whole", **kwargs)
    pair.greet(Greeting(b"POP3 server ready"))
    if point in ("USER", "TRANSACTION"):
        pair.exchange(User("alice"), OkResponse())
    if point == "TRANSACTION":
        pair.exchange(Pass("secret"), OkResponse(b"logged in"))
    return pair


def server_in(point: SessionPoint, **kwargs: object) -> Connection:
    server = pair_in(point, **kwargs).server
    assert server.next_event() is NEED_DATA
    return server


COMMANDS: list[tuple[SessionPoint, Command, bytes]] = [
    ("AUTHORIZATION", User("alice"), b"USER alice\r\n"),
    ("AUTHORIZATION", User("mrose@example.com"), b"USER mrose@example.com\r\n"),
    ("AUTHORIZATION", User("j\u00f6rg"), b"USER j\xc3\xb6rg\r\n"),
    ("USER", Pass("secret"), b"PASS secret\r\n"),
    # RFC 1939 section 7: the password is the rest of the line, spaces included.
    ("USER", Pass("correct horse  battery "), b"PASS correct horse  battery \r\n"),
    ("USER", Pass(" leading space"), b"PASS  leading space\r\n"),
    ("AUTHORIZATION", Apop("mrose", DIGEST), b"APOP mrose " + DIGEST.encode() + b"\r\n"),
    ("AUTHORIZATION", Quit(), b"QUIT\r\n"),
    ("TRANSACTION", Quit(), b"QUIT\r\n"),
    ("TRANSACTION", Stat(), b"STAT\r\n"),
    ("TRANSACTION", List(), b"LIST\r\n"),
    ("TRANSACTION", List(1), b"LIST 1\r\n"),
    ("TRANSACTION", List(4294967295), b"LIST 4294967295\r\n"),
    ("TRANSACTION", Retr(1), b"RETR 1\r\n"),
    ("TRANSACTION", Dele(12), b"DELE 12\r\n"),
    ("TRANSACTION", Noop(), b"NOOP\r\n"),
    ("TRANSACTION", Rset(), b"RSET\r\n"),
    ("TRANSACTION", Top(1, 0), b"TOP 1 0\r\n"),
    ("TRANSACTION", Top(3, 10), b"TOP 3 10\r\n"),
    ("TRANSACTION", Uidl(), b"UIDL\r\n"),
    ("TRANSACTION", Uidl(2), b"UIDL 2\r\n"),
    ("AUTHORIZATION", Capa(), b"CAPA\r\n"),
    ("TRANSACTION", Capa(), b"CAPA\r\n"),
    ("AUTHORIZATION", Stls(), b"STLS\r\n"),
    ("AUTHORIZATION", Auth("PLAIN"), b"AUTH PLAIN\r\n"),
    ("AUTHORIZATION", Auth("SCRAM-SHA-256"), b"AUTH SCRAM-SHA-256\r\n"),
    (
        "AUTHORIZATION",
        Auth("PLAIN", b"\x00alice\x00secret"),
        b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
    ),
    # RFC 5034: "=" is an initial response that is present but empty.
    ("AUTHORIZATION", Auth("EXTERNAL", b""), b"AUTH EXTERNAL =\r\n"),
    # The de facto bare AUTH that lists the mechanisms.
    ("AUTHORIZATION", Auth(), b"AUTH\r\n"),
    ("AUTHORIZATION", Utf8(), b"UTF8\r\n"),
    ("AUTHORIZATION", Lang(), b"LANG\r\n"),
    ("AUTHORIZATION", Lang("*"), b"LANG *\r\n"),
    ("TRANSACTION", Lang("de-CH"), b"LANG de-CH\r\n"),
    ("TRANSACTION", Lang(), b"LANG\r\n"),
]

COMMAND_IDS = [wire.decode("utf-8").strip() or "empty" for _, _, wire in COMMANDS]


@pytest.mark.parametrize(("point", "event", "wire"), COMMANDS, ids=COMMAND_IDS)
def test_client_writes_command(point: SessionPoint, event: Command, wire: bytes) -> None:
    client = pair_in(point).client
    assert client.send(event) == wire
    assert client.pending_commands == (event,)


@pytest.mark.parametrize("split", ["whole", "bytewise", "trailing"])
@pytest.mark.parametrize(("point", "event", "wire"), COMMANDS, ids=COMMAND_IDS)
def test_server_reads_command(
    point: SessionPoint, event: Command, wire: bytes, split: str
) -> None:
    server = server_in(point)
    trailing = b"\x16\x00 not parsed: the server waits for its reply\r\n"
    if split == "whole":
        server.receive_data(wire)
    elif split == "bytewise":
        for i in range(len(wire) - 1):
            server.receive_data(wire[i : i + 1])
            assert server.next_event() is NEED_DATA
        server.receive_data(wire[-1:])
    else:
        server.receive_data(wire + trailing)
    assert server.next_event() == event
    assert server.current_command == event
    # The server parses one command at a time: nothing more until it has answered.
    assert server.next_event() is PAUSED
    assert server.trailing_data == ((trailing if split == "trailing" else b""), False)


@pytest.mark.parametrize(
    ("point", "wire", "event"),
    [
        # Keywords are case-insensitive (RFC 1939 section 3).
        ("TRANSACTION", b"stat\r\n", Stat()),
        ("TRANSACTION", b"StAt\r\n", Stat()),
        ("TRANSACTION", b"list 1\r\n", List(1)),
        ("TRANSACTION", b"top 1 0\r\n", Top(1, 0)),
        ("TRANSACTION", b"uidl\r\n", Uidl()),
        ("AUTHORIZATION", b"user alice\r\n", User("alice")),
        ("AUTHORIZATION", b"capa\r\n", Capa()),
        ("AUTHORIZATION", b"quit\r\n", Quit()),
        ("AUTHORIZATION", b"Auth plain\r\n", Auth("PLAIN")),
        ("AUTHORIZATION", b"auth xoauth2 =\r\n", Auth("XOAUTH2", b"")),
        ("AUTHORIZATION", b"lang *\r\n", Lang("*")),
        ("USER", b"pass  two  spaces \r\n", Pass(" two  spaces ")),
        # Leading zeros are still decimal numbers.
        ("TRANSACTION", b"RETR 007\r\n", Retr(7)),
        # A bare LF ends a line too.
        ("TRANSACTION", b"NOOP\n", Noop()),
        # Extra spaces between or after arguments are tolerated.
        ("TRANSACTION", b"NOOP \r\n", Noop()),
        ("TRANSACTION", b"LIST  1 \r\n", List(1)),
        ("TRANSACTION", b"TOP 1  5\r\n", Top(1, 5)),
        # Any line count of digits is valid (RFC 1939: beyond the body, the whole message).
        ("TRANSACTION", b"TOP 1 99999999999\r\n", Top(1, 99999999999)),
        ("TRANSACTION", b"TOP 1 " + b"9" * 240 + b"\r\n", Top(1, int("9" * 240))),
        # An upper-case APOP digest is accepted and normalised.
        (
            "AUTHORIZATION",
            b"APOP mrose " + DIGEST.upper().encode() + b"\r\n",
            Apop("mrose", DIGEST),
        ),
    ],
)
def test_server_reads_command_variants(point: SessionPoint, wire: bytes, event: Command) -> None:
    server = server_in(point)
    server.receive_data(wire)
    assert server.next_event() == event


@pytest.mark.parametrize(
    ("event", "wire"),
    [
        # The mechanism name is case-insensitive and sent in upper case.
        (Auth("plain"), b"AUTH PLAIN\r\n"),
        (RawCommand("XTND XLST Message-Id"), b"XTND XLST Message-Id\r\n"),
        (RawCommand("LAST"), b"LAST\r\n"),
    ],
)
def test_client_writes_normalised_or_raw_command(event: Command, wire: bytes) -> None:
    point: SessionPoint = "TRANSACTION" if isinstance(event, RawCommand) else "AUTHORIZATION"
    client = pair_in(point).client
    assert client.send(event) == wire


def test_raw_command_may_be_sent_in_any_state() -> None:
    client = pair_in("AUTHORIZATION").client
    assert client.send(RawCommand("RPOP alice")) == b"RPOP alice\r\n"


# ------------------------------------------------------------------ refusals

BAD_ARGUMENTS: list[tuple[SessionPoint, bytes]] = [
    ("TRANSACTION", b"RETR 0"),
    ("TRANSACTION", b"RETR -1"),
    ("TRANSACTION", b"RETR +1"),
    ("TRANSACTION", b"RETR 1x"),
    ("TRANSACTION", b"RETR 0x1"),
    ("TRANSACTION", b"RETR 1.0"),
    ("TRANSACTION", b"RETR \xd9\xa1"),  # ARABIC-INDIC DIGIT ONE is not a decimal digit
    ("TRANSACTION", b"RETR 99999999999"),
    ("TRANSACTION", b"RETR 1" + b"0" * 60),
    ("TRANSACTION", b"RETR"),
    ("TRANSACTION", b"RETR 1 2"),
    ("TRANSACTION", b"DELE"),
    ("TRANSACTION", b"DELE 0"),
    ("TRANSACTION", b"LIST 0"),
    ("TRANSACTION", b"LIST -1"),
    ("TRANSACTION", b"LIST 1 2"),
    ("TRANSACTION", b"UIDL 0"),
    ("TRANSACTION", b"UIDL a"),
    ("TRANSACTION", b"TOP"),
    ("TRANSACTION", b"TOP 1"),
    ("TRANSACTION", b"TOP 0 1"),
    ("TRANSACTION", b"TOP 1 -1"),
    ("TRANSACTION", b"TOP 1 +1"),
    ("TRANSACTION", b"TOP 1 x"),
    ("TRANSACTION", b"TOP 1 2 3"),
    ("TRANSACTION", b"STAT 1"),
    ("TRANSACTION", b"NOOP x"),
    ("TRANSACTION", b"RSET x"),
    ("TRANSACTION", b"QUIT now"),
    ("TRANSACTION", b"CAPA x"),
    ("TRANSACTION", b"LANG en us"),
    ("TRANSACTION", b"LANG en_US"),
    ("AUTHORIZATION", b"USER"),
    ("AUTHORIZATION", b"USER "),
    ("AUTHORIZATION", b"APOP mrose"),
    ("AUTHORIZATION", b"APOP " + DIGEST.encode()),
    ("AUTHORIZATION", b"APOP mrose 1234"),
    ("AUTHORIZATION", b"APOP mrose " + b"g" * 32),
    ("AUTHORIZATION", b"AUTH PLAIN !!!!"),
    ("AUTHORIZATION", b"AUTH PLAIN dGVzdA"),  # missing padding
    ("AUTHORIZATION", b"AUTH PLAIN =dGVzdA="),  # "=" inside the data
    ("AUTHORIZATION", b"AUTH PL@IN"),
    ("AUTHORIZATION", b"AUTH " + b"A" * 21),
    ("AUTHORIZATION", b"AUTH PLAIN AAAA AAAA"),
    ("AUTHORIZATION", b"STLS now"),
    ("AUTHORIZATION", b"UTF8 x"),
]


@pytest.mark.parametrize(("point", "line"), BAD_ARGUMENTS)
def test_server_refuses_bad_arguments(point: SessionPoint, line: bytes) -> None:
    server = server_in(point)
    server.receive_data(line + b"\r\n")
    event = server.next_event()
    assert type(event) is BadCommand
    assert event.reason is BadCommandReason.BAD_ARGUMENTS
    assert event.keyword == line.split(b" ")[0].decode()
    assert event.line == line + b"\r\n"
    assert type(event.hint) is ErrResponse
    # The session goes on: the hint answers the line, and the state is unchanged.
    assert server.send(event.hint) == event.hint.line + b"\r\n"
    assert server.state is State[point]
    assert server.bad_commands == 1


@pytest.mark.parametrize(
    ("point", "line"),
    [
        ("TRANSACTION", b"LAST"),
        ("TRANSACTION", b"last"),
        ("AUTHORIZATION", b"LAST"),
        ("AUTHORIZATION", b"RPOP alice"),
        ("AUTHORIZATION", b"rpop alice"),
    ],
)
def test_server_refuses_legacy_commands_as_not_supported(point: SessionPoint, line: bytes) -> None:
    server = server_in(point)
    server.receive_data(line + b"\r\n")
    event = server.next_event()
    assert type(event) is BadCommand
    assert event.reason is BadCommandReason.NOT_SUPPORTED
    keyword = line.split(b" ")[0].decode().upper()
    assert event.keyword == keyword
    assert event.hint.line == b"-ERR " + keyword.encode() + b" is not supported"


@pytest.mark.parametrize(
    ("line", "keyword"),
    [
        (b"FOO", "FOO"),
        (b"XTND XLST Message-Id", "XTND"),
        (b"HELO example.com", "HELO"),
        (b"STATUS", "STATUS"),
        (b"RETRIEVE 1", "RETRIEVE"),
        (b"", None),
        (b"   ", None),
    ],
)
@pytest.mark.parametrize("point", ["AUTHORIZATION", "TRANSACTION"])
def test_server_refuses_unknown_command(
    point: SessionPoint, line: bytes, keyword: str | None
) -> None:
    server = server_in(point)
    server.receive_data(line + b"\r\n")
    event = server.next_event()
    assert type(event) is BadCommand
    assert event.reason is BadCommandReason.UNKNOWN
    assert event.keyword == keyword
    assert event.hint == ErrResponse(b"unknown command")
    assert event.hint.line == b"-ERR unknown command"
    assert server.send(event.hint) == b"-ERR unknown command\r\n"


WRONG_STATE: list[tuple[SessionPoint, Command, bytes, bytes]] = [
    ("AUTHORIZATION", Stat(), b"STAT", b"log in first"),
    ("AUTHORIZATION", List(), b"LIST", b"log in first"),
    ("AUTHORIZATION", List(1), b"LIST 1", b"log in first"),
    ("AUTHORIZATION", Retr(1), b"RETR 1", b"log in first"),
    ("AUTHORIZATION", Dele(1), b"DELE 1", b"log in first"),
    ("AUTHORIZATION", Noop(), b"NOOP", b"log in first"),
    ("AUTHORIZATION", Rset(), b"RSET", b"log in first"),
    ("AUTHORIZATION", Top(1, 0), b"TOP 1 0", b"log in first"),
    ("AUTHORIZATION", Uidl(), b"UIDL", b"log in first"),
    ("AUTHORIZATION", Uidl(1), b"UIDL 1", b"log in first"),
    # RFC 1939: PASS only right after a successful USER.
    ("AUTHORIZATION", Pass("secret"), b"PASS secret", b"send USER first"),
    ("TRANSACTION", User("alice"), b"USER alice", b"already authenticated"),
    ("TRANSACTION", Pass("secret"), b"PASS secret", b"already authenticated"),
    (
        "TRANSACTION",
        Apop("mrose", DIGEST),
        b"APOP mrose " + DIGEST.encode(),
        b"already authenticated",
    ),
    # RFC 5034: after a successful AUTH (or any login) AUTH must be refused.
    ("TRANSACTION", Auth("PLAIN"), b"AUTH PLAIN", b"already authenticated"),
    ("TRANSACTION", Auth(), b"AUTH", b"already authenticated"),
    ("TRANSACTION", Stls(), b"STLS", b"already authenticated"),
    ("TRANSACTION", Utf8(), b"UTF8", b"already authenticated"),
]
WRONG_STATE_IDS = [f"{point}-{line.decode()}" for point, _, line, _ in WRONG_STATE]


@pytest.mark.parametrize(("point", "event", "line", "hint"), WRONG_STATE, ids=WRONG_STATE_IDS)
def test_server_refuses_command_in_wrong_state(
    point: SessionPoint, event: Command, line: bytes, hint: bytes
) -> None:
    server = server_in(point)
    server.receive_data(line + b"\r\n")
    bad = server.next_event()
    assert type(bad) is BadCommand
    assert bad.reason is BadCommandReason.WRONG_STATE
    assert bad.keyword == event.keyword
    assert bad.hint.line == b"-ERR " + hint
    assert server.send(bad.hint) == b"-ERR " + hint + b"\r\n"
    assert server.state is State[point]


@pytest.mark.parametrize(("point", "event", "line", "hint"), WRONG_STATE, ids=WRONG_STATE_IDS)
def test_client_refuses_command_in_wrong_state(
    point: SessionPoint, event: Command, line: bytes, hint: bytes
) -> None:
    client = pair_in(point).client
    with pytest.raises(LocalProtocolError):
        client.send(event)
    # A refused send changes nothing.
    assert client.pending_commands == ()
    assert client.state is State[point]
    assert client.send(Capa()) == b"CAPA\r\n"


@pytest.mark.parametrize("split", SPLITS)
def test_wrong_state_wins_over_bad_arguments(split: Split) -> None:
    server = server_in("AUTHORIZATION")
    (bad,) = feed(server, b"STAT x\r\n", split)
    assert type(bad) is BadCommand
    assert bad.reason is BadCommandReason.WRONG_STATE
    assert bad.hint.line == b"-ERR log in first"


def test_pass_is_refused_unless_it_immediately_follows_user() -> None:
    pair = pair_in("USER")
    # Any exchange between USER and PASS clears the permission, on both sides.
    pair.exchange(Capa(), OkResponse(), EndOfMultiline())
    assert not pair.server.user_accepted
    with pytest.raises(LocalProtocolError):
        pair.client.send(Pass("secret"))
    pair.server.receive_data(b"PASS secret\r\n")
    bad = pair.server.next_event()
    assert type(bad) is BadCommand
    assert bad.reason is BadCommandReason.WRONG_STATE


def test_pass_is_refused_after_a_failed_user() -> None:
    pair = pair_in("AUTHORIZATION")
    pair.exchange(User("nobody"), ErrResponse(b"no such user"))
    with pytest.raises(LocalProtocolError):
        pair.client.send(Pass("secret"))
    pair.server.receive_data(b"PASS secret\r\n")
    bad = pair.server.next_event()
    assert type(bad) is BadCommand
    assert bad.hint.line == b"-ERR send USER first"


@pytest.mark.parametrize(
    ("setup", "hint"),
    [("tls", b"TLS is already active"), ("utf8", b"STLS is not allowed after UTF8")],
)
def test_stls_refused_after_tls_or_utf8(setup: str, hint: bytes) -> None:
    pair = pair_in("AUTHORIZATION", tls_active=setup == "tls")
    if setup == "utf8":
        pair.exchange(Utf8(), OkResponse())
        assert pair.server.utf8_active
    with pytest.raises(LocalProtocolError):
        pair.client.send(Stls())
    pair.server.receive_data(b"STLS\r\n")
    bad = pair.server.next_event()
    assert type(bad) is BadCommand
    assert bad.reason is BadCommandReason.WRONG_STATE
    assert bad.hint.line == b"-ERR " + hint


def test_bad_command_must_be_answered_with_err() -> None:
    server = server_in("TRANSACTION")
    server.receive_data(b"FOO\r\nNOOP\r\n")
    bad = server.next_event()
    assert type(bad) is BadCommand
    assert server.next_event() is PAUSED
    with pytest.raises(LocalProtocolError):
        server.send(OkResponse())
    assert server.send(ErrResponse(b"what?")) == b"-ERR what?\r\n"
    assert server.next_event() == Noop()


# ---------------------------------------------------------- bad-command budget


@pytest.mark.parametrize("budget", [0, 1, 3])
def test_bad_command_budget(budget: int) -> None:
    server = server_in("TRANSACTION", max_bad_commands=budget)
    for _ in range(budget):
        server.receive_data(b"FOO\r\n")
        bad = server.next_event()
        assert type(bad) is BadCommand
        server.send(bad.hint)
        # Good commands in between do not restore the budget.
        server.receive_data(b"NOOP\r\n")
        assert server.next_event() == Noop()
        server.send(OkResponse())
    server.receive_data(b"RETR 0\r\n")
    with pytest.raises(RemoteProtocolError) as exc_info:
        server.next_event()
    assert server.state is State.ERROR
    hint = exc_info.value.event_hint
    assert type(hint) is ErrResponse
    # After a remote error the server may still say why it hangs up, and nothing else.
    assert server.send(hint) == hint.line + b"\r\n"
    with pytest.raises(LocalProtocolError):
        server.send(OkResponse())
    with pytest.raises(RemoteProtocolError):
        server.next_event()


def test_default_bad_command_budget_is_ten() -> None:
    server = server_in("AUTHORIZATION")
    for _ in range(10):
        server.receive_data(b"STAT\r\n")
        bad = server.next_event()
        assert type(bad) is BadCommand
        server.send(bad.hint)
    server.receive_data(b"STAT\r\n")
    with pytest.raises(RemoteProtocolError):
        server.next_event()


def test_bad_sasl_lines_count_against_the_budget() -> None:
    server = server_in("AUTHORIZATION", max_bad_commands=1)
    server.receive_data(b"AUTH PLAIN\r\n")
    assert server.next_event() == Auth("PLAIN")
    server.send(AuthChallenge())
    server.receive_data(b"!!!\r\n")
    bad = server.next_event()
    assert type(bad) is BadCommand
    assert bad.reason is BadCommandReason.BAD_ARGUMENTS
    server.send(bad.hint)
    server.receive_data(b"FOO\r\n")
    with pytest.raises(RemoteProtocolError):
        server.next_event()


# ------------------------------------------------- building and sending commands


@pytest.mark.parametrize(
    "build",
    [
        lambda: User("alice\r\nDELE 1"),
        lambda: User("a\rb"),
        lambda: User("a\nb"),
        lambda: User("a\x00b"),
        lambda: Pass("pw\r\nDELE 1"),
        lambda: Pass("pw\n"),
        lambda: Pass("pw\r"),
        lambda: Pass("\x00"),
        lambda: Apop("mrose\r\nDELE 1", DIGEST),
        lambda: Apop("mr\x00se", DIGEST),
        lambda: RawCommand("NOOP\r\nDELE 1"),
        lambda: RawCommand("NOOP\n"),
        lambda: RawCommand("NO\x00OP"),
        lambda: Lang("en\r\n"),
        lambda: Auth("PLAIN\r\n"),
        lambda: Auth("PLAIN DELE"),
    ],
)
def test_cr_lf_nul_in_arguments_refused_when_building(build: object) -> None:
    # python/cpython#94019: a newline in an argument is command injection.
    with pytest.raises(LocalProtocolError):
        build()  # type: ignore[operator]


@pytest.mark.parametrize(
    "build",
    [
        lambda: User(""),
        lambda: Apop("", DIGEST),
        lambda: Apop("mrose", DIGEST.upper()),
        lambda: Apop("mrose", DIGEST[:-1]),
        lambda: Apop("mrose", "g" * 32),
        lambda: RawCommand(""),
        lambda: Retr(0),
        lambda: Retr(-1),
        lambda: Retr(True),
        lambda: Retr(1.0),
        lambda: Retr("1"),
        lambda: Dele(0),
        lambda: List(0),
        lambda: Uidl(-5),
        lambda: Top(0, 1),
        lambda: Top(1, -1),
        lambda: Top(1, False),
        lambda: Lang(""),
        lambda: Lang("en us"),
        lambda: Auth(None, b"x"),
        lambda: Auth(""),
        lambda: Auth("A" * 21),
        lambda: Auth("PL@IN"),
    ],
)
def test_invalid_arguments_refused_when_building(build: object) -> None:
    with pytest.raises(LocalProtocolError):
        build()  # type: ignore[operator]


def test_top_line_count_may_be_zero() -> None:
    assert Top(1, 0).lines == 0


def _b64_ir(length: int) -> bytes:
    """Initial-response bytes whose base64 form is `length` characters long."""
    assert length % 4 == 0
    return b"x" * (length // 4 * 3)


def _point_for(event: Command) -> SessionPoint:
    return "USER" if isinstance(event, Pass) else "AUTHORIZATION"


@pytest.mark.parametrize(
    "event",
    [
        User("a" * 248),
        Pass("p" * 248),
        Apop("n" * 215, DIGEST),
        Auth("PLAIN", _b64_ir(240)),  # 253 octets
        RawCommand("X" * 253),
    ],
    ids=lambda event: type(event).__name__,
)
def test_command_line_of_255_octets_is_sent(event: Command) -> None:
    client = pair_in(_point_for(event)).client
    assert len(client.send(event)) == (253 if isinstance(event, Auth) else 255)


@pytest.mark.parametrize(
    "event",
    [
        User("a" * 249),
        Pass("p" * 249),
        Apop("n" * 216, DIGEST),
        # RFC 5034: an initial response that does not fit MUST NOT be sent.
        Auth("PLAIN", _b64_ir(244)),  # 257 octets
        RawCommand("X" * 254),
    ],
    ids=lambda event: type(event).__name__,
)
def test_command_line_longer_than_255_octets_refused_on_send(event: Command) -> None:
    client = pair_in(_point_for(event)).client
    with pytest.raises(LocalProtocolError):
        client.send(event)
    # Nothing changed: the client can go on.
    assert client.pending_commands == ()
    assert client.send(Capa()) == b"CAPA\r\n"


def test_sasl_response_only_after_a_challenge() -> None:
    client = pair_in("AUTHORIZATION").client
    with pytest.raises(LocalProtocolError):
        client.send(AuthResponse(b"x"))
    client.send(Auth("PLAIN"))
    with pytest.raises(LocalProtocolError):
        client.send(AuthCancel())


@pytest.mark.parametrize("event", [OkResponse(), Greeting(), ErrResponse()])
def test_client_cannot_send_responses(event: object) -> None:
    client = pair_in("AUTHORIZATION").client
    with pytest.raises(LocalProtocolError):
        client.send(event)  # type: ignore[arg-type]


def test_server_cannot_send_commands() -> None:
    server = server_in("AUTHORIZATION")
    server.receive_data(b"NOOP\r\n")
    with pytest.raises(LocalProtocolError):
        server.send(Noop())


def test_roles_are_checked() -> None:
    with pytest.raises(ValueError):
        Connection("client")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Connection(SERVER, strict=False)
    assert Connection(CLIENT).our_role is CLIENT


def test_server_drains_nothing_before_the_greeting_is_sent() -> None:
    server = Connection(SERVER)
    server.receive_data(b"CAPA\r\n")
    assert server.next_event() is PAUSED
    server.send(Greeting())
    assert drain(server) == [Capa()]


@pytest.mark.parametrize(
    ("point", "line"),
    [
        ("AUTHORIZATION", b"USER a\rb\r\n"),
        ("AUTHORIZATION", b"USER alice\r\r\n"),
        ("AUTHORIZATION", b"APOP a\rb " + DIGEST.encode() + b"\r\n"),
        ("USER", b"PASS se\rcret\r\n"),
    ],
)
def test_server_never_parses_a_bare_cr_into_an_argument(point: SessionPoint, line: bytes) -> None:
    # A CR belongs only to the CRLF that ends the line (RFC 1939 section 3). A parsed
    # event must not carry what the event's own constructor refuses (LocalProtocolError
    # for CR in USER, PASS and APOP); either a -ERR or a fatal error is acceptable.
    server = server_in(point)
    server.receive_data(line)
    with contextlib.suppress(RemoteProtocolError):
        event = server.next_event()
        assert type(event) is BadCommand, event
