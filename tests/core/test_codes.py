"""Response codes (RFC 2449 section 8, RFC 3206, RFC 6856)."""

from __future__ import annotations

import pytest

from pop3core import (
    AUTH,
    IN_USE,
    LOGIN_DELAY,
    SYS_PERM,
    SYS_TEMP,
    UTF8,
    ErrResponse,
    LocalProtocolError,
    OkResponse,
    ResponseCode,
    split_response_code,
)


@pytest.mark.parametrize(
    ("constant", "text"),
    [
        (IN_USE, "IN-USE"),
        (LOGIN_DELAY, "LOGIN-DELAY"),
        (SYS_TEMP, "SYS/TEMP"),
        (SYS_PERM, "SYS/PERM"),
        (AUTH, "AUTH"),
        (UTF8, "UTF8"),
    ],
)
def test_registered_codes(constant: ResponseCode, text: str) -> None:
    assert str(constant) == text
    assert constant == ResponseCode(text)
    assert constant.levels == tuple(text.split("/"))


@pytest.mark.parametrize(
    ("text", "code", "rest"),
    [
        (b"[IN-USE] mailbox locked", "IN-USE", b"mailbox locked"),
        (b"[SYS/TEMP] try later", "SYS/TEMP", b"try later"),
        (b"[SYS/TEMP/DISK] disk full", "SYS/TEMP/DISK", b"disk full"),
        (b"[sys/perm] corrupt", "SYS/PERM", b"corrupt"),
        (b"[AUTH]", "AUTH", b""),
        (b"[AUTH] ", "AUTH", b""),
        (b"[LOGIN-DELAY]  two spaces", "LOGIN-DELAY", b" two spaces"),
        (b"[UTF8]no space", "UTF8", b"no space"),
        (b"[XCLIENT] Dovecot ready.", "XCLIENT", b"Dovecot ready."),
        (b"[X-\x7f] odd but legal", "X-\x7f", b"odd but legal"),
    ],
)
def test_split_response_code(text: bytes, code: str, rest: bytes) -> None:
    parsed, remainder = split_response_code(text)
    assert parsed == ResponseCode(code)
    assert remainder == rest


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"no code",
        # Only at the very start of the text.
        b" [IN-USE] locked",
        b"locked [IN-USE]",
        b"The Microsoft Exchange POP3 service is ready. [UwBOADIAUABSADAAMQ]",
        # Malformed codes are just text.
        b"[",
        b"[IN-USE",
        b"[] empty",
        b"[SYS/] trailing slash",
        b"[/TEMP] leading slash",
        b"[SYS//TEMP] empty level",
        b"[IN USE] space",
        b"[IN\tUSE] tab",
        b"[caf\xc3\xa9] non-ascii",
        b"[\x00] nul",
    ],
)
def test_text_without_response_code(text: bytes) -> None:
    assert split_response_code(text) == (None, text)


@pytest.mark.parametrize(
    ("code", "other", "matches"),
    [
        ("SYS/TEMP/DISK", "SYS/TEMP", True),
        ("SYS/TEMP/DISK", SYS_TEMP, True),
        ("SYS/TEMP/DISK", "SYS", True),
        ("sys/temp/disk", "SYS/TEMP", True),
        ("SYS/TEMP", "sys/temp", True),
        ("SYS/TEMP", "SYS/TEMP", True),
        ("SYS/TEMP", "SYS/TEMP/DISK", False),
        ("SYS/TEMP", SYS_PERM, False),
        ("SYSTEM", "SYS", False),
        ("IN-USE", "IN", False),
        ("AUTH", "AUTH-RESP-CODE", False),
    ],
)
def test_matches_is_hierarchical_and_case_insensitive(
    code: str, other: str | ResponseCode, matches: bool
) -> None:
    assert ResponseCode(code).matches(other) is matches


def test_equality_and_hash_ignore_case_but_spelling_is_kept() -> None:
    code = ResponseCode("In-Use")
    assert code == IN_USE
    assert code == "in-use"
    assert code == "IN-USE"
    assert hash(code) == hash(IN_USE)
    assert {code: 1}[IN_USE] == 1
    assert str(code) == "In-Use"
    assert code.levels == ("In-Use",)
    assert repr(code) == "ResponseCode('In-Use')"


@pytest.mark.parametrize("other", ["SYS/TEMP/DISK", "SYS", "not a code", 42, None, b"IN-USE"])
def test_inequality(other: object) -> None:
    assert other != SYS_TEMP


def test_constructed_from_levels() -> None:
    assert ResponseCode(["SYS", "TEMP"]) == SYS_TEMP
    assert ResponseCode(("SYS", "TEMP")).levels == ("SYS", "TEMP")


@pytest.mark.parametrize(
    "bad", ["", "SYS/", "/TEMP", "SYS//TEMP", "IN USE", "A]", "caf\u00e9", []]
)
def test_invalid_codes(bad: str | list[str]) -> None:
    with pytest.raises(ValueError):
        ResponseCode(bad)


def test_codes_are_immutable() -> None:
    with pytest.raises(AttributeError):
        IN_USE.levels = ("X",)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("event", "line"),
    [
        (ErrResponse(b"locked", IN_USE), b"-ERR [IN-USE] locked"),
        (ErrResponse(b"locked", "in-use"), b"-ERR [in-use] locked"),
        (ErrResponse(b"", SYS_TEMP), b"-ERR [SYS/TEMP]"),
        (ErrResponse(code=ResponseCode("SYS/TEMP/DISK")), b"-ERR [SYS/TEMP/DISK]"),
        (OkResponse(b"selected", "UTF8"), b"+OK [UTF8] selected"),
    ],
)
def test_codes_in_events(event: OkResponse | ErrResponse, line: bytes) -> None:
    assert event.line == line


@pytest.mark.parametrize("code", ["", "IN USE", "SYS//TEMP", "x]"])
def test_invalid_code_in_event(code: str) -> None:
    with pytest.raises(LocalProtocolError):
        ErrResponse(b"x", code)
