"""Nobody logs in as someone else: the authorization identity, for every mechanism.

Every mechanism that lets a client name an identity besides the one it proves
(PLAIN's authzid, SCRAM's and OAUTHBEARER's ``a=``, XOAUTH2's ``user=`` against
the token's owner, EXTERNAL's request against the certificate) is driven with
no such identity, the same one, another one (refused with ``-ERR [AUTH]``), and
another one granted by `ServerOptions.authorize`. In memory, a client engine
against a `ServerSession` whose application never checks identities itself;
then over a socket against the blocking server.
"""

from __future__ import annotations

import base64
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import trustme

import pop3core as p
from pop3_blocking import Client, MemoryAuthenticator, MemoryStore, Server
from tests.core.test_sasl_pair import App, Wire
from tests.server_doubles import Certificates

PASSWORD = "bob's password"
TOKEN = "token-issued-to-bob"
Case = str  # "none", "same", "other", "granted"
CASES = ("none", "same", "other", "granted")
AUTHZID = {"none": "", "same": "bob", "other": "alice", "granted": "alice"}

Factory = Callable[[str], p.ClientMechanism]
# Each mechanism with an identity besides the proved one: a client that proves
# bob and asks to act as `authzid`.
WITH_AUTHZID: dict[str, Factory] = {
    "PLAIN": lambda authzid: p.PlainClient("bob", PASSWORD, authzid=authzid),
    "SCRAM-SHA-1": lambda authzid: p.ScramSHA1Client("bob", PASSWORD, authzid=authzid),
    "SCRAM-SHA-256": lambda authzid: p.ScramSHA256Client("bob", PASSWORD, authzid=authzid),
    # a= names the identity; the token belongs to bob, as the application reports.
    "OAUTHBEARER": lambda authzid: p.OAuthBearerClient(authzid, TOKEN),
    # user= is always sent: "none" is not expressible (left out of MATRIX).
    "XOAUTH2": lambda authzid: p.XOAuth2Client(authzid or "bob", TOKEN),
    "EXTERNAL": p.ExternalClient,
}
# Mechanisms that carry no second identity: the one proved is the one served.
WITHOUT_AUTHZID: dict[str, Factory] = {
    "LOGIN": lambda _: p.LoginClient("bob", PASSWORD),
    "CRAM-MD5": lambda _: p.CramMD5Client("bob", PASSWORD),
}
MATRIX = [
    (name, case)
    for name in WITH_AUTHZID
    for case in CASES
    if not (name == "XOAUTH2" and case == "none")
]


@dataclass
class Hook:
    """An `authorize` hook that grants only the pairs given, and records its calls."""

    grants: set[tuple[str, str]] = field(default_factory=set)
    calls: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, authcid: str, authzid: str) -> bool:
        self.calls.append((authcid, authzid))
        return (authcid, authzid) in self.grants


class OwnerApp(App):
    """Answers for bob (and alice) without ever looking at an authzid."""

    def answer(self, session: p.ServerSession, event: object) -> None:
        if isinstance(event, p.TokenCheck):
            self.requests.append(event)
            session.token_checked(self.tokens.get(event.token, False))
            return
        super().answer(session, event)


def app() -> OwnerApp:
    return OwnerApp(
        users={
            "bob": p.Credential.from_password(PASSWORD),
            "alice": p.Credential.from_password("alice's password"),
        },
        tokens={TOKEN: "bob"},  # token -> owner
        certificate_user="bob",
    )


def wire_for(case: Case, hook: Hook, split: str = "whole") -> Wire:
    if case == "granted":
        hook.grants.add(("bob", "alice"))
    mechanisms = [cls() for cls in p.SERVER_MECHANISMS]
    return Wire(split, mechanisms=mechanisms, app=app(), authorize=hook)  # type: ignore[arg-type]


def maildrop_requests(wire: Wire) -> list[p.MaildropRequest]:
    return [r for r in wire.app.requests if isinstance(r, p.MaildropRequest)]


# ---------------------------------------------------------------- in memory


@pytest.mark.parametrize("split", ["whole", "bytewise"])
@pytest.mark.parametrize(("name", "case"), MATRIX)
def test_authzid_matrix_in_memory(name: str, case: Case, split: str) -> None:
    hook = Hook()
    wire = wire_for(case, hook, split)
    capabilities = wire.capa()
    exchange = wire.login(WITH_AUTHZID[name](AUTHZID[case]), capabilities=capabilities)
    requests = maildrop_requests(wire)
    if case == "other":
        assert isinstance(exchange.reply, p.ErrResponse)
        assert exchange.reply.code == p.AUTH
        assert b"not authorized to act as alice" in exchange.reply.text
        assert requests == []  # alice's maildrop is never even asked for
        assert wire.server.state is p.State.AUTHORIZATION
        assert wire.client.state is p.State.AUTHORIZATION
        assert wire.server.login_failures == 1
        assert hook.calls == [("bob", "alice")]
        return
    assert exchange.succeeded, (exchange.reply, exchange.error)
    expected_user = "alice" if case == "granted" else "bob"
    assert requests == [p.MaildropRequest(expected_user, name, "bob")]
    assert wire.server.username == expected_user
    assert wire.client.state is p.State.TRANSACTION
    assert hook.calls == ([("bob", "alice")] if case == "granted" else [])


@pytest.mark.parametrize("name", WITHOUT_AUTHZID)
def test_mechanisms_without_authzid_serve_whom_they_proved(name: str) -> None:
    hook = Hook(grants={("bob", "alice")})
    wire = wire_for("none", hook)
    exchange = wire.login(WITHOUT_AUTHZID[name](""), capabilities=wire.capa())
    assert exchange.succeeded
    assert maildrop_requests(wire) == [p.MaildropRequest("bob", name)]
    assert hook.calls == []


def test_no_hook_means_no_one_acts_as_anyone_else() -> None:
    for name, make in WITH_AUTHZID.items():
        wire = Wire(mechanisms=[cls() for cls in p.SERVER_MECHANISMS], app=app())
        exchange = wire.login(make("alice"), capabilities=wire.capa())
        assert isinstance(exchange.reply, p.ErrResponse), name
        assert exchange.reply.code == p.AUTH
        assert maildrop_requests(wire) == [], name


@pytest.mark.parametrize("answer", [1, "yes", None, [("bob", "alice")]])
def test_only_a_true_answer_grants(answer: object) -> None:
    wire = Wire(
        mechanisms=[p.PlainServer()],
        app=app(),
        authorize=lambda authcid, authzid: answer,
    )
    exchange = wire.login(WITH_AUTHZID["PLAIN"]("alice"), capabilities=wire.capa())
    assert isinstance(exchange.reply, p.ErrResponse)
    assert maildrop_requests(wire) == []


def test_a_hook_that_raises_is_a_temporary_failure() -> None:
    def broken(authcid: str, authzid: str) -> bool:
        raise RuntimeError("directory unreachable")

    wire = Wire(mechanisms=[p.PlainServer()], app=app(), authorize=broken)
    capabilities = wire.capa()
    with pytest.raises(RuntimeError, match="directory unreachable"):
        wire.login(WITH_AUTHZID["PLAIN"]("alice"), capabilities=capabilities)
    assert wire.server.bytes_to_send() == b"-ERR [SYS/TEMP] temporary authentication failure\r\n"
    assert maildrop_requests(wire) == []


def test_the_refusal_is_a_logged_login_failure() -> None:
    session = p.ServerSession(p.ServerOptions(allow_cleartext=True, mechanisms=[p.PlainServer()]))
    session.bytes_to_send()
    session.receive_data(b"AUTH PLAIN YWxpY2UAYm9iAGJvYidzIHBhc3N3b3Jk\r\n")  # alice\0bob\0...
    check = session.next_event()
    assert check == p.PasswordCheck("bob", PASSWORD, "PLAIN", "alice")
    session.password_checked(True)
    failed = session.next_event()
    assert failed == p.LoginFailed("bob", "PLAIN", "not authorized to act as alice", 2.0, "alice")
    # The -ERR waits for the delay.
    assert session.bytes_to_send() == b""
    session.failure_delay_elapsed()
    assert session.bytes_to_send() == b"-ERR [AUTH] not authorized to act as alice\r\n"


# ---------------------------------------------------------------- over a socket

MAIL = {"alice": [b"Subject: alice's\n\nsecret\n"] * 3, "bob": [b"Subject: bob's\n\nhi\n"]}


class ClientCertificates(Certificates):
    """The test CA also signs a client certificate for bob."""

    def __init__(self) -> None:
        super().__init__()
        self.bob: trustme.LeafCert = self.ca.issue_cert("bob@example.org")

    def server_context(self) -> ssl.SSLContext:
        context = super().server_context()
        context.verify_mode = ssl.CERT_OPTIONAL
        self.ca.configure_trust(context)
        return context

    def bob_context(self) -> ssl.SSLContext:
        context = self.client_context()
        self.bob.configure_cert(context)
        return context


def certificate_user(certificate: dict[str, Any] | None) -> str | None:
    """bob's certificate names bob; nothing else names anyone."""
    if certificate is None:
        return None
    names = [value for kind, value in certificate.get("subjectAltName", ()) if kind == "email"]
    return "bob" if names == ["bob@example.org"] else None


@pytest.fixture(scope="module")
def client_certs() -> ClientCertificates:
    return ClientCertificates()


@pytest.fixture
def serve(client_certs: ClientCertificates) -> Iterator[Callable[[Hook], Server]]:
    servers: list[Server] = []

    def make(hook: Hook) -> Server:
        server = Server(
            MemoryStore(MAIL),
            MemoryAuthenticator(
                {"bob": PASSWORD, "alice": "alice's password"}, tokens={"bob": TOKEN}
            ),
            port=0,
            tls_port=0,
            ssl_context=client_certs.server_context(),
            oauth=True,
            external=certificate_user,
            authorize=hook,
            auth_failure_delay=0,
        ).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.shutdown()


@pytest.mark.parametrize(("name", "case"), MATRIX)
def test_authzid_matrix_over_a_socket(
    serve: Callable[[Hook], Server], client_certs: ClientCertificates, name: str, case: Case
) -> None:
    hook = Hook(grants={("bob", "alice")} if case == "granted" else set())
    server = serve(hook)
    with Client(
        "127.0.0.1",
        server.tls_port,
        tls="implicit",
        ssl_context=client_certs.bob_context(),
        server_hostname="localhost",
        timeout=10,
    ) as client:
        mechanism = WITH_AUTHZID[name](AUTHZID[case])
        if case == "other":
            with pytest.raises(p.AuthenticationError) as refused:
                client.authenticate(mechanism)
            assert refused.value.code == p.AUTH
            assert client.state == "AUTHORIZATION"
            assert hook.calls == [("bob", "alice")]
            return
        client.authenticate(mechanism)
        messages = client.stat().messages
    assert messages == len(MAIL["alice" if case == "granted" else "bob"])


def test_plain_authzid_never_opens_another_maildrop() -> None:
    """The hole this file is about: bob's password must not open alice's mail.

    Only the API that existed before the fix is used, so this fails for the
    right reason on the code that had the hole (there: ``+OK alice has 3 messages``).
    """
    server = Server(
        MemoryStore(MAIL),
        MemoryAuthenticator({"bob": PASSWORD, "alice": "alice's password"}),
        port=0,
        auth_failure_delay=0,
    )
    assert server.port is not None
    with (
        server,
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock,
        sock.makefile("rb") as reader,
    ):
        assert reader.readline().startswith(b"+OK")
        message = base64.b64encode(b"alice\x00bob\x00" + PASSWORD.encode())
        sock.sendall(b"AUTH PLAIN " + message + b"\r\n")
        reply = reader.readline()
        assert reply.startswith(b"-ERR [AUTH]"), reply
        sock.sendall(
            b"AUTH PLAIN " + base64.b64encode(b"\x00bob\x00" + PASSWORD.encode()) + b"\r\n"
        )
        assert reader.readline().startswith(b"+OK bob has 1 messages")
        sock.sendall(b"QUIT\r\n")
        assert reader.readline().startswith(b"+OK")


class BrokenAuthenticator(MemoryAuthenticator):
    """Every lookup fails, as a directory that is down."""

    def credential(self, username: str) -> p.Credential | None:
        raise OSError("directory unreachable")

    def check_token(self, username: str, token: str, mechanism: str) -> str | bool:
        raise OSError("token service unreachable")


def broken_mapper(certificate: dict[str, Any] | None) -> str | None:
    raise ValueError("bad mapping table")


@pytest.mark.parametrize("name", ["PLAIN", "CRAM-MD5", "SCRAM-SHA-256", "XOAUTH2", "EXTERNAL"])
def test_a_failing_backend_is_a_temporary_failure_not_a_dead_session(
    client_certs: ClientCertificates, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = Server(
        MemoryStore(MAIL),
        BrokenAuthenticator({"bob": PASSWORD}, tokens={"bob": TOKEN}),
        port=0,
        tls_port=0,
        ssl_context=client_certs.server_context(),
        mechanisms=["PLAIN", "CRAM-MD5", "SCRAM-SHA-256"],
        oauth=True,
        external=broken_mapper,
        auth_failure_delay=0,
    )
    with (
        server,
        Client(
            "127.0.0.1",
            server.tls_port,
            tls="implicit",
            ssl_context=client_certs.bob_context(),
            server_hostname="localhost",
            timeout=10,
        ) as client,
    ):
        with pytest.raises(p.TemporaryError):
            client.authenticate({**WITH_AUTHZID, **WITHOUT_AUTHZID}[name](""))
        assert client.state == "AUTHORIZATION"
        assert client.capa() is not None  # the session goes on
    assert "failed for" in caplog.text
