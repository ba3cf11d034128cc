"""Typed errors from response codes, and protocol logs without secrets."""

from __future__ import annotations

import pytest

import pop3core as p


@pytest.mark.parametrize(
    ("code", "command", "expected"),
    [
        ("IN-USE", p.Pass("x"), p.MailboxInUse),
        ("LOGIN-DELAY", p.Apop("a", "0" * 32), p.LoginDelayError),
        ("SYS/TEMP", p.Retr(1), p.TemporaryError),
        ("SYS/TEMP/DISK", p.Retr(1), p.TemporaryError),  # unknown sub-levels count as parent
        ("SYS/PERM", p.Stat(), p.PermanentError),
        ("AUTH", p.Auth("PLAIN"), p.AuthenticationError),
        ("UTF8", p.Top(1, 0), p.UTF8Required),
        (None, p.User("x"), p.AuthenticationError),  # a refused login, no code
        (None, p.Retr(1), p.ResponseError),
        ("X-UNKNOWN", p.Retr(1), p.ResponseError),
    ],
)
def test_error_for(code: str | None, command: p.Command, expected: type) -> None:
    reply = p.ErrResponse(b"no", code)
    error = p.error_for(reply, command)
    assert type(error) is expected
    assert error.reply is reply
    assert error.command is command
    assert error.text == "no"
    assert (error.code is None) == (code is None)
    assert str(error).startswith(command.keyword + ": -ERR")


def test_error_without_command() -> None:
    error = p.error_for(p.ErrResponse(b"server busy", "SYS/TEMP"))
    assert isinstance(error, p.TemporaryError)
    assert str(error) == "-ERR [SYS/TEMP] server busy"


SECRETS = ("hunter2", "c4c9334bac560ecc979e58001b3e22fb", "dG9rZW4=")


@pytest.mark.parametrize(
    ("event", "line"),
    [
        (p.Pass("hunter2"), "PASS <hidden>"),
        (p.Apop("mrose", "c4c9334bac560ecc979e58001b3e22fb"), "APOP mrose <hidden>"),
        (p.Auth("PLAIN", b"\0u\0hunter2"), "AUTH PLAIN <hidden>"),
        (p.Auth("PLAIN"), "AUTH PLAIN"),
        (p.Auth(), "AUTH"),
        (p.AuthResponse(b"hunter2"), "<hidden> (SASL response)"),
        (p.AuthCancel(), "*"),
        (p.AuthChallenge(b"abc"), "+ <SASL challenge, 3 octets>"),
        (p.RawCommand("PASS hunter2"), "PASS <hidden>"),
        (p.RawCommand("AUTH XOAUTH2 dG9rZW4="), "AUTH XOAUTH2 <hidden>"),
        (p.RawCommand("AUTH XOAUTH2"), "AUTH XOAUTH2"),
        (p.RawCommand("XTND XLST"), "XTND XLST"),
        (p.User("alice"), "USER alice"),
        (p.Retr(3), "RETR 3"),
        (p.Stat(), "STAT"),
        (p.OkResponse(b"2 320"), "+OK 2 320"),
        (p.ErrResponse(b"locked", "IN-USE"), "-ERR [IN-USE] locked"),
        (p.Greeting(b"hi"), "+OK hi"),
        (p.Data(b"12345"), "<5 octets of data>"),
        (p.EndOfMultiline(), "."),
        (p.ConnectionClosed(), "ConnectionClosed"),
    ],
)
def test_describe_hides_secrets(event: p.Event, line: str) -> None:
    text = p.describe(event)
    assert text == line
    assert not any(secret in text for secret in SECRETS)
