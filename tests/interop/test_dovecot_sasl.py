"""Differential: pop3core's client logs in to a real Dovecot with every method it shares.

The client here is a minimal blocking loop around `Connection` (the adapters
have their own interop tests); each login must reach TRANSACTION, and a wrong
password must give ``-ERR`` with Dovecot's ``[AUTH]`` code.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import pytest

import pop3core as p
from tests.interop.dovecot import Dovecot, start_dovecot

MECHANISMS = "plain login cram-md5 scram-sha-1 scram-sha-256 apop"


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    users = {
        "alice": "{PLAIN}secret",  # a plaintext secret serves every method
        # keys made by our hash_password: Dovecot must accept our stored-key format
        "sam": p.hash_password("pencil", "SCRAM-SHA-256"),
        "sal": p.hash_password("pencil", "SCRAM-SHA-1"),
    }
    yield from start_dovecot(users, mechanisms=MECHANISMS)


class Client:
    """Just enough I/O to drive a client Connection over a socket."""

    def __init__(
        self, port: int, *, tls: ssl.SSLContext | None = None, source: str = "127.0.0.1"
    ) -> None:
        sock = socket.create_connection(
            ("127.0.0.1", port), timeout=10, source_address=(source, 0)
        )
        self.sock: socket.socket = (
            tls.wrap_socket(sock, server_hostname="localhost") if tls else sock
        )
        self.conn = p.Connection(p.CLIENT, tls_active=tls is not None)
        greeting = self.next_event()
        assert isinstance(greeting, p.Greeting)
        self.greeting = greeting

    def next_event(self) -> p.Event:
        while True:
            event = self.conn.next_event()
            if event is p.NEED_DATA:
                self.conn.receive_data(self.sock.recv(65536))
                continue
            assert event is not p.PAUSED
            return event

    def send(self, event: p.Event) -> None:
        self.sock.sendall(self.conn.send(event))

    def command(self, command: p.Command) -> list[p.Event]:
        self.send(command)
        events = [self.next_event()]
        if type(events[0]) is p.OkResponse and command.expects_multiline:
            while type(events[-1]) is not p.EndOfMultiline:
                events.append(self.next_event())
        return events

    def starttls(self, context: ssl.SSLContext) -> None:
        (ok,) = self.command(p.Stls())
        assert isinstance(ok, p.OkResponse)
        assert self.conn.next_event() is p.PAUSED
        self.sock = context.wrap_socket(self.sock, server_hostname="localhost")
        self.conn.tls_established()

    def authenticate(self, mechanism: p.ClientMechanism) -> p.AuthExchange:
        exchange = p.AuthExchange(mechanism, self.conn.capabilities)
        self.send(exchange.start())
        while not exchange.done:
            event = self.next_event()
            assert isinstance(event, (p.AuthChallenge, p.OkResponse, p.ErrResponse))
            answer = exchange.receive(event)
            if answer is not None:
                self.send(answer)
        return exchange

    def close(self) -> None:
        self.command(p.Quit())
        self.sock.close()


@pytest.mark.parametrize(
    ("mechanism", "user", "password"),
    [
        ("SCRAM-SHA-256", "alice", "secret"),
        ("SCRAM-SHA-256", "sam", "pencil"),
        ("SCRAM-SHA-1", "alice", "secret"),
        ("SCRAM-SHA-1", "sal", "pencil"),
        ("CRAM-MD5", "alice", "secret"),
        ("PLAIN", "alice", "secret"),
        ("PLAIN", "sam", "pencil"),
        ("LOGIN", "alice", "secret"),
    ],
)
@pytest.mark.parametrize("with_capa", [True, False], ids=["capa", "no-capa"])
def test_sasl_login(
    dovecot: Dovecot, mechanism: str, user: str, password: str, with_capa: bool
) -> None:
    client = Client(dovecot.port)
    if with_capa:
        client.command(p.Capa())
        assert client.conn.capabilities is not None
        assert mechanism in client.conn.capabilities.sasl
    exchange = client.authenticate(p.client_mechanism(mechanism, username=user, password=password))
    assert exchange.succeeded, (exchange.reply, exchange.error, dovecot.log()[-2000:])
    assert client.conn.state is p.State.TRANSACTION
    stat = client.command(p.Stat())[0]
    assert isinstance(stat, p.OkResponse)
    assert p.parse_stat(stat.text) == (0, 0)
    client.close()


@pytest.mark.parametrize(
    ("mechanism", "source"),
    [("SCRAM-SHA-256", "127.0.0.2"), ("CRAM-MD5", "127.0.0.3"), ("PLAIN", "127.0.0.4")],
)
def test_wrong_password_is_an_auth_failure(dovecot: Dovecot, mechanism: str, source: str) -> None:
    # Dovecot delays further logins from an address that failed (its auth penalty),
    # so each failure comes from its own loopback address.
    client = Client(dovecot.port, source=source)
    client.command(p.Capa())
    exchange = client.authenticate(
        p.client_mechanism(mechanism, username="alice", password="wrong")
    )
    assert not exchange.succeeded
    assert isinstance(exchange.reply, p.ErrResponse)
    assert exchange.reply.code == p.AUTH
    assert client.conn.state is p.State.AUTHORIZATION
    client.close()


def test_apop_and_user_pass(dovecot: Dovecot) -> None:
    client = Client(dovecot.port)
    timestamp = client.greeting.timestamp
    assert timestamp is not None
    (ok,) = client.command(p.Apop("alice", p.apop_digest(timestamp, "secret")))
    assert isinstance(ok, p.OkResponse)
    client.close()
    client = Client(dovecot.port)
    assert [type(e) for e in client.command(p.User("alice"))] == [p.OkResponse]
    assert [type(e) for e in client.command(p.Pass("secret"))] == [p.OkResponse]
    client.close()


def test_choice_of_method_against_dovecot(dovecot: Dovecot) -> None:
    client = Client(dovecot.port)
    client.command(p.Capa())
    method = p.choose_login_method(
        client.conn.capabilities, client.greeting.timestamp, tls_active=False
    )
    assert method == "SCRAM-SHA-256"
    client.close()


@pytest.mark.parametrize("mode", ["stls", "implicit"])
def test_sasl_over_tls(dovecot: Dovecot, mode: str) -> None:
    context = dovecot.client_context()
    if mode == "stls":
        client = Client(dovecot.port)
        client.command(p.Capa())
        assert client.conn.capabilities is not None
        assert client.conn.capabilities.stls
        client.starttls(context)
        assert client.conn.capabilities is None
    else:
        client = Client(dovecot.tls_port, tls=context)
    client.command(p.Capa())
    assert client.conn.capabilities is not None
    assert not client.conn.capabilities.stls
    method = p.choose_login_method(
        client.conn.capabilities, client.greeting.timestamp, tls_active=True
    )
    exchange = client.authenticate(p.client_mechanism(method, username="sam", password="pencil"))
    assert exchange.succeeded
    client.close()
