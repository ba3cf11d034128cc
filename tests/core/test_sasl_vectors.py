"""Published test vectors: RFC 4616, 2195, 5802, 7677, 7628, 4013 and Google's XOAUTH2."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Generator
from typing import Any, NamedTuple

import pytest

from pop3core._sasl._base import (
    AuthenticationFailed,
    Challenge,
    Identity,
    PasswordCheck,
    ScramKeysRequest,
    SecretRequest,
    ServerStep,
    TokenCheck,
)
from pop3core._sasl._cram import CramMD5Client, CramMD5Server, cram_md5_digest
from pop3core._sasl._oauth import (
    OAuthBearerClient,
    OAuthBearerServer,
    XOAuth2Client,
    XOAuth2Server,
)
from pop3core._sasl._saslprep import SASLprepError, saslprep
from pop3core._sasl._scram import (
    ScramKeys,
    ScramSHA1Client,
    ScramSHA1Server,
    ScramSHA256Client,
    ScramSHA256Server,
)
from pop3core._sasl._simple import PlainClient, PlainServer


def b64(text: str) -> bytes:
    return base64.b64decode(text)


def run(
    exchange: Generator[ServerStep, Any, str],
    answer: Callable[[ServerStep], Any],
) -> tuple[list[ServerStep], str | AuthenticationFailed]:
    """Drive a server exchange; `answer` gives the reply to every step."""
    steps: list[ServerStep] = []
    value: Any = None
    try:
        while True:
            step = exchange.send(value)
            steps.append(step)
            value = answer(step)
    except StopIteration as stop:
        return steps, stop.value
    except AuthenticationFailed as exc:
        return steps, exc


# ---------------------------------------------------------------- PLAIN, RFC 4616


@pytest.mark.parametrize(
    ("authzid", "authcid", "password", "encoded"),
    [
        ("", "tim", "tanstaaftanstaaf", "AHRpbQB0YW5zdGFhZnRhbnN0YWFm"),
        ("Ursel", "Kurt", "xipj3plmq", "VXJzZWwAS3VydAB4aXBqM3BsbXE="),
    ],
)
def test_plain_rfc4616(authzid: str, authcid: str, password: str, encoded: str) -> None:
    client = PlainClient(authcid, password, authzid=authzid)
    assert client.initial_response() == b64(encoded)

    steps, result = run(PlainServer().exchange(b64(encoded)), lambda step: True)
    assert steps == [PasswordCheck(authcid, password, "PLAIN", authzid)]
    assert result == Identity(authcid, authzid)


# ---------------------------------------------------------------- CRAM-MD5, RFC 2195

RFC2195_CHALLENGE = b"<1896.697170952@postoffice.reston.mci.net>"


def test_cram_md5_rfc2195() -> None:
    assert cram_md5_digest("tanstaaftanstaaf", RFC2195_CHALLENGE) == (
        "b913a602c7eda7a495b4e6e7334d3890"
    )
    client = CramMD5Client("tim", "tanstaaftanstaaf")
    assert client.initial_response() is None
    response = client.respond(RFC2195_CHALLENGE)
    assert response == b"tim b913a602c7eda7a495b4e6e7334d3890"
    # The RFC's base64 forms.
    assert base64.b64encode(RFC2195_CHALLENGE) == (
        b"PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+"
    )
    assert base64.b64encode(response) == b"dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw"

    server = CramMD5Server("postoffice.reston.mci.net", challenge=RFC2195_CHALLENGE)

    def answer(step: ServerStep) -> Any:
        if isinstance(step, Challenge):
            assert step.data == RFC2195_CHALLENGE
            return response
        assert step == SecretRequest("tim", "CRAM-MD5")
        return "tanstaaftanstaaf"

    assert run(server.exchange(None), answer)[1] == "tim"


# ---------------------------------------------------------------- SCRAM, RFC 5802 / 7677


class ScramVector(NamedTuple):
    client_cls: type[ScramSHA1Client] | type[ScramSHA256Client]
    server_cls: type[ScramSHA1Server] | type[ScramSHA256Server]
    cnonce: str
    snonce: str
    salt: str
    proof: str
    signature: str


SCRAM_VECTORS = [
    pytest.param(
        ScramVector(
            ScramSHA1Client,
            ScramSHA1Server,
            "fyko+d2lbbFgONRv9qkxdawL",
            "3rfcNHYJY1ZVvWVs7j",
            "QSXCR+Q6sek8bf92",
            "v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
            "rmF9pqV8S7suAoZWja4dJRkFsKQ=",
        ),
        id="SCRAM-SHA-1 (RFC 5802)",
    ),
    pytest.param(
        ScramVector(
            ScramSHA256Client,
            ScramSHA256Server,
            "rOprNGfwEbeRWgbNEkqO",
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
            "W22ZaJ0SNY7soEsUEjb6gQ==",
            "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
        ),
        id="SCRAM-SHA-256 (RFC 7677)",
    ),
]


@pytest.mark.parametrize("v", SCRAM_VECTORS)
def test_scram_rfc_client(v: ScramVector) -> None:
    client = v.client_cls("user", "pencil", nonce=v.cnonce)
    assert client.initial_response() == f"n,,n=user,r={v.cnonce}".encode()
    server_first = f"r={v.cnonce}{v.snonce},s={v.salt},i=4096".encode()
    final = f"c=biws,r={v.cnonce}{v.snonce},p={v.proof}".encode()
    assert client.respond(server_first) == final
    assert client.respond(f"v={v.signature}".encode()) == b""
    assert client.server_verified
    client.finish()


@pytest.mark.parametrize("v", SCRAM_VECTORS)
def test_scram_rfc_server(v: ScramVector) -> None:
    mechanism = v.server_cls.name
    keys = ScramKeys.from_password("pencil", mechanism, salt=b64(v.salt), iterations=4096)
    server = v.server_cls(nonce=v.snonce)
    wire: list[bytes] = []

    def answer(step: ServerStep) -> Any:
        if isinstance(step, ScramKeysRequest):
            assert step == ScramKeysRequest("user", mechanism)
            return keys
        assert isinstance(step, Challenge)
        wire.append(step.data)
        if len(wire) == 1:
            return f"c=biws,r={v.cnonce}{v.snonce},p={v.proof}".encode()
        return b""

    _steps, result = run(server.exchange(f"n,,n=user,r={v.cnonce}".encode()), answer)
    assert result == Identity("user")
    assert wire == [
        f"r={v.cnonce}{v.snonce},s={v.salt},i=4096".encode(),
        f"v={v.signature}".encode(),
    ]


def test_scram_keys_from_password_match_rfc() -> None:
    keys = ScramKeys.from_password("pencil", "SCRAM-SHA-1", salt=b64("QSXCR+Q6sek8bf92"))
    assert keys.mechanism == "SCRAM-SHA-1"
    assert keys.hash_name == "sha1"
    assert keys.matches_password("pencil")
    assert not keys.matches_password("pencil2")
    keys256 = ScramKeys.from_password("pencil", "sha256", salt=b"salt", iterations=4096)
    assert keys256.mechanism == "SCRAM-SHA-256"
    assert "stored_key" not in repr(keys256).split("salt=")[0]
    assert keys256.stored_key.hex() not in repr(keys256)


# ---------------------------------------------------------------- XOAUTH2 (Google)

GOOGLE_IR = (
    "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52"
    "YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
)
GOOGLE_ERROR = (
    "eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29v"
    "Z2xlLmNvbS8ifQ=="
)
GOOGLE_TOKEN = "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"


def test_xoauth2_google_example() -> None:
    client = XOAuth2Client("someuser@example.com", GOOGLE_TOKEN)
    assert client.initial_response() == b64(GOOGLE_IR)
    assert client.cleartext
    # The error challenge is answered with an empty response.
    assert client.respond(b64(GOOGLE_ERROR)) == b""
    assert client.error == {
        "status": "401",
        "schemes": "Bearer",
        "scope": "https://mail.google.com/",
    }


def test_xoauth2_server_google_example() -> None:
    error = {"status": "401", "schemes": "Bearer", "scope": "https://mail.google.com/"}
    challenges: list[bytes] = []

    def answer(step: ServerStep) -> Any:
        if isinstance(step, TokenCheck):
            assert step == TokenCheck("someuser@example.com", GOOGLE_TOKEN, "XOAUTH2")
            return error
        assert isinstance(step, Challenge)
        challenges.append(step.data)
        return b""

    _steps, result = run(XOAuth2Server().exchange(b64(GOOGLE_IR)), answer)
    assert isinstance(result, AuthenticationFailed)
    assert challenges == [b64(GOOGLE_ERROR)]  # byte for byte Google's JSON

    _steps, result = run(XOAuth2Server().exchange(b64(GOOGLE_IR)), lambda step: True)
    assert result == Identity("someuser@example.com", "someuser@example.com")


# ---------------------------------------------------------------- OAUTHBEARER, RFC 7628

RFC7628_IR = (
    "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9QmVh"
    "cmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB"
)
RFC7628_TOKEN = "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="
RFC7628_ERROR = (
    "eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJleGFtcGxlX3Njb3BlIiwib3BlbmlkLWNvbmZp"
    "Z3VyYXRpb24iOiJodHRwczovL2V4YW1wbGUuY29tLy53ZWxsLWtub3duL29wZW5pZC1jb25maWd1cmF0aW9u"
    "In0="
)


def test_oauthbearer_rfc7628_success() -> None:
    client = OAuthBearerClient(
        "user@example.com", RFC7628_TOKEN, host="server.example.com", port=143
    )
    assert client.initial_response() == b64(RFC7628_IR)

    steps, result = run(OAuthBearerServer().exchange(b64(RFC7628_IR)), lambda step: True)
    assert steps == [
        TokenCheck("user@example.com", RFC7628_TOKEN, "OAUTHBEARER", "server.example.com", 143)
    ]
    assert result == Identity("user@example.com", "user@example.com")


def test_oauthbearer_rfc7628_failure() -> None:
    client = OAuthBearerClient("user@example.com", RFC7628_TOKEN)
    assert client.respond(b64(RFC7628_ERROR)) == b"\x01"
    assert base64.b64encode(b"\x01") == b"AQ=="
    assert client.error is not None
    assert client.error["status"] == "invalid_token"
    assert client.error["openid-configuration"] == (
        "https://example.com/.well-known/openid-configuration"
    )

    error = json.loads(b64(RFC7628_ERROR))
    challenges: list[bytes] = []

    def answer(step: ServerStep) -> Any:
        if isinstance(step, TokenCheck):
            return error
        assert isinstance(step, Challenge)
        challenges.append(step.data)
        return b"\x01"

    _steps, result = run(OAuthBearerServer().exchange(b64(RFC7628_IR)), answer)
    assert isinstance(result, AuthenticationFailed)
    assert challenges == [b64(RFC7628_ERROR)]


# ---------------------------------------------------------------- SASLprep, RFC 4013 s. 3


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("I\u00adX", "IX"),  # 1: SOFT HYPHEN mapped to nothing
        ("user", "user"),  # 2: no transformation
        ("USER", "USER"),  # 3: case preserved
        ("\u00aa", "a"),  # 4: output is NFKC
        ("\u2168", "IX"),  # 5: output is NFKC
        ("a\u00a0b", "a b"),  # non-ASCII space mapped to SPACE
        ("\u200bx\ufeff", "x"),  # zero-width characters mapped to nothing
        ("\u0627\u0031\u0628", "\u0627\u0031\u0628"),  # RandAL first and last: fine
        ("", ""),
    ],
)
def test_saslprep_examples(given: str, expected: str) -> None:
    assert saslprep(given) == expected


@pytest.mark.parametrize(
    "given",
    [
        "\u0007",  # 6: prohibited character
        "\u0627\u0031",  # 7: bidi check (RandAL first, not last)
        "\u0031\u0627",  # bidi: RandAL last, not first
        "\u0627a\u0628",  # bidi: RandAL and L together
        "a\x7fb",  # ASCII DEL
        "\ue000",  # private use
        "\U000e0001",  # tagging character
        "a\u200eb",  # left-to-right mark (C.8)
        "\ud800",  # surrogate
        "\ufffe",  # non-character
    ],
)
def test_saslprep_refusals(given: str) -> None:
    with pytest.raises(SASLprepError):
        saslprep(given)


def test_saslprep_unassigned_code_points() -> None:
    unassigned = "\u0221"  # unassigned in Unicode 3.2
    with pytest.raises(SASLprepError, match="unassigned"):
        saslprep(unassigned)
    assert saslprep(unassigned, allow_unassigned=True) == unassigned
