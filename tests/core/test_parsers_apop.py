"""The APOP timestamp of the greeting and the APOP digest (RFC 1939 section 7)."""

from __future__ import annotations

import pytest

from pop3core import CLIENT, Apop, Connection, Greeting, apop_digest, find_apop_timestamp
from tests.core.helpers import feed


@pytest.mark.parametrize(
    ("line", "timestamp"),
    [
        (
            b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>",
            b"<1896.697170952@dbc.mtview.ca.us>",
        ),
        (b"+OK <1.2@x> at the start", b"<1.2@x>"),
        (b"+OK no timestamp here", None),
        (b"+OK", None),
        # Only a <...> with "@" is a msg-id (what curl and Thunderbird take).
        (b"+OK <abc> ready", None),
        (b"+OK <> ready", None),
        (b"+OK <abc> ready <1.2@host>", b"<1.2@host>"),
        # The first one wins.
        (b"+OK <a@b> <c@d>", b"<a@b>"),
        # The nearest "<" before a ">" opens the candidate.
        (b"+OK <<1@x>>", b"<1@x>"),
        (b"+OK < <1@x>", b"<1@x>"),
        (b"+OK > <1@x>", b"<1@x>"),
        (b"+OK <1@x", None),
        (b"+OK 1@x>", None),
        (b"+OK <a> @ <b>", None),
        (b"+OK <@>", b"<@>"),
        # Office 365's trailing bracket is neither a code nor a timestamp.
        (b"+OK The Microsoft Exchange POP3 service is ready. [UwBOADIA]", None),
    ],
)
def test_find_apop_timestamp(line: bytes, timestamp: bytes | None) -> None:
    assert find_apop_timestamp(line) == timestamp


# Hostile greetings (CVE-2018-1060 was a ReDoS in poplib's timestamp regex). Each
# is big enough that quadratic work would not finish within any test run.
HOSTILE: list[tuple[bytes, bytes | None]] = [
    (b"+OK " + b"<" * 1_000_000, None),
    (b"+OK" + b"<" * 1_000_000, None),  # test_poplib's test_apop_REDOS
    (b"<" * 500_000 + b">" * 500_000, None),
    (b"+OK " + b"<@" * 500_000, None),
    (b"+OK " + b"<a>" * 333_333, None),
    (b"+OK " + b">" * 500_000 + b"<" * 500_000, None),
    (b"+OK " + (b"<" + b"@" * 1000) * 1000, None),
    (b"+OK " + b"<" * 500_000 + b"@" * 500_000 + b">", b"<" + b"@" * 500_000 + b">"),
    (b"+OK " + b"<" * 500_000 + b"@>" * 250_000, b"<@>"),
]


@pytest.mark.parametrize(("line", "expected"), HOSTILE, ids=range(len(HOSTILE)))
def test_find_apop_timestamp_is_linear(line: bytes, expected: bytes | None) -> None:
    assert find_apop_timestamp(line) == expected


def test_hostile_greeting_through_the_connection() -> None:
    line = b"+OK " + b"<" * 1_000_000
    client = Connection(CLIENT, max_line_length=len(line) + 2)
    (greeting,) = feed(client, line + b"\r\n")
    assert type(greeting) is Greeting
    assert greeting.timestamp is None


def test_timestamp_followed_by_hostile_text() -> None:
    line = b"+OK <1.2@x> " + b"<" * 500_000 + b">" * 500_000
    assert find_apop_timestamp(line) == b"<1.2@x>"


def test_last_of_many_candidates() -> None:
    line = b"+OK " + b"<a> " * 200_000 + b"<1.2@x>"
    assert find_apop_timestamp(line) == b"<1.2@x>"


@pytest.mark.parametrize(
    ("timestamp", "secret", "digest"),
    [
        # RFC 1939 section 7.
        (b"<1896.697170952@dbc.mtview.ca.us>", "tanstaaf", "c4c9334bac560ecc979e58001b3e22fb"),
        (b"<1896.697170952@dbc.mtview.ca.us>", b"tanstaaf", "c4c9334bac560ecc979e58001b3e22fb"),
    ],
)
def test_apop_digest(timestamp: bytes, secret: str | bytes, digest: str) -> None:
    assert apop_digest(timestamp, secret) == digest
    # The digest is a valid APOP argument.
    assert Apop("mrose", apop_digest(timestamp, secret)).digest == digest


def test_apop_digest_encodes_str_secrets_as_utf8() -> None:
    timestamp = b"<1.2@x>"
    assert apop_digest(timestamp, "s\u00e9cret") == apop_digest(timestamp, "s\u00e9cret".encode())
    assert apop_digest(timestamp, "a") != apop_digest(b"<1.3@x>", "a")
