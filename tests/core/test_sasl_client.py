"""The client driver: choosing a login method, the 255-octet rule, and AuthExchange."""

from __future__ import annotations

import pytest

import pop3core as p
from pop3core._sasl._client import (
    AuthExchange,
    LoginMethodUnavailable,
    choose_login_method,
    initial_response_fits,
)
from pop3core._sasl._oauth import XOAuth2Client
from pop3core._sasl._registry import (
    CLIENT_MECHANISMS,
    SERVER_MECHANISMS,
    client_mechanism,
    server_mechanisms,
)
from pop3core._sasl._scram import ScramSHA256Client
from pop3core._sasl._simple import ExternalClient, LoginClient, PlainClient
from tests.core.helpers import SPLITS, Split, drain

TIMESTAMP = b"<1896.697170952@dbc.mtview.ca.us>"


def caps(*lines: str) -> p.Capabilities:
    return p.Capabilities(lines)


# ---------------------------------------------------------------- choose_login_method

DOVECOT = caps("TOP", "UIDL", "USER", "SASL PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256")
GMAIL = caps(
    "USER", "RESP-CODES", "TOP", "UIDL", "X-GOOGLE-RICO", "SASL PLAIN XOAUTH2 OAUTHBEARER"
)
O365 = caps("TOP", "UIDL", "SASL PLAIN XOAUTH2", "USER")


@pytest.mark.parametrize(
    ("capabilities", "timestamp", "tls", "expected"),
    [
        (DOVECOT, None, False, "SCRAM-SHA-256"),
        (DOVECOT, TIMESTAMP, True, "SCRAM-SHA-256"),
        (caps("SASL PLAIN SCRAM-SHA-1 CRAM-MD5"), None, False, "SCRAM-SHA-1"),
        (caps("SASL PLAIN CRAM-MD5", "USER"), TIMESTAMP, False, "CRAM-MD5"),
        (caps("SASL PLAIN", "USER"), TIMESTAMP, False, "APOP"),
        (caps("SASL PLAIN LOGIN", "USER"), TIMESTAMP, True, "APOP"),
        (caps("SASL LOGIN PLAIN", "USER"), None, True, "PLAIN"),
        (caps("SASL LOGIN", "USER"), None, True, "LOGIN"),
        (caps("USER"), None, True, "USER"),
        (None, None, True, "USER"),  # no CAPA: no SASL, USER assumed
        (None, TIMESTAMP, False, "APOP"),
        (GMAIL, None, True, "PLAIN"),
        (caps("sasl scram-sha-256"), None, False, "SCRAM-SHA-256"),  # case-insensitive
    ],
)
def test_strongest_method_first(
    capabilities: p.Capabilities | None, timestamp: bytes | None, tls: bool, expected: str
) -> None:
    assert choose_login_method(capabilities, timestamp, tls_active=tls) == expected


@pytest.mark.parametrize(
    ("capabilities", "match"),
    [
        (caps("SASL PLAIN LOGIN", "USER"), "reveal the credentials without TLS"),
        (None, "reveal"),
        (caps("SASL GSSAPI", "TOP"), "no login method in common .*GSSAPI"),
        (caps("TOP"), "no login method in common with the server$"),
    ],
)
def test_no_cleartext_without_tls(capabilities: p.Capabilities | None, match: str) -> None:
    with pytest.raises(LoginMethodUnavailable, match=match):
        choose_login_method(capabilities, None, tls_active=False)


def test_cleartext_allowed_by_the_caller() -> None:
    assert (
        choose_login_method(
            caps("SASL PLAIN", "USER"), None, tls_active=False, allow_cleartext=True
        )
        == "PLAIN"
    )
    assert choose_login_method(None, None, tls_active=False, allow_cleartext=True) == "USER"


def test_tokens() -> None:
    assert choose_login_method(GMAIL, None, tls_active=True, have_token=True) == "OAUTHBEARER"
    assert choose_login_method(O365, None, tls_active=True, have_token=True) == "XOAUTH2"
    # A token alone never falls back to password methods.
    with pytest.raises(LoginMethodUnavailable):
        choose_login_method(DOVECOT, None, tls_active=True, have_token=True, have_password=False)
    # Bearer tokens are credentials: TLS only.
    with pytest.raises(LoginMethodUnavailable, match="XOAUTH2"):
        choose_login_method(O365, None, tls_active=False, have_token=True, have_password=False)
    with pytest.raises(LoginMethodUnavailable, match="no credentials"):
        choose_login_method(O365, None, tls_active=True, have_password=False)
    # With both, the token is preferred.
    assert choose_login_method(O365, None, tls_active=True, have_token=True) == "XOAUTH2"


def test_explicit_method() -> None:
    assert choose_login_method(DOVECOT, None, tls_active=False, method="cram-md5") == "CRAM-MD5"
    assert choose_login_method(DOVECOT, None, tls_active=True, method="PLAIN") == "PLAIN"
    assert choose_login_method(DOVECOT, TIMESTAMP, tls_active=False, method="APOP") == "APOP"
    assert (
        choose_login_method(O365, None, tls_active=True, method="XOAUTH2", have_token=True)
        == "XOAUTH2"
    )
    # Without CAPA, a named SASL mechanism is tried anyway (the caller insists).
    assert choose_login_method(None, None, tls_active=False, method="GSSAPI") == "GSSAPI"
    assert (
        choose_login_method(caps("SASL EXTERNAL"), None, tls_active=True, method="EXTERNAL")
        == "EXTERNAL"
    )
    with pytest.raises(LoginMethodUnavailable, match="does not offer XOAUTH2"):
        choose_login_method(DOVECOT, None, tls_active=True, method="XOAUTH2", have_token=True)
    with pytest.raises(LoginMethodUnavailable, match="does not offer APOP"):
        choose_login_method(DOVECOT, None, tls_active=True, method="APOP")
    with pytest.raises(LoginMethodUnavailable, match="does not offer USER"):
        choose_login_method(caps("SASL PLAIN"), None, tls_active=True, method="USER")
    with pytest.raises(LoginMethodUnavailable, match="TLS"):
        choose_login_method(DOVECOT, None, tls_active=False, method="PLAIN")
    with pytest.raises(LoginMethodUnavailable, match="token"):
        choose_login_method(O365, None, tls_active=True, method="XOAUTH2")
    with pytest.raises(LoginMethodUnavailable, match="password"):
        choose_login_method(
            DOVECOT, None, tls_active=True, method="SCRAM-SHA-1", have_password=False
        )


# ---------------------------------------------------------------- the 255-octet rule


def test_initial_response_fits_boundary() -> None:
    # "AUTH PLAIN " (11) + base64 + CRLF (2) <= 255: 242 base64 chars = 181 octets... the
    # largest multiple of 4 below 242 is 240, from 180 octets.
    assert initial_response_fits("PLAIN", b"x" * 180)
    assert not initial_response_fits("PLAIN", b"x" * 181)
    assert len(b"AUTH PLAIN " + b"x" * 240 + b"\r\n") == 253
    # An empty initial response is "=".
    assert initial_response_fits("PLAIN", b"")
    # A 20-character mechanism name leaves less room.
    assert initial_response_fits("A" * 20, b"x" * 168)
    assert not initial_response_fits("A" * 20, b"x" * 171)


@pytest.mark.parametrize("size", range(170, 190))
def test_auth_line_never_exceeds_255(size: int) -> None:
    """Whatever the size, the AUTH line AuthExchange builds can be sent."""
    conn = p.Connection(p.CLIENT)
    conn.receive_data(b"+OK\r\n")
    drain(conn)
    mechanism = XOAuth2Client("u", "t" * size)
    auth = AuthExchange(mechanism, caps("SASL XOAUTH2")).start()
    line = conn.send(auth)
    assert len(line) <= 255
    ir = mechanism.initial_response()
    assert (auth.initial_response is not None) == initial_response_fits("XOAUTH2", ir)


def test_no_initial_response_without_sasl_capability() -> None:
    mechanism = PlainClient("u", "p")
    assert AuthExchange(mechanism, caps("SASL PLAIN")).start() == p.Auth("PLAIN", b"\x00u\x00p")
    assert AuthExchange(mechanism, caps("USER")).start() == p.Auth("PLAIN")
    assert AuthExchange(mechanism, None).start() == p.Auth("PLAIN")
    # Empty initial responses go on the line as "=".
    conn = p.Connection(p.CLIENT)
    conn.receive_data(b"+OK\r\n")
    drain(conn)
    assert conn.send(AuthExchange(ExternalClient(), caps("SASL EXTERNAL")).start()) == (
        b"AUTH EXTERNAL =\r\n"
    )


# ---------------------------------------------------------------- AuthExchange


def started(
    mechanism: p.ClientMechanism, capabilities: p.Capabilities | None = None
) -> AuthExchange:
    exchange = AuthExchange(mechanism, capabilities)
    exchange.start()
    return exchange


def test_exchange_answers_empty_challenge_with_initial_response() -> None:
    exchange = started(PlainClient("u", "p"))
    assert exchange.receive(p.AuthChallenge(b"")) == p.AuthResponse(b"\x00u\x00p")
    # Any further challenge goes to the mechanism (PLAIN has nothing more to say).
    assert exchange.receive(p.AuthChallenge(b"")) == p.AuthCancel()
    assert isinstance(exchange.error, p.SASLError)
    assert exchange.receive(p.ErrResponse(b"cancelled")) is None
    assert exchange.done
    assert not exchange.succeeded
    assert exchange.cancelled


def test_exchange_strict_first_challenge() -> None:
    exchange = started(PlainClient("u", "p"))
    assert exchange.receive(p.AuthChallenge(b"hello")) == p.AuthCancel()
    lenient = AuthExchange(PlainClient("u", "p"), None, strict=False)
    lenient.start()
    assert lenient.receive(p.AuthChallenge(b"hello")) == p.AuthResponse(b"\x00u\x00p")


def test_exchange_misuse() -> None:
    exchange = AuthExchange(LoginClient("u", "p"), None)
    with pytest.raises(p.LocalProtocolError):
        exchange.receive(p.OkResponse())
    exchange.start()
    with pytest.raises(p.LocalProtocolError):
        exchange.start()
    with pytest.raises(p.LocalProtocolError):
        exchange.receive(p.Greeting())  # type: ignore[arg-type]
    assert exchange.receive(p.AuthChallenge(b"Username:")) == p.AuthResponse(b"u")
    assert exchange.receive(p.OkResponse(b"welcome")) is None
    assert exchange.succeeded
    assert exchange.reply == p.OkResponse(b"welcome")
    with pytest.raises(p.LocalProtocolError):
        exchange.receive(p.OkResponse())


def test_exchange_ok_after_cancel_is_an_error() -> None:
    exchange = started(LoginClient("u", "p"))
    assert exchange.receive(p.AuthChallenge(b"", valid=False)) == p.AuthCancel()
    with pytest.raises(p.RemoteProtocolError):  # the server owed -ERR
        exchange.receive(p.AuthChallenge(b"again"))
    with pytest.raises(p.SASLError, match="cancelled"):
        exchange.receive(p.OkResponse())


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("prefix", [b"+", b"+ "], ids=["bare plus", "plus space"])
def test_office365_two_step_xoauth2(prefix: bytes, split: Split) -> None:
    """Office 365: ``AUTH XOAUTH2`` / ``+`` / the token / ``+OK``."""
    conn = p.Connection(p.CLIENT)
    incoming = [b"+OK The Microsoft Exchange POP3 service is ready. [UABSADAAUAA=]\r\n"]
    incoming += [prefix + b"\r\n", b"+OK User successfully authenticated.\r\n"]
    token = "E" * 1500
    exchange = AuthExchange(XOAuth2Client("user@contoso.com", token), O365)

    def receive(data: bytes) -> list[p.Event]:
        events: list[p.Event] = []
        for piece in [data] if split == "whole" else [data[i : i + 1] for i in range(len(data))]:
            conn.receive_data(piece)
            events.extend(drain(conn))
        return events

    receive(incoming[0])
    assert conn.send(exchange.start()) == b"AUTH XOAUTH2\r\n"
    (challenge,) = receive(incoming[1])
    response = exchange.receive(challenge)  # type: ignore[arg-type]
    assert isinstance(response, p.AuthResponse)
    assert response.data == f"user=user@contoso.com\x01auth=Bearer {token}\x01\x01".encode()
    conn.send(response)
    (ok,) = receive(incoming[2])
    assert exchange.receive(ok) is None  # type: ignore[arg-type]
    assert exchange.succeeded
    assert conn.state is p.State.TRANSACTION


# ---------------------------------------------------------------- registries


@pytest.mark.parametrize("cls", CLIENT_MECHANISMS)
def test_client_mechanism_by_name(cls: type[p.ClientMechanism]) -> None:
    mechanism = client_mechanism(
        cls.name.lower(), username="u", password="pw", token="tok", authzid="", trace="t"
    )
    assert type(mechanism) is cls


def test_client_mechanism_needs_credentials() -> None:
    with pytest.raises(ValueError, match="password"):
        client_mechanism("PLAIN", username="u")
    with pytest.raises(ValueError, match="password"):
        client_mechanism("SCRAM-SHA-256", password="pw")
    with pytest.raises(ValueError, match="token"):
        client_mechanism("XOAUTH2", username="u")
    with pytest.raises(ValueError, match="GSSAPI"):
        client_mechanism("GSSAPI", username="u", password="pw")
    mechanism = client_mechanism("SCRAM-SHA-256", username="u", password="pw", authzid="u")
    assert isinstance(mechanism, ScramSHA256Client)
    assert mechanism.initial_response().startswith(b"n,a=u,n=u,r=")


def test_server_mechanisms() -> None:
    assert [cls.name for cls in SERVER_MECHANISMS] == [
        "SCRAM-SHA-256",
        "SCRAM-SHA-1",
        "CRAM-MD5",
        "PLAIN",
        "LOGIN",
        "OAUTHBEARER",
        "XOAUTH2",
        "EXTERNAL",
        "ANONYMOUS",
    ]
    assert [m.name for m in server_mechanisms()] == [
        "SCRAM-SHA-256",
        "SCRAM-SHA-1",
        "PLAIN",
        "LOGIN",
    ]
    (cram,) = server_mechanisms(["cram-md5"], hostname="pop.example.org")
    assert cram.make_challenge().endswith(b"@pop.example.org>")  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        server_mechanisms(["NTLM"])
    # Every built-in server mechanism can be offered together.
    options = p.ServerOptions(mechanisms=[cls() for cls in SERVER_MECHANISMS])
    assert len(options.mechanisms) == 9
