"""Validation decisions taken after review: arguments, response texts, codes."""

from __future__ import annotations

import re

import pytest

import pop3core as p
from tests.core.helpers import drain


def greeted_server() -> p.Connection:
    server = p.Connection(p.SERVER)
    server.send(p.Greeting())
    return server


@pytest.mark.parametrize(
    "build",
    [
        lambda: p.Pass(""),
        lambda: p.User(" alice"),
        lambda: p.User("alice "),
        lambda: p.User("a\x1bb"),
        lambda: p.Pass("tab\there"),
        lambda: p.Apop("del\x7f", "0" * 32),
        lambda: p.RawCommand("XTND\x08"),
        lambda: p.OkResponse(b"[IN-USE] looks like a code"),
        lambda: p.ErrResponse("[SYS/TEMP] looks like a code"),
    ],
)
def test_invalid_events_are_refused_when_built(build: object) -> None:
    with pytest.raises(p.LocalProtocolError):
        build()  # type: ignore[operator]


def test_a_refused_password_is_not_shown() -> None:
    """A password read with its newline is refused, and the error does not repeat it."""
    for build in (
        lambda: p.Pass("hunter2-top-secret\n"),
        lambda: p.RawCommand("PASS hunter2-top-secret\n"),
    ):
        with pytest.raises(p.LocalProtocolError) as refused:
            build()
        assert "hunter2" not in str(refused.value)
    with pytest.raises(p.LocalProtocolError, match=re.escape(repr("a\x1bb"))):
        p.User("a\x1bb")  # a user name is no secret: shown, to help


def test_text_with_a_code_goes_through_code() -> None:
    err = p.ErrResponse(b"locked", code="IN-USE")
    assert err.line == b"-ERR [IN-USE] locked"
    assert p.OkResponse(b"not [a code] at the start").code is None


@pytest.mark.parametrize(
    "line",
    [b"PASS\r\n", b"PASS \r\n", b"USER a\x1bb\r\n", b"USER a\rb\r\n", b"NOOP\t\r\n"],
)
def test_server_refuses_empty_pass_and_control_characters(line: bytes) -> None:
    server = greeted_server()
    server.receive_data(b"USER alice\r\n")
    assert drain(server) == [p.User("alice")]
    server.send(p.OkResponse())
    server.receive_data(line)
    (event,) = drain(server)
    assert isinstance(event, p.BadCommand)
    assert event.reason in (p.BadCommandReason.BAD_ARGUMENTS, p.BadCommandReason.UNKNOWN)


def test_raw_command_limit_is_configurable() -> None:
    client = p.Connection(p.CLIENT, max_command_length=None)
    client.receive_data(b"+OK\r\n")
    client.next_event()
    assert client.send(p.RawCommand("ECHO " + "a" * 3000)).startswith(b"ECHO aaa")
    strict = p.Connection(p.CLIENT, strict=False)
    strict.receive_data(b"+OK\r\n")
    strict.next_event()
    with pytest.raises(p.LocalProtocolError, match="255"):
        strict.send(p.RawCommand("ECHO " + "a" * 300))


def test_capabilities_compare_as_mappings() -> None:
    caps = p.parse_capa(b"TOP\r\nSASL PLAIN\r\n")
    assert caps == {"TOP": (), "SASL": ("PLAIN",)}
    assert caps == p.parse_capa(b"TOP\r\nSASL PLAIN\r\n")
    assert caps != p.parse_capa(b"TOP\r\n")


def test_dovecot_referral_code_keeps_its_url() -> None:
    code, rest = p.split_response_code(b"[REFERRAL/pop://user@host.example/] go there")
    assert code is not None
    assert code.levels == ("REFERRAL", "pop://user@host.example/")
    assert code.matches("referral")
    assert code == p.ResponseCode(str(code))
    assert rest == b"go there"
    assert p.split_response_code(b"[SYS//TEMP] x")[0] is None
