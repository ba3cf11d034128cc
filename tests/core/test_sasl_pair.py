"""Client and server engines authenticating against each other, for every mechanism.

A real `Connection(CLIENT)` driven by `AuthExchange` talks to a real
`ServerSession`; bytes cross whole or one at a time. The application behind the
server answers from `Credential` records and a token table.
"""

from __future__ import annotations

import base64
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest

import pop3core as p
from pop3core._sasl._base import ServerStep
from pop3core._sasl._client import AuthExchange
from pop3core._sasl._credentials import Credential, parse_passwd_file
from pop3core._sasl._registry import SERVER_MECHANISMS, client_mechanism
from pop3core._sasl._scram import ScramKeys, ScramSHA256Client
from tests.core.helpers import SPLITS, Split, drain

PASSWORD = "pencil \u00e9t\u00e9"  # non-ASCII, unchanged by SASLprep
TOKEN = "ya29.token-for-alice"
BIG_TOKEN = "t" * 2048


# ---------------------------------------------------------------- the application


@dataclass
class App:
    """The server's application: credentials, tokens, and what it was asked."""

    users: dict[str, Credential] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    token_error: dict[str, Any] | None = None
    certificate_user: str | None = "alice"
    requests: list[object] = field(default_factory=list)

    def answer(self, session: p.ServerSession, event: object) -> None:
        self.requests.append(event)
        if isinstance(event, p.PasswordCheck):
            credential = self.users.get(event.username)
            ok = credential is not None and credential.verify_password(event.password)
            session.password_checked(ok)
        elif isinstance(event, p.SecretRequest):
            credential = self.users.get(event.username)
            session.secret_provided(None if credential is None else credential.secret)
        elif isinstance(event, p.ScramKeysRequest):
            credential = self.users.get(event.username)
            keys = None if credential is None else credential.scram_keys(event.mechanism)
            session.scram_keys_provided(keys)
        elif isinstance(event, p.TokenCheck):
            if self.tokens.get(event.username) == event.token:
                session.token_checked(True)
            else:
                session.token_checked(self.token_error or False)
        elif isinstance(event, p.ExternalCheck):
            session.external_checked(self.certificate_user)
        elif isinstance(event, p.LoginFailed):
            session.failure_delay_elapsed()
        elif isinstance(event, p.MaildropRequest):
            session.maildrop_opened([p.MessageInfo(10, "uid-1")])
        else:  # pragma: no cover
            raise AssertionError(f"unexpected request {event!r}")


def default_app() -> App:
    return App(
        users={
            "alice": Credential.from_password(PASSWORD),
            "scram": Credential(
                scram_sha256=ScramKeys.from_password(PASSWORD, "SCRAM-SHA-256"),
                scram_sha1=ScramKeys.from_password(PASSWORD, "SCRAM-SHA-1"),
            ),
        },
        tokens={"alice": TOKEN, "bigtoken": BIG_TOKEN},
    )


# ---------------------------------------------------------------- the wire


class Wire:
    """A client Connection and a ServerSession joined by a fake network."""

    def __init__(
        self,
        split: Split = "whole",
        *,
        mechanisms: Sequence[p.ServerMechanism] | None = None,
        app: App | None = None,
        strict: bool = True,
        **options: Any,
    ) -> None:
        self.split = split
        self.app = app or default_app()
        if mechanisms is None:
            mechanisms = [cls() for cls in SERVER_MECHANISMS]
        options.setdefault("allow_cleartext", True)
        self.server = p.ServerSession(p.ServerOptions(mechanisms=mechanisms, **options))
        self.client = p.Connection(p.CLIENT, strict=strict)
        self.sent: list[bytes] = []  # client -> server, as written
        self.received: list[bytes] = []  # server -> client, as written
        self.ended: p.SessionEnded | None = None
        events = self.to_client(self.server.bytes_to_send())
        assert len(events) == 1
        assert isinstance(events[0], p.Greeting)

    def _feed(self, receive: Any, data: bytes, pump: Any) -> None:
        if self.split == "whole":
            receive(data)
            pump()
        else:
            for i in range(len(data)):
                receive(data[i : i + 1])
                pump()

    def to_server(self, data: bytes) -> bytes:
        """Give the server `data`, run it (the app answers), return what it wrote."""
        self.sent.append(data)
        out: list[bytes] = []
        session = self.server

        def pump() -> None:
            while True:
                event = session.next_event()
                out.append(session.bytes_to_send())
                if event is p.NEED_DATA or event is p.PAUSED:
                    return
                if isinstance(event, p.SessionEnded):
                    self.ended = event
                    return
                self.app.answer(session, event)
                out.append(session.bytes_to_send())

        self._feed(session.receive_data, data, pump)
        return b"".join(out)

    def to_client(self, data: bytes) -> list[p.Event]:
        self.received.append(data)
        events: list[p.Event] = []
        self._feed(self.client.receive_data, data, lambda: events.extend(drain(self.client)))
        return events

    def roundtrip(self, event: p.Event) -> list[p.Event]:
        return self.to_client(self.to_server(self.client.send(event)))

    def capa(self) -> p.Capabilities:
        events = self.roundtrip(p.Capa())
        assert isinstance(events[0], p.OkResponse)
        assert self.client.capabilities is not None
        return self.client.capabilities

    def login(
        self, mechanism: p.ClientMechanism, *, capabilities: p.Capabilities | None = None
    ) -> AuthExchange:
        """Run one AUTH exchange to its end with `AuthExchange`."""
        exchange = AuthExchange(mechanism, capabilities, strict=self.client.strict)
        pending: list[p.Event] = [exchange.start()]
        while pending:
            events = self.roundtrip(pending.pop())
            for event in events:
                assert isinstance(event, (p.AuthChallenge, p.OkResponse, p.ErrResponse))
                reply = exchange.receive(event)
                if reply is not None:
                    pending.append(reply)
        assert exchange.done
        self.assert_agree()
        return exchange

    def assert_agree(self) -> None:
        client, server = self.client, self.server.conn
        assert client.state is server.state
        assert client.exchange is server.exchange
        assert client.authenticated == server.authenticated


def mechanism_for(name: str, *, password: str = PASSWORD, token: str = TOKEN) -> Any:
    username = "scram" if name.startswith("SCRAM") else "alice"
    if name in ("XOAUTH2", "OAUTHBEARER"):
        return client_mechanism(name, username="alice", token=token, host="h", port=110)
    return client_mechanism(name, username=username, password=password)


ALL = ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256", "XOAUTH2", "OAUTHBEARER"]
ALL += ["EXTERNAL", "ANONYMOUS"]
USER_OF = {"ANONYMOUS": "anonymous", "SCRAM-SHA-1": "scram", "SCRAM-SHA-256": "scram"}


# ---------------------------------------------------------------- success


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("with_capa", [True, False], ids=["capa", "no-capa"])
@pytest.mark.parametrize("name", ALL)
def test_login_succeeds(name: str, with_capa: bool, split: Split) -> None:
    wire = Wire(split)
    capabilities = wire.capa() if with_capa else None
    if capabilities is not None:
        assert name in capabilities.sasl
    exchange = wire.login(mechanism_for(name), capabilities=capabilities)
    assert exchange.succeeded, (exchange.reply, exchange.error)
    assert exchange.error is None
    assert wire.client.state is p.State.TRANSACTION
    assert wire.server.state is p.State.TRANSACTION
    assert wire.server.username == USER_OF.get(name, "alice")
    auth_line = next(data for data in wire.sent if data.startswith(b"AUTH"))
    has_ir = name not in ("LOGIN", "CRAM-MD5")
    if with_capa and has_ir:
        assert auth_line.startswith(f"AUTH {name} ".encode()), auth_line  # one step
    else:
        assert auth_line == f"AUTH {name}\r\n".encode()  # the server speaks first
    if has_ir and not with_capa:
        # The empty challenge that asks for the initial response.
        assert wire.received[wire.sent.index(auth_line) + 1] == b"+ \r\n"

    # After a successful AUTH, another one is refused: the strict client won't send it...
    with pytest.raises(p.LocalProtocolError):
        wire.client.send(p.Auth("PLAIN", b"\x00alice\x00" + PASSWORD.encode()))
    # ... and the server refuses it when it comes anyway.
    reply = wire.to_server(b"AUTH PLAIN AGFsaWNlAHg=\r\n")
    assert reply.startswith(b"-ERR")
    assert wire.server.state is p.State.TRANSACTION
    assert wire.server.username == USER_OF.get(name, "alice")


@pytest.mark.parametrize("split", SPLITS)
def test_second_auth_refused_lenient_client(split: Split) -> None:
    wire = Wire(split, strict=False)
    assert wire.login(mechanism_for("PLAIN"), capabilities=wire.capa()).succeeded
    events = wire.roundtrip(p.Auth("PLAIN", b"\x00alice\x00" + PASSWORD.encode()))
    assert len(events) == 1
    assert isinstance(events[0], p.ErrResponse)
    assert wire.server.state is p.State.TRANSACTION


# ---------------------------------------------------------------- failure


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("with_capa", [True, False], ids=["capa", "no-capa"])
@pytest.mark.parametrize(
    "name", ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256", "XOAUTH2"]
)
def test_login_fails(name: str, with_capa: bool, split: Split) -> None:
    wire = Wire(split)
    capabilities = wire.capa() if with_capa else None
    exchange = wire.login(
        mechanism_for(name, password="wrong", token="wrong"), capabilities=capabilities
    )
    assert not exchange.succeeded
    assert not exchange.cancelled
    assert isinstance(exchange.reply, p.ErrResponse)
    assert exchange.reply.code == p.AUTH
    assert wire.client.state is p.State.AUTHORIZATION
    assert wire.server.state is p.State.AUTHORIZATION
    assert wire.server.login_failures == 1
    # The session goes on: a right login still works.
    assert wire.login(mechanism_for(name), capabilities=capabilities).succeeded


@pytest.mark.parametrize("split", SPLITS)
def test_unknown_user(split: Split) -> None:
    wire = Wire(split)
    capabilities = wire.capa()
    for name in ["PLAIN", "CRAM-MD5", "SCRAM-SHA-256"]:
        mechanism = client_mechanism(name, username="nobody", password=PASSWORD)
        exchange = wire.login(mechanism, capabilities=capabilities)
        assert isinstance(exchange.reply, p.ErrResponse), name
        assert not exchange.cancelled
    assert wire.server.state is p.State.AUTHORIZATION


def test_too_many_failures_end_the_session() -> None:
    wire = Wire(max_login_failures=2)
    capabilities = wire.capa()
    for _ in range(2):
        exchange = wire.login(mechanism_for("PLAIN", password="no"), capabilities=capabilities)
        assert isinstance(exchange.reply, p.ErrResponse)
    assert wire.ended == p.SessionEnded("too many failed logins")


@pytest.mark.parametrize("split", SPLITS)
def test_external_refused(split: Split) -> None:
    app = default_app()
    app.certificate_user = None
    wire = Wire(split, app=app)
    exchange = wire.login(mechanism_for("EXTERNAL"), capabilities=wire.capa())
    assert isinstance(exchange.reply, p.ErrResponse)
    assert exchange.reply.code == p.AUTH


# ---------------------------------------------------------------- OAuth failures


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("with_capa", [True, False], ids=["capa", "no-capa"])
def test_xoauth2_error_challenge(with_capa: bool, split: Split) -> None:
    error = {"status": "401", "schemes": "Bearer", "scope": "https://mail.google.com/"}
    app = default_app()
    app.token_error = error
    wire = Wire(split, app=app)
    capabilities = wire.capa() if with_capa else None
    mechanism = mechanism_for("XOAUTH2", token="expired")
    exchange = wire.login(mechanism, capabilities=capabilities)
    assert isinstance(exchange.reply, p.ErrResponse)
    assert not exchange.cancelled
    assert mechanism.error == error
    # The error challenge is answered with an empty line, then -ERR.
    assert wire.sent[-1] == b"\r\n"
    assert wire.received[-1].startswith(b"-ERR")
    assert wire.server.state is p.State.AUTHORIZATION


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("token_error", [None, {"status": "invalid_token", "scope": "pop"}])
def test_oauthbearer_failure_and_dummy_response(
    token_error: dict[str, Any] | None, split: Split
) -> None:
    app = default_app()
    app.token_error = token_error
    wire = Wire(split, app=app)
    mechanism = mechanism_for("OAUTHBEARER", token="expired")
    exchange = wire.login(mechanism, capabilities=wire.capa())
    assert isinstance(exchange.reply, p.ErrResponse)
    assert mechanism.error == (token_error or {"status": "invalid_token"})
    assert wire.sent[-1] == b"AQ==\r\n"  # the dummy ^A response
    assert wire.server.state is p.State.AUTHORIZATION


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("name", ["XOAUTH2", "OAUTHBEARER"])
def test_big_token_goes_two_step(name: str, split: Split) -> None:
    """A 2 KB token does not fit the 255-octet AUTH line: the two-step form (Office 365)."""
    wire = Wire(split)
    capabilities = wire.capa()
    mechanism = client_mechanism(name, username="bigtoken", token=BIG_TOKEN)
    exchange = wire.login(mechanism, capabilities=capabilities)
    assert exchange.succeeded
    assert wire.sent[1] == f"AUTH {name}\r\n".encode()
    assert wire.received[2] == b"+ \r\n"
    assert len(wire.sent[2]) > 2048
    assert wire.server.username == "bigtoken"


# ---------------------------------------------------------------- cancel and bad base64


class Quitter(p.ClientMechanism):
    """Gives up at the first challenge."""

    name: ClassVar[str] = "LOGIN"

    def initial_response(self) -> None:
        return None

    def respond(self, challenge: bytes) -> bytes:
        raise p.SASLError("changed my mind")


@pytest.mark.parametrize("split", SPLITS)
def test_cancel(split: Split) -> None:
    wire = Wire(split)
    capabilities = wire.capa()
    exchange = wire.login(Quitter(), capabilities=capabilities)
    assert exchange.cancelled
    assert str(exchange.error) == "changed my mind"
    assert wire.sent[-1] == b"*\r\n"
    assert isinstance(exchange.reply, p.ErrResponse)
    assert wire.server.state is p.State.AUTHORIZATION
    assert wire.server.login_failures == 0
    assert wire.login(mechanism_for("SCRAM-SHA-256"), capabilities=capabilities).succeeded


@pytest.mark.parametrize("split", SPLITS)
def test_invalid_base64_from_client(split: Split) -> None:
    wire = Wire(split)
    wire.capa()
    assert wire.to_server(b"AUTH PLAIN\r\n") == b"+ \r\n"
    reply = wire.to_server(b"not base64!\r\n")
    assert reply.startswith(b"-ERR")
    assert wire.server.state is p.State.AUTHORIZATION
    # An invalid initial response is refused at once.
    assert wire.to_server(b"AUTH PLAIN AGF=sa\r\n").startswith(b"-ERR")
    # The session goes on.
    wire.to_server(b"AUTH PLAIN " + b"AGFsaWNlAHBlbmNpbCDDqXTDqQ==" + b"\r\n")
    assert wire.server.username == "alice"


@pytest.mark.parametrize("split", SPLITS)
def test_invalid_base64_from_server(split: Split) -> None:
    client = p.Connection(p.CLIENT)
    feed_client(client, b"+OK hi\r\n", split)
    exchange = AuthExchange(mechanism_for("LOGIN"), None)
    assert client.send(exchange.start()) == b"AUTH LOGIN\r\n"
    (challenge,) = feed_client(client, b"+ VXNlcm5hbWU6=\r\n", split)
    assert isinstance(challenge, p.AuthChallenge)
    assert not challenge.valid
    reply = exchange.receive(challenge)
    assert reply == p.AuthCancel()
    assert client.send(reply) == b"*\r\n"
    assert exchange.error is not None
    (err,) = feed_client(client, b"-ERR cancelled\r\n", split)
    assert isinstance(err, p.ErrResponse)
    assert exchange.receive(err) is None
    assert exchange.done
    assert not exchange.succeeded
    assert client.state is p.State.AUTHORIZATION


def feed_client(client: p.Connection, data: bytes, split: Split) -> list[p.Event]:
    events: list[p.Event] = []
    pieces = [data] if split == "whole" else [data[i : i + 1] for i in range(len(data))]
    for piece in pieces:
        client.receive_data(piece)
        events.extend(drain(client))
    return events


# ---------------------------------------------------------------- SCRAM server proof


@pytest.mark.parametrize("split", SPLITS)
def test_scram_ok_before_server_final(split: Split) -> None:
    """A server that says +OK without proving it knows the keys is caught."""
    client = p.Connection(p.CLIENT)
    feed_client(client, b"+OK hi\r\n", split)
    mechanism = ScramSHA256Client("user", "pencil", nonce="rOprNGfwEbeRWgbNEkqO")
    exchange = AuthExchange(mechanism, p.Capabilities(["SASL SCRAM-SHA-256"]))
    client.send(exchange.start())
    server_first = (
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )
    (challenge,) = feed_client(client, b"+ " + base64.b64encode(server_first) + b"\r\n", split)
    assert isinstance(challenge, p.AuthChallenge)
    response = exchange.receive(challenge)
    assert isinstance(response, p.AuthResponse)
    client.send(response)
    (ok,) = feed_client(client, b"+OK welcome\r\n", split)
    assert isinstance(ok, p.OkResponse)
    with pytest.raises(p.SASLError, match="proved"):
        exchange.receive(ok)
    assert not exchange.succeeded
    assert isinstance(exchange.error, p.SASLError)


@pytest.mark.parametrize("split", SPLITS)
def test_scram_wrong_server_signature_cancels(split: Split) -> None:
    wire = Wire(split)
    capabilities = wire.capa()
    mechanism = mechanism_for("SCRAM-SHA-256")
    exchange = AuthExchange(mechanism, capabilities)
    first = wire.roundtrip(exchange.start())
    (challenge,) = first
    assert isinstance(challenge, p.AuthChallenge)
    response = exchange.receive(challenge)
    assert response is not None
    # Tamper with the server-final message on its way to the client.
    raw = wire.to_server(wire.client.send(response))
    assert raw.startswith(b"+ ")
    forged = b"v=" + base64.b64encode(bytes(32))
    tampered = b"+ " + base64.b64encode(forged) + b"\r\n"
    (bad,) = wire.to_client(tampered)
    assert isinstance(bad, p.AuthChallenge)
    cancel = exchange.receive(bad)
    assert cancel == p.AuthCancel()
    (err,) = wire.roundtrip(cancel)
    assert isinstance(err, p.ErrResponse)
    assert wire.server.state is p.State.AUTHORIZATION


# ---------------------------------------------------------------- cleartext rules


def test_cleartext_mechanisms_hidden_without_tls() -> None:
    wire = Wire(allow_cleartext=False)
    capabilities = wire.capa()
    assert set(capabilities.sasl) == {"SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "EXTERNAL"} | {
        "ANONYMOUS"
    }
    exchange = wire.login(mechanism_for("PLAIN"), capabilities=capabilities)
    assert isinstance(exchange.reply, p.ErrResponse)
    assert wire.login(mechanism_for("SCRAM-SHA-1"), capabilities=capabilities).succeeded


# ---------------------------------------------------------------- plug-ins


class EchoServer(p.ServerMechanism):
    """A made-up three-step mechanism, standing in for GSSAPI or NTLM."""

    name: ClassVar[str] = "X-ECHO"

    def exchange(self, initial_response: bytes | None) -> Generator[ServerStep, Any, str]:
        if initial_response is not None:
            raise p.AuthenticationFailed("no initial response")
        first: bytes = yield p.Challenge(b"round 1")
        second = yield p.Challenge(b"round 2 " + first)
        ok = yield p.PasswordCheck(first.decode(), second.decode(), self.name)
        if not ok:
            raise p.AuthenticationFailed("no")
        return first.decode()


class EchoClient(p.ClientMechanism):
    name: ClassVar[str] = "X-ECHO"

    def __init__(self) -> None:
        self.seen: list[bytes] = []

    def initial_response(self) -> None:
        return None

    def respond(self, challenge: bytes) -> bytes:
        self.seen.append(challenge)
        return b"alice" if len(self.seen) == 1 else PASSWORD.encode()


@pytest.mark.parametrize("split", SPLITS)
def test_plugin_mechanism(split: Split) -> None:
    wire = Wire(split, mechanisms=[EchoServer()])
    capabilities = wire.capa()
    assert capabilities.sasl == ("X-ECHO",)
    client = EchoClient()
    assert wire.login(client, capabilities=capabilities).succeeded
    assert client.seen == [b"round 1", b"round 2 alice"]
    assert wire.server.username == "alice"


# ---------------------------------------------------------------- users files


@pytest.mark.parametrize("split", SPLITS)
def test_login_with_a_dovecot_users_file(split: Split) -> None:
    """SCRAM keys written by `doveadm pw -s SCRAM-SHA-256` serve SCRAM and PLAIN logins."""
    text = (
        "bob:{SCRAM-SHA-256}4096,IuQ0MqAUfyfh2tYKfvh6KQ==,2L6rB10JfW3tQDIo429w+DZ1fvG8dHR2tLuH"
        "GrdrJOk=,KB1XH+fgm0exZOugshCg9gD6g9pBQdgoYjJNvvkzF0E=\n"
        "carol:{SSHA512}XyFVNvefgyTY08VnMRVFJArWdfynsAChfKSRDquExBVwmZCXk7BzYXKWoYcEUI4c+674CDj"
        "QdmqdKvu3X0cnRv/1nAY=\n"
    )
    users = {name: entry.credential for name, entry in parse_passwd_file(text).items()}
    wire = Wire(split, app=App(users=users))
    capabilities = wire.capa()
    for name, user in [("SCRAM-SHA-256", "bob"), ("PLAIN", "bob"), ("LOGIN", "carol")]:
        wire = Wire(split, app=App(users=users))
        mechanism = client_mechanism(name, username=user, password="secret")
        assert wire.login(mechanism, capabilities=capabilities).succeeded, name
        assert wire.server.username == user
    # SSHA512 cannot serve SCRAM: the login fails like a wrong password.
    wire = Wire(split, app=App(users=users))
    mechanism = client_mechanism("SCRAM-SHA-256", username="carol", password="secret")
    assert isinstance(wire.login(mechanism, capabilities=capabilities).reply, p.ErrResponse)


# ---------------------------------------------------------------- engine limits


class BigChallengeServer(p.ServerMechanism):
    """A GSSAPI-like mechanism whose challenge is longer than a status line."""

    name: ClassVar[str] = "X-BIG"

    def exchange(self, initial_response: bytes | None) -> Generator[ServerStep, Any, str]:
        response = yield p.Challenge(b"k" * 600)
        if response != b"ok":
            raise p.AuthenticationFailed("no")
        return "alice"


class BigChallengeClient(p.ClientMechanism):
    name: ClassVar[str] = "X-BIG"

    def initial_response(self) -> None:
        return None

    def respond(self, challenge: bytes) -> bytes:
        assert challenge == b"k" * 600
        return b"ok"


def test_challenge_longer_than_a_status_line() -> None:
    wire = Wire(mechanisms=[BigChallengeServer()])
    assert wire.login(BigChallengeClient(), capabilities=wire.capa()).succeeded
