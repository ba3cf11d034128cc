"""STAT, LIST, UIDL, LANG and bare-AUTH result parsers (SPEC.md section 1.11, items 9-10)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import pytest

from pop3core import (
    CLIENT,
    Command,
    Connection,
    Data,
    MaildropStat,
    Pass,
    RemoteProtocolError,
    ScanListing,
    UniqueIdListing,
    User,
    parse_auth_listing,
    parse_lang_listing,
    parse_list,
    parse_list_line,
    parse_stat,
    parse_uidl,
    parse_uidl_line,
)
from pop3core import List as ListCommand
from pop3core import Uidl as UidlCommand
from tests.core.helpers import feed

# ------------------------------------------------------------------ STAT


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"2 320", (2, 320)),
        (b"0 0", (0, 0)),
        # RFC 1939 section 5: anything may follow the two numbers.
        (b"2 320 more text", (2, 320)),
        (b"2 320 messages (320 octets)", (2, 320)),
        (b"2\t320", (2, 320)),
        (b"2  320 ", (2, 320)),
        (b"007 0320", (7, 320)),
        (b"4294967296 18446744073709551616", (4294967296, 18446744073709551616)),
    ],
)
def test_parse_stat(text: bytes, expected: tuple[int, int]) -> None:
    result = parse_stat(text)
    assert result == expected
    assert type(result) is MaildropStat
    assert (result.messages, result.octets) == expected


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"2",
        b"x 320",
        b"2 x",
        b"-1 320",
        b"2 -320",
        b"+2 320",
        b"2 3.5",
        b"2,320",
        b"\xd9\xa1 320",
        b"two hundred",
        # gh-130637: poplib used to raise ValueError/IndexError here, not error_proto.
        b"messages: 2",
        # A number too long to convert is malformed, not an internal error.
        b"1" * 5000 + b" 1",
        b"1 " + b"9" * 5000,
    ],
)
def test_parse_stat_malformed(text: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_stat(text)


# ------------------------------------------------------------- LIST n / UIDL n


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"1 120", (1, 120)),
        (b"2 200 extra text", (2, 200)),
        (b"3 0", (3, 0)),
    ],
)
def test_parse_list_line(text: bytes, expected: tuple[int, int]) -> None:
    result = parse_list_line(text)
    assert result == expected
    assert type(result) is ScanListing
    assert (result.number, result.size) == expected


@pytest.mark.parametrize(
    "text", [b"", b"1", b"0 120", b"-1 120", b"1 x", b"x 120", b"1 " + b"9" * 5000]
)
def test_parse_list_line_malformed(text: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_list_line(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"1 whqtswO00WBw418f9t5JxYwZ", (1, "whqtswO00WBw418f9t5JxYwZ")),
        (b"2 QhdPYR:00WBw1Ph7x7", (2, "QhdPYR:00WBw1Ph7x7")),
        (b"3 " + b"u" * 100, (3, "u" * 100)),  # longer than RFC 1939's 70: tolerated
        (b"4 \x7f\x01", (4, "\x7f\x01")),  # outside 0x21-0x7E: tolerated
        (b"5 caf\xc3\xa9", (5, "caf\udcc3\udca9")),  # raw octets as surrogates
    ],
)
def test_parse_uidl_line(text: bytes, expected: tuple[int, str]) -> None:
    result = parse_uidl_line(text)
    assert result == expected
    assert type(result) is UniqueIdListing
    assert result.uid.encode("ascii", "surrogateescape") == text.split(b" ", 1)[1]


@pytest.mark.parametrize("text", [b"", b"1", b"0 abc", b"x abc", b"99" + b"9" * 5000 + b" a"])
def test_parse_uidl_line_malformed(text: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_uidl_line(text)


# ----------------------------------------------------------- LIST bodies


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", {}),
        (b"1 120\r\n2 200\r\n", {1: 120, 2: 200}),
        (b"1 120\n2 200\n", {1: 120, 2: 200}),
        (b"1 120 extra\r\n2 200 more text\r\n", {1: 120, 2: 200}),
        # Deleted messages leave gaps; the server's order is kept.
        (b"3 30\r\n1 10\r\n7 70\r\n", {3: 30, 1: 10, 7: 70}),
        (b"1 120", {1: 120}),  # no final line end
    ],
)
def test_parse_list(body: bytes, expected: dict[int, int]) -> None:
    result = parse_list(body)
    assert result == expected
    assert list(result) == list(expected)


@pytest.mark.parametrize(
    "body",
    [
        b"1 120\r\n1 130\r\n",  # a message number twice
        b"1 120\r\n2\r\n",
        b"1 120\r\n0 5\r\n",
        b"1 120\r\nx y\r\n",
        b"1 -5\r\n",
        # The fast path must not pair tokens across lines.
        b"1 120 7\r\n2\r\n",
        b"1 120\r\n2 200 300 400\r\n3\r\n",
        b"1 " + b"9" * 5000 + b"\r\n",
    ],
)
def test_parse_list_malformed(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_list(body)


# ----------------------------------------------------------- UIDL bodies


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", {}),
        (
            b"1 whqtswO00WBw418f9t5JxYwZ\r\n2 QhdPYR:00WBw1Ph7x7\r\n",
            {1: "whqtswO00WBw418f9t5JxYwZ", 2: "QhdPYR:00WBw1Ph7x7"},
        ),
        # Duplicate unique ids happen (hash-based ids of identical copies).
        (b"1 same\r\n2 same\r\n", {1: "same", 2: "same"}),
        (b"1 a\n2 b\n", {1: "a", 2: "b"}),
        (b"2 b\r\n1 a\r\n", {2: "b", 1: "a"}),
        (b"1 \xff\xfe\r\n", {1: "\udcff\udcfe"}),
        (b"1 " + b"x" * 200 + b"\r\n", {1: "x" * 200}),
    ],
)
def test_parse_uidl(body: bytes, expected: dict[int, str]) -> None:
    result = parse_uidl(body)
    assert result == expected
    assert list(result) == list(expected)


@pytest.mark.parametrize(
    "body",
    [
        b"1 a\r\n1 b\r\n",  # a message number twice
        b"1 a\r\n2\r\n",
        b"0 a\r\n",
        b"x a\r\n",
        # The fast path must not pair tokens across lines.
        b"1 abc 3\r\n4\r\n",
        b"9" * 5000 + b" a\r\n",
    ],
)
def test_parse_uidl_malformed(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_uidl(body)


@pytest.mark.parametrize("split", ["whole", "bytewise"])
@pytest.mark.parametrize(
    ("command", "body", "parse", "expected"),
    [
        (ListCommand(), b"1 120\r\n2 200 octets\r\n", parse_list, {1: 120, 2: 200}),
        (UidlCommand(), b"1 a\r\n2 b\r\n", parse_uidl, {1: "a", 2: "b"}),
    ],
)
def test_parse_bodies_as_the_client_delivers_them(
    command: Command,
    body: bytes,
    parse: Callable[[bytes], object],
    expected: object,
    split: Literal["whole", "bytewise"],
) -> None:
    client = Connection(CLIENT)
    feed(client, b"+OK\r\n")
    for login in (User("alice"), Pass("secret")):
        client.send(login)
        feed(client, b"+OK\r\n")
    client.send(command)
    events = feed(client, b"+OK\r\n" + body + b".\r\n", split)
    data = b"".join(bytes(event.data) for event in events if type(event) is Data)
    assert data == body
    assert parse(data) == expected


# ----------------------------------------------------- LANG and bare AUTH


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", []),
        (b"en English\r\nde Deutsch\r\n", [("en", "English"), ("de", "Deutsch")]),
        (b"i-default Default language\r\n", [("i-default", "Default language")]),
        (b"fr\r\n", [("fr", "")]),
        (b"es Espa\xc3\xb1ol\n", [("es", "Espa\u00f1ol")]),
    ],
)
def test_parse_lang_listing(body: bytes, expected: list[tuple[str, str]]) -> None:
    assert parse_lang_listing(body) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", []),
        (b"PLAIN\r\nLOGIN\r\n", ["PLAIN", "LOGIN"]),
        (b"plain\r\ncram-md5\r\n", ["PLAIN", "CRAM-MD5"]),
        (b"PLAIN LOGIN\r\nXOAUTH2\n", ["PLAIN", "LOGIN", "XOAUTH2"]),
    ],
)
def test_parse_auth_listing(body: bytes, expected: list[str]) -> None:
    assert parse_auth_listing(body) == expected


def test_listings_with_blank_lines_and_odd_numbering() -> None:
    import pop3core as p

    # Blank lines are skipped; numbers beyond 2**64 (a hostile server) are kept exactly.
    huge = 2**65  # 20 digits, the most a field may have
    sizes = p.parse_list(b"\r\n%d 5\r\n3 7\r\n\r\n" % huge)
    assert sizes == {huge: 5, 3: 7}
    assert 3 in sizes
    assert huge in sizes
    assert 4 not in sizes
    assert p.parse_uidl(b"") == {}
    assert p.parse_lang_listing(b"en English\r\n\r\nde Deutsch\r\n") == [
        ("en", "English"),
        ("de", "Deutsch"),
    ]
