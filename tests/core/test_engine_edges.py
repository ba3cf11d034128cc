"""Edges of the engine that the protocol tests do not reach on their way.

Secrets hidden in reprs, abstract errors, the ends of a session on both sides,
the CAPA bound, a server mechanism that misbehaves, and the log line's escapes.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

import pop3core as p
from tests.core.helpers import ConnectionPair, drain, feed


@pytest.mark.parametrize(
    ("event", "shown", "hidden"),
    [
        (p.Pass("hunter2"), "Pass(password=<hidden>)", "hunter2"),
        (p.Apop("bob", "0123456789abcdef" * 2), "digest=<hidden>", "0123456789abcdef"),
        (p.Auth("PLAIN", b"\x00bob\x00hunter2"), "initial_response=<hidden>", "hunter2"),
        (p.Auth("PLAIN"), "Auth(mechanism='PLAIN')", "hidden"),
        (p.AuthResponse(b"hunter2"), "<7 bytes hidden>", "hunter2"),
        (p.AuthChallenge(b"token"), "<5 bytes>", "token"),
        (p.Data(b"body"), "Data(<4 bytes>)", "body"),
    ],
)
def test_reprs_never_show_secrets_or_bodies(event: p.Event, shown: str, hidden: str) -> None:
    assert shown in repr(event)
    assert hidden not in repr(event)


def test_data_must_be_bytes_like() -> None:
    with pytest.raises(p.LocalProtocolError, match="bytes-like"):
        p.Data("text")  # type: ignore[arg-type]


def test_protocol_error_is_abstract_and_sentinels_read_well() -> None:
    with pytest.raises(TypeError, match="abstract"):
        p.ProtocolError("x")
    assert repr(p.NEED_DATA) == "NEED_DATA"
    assert repr(p.PAUSED) == "PAUSED"


def test_either_side_may_declare_the_connection_closed() -> None:
    pair = ConnectionPair()
    pair.greet(p.Greeting(b"ready"))
    for conn in (pair.client, pair.server):
        assert conn.send(p.ConnectionClosed()) == b""
        assert conn.state is p.State.CLOSED
        assert conn.next_event() == p.ConnectionClosed()
    with pytest.raises(p.LocalProtocolError, match="closed"):
        pair.client.send(p.Noop())


def test_a_server_sends_only_what_the_exchange_allows() -> None:
    pair = ConnectionPair()
    pair.greet(p.Greeting(b"ready"))
    pair.send(p.CLIENT, [p.Capa()])
    with pytest.raises(p.LocalProtocolError, match="cannot send Data now"):
        pair.server.send(p.Data(b"x"))


def test_a_capa_reply_is_bounded() -> None:
    client = p.Connection(p.CLIENT)
    feed(client, b"+OK ready\r\n")
    client.send(p.Capa())
    line = b"X-CAPABILITY " + b"x" * 400 + b"\r\n"
    client.receive_data(b"+OK\r\n" + line * (p._limits.MAX_CAPA_REPLY // len(line) + 2))
    with pytest.raises(p.RemoteProtocolError, match="CAPA reply too long"):
        drain(client)


# ---------------------------------------------------------------- misbehaving mechanisms


class Broken(p.ServerMechanism):
    """A plug-in mechanism whose exchange ends in `result`, or raises it."""

    name = "X-BROKEN"

    def __init__(self, result: object) -> None:
        self.result = result

    def exchange(self, initial_response: bytes | None) -> Generator[p.ServerStep, Any, str]:
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result  # type: ignore[return-value]
        yield p.Challenge(b"")  # makes this a generator


def session_with(mechanism: p.ServerMechanism) -> p.ServerSession:
    session = p.ServerSession(p.ServerOptions(allow_cleartext=True, mechanisms=[mechanism]))
    session.bytes_to_send()
    session.receive_data(b"AUTH X-BROKEN\r\n")
    return session


def test_a_mechanism_that_raises_gets_a_temporary_failure_and_the_error() -> None:
    session = session_with(Broken(ValueError("bug in a plug-in")))
    with pytest.raises(ValueError, match="bug in a plug-in"):
        session.next_event()
    assert session.bytes_to_send() == b"-ERR [SYS/TEMP] temporary authentication failure\r\n"


@pytest.mark.parametrize("result", [42, p.Identity(""), p.Identity("bob", None)])  # type: ignore[arg-type]
def test_a_mechanism_must_return_a_real_identity(result: object) -> None:
    session = session_with(Broken(result))
    with pytest.raises(p.LocalProtocolError, match=r"(?i)identity"):
        session.next_event()


def test_a_temporary_failure_is_not_a_failed_login() -> None:
    session = session_with(Broken(p.AuthenticationFailed.temporary("directory down")))
    assert session.next_event() is p.NEED_DATA  # no LoginFailed: nothing to delay or log
    assert session.bytes_to_send() == b"-ERR [SYS/TEMP] directory down\r\n"
    assert session.login_failures == 0


def test_the_session_shows_its_listing_and_deleted_marks() -> None:
    session = p.ServerSession(p.ServerOptions(allow_cleartext=True))
    session.receive_data(b"USER a\r\nPASS b\r\n")
    assert isinstance(session.next_event(), p.PasswordCheck)
    session.password_checked(True)
    assert isinstance(session.next_event(), p.MaildropRequest)
    session.maildrop_opened([p.MessageInfo(10, "u1"), p.MessageInfo(20, "u2")])
    session.receive_data(b"DELE 2\r\n")
    assert session.next_event() is p.NEED_DATA
    assert session.listing == [p.MessageInfo(10, "u1"), p.MessageInfo(20, "u2")]
    assert session.deleted == frozenset({1})


# ---------------------------------------------------------------- the failure log line


def test_long_and_astral_names_are_cut_and_escaped_in_the_log_line() -> None:
    # U+E0001 LANGUAGE TAG: a format character, invisible in a log.
    event = p.LoginFailed("\U000e0001" + "x" * 300, "PLAIN", "bad", 2.0)
    line = p.login_failure_message(event, "192.0.2.1", 110)
    assert 'user="\\U000e0001' in line
    assert "x" * 127 + '..."' in line
    assert len(line) < 300
