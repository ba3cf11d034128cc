"""AUTH exchanges (RFC 5034): challenges, response lines, cancel, limits."""

from __future__ import annotations

import base64
from typing import Literal

import pytest

from pop3core import (
    AUTH,
    CLIENT,
    NEED_DATA,
    PAUSED,
    SERVER,
    Auth,
    AuthCancel,
    AuthChallenge,
    AuthResponse,
    BadCommand,
    BadCommandReason,
    Capa,
    Connection,
    ConnectionClosed,
    ErrResponse,
    Event,
    Exchange,
    Greeting,
    LocalProtocolError,
    OkResponse,
    RemoteProtocolError,
    State,
)
from tests.core.helpers import SPLITS, ConnectionPair, Split, feed

TRAILING = b"\x16\x00 not parsed\r\n"


def pair_in_auth(split: Split = "whole", **kwargs: object) -> ConnectionPair:
    pair = ConnectionPair(split, **kwargs)
    pair.greet(Greeting(b"ready"))
    return pair


def challenged_pair(mechanism: str = "PLAIN", **kwargs: object) -> ConnectionPair:
    """A pair in which the server has sent an empty challenge to AUTH `mechanism`."""
    pair = pair_in_auth(**kwargs)
    pair.send(CLIENT, [Auth(mechanism)])
    pair.send(SERVER, [AuthChallenge()])
    pair.assert_agree()
    assert pair.client.exchange is Exchange.SASL
    return pair


SASL_LINES: list[tuple[Event, bytes]] = [
    (AuthResponse(b"\x00alice\x00secret"), b"AGFsaWNlAHNlY3JldA==\r\n"),
    (AuthResponse(b"alice"), b"YWxpY2U=\r\n"),
    # An empty response is an empty line.
    (AuthResponse(b""), b"\r\n"),
    (AuthCancel(), b"*\r\n"),
]


@pytest.mark.parametrize(("event", "wire"), SASL_LINES)
def test_client_writes_sasl_line(event: Event, wire: bytes) -> None:
    pair = challenged_pair()
    assert pair.client.send(event) == wire
    assert pair.client.exchange is Exchange.RESPONSE


@pytest.mark.parametrize("split", ["whole", "bytewise", "trailing"])
@pytest.mark.parametrize(("event", "wire"), SASL_LINES)
def test_server_reads_sasl_line(event: Event, wire: bytes, split: str) -> None:
    server = challenged_pair().server
    if split == "bytewise":
        for i in range(len(wire) - 1):
            server.receive_data(wire[i : i + 1])
            assert server.next_event() is NEED_DATA
        server.receive_data(wire[-1:])
    else:
        server.receive_data(wire + (TRAILING if split == "trailing" else b""))
    assert server.next_event() == event
    assert server.next_event() is PAUSED
    assert server.trailing_data == ((TRAILING if split == "trailing" else b""), False)


@pytest.mark.parametrize(
    "wire",
    [
        b"!!!\r\n",
        b"YWxpY2U\r\n",  # missing padding
        b"YW xpY2U=\r\n",
        b"=\r\n",  # "=" means empty only for the initial response
        b"**\r\n",
    ],
)
def test_server_refuses_invalid_base64_response(wire: bytes) -> None:
    pair = challenged_pair()
    pair.server.receive_data(wire)
    bad = pair.server.next_event()
    assert type(bad) is BadCommand
    assert bad.reason is BadCommandReason.BAD_ARGUMENTS
    assert bad.keyword == "AUTH"
    # RFC 5034: a server that cannot decode a response replies -ERR; AUTH has failed.
    with pytest.raises(LocalProtocolError):
        pair.server.send(OkResponse())
    pair.client.send(AuthResponse(b"ignored"))  # what the client believes it sent
    pair.send(SERVER, [bad.hint])
    pair.assert_agree()
    assert pair.server.state is State.AUTHORIZATION


@pytest.mark.parametrize("split", SPLITS)
def test_plain_with_empty_challenge(split: Split) -> None:
    pair = pair_in_auth(split)
    pair.send(CLIENT, [Auth("PLAIN")])
    pair.send(SERVER, [AuthChallenge()])
    pair.assert_agree()
    pair.send(CLIENT, [AuthResponse(b"\x00alice\x00secret")])
    pair.send(SERVER, [OkResponse(b"logged in")])
    pair.assert_agree()
    assert pair.client.state is State.TRANSACTION
    assert pair.client.authenticated


@pytest.mark.parametrize("split", SPLITS)
def test_office365_two_line_xoauth2(split: Split) -> None:
    # C: AUTH XOAUTH2 / S: + / C: <base64> / S: +OK (a bare "+", not "+ ").
    pair = pair_in_auth(split)
    pair.send(CLIENT, [Auth("XOAUTH2")])
    pair.server.send(AuthChallenge())  # the engine itself writes "+ "
    assert feed(pair.client, b"+\r\n", split) == [AuthChallenge()]
    token = b"user=alice@example.com\x01auth=Bearer " + b"t" * 1500 + b"\x01\x01"
    line = pair.client.send(AuthResponse(token))
    assert line == base64.b64encode(token) + b"\r\n"
    assert len(line) > 2000  # continuation lines are not bound by the command limit
    assert feed(pair.server, line, split) == [AuthResponse(token)]
    pair.send(SERVER, [OkResponse(b"User successfully authenticated.")])
    assert pair.client.state is State.TRANSACTION


@pytest.mark.parametrize("split", SPLITS)
def test_xoauth2_error_flow(split: Split) -> None:
    # On error the server sends a JSON challenge; the client answers with an empty line.
    error = b'{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}'
    pair = pair_in_auth(split)
    pair.send(CLIENT, [Auth("XOAUTH2", b"user=a\x01auth=Bearer t\x01\x01")])
    pair.send(SERVER, [AuthChallenge(error)])
    pair.send(CLIENT, [AuthResponse(b"")])
    pair.send(SERVER, [ErrResponse(b"authentication failed", AUTH)])
    pair.assert_agree()
    assert pair.client.state is State.AUTHORIZATION


@pytest.mark.parametrize("split", SPLITS)
def test_several_continuation_lines(split: Split) -> None:
    pair = pair_in_auth(split)
    pair.send(CLIENT, [Auth("LOGIN")])
    pair.send(SERVER, [AuthChallenge(b"Username:")])
    pair.send(CLIENT, [AuthResponse(b"alice")])
    pair.send(SERVER, [AuthChallenge(b"Password:")])
    pair.send(CLIENT, [AuthResponse(b"secret")])
    pair.send(SERVER, [OkResponse()])
    pair.assert_agree()
    assert pair.server.state is State.TRANSACTION


@pytest.mark.parametrize("split", SPLITS)
def test_cancel_is_answered_with_err(split: Split) -> None:
    pair = challenged_pair()
    pair.split = split
    pair.send(CLIENT, [AuthCancel()])
    # RFC 5034: after "*" the server MUST reply -ERR.
    with pytest.raises(LocalProtocolError):
        pair.server.send(OkResponse())
    with pytest.raises(LocalProtocolError):
        pair.server.send(AuthChallenge())
    pair.send(SERVER, [ErrResponse(b"authentication cancelled")])
    pair.assert_agree()
    assert pair.client.state is State.AUTHORIZATION
    # After a failed or cancelled AUTH the client may try again.
    pair.send(CLIENT, [Auth("PLAIN", b"\x00a\x00b")])
    pair.send(SERVER, [OkResponse()])
    assert pair.client.state is State.TRANSACTION


def test_client_cancels_an_invalid_challenge() -> None:
    pair = pair_in_auth()
    pair.send(CLIENT, [Auth("CRAM-MD5")])
    pair.server.send(AuthChallenge())
    assert feed(pair.client, b"+ not*base64\r\n") == [AuthChallenge(valid=False)]
    assert pair.client.next_event() is PAUSED  # the client owes a response line
    assert pair.client.send(AuthCancel()) == b"*\r\n"
    assert feed(pair.server, b"*\r\n") == [AuthCancel()]
    pair.send(SERVER, [ErrResponse()])
    assert pair.client.state is State.AUTHORIZATION


def test_initial_response_then_success() -> None:
    pair = pair_in_auth()
    pair.exchange(Auth("EXTERNAL", b""), OkResponse())
    assert pair.server.state is State.TRANSACTION
    # After a successful AUTH, any further AUTH must be refused (RFC 5034).
    with pytest.raises(LocalProtocolError):
        pair.client.send(Auth("PLAIN"))


def test_long_sasl_response_within_the_server_limit() -> None:
    pair = challenged_pair("GSSAPI")
    token = bytes(range(256)) * 40  # 10 KiB, far beyond the 255-octet command limit
    pair.send(CLIENT, [AuthResponse(token)])


@pytest.mark.parametrize("split", SPLITS)
def test_server_sasl_line_of_exactly_the_limit(split: Split) -> None:
    pair = challenged_pair(max_sasl_line_length=102)
    wire = b"A" * 100 + b"\r\n"
    assert feed(pair.server, wire, split) == [AuthResponse(base64.b64decode(wire))]


@pytest.mark.parametrize("split", SPLITS)
def test_server_sasl_line_one_octet_over_the_limit(split: Split) -> None:
    pair = challenged_pair(max_sasl_line_length=102)
    with pytest.raises(RemoteProtocolError):
        feed(pair.server, b"A" * 101 + b"\r\n", split)
    assert pair.server.state is State.ERROR


@pytest.mark.parametrize("split", SPLITS)
def test_client_accepts_a_long_challenge(split: Split) -> None:
    # RFC 5034 section 4: challenges after the initial one may be arbitrarily long,
    # whatever the line limits elsewhere (GSSAPI and SCRAM tokens exceed 512 octets).
    challenge = bytes(range(256)) * 12  # 3 KiB, 4 KiB of base64
    client = challenged_pair("GSSAPI").client
    client.send(AuthResponse(b"first token"))
    wire = b"+ " + base64.b64encode(challenge) + b"\r\n"
    assert feed(client, wire, split) == [AuthChallenge(challenge)]


def test_status_line_to_auth_is_still_limited() -> None:
    client = Connection(CLIENT)
    feed(client, b"+OK\r\n")
    client.send(Auth("PLAIN"))
    with pytest.raises(RemoteProtocolError):
        feed(client, b"-ERR " + b"x" * 600 + b"\r\n")


@pytest.mark.parametrize("wire", [b"+\r\n", b"+ \r\n", b"+ dGVzdA==\r\n"])
@pytest.mark.parametrize("command", [Capa(), Auth()])
def test_continuation_outside_auth_is_a_protocol_error(wire: bytes, command: object) -> None:
    # "+" alone (or "+ data") answers only AUTH <mechanism> in strict mode.
    client = Connection(CLIENT)
    feed(client, b"+OK\r\n")
    client.send(command)  # type: ignore[arg-type]
    with pytest.raises(RemoteProtocolError):
        feed(client, wire)
    assert client.state is State.ERROR


@pytest.mark.parametrize("mode", ["pre-login", "after-cancel"])
def test_sasl_response_outside_a_challenge_is_refused(
    mode: Literal["pre-login", "after-cancel"],
) -> None:
    pair = pair_in_auth() if mode == "pre-login" else challenged_pair()
    if mode == "after-cancel":
        pair.client.send(AuthCancel())
    with pytest.raises(LocalProtocolError):
        pair.client.send(AuthResponse(b"x"))


def test_server_cannot_send_sasl_challenge_twice_without_a_response() -> None:
    pair = challenged_pair()
    with pytest.raises(LocalProtocolError):
        pair.server.send(AuthChallenge())
    assert pair.server.exchange is Exchange.SASL


def test_server_eof_during_sasl() -> None:
    server = challenged_pair().server
    server.receive_data(b"")
    assert server.next_event() == ConnectionClosed()
    assert server.state is State.CLOSED
