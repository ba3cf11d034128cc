"""STLS (RFC 2595 section 4) as a hand-off, and STARTTLS injection."""

from __future__ import annotations

import pytest

from pop3core import (
    CLIENT,
    PAUSED,
    SERVER,
    BadCommand,
    BadCommandReason,
    Capa,
    Connection,
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
    State,
    Stls,
    User,
)
from tests.core.helpers import SPLITS, ConnectionPair, Split, drain, feed

CAPA_PLAIN = [OkResponse(), Data(b"STLS\r\nUSER\r\nSASL PLAIN\r\n"), EndOfMultiline()]
CAPA_TLS = [OkResponse(), Data(b"USER\r\nSASL PLAIN EXTERNAL\r\n"), EndOfMultiline()]


def stls_pair(split: Split = "whole") -> ConnectionPair:
    """Both sides right after ``+OK`` to STLS, with capabilities cached before."""
    pair = ConnectionPair(split)
    pair.greet(Greeting(b"ready"))
    pair.exchange(Capa(), *CAPA_PLAIN)
    assert pair.client.capabilities is not None
    assert pair.client.capabilities.stls
    pair.exchange(Stls(), OkResponse(b"Begin TLS negotiation"))
    return pair


@pytest.mark.parametrize("split", SPLITS)
def test_stls_hand_off(split: Split) -> None:
    pair = stls_pair(split)
    for conn in (pair.client, pair.server):
        assert conn.state is State.STARTING_TLS
        # Nothing is parsed until the adapter reports that TLS is up.
        assert conn.next_event() is PAUSED
        assert not conn.tls_active
    with pytest.raises(LocalProtocolError):
        pair.client.send(Noop())
    with pytest.raises(LocalProtocolError):
        pair.server.send(OkResponse())

    pair.client.tls_established()
    pair.server.tls_established()
    pair.assert_agree()
    for conn in (pair.client, pair.server):
        assert conn.state is State.AUTHORIZATION
        assert conn.tls_active
        assert conn.exchange is Exchange.IDLE
    # RFC 2595: the client MUST discard the capabilities it cached before TLS.
    assert pair.client.capabilities is None
    pair.exchange(Capa(), *CAPA_TLS)
    assert pair.client.capabilities is not None
    assert not pair.client.capabilities.stls
    assert pair.client.capabilities.sasl == ("PLAIN", "EXTERNAL")
    # AUTHORIZATION starts afresh: log in as usual.
    pair.exchange(User("alice"), OkResponse())
    pair.exchange(Pass("secret"), OkResponse())
    assert pair.server.state is State.TRANSACTION


def test_stls_refused_once_tls_is_up() -> None:
    pair = stls_pair()
    pair.client.tls_established()
    pair.server.tls_established()
    with pytest.raises(LocalProtocolError):
        pair.client.send(Stls())
    pair.server.receive_data(b"STLS\r\n")
    bad = pair.server.next_event()
    assert type(bad) is BadCommand
    assert bad.reason is BadCommandReason.WRONG_STATE
    assert bad.hint.line == b"-ERR TLS is already active"


def test_user_accepted_before_stls_does_not_survive_it() -> None:
    pair = ConnectionPair("whole")
    pair.greet(Greeting())
    pair.exchange(User("alice"), OkResponse())
    pair.exchange(Stls(), OkResponse())
    pair.client.tls_established()
    pair.server.tls_established()
    pair.assert_agree()
    with pytest.raises(LocalProtocolError):
        pair.client.send(Pass("secret"))


@pytest.mark.parametrize("split", SPLITS)
def test_stls_err_keeps_the_session_in_the_clear(split: Split) -> None:
    pair = ConnectionPair(split)
    pair.greet(Greeting())
    pair.exchange(Stls(), ErrResponse(b"TLS not available"))
    assert pair.client.state is State.AUTHORIZATION
    assert not pair.client.tls_active
    # The barrier is lifted once the exchange is over: pipelining is allowed again.
    assert pair.client.send(Capa()) == b"CAPA\r\n"
    assert pair.client.send(User("alice")) == b"USER alice\r\n"


@pytest.mark.parametrize("role", [CLIENT, SERVER])
def test_tls_established_only_after_stls(role: object) -> None:
    conn = Connection(role)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        conn.tls_established()


# ------------------------------------------------------------ injection


@pytest.mark.parametrize("check", ["next_event", "tls_established"])
@pytest.mark.parametrize("arrival", ["with-stls", "after-ok"])
def test_server_rejects_commands_buffered_past_stls(check: str, arrival: str) -> None:
    server = Connection(SERVER)
    server.send(Greeting())
    injected = b"USER evil\r\nPASS evil\r\n"
    server.receive_data(b"STLS\r\n" + (injected if arrival == "with-stls" else b""))
    assert server.next_event() == Stls()
    assert server.next_event() is PAUSED
    server.send(OkResponse(b"Begin TLS negotiation"))
    if arrival == "after-ok":
        server.receive_data(injected)
    with pytest.raises(RemoteProtocolError):
        getattr(server, check)()
    assert server.state is State.ERROR
    assert not server.tls_active


@pytest.mark.parametrize("check", ["next_event", "tls_established"])
@pytest.mark.parametrize("arrival", ["with-ok", "after-ok"])
def test_client_rejects_responses_buffered_past_stls_ok(check: str, arrival: str) -> None:
    client = Connection(CLIENT)
    feed(client, b"+OK ready\r\n")
    client.send(Stls())
    injected = b"+OK injected\r\n"
    client.receive_data(b"+OK Begin TLS\r\n" + (injected if arrival == "with-ok" else b""))
    assert client.next_event() == OkResponse(b"Begin TLS")
    assert client.state is State.STARTING_TLS
    if arrival == "after-ok":
        client.receive_data(injected)
    with pytest.raises(RemoteProtocolError):
        getattr(client, check)()
    assert client.state is State.ERROR
    assert not client.tls_active


def test_client_rejects_injection_byte_by_byte() -> None:
    client = Connection(CLIENT)
    feed(client, b"+OK ready\r\n")
    client.send(Stls())
    with pytest.raises(RemoteProtocolError):
        feed(client, b"+OK go\r\n-ERR x\r\n", "bytewise")


def test_no_pipelining_across_stls() -> None:
    client = Connection(CLIENT)
    feed(client, b"+OK ready\r\n")
    client.send(Stls())
    for command in (Capa(), User("alice"), Noop()):
        with pytest.raises(LocalProtocolError):
            client.send(command)
    assert client.pending_commands == (Stls(),)


def test_stls_before_greeting_completes_is_refused() -> None:
    client = Connection(CLIENT)
    with pytest.raises(LocalProtocolError):
        client.send(Stls())
    assert drain(client) == []
