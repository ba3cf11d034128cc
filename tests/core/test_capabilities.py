"""CAPA replies (RFC 2449) parsed into `Capabilities`, with real servers' replies as fixtures.

The fixtures in ``tests/core/corpus/capa/`` are whole replies in wire format. Each is
checked twice: `parse_capa` on its body, and a client `Connection` reading the
wire bytes (whole, byte by byte, and split across segments) into
``conn.capabilities``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pop3core import (
    CLIENT,
    Capa,
    Capabilities,
    Connection,
    Data,
    EndOfMultiline,
    ErrResponse,
    ExpirePolicy,
    LoginDelay,
    OkResponse,
    parse_capa,
)
from tests.core.helpers import SPLITS, Split, feed

CORPUS = Path(__file__).parent / "corpus" / "capa"


@dataclass(frozen=True)
class Expected:
    tags: tuple[str, ...]
    sasl: tuple[str, ...] = ()
    top: bool = True
    user: bool = True
    uidl: bool = True
    stls: bool = False
    pipelining: bool = False
    resp_codes: bool = False
    auth_resp_code: bool = False
    utf8: bool = False
    utf8_user: bool = False
    login_delay: LoginDelay | None = None
    expire: ExpirePolicy | None = None
    implementation: str | None = None
    extra: dict[str, tuple[str, ...]] = field(default_factory=dict)


DOVECOT_COMMON = ("CAPA", "TOP", "UIDL", "RESP-CODES", "PIPELINING", "AUTH-RESP-CODE")
TWISTED_BASE = ("TOP", "USER", "UIDL", "PIPELINE", "CELERITY", "AUSPEX", "POTENCE")

EXPECTED: dict[str, Expected] = {
    "dovecot-pre-login": Expected(
        tags=(*DOVECOT_COMMON, "STLS", "USER", "SASL"),
        sasl=("PLAIN", "LOGIN"),
        stls=True,
        pipelining=True,
        resp_codes=True,
        auth_resp_code=True,
    ),
    # After login Dovecot drops USER, SASL and STLS.
    "dovecot-post-login": Expected(
        tags=DOVECOT_COMMON,
        user=False,
        pipelining=True,
        resp_codes=True,
        auth_resp_code=True,
    ),
    "courier": Expected(
        tags=(
            "TOP",
            "USER",
            "LOGIN-DELAY",
            "PIPELINING",
            "UIDL",
            "IMPLEMENTATION",
            "SASL",
            "STLS",
            "UTF8",
        ),
        sasl=("PLAIN", "LOGIN", "CRAM-MD5"),
        stls=True,
        pipelining=True,
        utf8=True,
        utf8_user=True,
        login_delay=LoginDelay(10, per_user=False),
        implementation="Courier Mail Server",
    ),
    "cyrus": Expected(
        tags=(
            "TOP",
            "UIDL",
            "USER",
            "SASL",
            "STLS",
            "RESP-CODES",
            "AUTH-RESP-CODE",
            "PIPELINING",
            "LOGIN-DELAY",
            "EXPIRE",
            "IMPLEMENTATION",
        ),
        sasl=("PLAIN", "LOGIN", "SCRAM-SHA-256"),
        stls=True,
        pipelining=True,
        resp_codes=True,
        auth_resp_code=True,
        login_delay=LoginDelay(60, per_user=False),
        expire=ExpirePolicy(None, per_user=False),
        implementation="Cyrus POP3 3.6.1",
    ),
    "gmail": Expected(
        tags=(
            "USER",
            "RESP-CODES",
            "EXPIRE",
            "LOGIN-DELAY",
            "TOP",
            "UIDL",
            "X-GOOGLE-RICO",
            "SASL",
        ),
        sasl=("PLAIN", "XOAUTH2", "OAUTHBEARER"),
        resp_codes=True,
        # EXPIRE 0: leaving mail on the server is not allowed.
        expire=ExpirePolicy(0, per_user=False),
        login_delay=LoginDelay(300, per_user=False),
        extra={"X-GOOGLE-RICO": ()},
    ),
    "office365": Expected(tags=("TOP", "UIDL", "SASL", "USER"), sasl=("PLAIN", "XOAUTH2")),
    # Twisted's private tags; PIPELINE is not PIPELINING (twisted#6755).
    "twisted": Expected(tags=TWISTED_BASE, extra={"CELERITY": (), "PIPELINE": ()}),
    "twisted-per-user-pre-login": Expected(
        tags=(*TWISTED_BASE, "IMPLEMENTATION", "EXPIRE", "LOGIN-DELAY", "SASL"),
        sasl=("CRAM-MD5", "PLAIN"),
        # Per-user values: AUTHORIZATION announces the bound plus "USER".
        expire=ExpirePolicy(60, per_user=True),
        login_delay=LoginDelay(120, per_user=True),
        implementation="Twisted POP3 server",
        extra={"EXPIRE": ("60", "USER"), "LOGIN-DELAY": ("120", "USER")},
    ),
    "twisted-per-user-post-login": Expected(
        tags=(*TWISTED_BASE, "IMPLEMENTATION", "EXPIRE", "LOGIN-DELAY", "SASL"),
        sasl=("CRAM-MD5", "PLAIN"),
        expire=ExpirePolicy(30, per_user=False),
        login_delay=LoginDelay(300, per_user=False),
        implementation="Twisted POP3 server",
    ),
    "rfc2449-example": Expected(
        tags=(
            "TOP",
            "USER",
            "SASL",
            "RESP-CODES",
            "LOGIN-DELAY",
            "PIPELINING",
            "EXPIRE",
            "UIDL",
            "IMPLEMENTATION",
        ),
        sasl=("CRAM-MD5", "KERBEROS_V4"),
        pipelining=True,
        resp_codes=True,
        login_delay=LoginDelay(900, per_user=False),
        expire=ExpirePolicy(60, per_user=False),
        implementation="Shlemazle-Plotz-v302",
    ),
    # RESP_CODES (underscore) is not the RFC 2449 tag; it stays an unknown tag.
    "plala-resp-codes": Expected(
        tags=("TOP", "USER", "RESP_CODES", "PIPELINING", "EXPIRE", "UIDL"),
        pipelining=True,
        expire=ExpirePolicy(None, per_user=False),
        extra={"RESP_CODES": ()},
    ),
}


def load(name: str) -> bytes:
    return (CORPUS / f"{name}.wire").read_bytes()


def split_reply(wire: bytes) -> tuple[bytes, bytes]:
    """The status line (without CRLF) and the body (without the terminator)."""
    status, _, rest = wire.partition(b"\r\n")
    assert rest.endswith(b"\r\n.\r\n") or rest == b".\r\n"
    return status, rest[:-3]


def check(caps: Capabilities, expected: Expected) -> None:
    assert tuple(caps) == expected.tags
    assert len(caps) == len(expected.tags)
    assert caps.sasl == expected.sasl
    assert caps.top is expected.top
    assert caps.user is expected.user
    assert caps.uidl is expected.uidl
    assert caps.stls is expected.stls
    assert caps.pipelining is expected.pipelining
    assert caps.resp_codes is expected.resp_codes
    assert caps.auth_resp_code is expected.auth_resp_code
    assert caps.utf8 is expected.utf8
    assert caps.utf8_user is expected.utf8_user
    assert caps.login_delay == expected.login_delay
    assert caps.expire == expected.expire
    assert caps.implementation == expected.implementation
    for tag, args in expected.extra.items():
        assert caps[tag] == args
        assert caps[tag.lower()] == args
    # Tag lookups ignore case.
    for tag in expected.tags:
        assert tag.lower() in caps
        assert tag.title() in caps


def test_every_fixture_has_an_expectation() -> None:
    assert sorted(path.stem for path in CORPUS.glob("*.wire")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_is_wire_format(name: str) -> None:
    wire = load(name)
    assert wire.startswith(b"+OK")
    assert wire.endswith(b"\r\n.\r\n")
    # Every line ends in CRLF, and no line exceeds 512 octets (RFC 2449).
    lines = wire.split(b"\r\n")
    assert lines[-1] == b""
    assert all(b"\n" not in line and b"\r" not in line for line in lines)
    assert all(len(line) + 2 <= 512 for line in lines)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parse_capa_corpus(name: str) -> None:
    _, body = split_reply(load(name))
    caps = parse_capa(body)
    check(caps, EXPECTED[name])
    assert caps == Capabilities.parse(body)
    assert caps.lines == tuple(body.decode("ascii").split("\r\n")[:-1])


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_client_reads_capa_corpus(name: str, split: Split) -> None:
    wire = load(name)
    status, body = split_reply(wire)
    client = Connection(CLIENT)
    feed(client, b"+OK ready\r\n")
    client.send(Capa())
    assert client.capabilities is None
    events = feed(client, wire, split)
    assert events == [OkResponse(status[4:]), Data(body), EndOfMultiline()]
    assert events[0].line == status  # type: ignore[union-attr]
    assert client.capabilities is not None
    check(client.capabilities, EXPECTED[name])


def test_dovecot_bare_ok_status_line() -> None:
    client = Connection(CLIENT)
    feed(client, b"+OK Dovecot ready.\r\n")
    client.send(Capa())
    wire = load("dovecot-pre-login")
    assert wire.startswith(b"+OK\r\n")
    status, *_ = feed(client, wire)
    assert status == OkResponse()
    assert status.line == b"+OK"  # type: ignore[union-attr]


def test_capa_split_where_plala_split_it() -> None:
    # Mew PR #188: the reply arrived as "...UIDL\r\n" and then ".\r\n".
    wire = load("plala-resp-codes")
    head, tail = wire[:-3], wire[-3:]
    assert tail == b".\r\n"
    client = Connection(CLIENT)
    feed(client, b"+OK\r\n")
    client.send(Capa())
    first = feed(client, head)
    assert [type(event) for event in first] == [OkResponse, Data]
    assert client.capabilities is None  # not until the terminator
    assert feed(client, tail) == [EndOfMultiline()]
    assert client.capabilities is not None
    check(client.capabilities, EXPECTED["plala-resp-codes"])


@pytest.mark.parametrize("name", ["courier", "cyrus"])
def test_capa_split_at_every_point(name: str) -> None:
    wire = load(name)
    reference = parse_capa(split_reply(wire)[1])
    for cut in range(1, len(wire)):
        client = Connection(CLIENT)
        feed(client, b"+OK\r\n")
        client.send(Capa())
        feed(client, wire[:cut])
        feed(client, wire[cut:])
        assert client.capabilities == reference, cut


def test_capa_err_keeps_previous_capabilities() -> None:
    client = Connection(CLIENT)
    feed(client, b"+OK\r\n")
    client.send(Capa())
    feed(client, load("office365"))
    before = client.capabilities
    client.send(Capa())
    assert feed(client, b"-ERR not now\r\n") == [ErrResponse(b"not now")]
    assert client.capabilities is before


def test_newer_capa_replaces_older() -> None:
    client = Connection(CLIENT)
    feed(client, b"+OK\r\n")
    client.send(Capa())
    feed(client, load("dovecot-pre-login"))
    assert client.capabilities is not None
    assert client.capabilities.user
    client.send(Capa())
    feed(client, load("dovecot-post-login"))
    assert client.capabilities is not None
    assert not client.capabilities.user


# ------------------------------------------------------------- the mapping


def test_lookups_ignore_case_and_iteration_keeps_spelling() -> None:
    caps = parse_capa(b"Sasl plain Login\r\ntop\r\nX-Private a B\r\n")
    assert "SASL" in caps
    assert "sasl" in caps
    assert "x-private" in caps
    assert list(caps) == ["Sasl", "top", "X-Private"]
    assert caps["SASL"] == ("plain", "Login")
    assert caps.get("X-PRIVATE") == ("a", "B")
    assert caps.get("STLS") is None
    # Mechanism names are case-insensitive; sasl reports them in upper case.
    assert caps.sasl == ("PLAIN", "LOGIN")
    assert caps.top
    with pytest.raises(KeyError):
        caps["STLS"]


@pytest.mark.parametrize("key", [1, None, b"TOP", ("TOP",)])
def test_non_string_keys_are_not_members(key: object) -> None:
    assert key not in parse_capa(b"TOP\r\n")


def test_implementation_keeps_spacing() -> None:
    caps = parse_capa(b"IMPLEMENTATION  Cyrus  POP3   3.6.1 \r\n")
    assert caps.implementation == "Cyrus  POP3   3.6.1"
    assert caps["IMPLEMENTATION"] == ("Cyrus", "POP3", "3.6.1")
    assert caps.rest_of_line("implementation") == "Cyrus  POP3   3.6.1"
    assert caps.rest_of_line("TOP") is None


def test_first_announcement_of_a_tag_wins() -> None:
    caps = parse_capa(b"SASL PLAIN\r\nsasl LOGIN\r\n")
    assert caps.sasl == ("PLAIN",)
    assert len(caps) == 1
    assert caps.lines == ("SASL PLAIN", "sasl LOGIN")


@pytest.mark.parametrize(
    ("line", "login_delay"),
    [
        (b"LOGIN-DELAY 900", LoginDelay(900, False)),
        (b"LOGIN-DELAY 0", LoginDelay(0, False)),
        (b"LOGIN-DELAY 900 USER", LoginDelay(900, True)),
        (b"login-delay 900 user", LoginDelay(900, True)),
        (b"LOGIN-DELAY", None),
        (b"LOGIN-DELAY soon", None),
        (b"LOGIN-DELAY -5", None),
        (b"LOGIN-DELAY \xd9\xa1", None),
        (b"TOP", None),
    ],
)
def test_login_delay(line: bytes, login_delay: LoginDelay | None) -> None:
    assert parse_capa(line + b"\r\n").login_delay == login_delay


@pytest.mark.parametrize(
    ("line", "expire"),
    [
        (b"EXPIRE 60", ExpirePolicy(60, False)),
        (b"EXPIRE 0", ExpirePolicy(0, False)),
        (b"EXPIRE NEVER", ExpirePolicy(None, False)),
        (b"expire never", ExpirePolicy(None, False)),
        (b"EXPIRE 0 USER", ExpirePolicy(0, True)),
        (b"EXPIRE NEVER USER", ExpirePolicy(None, True)),
        (b"EXPIRE", None),
        (b"EXPIRE later", None),
        (b"TOP", None),
    ],
)
def test_expire(line: bytes, expire: ExpirePolicy | None) -> None:
    caps = parse_capa(line + b"\r\n")
    assert caps.expire == expire


@pytest.mark.parametrize(
    ("body", "utf8", "utf8_user", "lang"),
    [
        (b"UTF8\r\n", True, False, False),
        (b"UTF8 USER\r\n", True, True, False),
        (b"utf8 user\r\nLANG\r\n", True, True, True),
        (b"LANG\r\n", False, False, True),
    ],
)
def test_utf8_and_lang(body: bytes, utf8: bool, utf8_user: bool, lang: bool) -> None:
    caps = parse_capa(body)
    assert (caps.utf8, caps.utf8_user, caps.lang) == (utf8, utf8_user, lang)


@pytest.mark.parametrize(
    "body",
    [b"", b"\r\n", b"   \r\n\r\n"],
)
def test_empty_capability_list(body: bytes) -> None:
    caps = parse_capa(body)
    assert len(caps) == 0
    assert caps.sasl == ()
    assert not caps.user
    assert caps.login_delay is None
    assert caps == Capabilities()


def test_lf_only_lines_and_non_ascii() -> None:
    caps = parse_capa(b"TOP\nIMPLEMENTATION caf\xc3\xa9\nUIDL\n")
    assert list(caps) == ["TOP", "IMPLEMENTATION", "UIDL"]
    assert caps.implementation is not None
    assert caps.implementation.encode("ascii", "surrogateescape") == b"caf\xc3\xa9"


def test_equality_and_hashing() -> None:
    assert parse_capa(b"TOP\r\nUSER\r\n") == parse_capa(b"TOP\nUSER\n")
    assert parse_capa(b"TOP\r\n") != parse_capa(b"USER\r\n")
    with pytest.raises(TypeError):
        hash(parse_capa(b"TOP\r\n"))


def test_constructed_from_lines() -> None:
    caps = Capabilities(["TOP", "SASL PLAIN", ""])
    assert caps.lines == ("TOP", "SASL PLAIN")
    assert caps.sasl == ("PLAIN",)
    assert repr(caps) == "Capabilities(['TOP', 'SASL PLAIN'])"
