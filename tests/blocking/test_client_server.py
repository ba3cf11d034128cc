"""pop3_blocking: the modern client against the threaded server, over loopback."""

from __future__ import annotations

import errno
import gc
import io
import poplib
import socket
import ssl
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import pop3core as p
from pop3_blocking._client import Client
from pop3_blocking._server import Server
from tests.server_doubles import Certificates, DictAuthenticator, DictStore

MESSAGES = [
    b"Subject: one\n\n.leading dot line\nbody\n",
    b".first octet is a dot\nno headers\n",
    b"Subject: three\r\n\r\n" + b"x" * 998 + b"\r\n..two dots\r\n",
]


@pytest.fixture(scope="module")
def certs() -> Certificates:
    return Certificates()


ServerFactory = Callable[..., Server]


@pytest.fixture
def make_server(certs: Certificates) -> Iterator[ServerFactory]:
    servers: list[Server] = []

    def make(
        mail: dict[str, list[bytes]] | None = None,
        users: dict[str, str] | None = None,
        *,
        tls: bool = True,
        **kwargs: Any,
    ) -> Server:
        store = DictStore({"alice": list(MESSAGES)} if mail is None else mail)
        authenticator = kwargs.pop("authenticator", None) or DictAuthenticator(
            {"alice": "secret"} if users is None else users, tokens={"alice": "tok-en"}
        )
        server = Server(
            store,
            authenticator,
            port=0,
            tls_port=0 if tls else None,
            ssl_context=certs.server_context() if tls else None,
            auth_failure_delay=kwargs.pop("auth_failure_delay", 0),
            **kwargs,
        ).start()
        server.test_store = store  # type: ignore[attr-defined]
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.shutdown()


def connect(server: Server, certs: Certificates, mode: str = "none", **kwargs: Any) -> Client:
    port = server.tls_port if mode == "implicit" else server.port
    assert port is not None
    return Client(
        "127.0.0.1",
        port,
        tls=mode,  # type: ignore[arg-type]
        ssl_context=certs.client_context(),
        server_hostname="localhost",
        timeout=10,
        **kwargs,
    )


def expected(index: int) -> bytes:
    return p.normalize_newlines(MESSAGES[index])


@pytest.mark.parametrize("mode", ["none", "starttls", "implicit"])
def test_session_in_every_tls_mode(
    make_server: ServerFactory, certs: Certificates, mode: str
) -> None:
    server = make_server()
    with connect(server, certs, mode) as client:
        assert client.tls_active == (mode != "none")
        caps = client.capabilities
        assert caps is not None
        assert caps.stls == (mode == "none")
        client.login("alice", "secret")
        assert client.state == "TRANSACTION"
        assert client.stat() == (3, sum(len(expected(i)) for i in range(3)))
        assert client.list() == {i + 1: len(expected(i)) for i in range(3)}
        assert client.list(2) == len(expected(1))
        assert client.uidl() == {1: "alice-0", 2: "alice-1", 3: "alice-2"}
        assert client.uidl(3) == "alice-2"
        for i in range(3):
            assert client.retr(i + 1) == expected(i)
        assert client.top(1, 0) == b"Subject: one\r\n\r\n"
        client.dele(2)
        with pytest.raises(p.ResponseError):
            client.retr(2)
        client.noop()
    store = server.test_store  # type: ignore[attr-defined]
    assert store.commits == [("alice", ["alice-1"])]


@pytest.mark.parametrize(
    ("method", "mode"),
    [
        ("SCRAM-SHA-256", "none"),
        ("SCRAM-SHA-1", "none"),
        ("CRAM-MD5", "none"),
        ("APOP", "none"),
        ("PLAIN", "implicit"),
        ("LOGIN", "starttls"),
        ("USER", "implicit"),
    ],
)
def test_every_password_method(
    make_server: ServerFactory, certs: Certificates, method: str, mode: str
) -> None:
    server = make_server(mechanisms=["SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN"])
    with connect(server, certs, mode) as client:
        client.login("alice", "secret", method=method)
        assert client.stat().messages == 3


def test_strongest_method_is_chosen(make_server: ServerFactory, certs: Certificates) -> None:
    lines: list[str] = []
    server = make_server()
    with connect(server, certs, log=lines.append) as client:
        client.login("alice", "secret")
    assert any(line.startswith("C: AUTH SCRAM-SHA-256") for line in lines), lines
    assert not any("secret" in line for line in lines)


@pytest.mark.parametrize("method", ["XOAUTH2", "OAUTHBEARER"])
def test_token_login_over_tls(
    make_server: ServerFactory, certs: Certificates, method: str
) -> None:
    server = make_server(oauth=True)
    lines: list[str] = []
    with connect(server, certs, "implicit", log=lines.append) as client:
        client.login("alice", token="tok-en", method=method)
        assert client.stat().messages == 3
    assert not any("tok-en" in line for line in lines)
    with connect(server, certs, "implicit") as client, pytest.raises(p.AuthenticationError):
        client.login("alice", token="wrong", method=method)


def test_cleartext_refused_by_the_client_without_tls(
    make_server: ServerFactory, certs: Certificates
) -> None:
    hashed = p.Credential.parse(p.hash_password("secret", "SSHA512"))

    class Hashed(DictAuthenticator):
        def credential(self, username: str) -> p.Credential | None:
            return hashed if username == "alice" else None

        def mechanisms(self) -> list[str]:
            return p.store_mechanisms([hashed])  # only PLAIN and LOGIN

    server = make_server(authenticator=Hashed({}))
    with connect(server, certs) as client:
        with pytest.raises(p.LoginMethodUnavailable, match="without TLS"):
            client.login("alice", "secret")
        client.login("alice", "secret", allow_cleartext=True)
    with connect(server, certs, "starttls") as client:
        client.login("alice", "secret")  # over TLS PLAIN is fine


def test_wrong_password_and_failure_delay(make_server: ServerFactory, certs: Certificates) -> None:
    server = make_server(auth_failure_delay=0.3)
    with connect(server, certs) as client:
        started = time.monotonic()
        with pytest.raises(p.AuthenticationError) as info:
            client.login("alice", "wrong")
        assert time.monotonic() - started >= 0.3
        assert info.value.code == p.AUTH
        client.login("alice", "secret")


def test_maildrop_in_use(make_server: ServerFactory, certs: Certificates) -> None:
    server = make_server()
    with connect(server, certs) as first:
        first.login("alice", "secret")
        with connect(server, certs) as second:
            with pytest.raises(p.MailboxInUse):
                second.login("alice", "secret")
            second.quit()
    with connect(server, certs) as again:  # the lock was released at QUIT
        again.login("alice", "secret")


def test_exception_in_block_means_no_update(
    make_server: ServerFactory, certs: Certificates
) -> None:
    server = make_server()

    def fail_midway() -> None:
        with connect(server, certs) as client:
            client.login("alice", "secret")
            client.dele(1)
            raise RuntimeError("the application failed")

    with pytest.raises(RuntimeError):
        fail_midway()
    time.sleep(0.2)
    assert server.test_store.commits == []  # type: ignore[attr-defined]
    with connect(server, certs) as client:  # and the lock was released
        client.login("alice", "secret")
        assert client.stat().messages == 3


def test_streaming_to_files_and_iterators(make_server: ServerFactory, certs: Certificates) -> None:
    big = b"".join(b"line %07d of a large message\r\n" % i for i in range(400_000))  # ~13 MB
    big += b".a dot line at the end\r\n"
    server = make_server({"alice": [big, b"small\r\n"]})
    with connect(server, certs) as client:
        client.login("alice", "secret")
        out = io.BytesIO()
        assert client.retr(1, out) == len(big)
        assert out.getvalue() == big
        chunks = client.iter_retr(1)
        first = next(chunks)
        assert big.startswith(first)
        chunks.close()  # stop early: the rest is drained
        assert client.retr(2) == b"small\r\n"
        assert b"".join(client.iter_top(2, 0)) == b"small\r\n"  # no blank line: all headers


def test_pipelined_bulk_fetch_and_delete(make_server: ServerFactory, certs: Certificates) -> None:
    mail = [b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i) for i in range(200)]
    server = make_server({"alice": mail})
    lines: list[str] = []
    with connect(server, certs, pipeline_window=16, log=lines.append) as client:
        client.login("alice", "secret")
        got = dict(client.retr_many(range(1, 201)))
        assert got == {i + 1: m for i, m in enumerate(mail)}
        files: dict[int, io.BytesIO] = {}

        class Keep(io.BytesIO):
            def close(self) -> None:  # keep the data for the assertion
                pass

        def opener(number: int) -> Keep:
            files[number] = Keep()
            return files[number]

        client.retr_many_to([5, 6, 7], opener)
        assert {n: f.getvalue() for n, f in files.items()} == {n: mail[n - 1] for n in (5, 6, 7)}
        client.dele_many(range(1, 101))
        assert client.stat().messages == 100
    # the window was used: several RETRs went out before the first reply came back
    retr_lines = [i for i, line in enumerate(lines) if line.startswith("C: RETR")]
    first_reply = next(
        i for i, line in enumerate(lines) if line.startswith("S: +OK") and i > retr_lines[0]
    )
    assert sum(1 for i in retr_lines if i < first_reply) == 16
    assert server.test_store.commits[0][1] == sorted(f"alice-{i}" for i in range(100))  # type: ignore[attr-defined]


def test_pipelined_error_is_raised_after_draining(
    make_server: ServerFactory, certs: Certificates
) -> None:
    server = make_server()
    with connect(server, certs) as client:
        client.login("alice", "secret")
        client.dele(2)
        with pytest.raises(p.ResponseError):
            list(client.retr_many([1, 2, 3]))
        assert client.retr(3) == expected(2)  # the session is still in step


def test_certificate_is_verified_by_default(
    make_server: ServerFactory, certs: Certificates
) -> None:
    server = make_server()
    assert server.tls_port is not None
    with pytest.raises(ssl.SSLCertVerificationError):
        Client("127.0.0.1", server.tls_port, server_hostname="not-localhost", timeout=5)
    with pytest.raises(ssl.SSLCertVerificationError):  # nor the default trust store
        Client("localhost", server.tls_port, timeout=5)


def test_starttls_required(make_server: ServerFactory, certs: Certificates) -> None:
    server = make_server(tls=False)
    with pytest.raises(p.TLSNotOffered):
        connect(server, certs, "starttls")


def test_greeting_refused_when_full_of_logged_in_sessions(
    make_server: ServerFactory, certs: Certificates
) -> None:
    # A session that has logged in is never closed to make room: the newcomer is refused.
    server = make_server(max_connections=1)
    with connect(server, certs) as first:
        first.login("alice", "secret")
        with pytest.raises(p.TemporaryError):
            connect(server, certs)


def raw(server: Server) -> socket.socket:
    assert server.port is not None
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    assert sock.recv(512).startswith(b"+OK")
    return sock


def read_all(sock: socket.socket) -> bytes:
    data = bytearray()
    while chunk := sock.recv(65536):
        data += chunk
    return bytes(data)


def test_bad_command_budget_closes(make_server: ServerFactory) -> None:
    server = make_server(options=p.ServerOptions(max_bad_commands=2))
    with raw(server) as sock:
        sock.sendall(b"FOO\r\nBAR\r\nBAZ\r\n")
        assert read_all(sock) == (
            b"-ERR unknown command\r\n-ERR unknown command\r\n-ERR too many bad commands\r\n"
        )


def test_a_password_that_is_not_utf8_is_refused(make_server: ServerFactory) -> None:
    server = make_server(tls=False, allow_cleartext=True)
    with raw(server) as sock:
        sock.sendall(b"USER alice\r\nPASS \xff\xfe\r\nUSER alice\r\nPASS secret\r\nQUIT\r\n")
        reply = read_all(sock).split(b"\r\n")
        assert [line[:4] for line in reply[:5]] == [b"+OK ", b"-ERR", b"+OK ", b"+OK ", b"+OK "]


class BrokenCredential:
    """A stored credential whose checks fail in the backend."""

    secret = None

    def verify_password(self, password: str) -> bool:
        raise RuntimeError("the hash library is gone")

    def scram_keys(self, mechanism: str) -> None:
        raise RuntimeError("the hash library is gone")


def test_a_failing_credential_check_gets_sys_temp(make_server: ServerFactory) -> None:
    authenticator = DictAuthenticator({"alice": "secret"})
    authenticator.credential = lambda username: BrokenCredential()  # type: ignore[assignment,method-assign,return-value]
    server = make_server(tls=False, allow_cleartext=True, authenticator=authenticator)
    with raw(server) as sock:
        sock.sendall(b"USER alice\r\nPASS secret\r\nQUIT\r\n")
        reply = read_all(sock).split(b"\r\n")
        assert reply[1].startswith(b"-ERR [SYS/TEMP]")
        assert reply[2].startswith(b"+OK")


def test_pipelined_commands_from_a_client_that_does_not_read(make_server: ServerFactory) -> None:
    """The replies wait in the socket (the session pauses), then all of them arrive."""
    server = make_server(
        {"alice": [b"Subject: x\r\n\r\nbody\r\n"] * 500}, tls=False, allow_cleartext=True
    )
    with raw(server) as sock:
        sock.sendall(b"USER alice\r\nPASS secret\r\n")
        commands = b"DELE 1\r\nRSET\r\nUIDL\r\n" * 1000
        sock.sendall(commands + b"QUIT\r\n")  # 25 KiB: fits the socket buffers
        time.sleep(0.2)  # the server writes until the socket is full, then waits
        replies = read_all(sock)
    assert replies.count(b"+OK unique-id listing follows\r\n") == 1000
    assert replies.endswith(b".\r\n+OK bye\r\n")


def test_stls_injection_closes(make_server: ServerFactory) -> None:
    server = make_server()
    with raw(server) as sock:
        sock.sendall(b"STLS\r\nUSER alice\r\n")
        reply = read_all(sock)
        assert reply.startswith(b"-ERR")
        assert b"+OK" not in reply


@pytest.mark.parametrize("mode", ["implicit", "stls"])
def test_shutdown_ends_a_session_stalled_in_its_tls_handshake(
    make_server: ServerFactory, certs: Certificates, mode: str
) -> None:
    """The handshake runs on a socket the registry does not hold yet: it is cut all the same."""
    server = make_server(allow_cleartext=True)
    port = server.tls_port if mode == "implicit" else server.port
    assert port is not None
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        if mode == "stls":
            assert sock.recv(512).startswith(b"+OK")
            sock.sendall(b"STLS\r\n")
            assert sock.recv(512).startswith(b"+OK")
        deadline = time.monotonic() + 5
        while not server._slots:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        (slot,) = server._slots
        assert slot.thread is not None
        started = time.monotonic()
        server.shutdown(timeout=5)
        assert time.monotonic() - started < 4
        assert not slot.thread.is_alive()
        with pytest.raises(OSError):  # ssl.SSLError is an OSError
            certs.client_context().wrap_socket(sock, server_hostname="localhost")
    assert server.test_store.commits == []  # type: ignore[attr-defined]


class FlakyListener(socket.socket):
    """A listening socket whose first accept fails as when the process is out of descriptors."""

    failures = 1

    def accept(self) -> tuple[socket.socket, Any]:
        if self.failures:
            self.failures -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        return super().accept()


def test_accept_failures_do_not_stop_the_server() -> None:
    server = Server(
        DictStore({"alice": list(MESSAGES)}), DictAuthenticator({"alice": "secret"}), port=0
    )
    listener, implicit = server._listeners[0]
    flaky = FlakyListener(fileno=listener.detach())
    server._listeners[0] = (flaky, implicit)
    with server, Client("127.0.0.1", server.port, tls="none", timeout=5) as client:
        client.login("alice", "secret", method="USER", allow_cleartext=True)
        assert client.stat().messages == len(MESSAGES)
    assert flaky.failures == 0


def test_a_port_that_cannot_be_bound_leaks_no_listener(certs: Certificates) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        taken = busy.getsockname()[1]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(OSError):
                Server(
                    DictStore({}),
                    DictAuthenticator({}),
                    port=0,
                    tls_port=taken,
                    ssl_context=certs.server_context(),
                )
            gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_loopback_cleartext_includes_ipv4_mapped_addresses() -> None:
    server = Server(DictStore({}), DictAuthenticator({}), port=0)
    with server:
        for peer, loopback in (
            (("127.0.0.1", 1), True),
            (("::1", 1, 0, 0), True),
            (("::ffff:127.0.0.1", 1, 0, 0), True),
            (("::ffff:192.0.2.1", 1, 0, 0), False),
            (("192.0.2.1", 1), False),
        ):
            assert server._options_for(peer, implicit=False).allow_cleartext is loopback


def test_autologout_closes_without_update(
    make_server: ServerFactory, certs: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The public API refuses less than RFC 1939's 10 minutes: lower the floor.
    monkeypatch.setattr(p._server, "MINIMUM_AUTOLOGOUT", 0.1)
    server = make_server(autologout=0.5)
    with connect(server, certs) as client:
        client.login("alice", "secret")
        client.dele(1)
        time.sleep(1.0)
        with pytest.raises((p.RemoteProtocolError, OSError)):
            client.stat()
    assert server.test_store.commits == []  # type: ignore[attr-defined]
    monkeypatch.undo()
    with pytest.raises(ValueError, match="10 minutes"):
        Server(DictStore({}), DictAuthenticator({}), port=0, autologout=30)


def test_shutdown_never_commits(make_server: ServerFactory, certs: Certificates) -> None:
    server = make_server()
    client = connect(server, certs, "implicit")
    client.login("alice", "secret")
    client.dele(1)
    server.shutdown()
    with pytest.raises((p.RemoteProtocolError, OSError)):
        client.stat()
    client.close()
    assert server.test_store.commits == []  # type: ignore[attr-defined]
    assert not server.test_store.locked  # type: ignore[attr-defined]


def test_stdlib_poplib_against_our_server(make_server: ServerFactory, certs: Certificates) -> None:
    server = make_server()
    assert server.port is not None
    assert server.tls_port is not None
    for mode in ("none", "stls", "implicit"):
        if mode == "implicit":
            client: poplib.POP3 = poplib.POP3_SSL(
                "localhost", server.tls_port, context=certs.client_context()
            )
        else:
            client = poplib.POP3("localhost", server.port)
            if mode == "stls":
                client.stls(certs.client_context())
        client.user("alice")
        client.pass_("secret")
        assert client.stat()[0] == 3
        for i in range(3):
            _, lines, octets = client.retr(i + 1)
            assert b"\r\n".join(lines) + b"\r\n" == expected(i)
            assert octets == len(expected(i))
        assert client.quit().startswith(b"+OK")


class _TrickleSocket:
    """sendmsg that takes at most `limit` octets a call, as a socket may."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.out = bytearray()
        self.calls = 0

    def gettimeout(self) -> None:
        return None

    def sendmsg(self, buffers: list[memoryview]) -> int:
        self.calls += 1
        data = b"".join(buffers)[: self.limit]
        self.out += data
        return len(data)


@pytest.mark.parametrize("limit", [1, 3, 7, 1000])
def test_scatter_gather_writes_survive_partial_sends(limit: int) -> None:
    from pop3_blocking._streams import Stream

    body = b"x" * 50
    pieces: list[bytes | bytearray | memoryview] = [
        b"a",
        b"",
        memoryview(body)[:10],
        bytearray(b"bc"),
        memoryview(body)[9:40],
    ]
    sock = _TrickleSocket(limit)
    Stream(sock).send_all(pieces, None)  # type: ignore[arg-type]
    assert bytes(sock.out) == b"".join(pieces)


def test_scatter_gather_writes_split_more_buffers_than_one_call_takes() -> None:
    from pop3_blocking._streams import _MAX_BUFFERS, Stream

    pieces: list[bytes | bytearray | memoryview] = [b"%d," % i for i in range(3 * _MAX_BUFFERS)]
    sock = _TrickleSocket(1 << 30)
    Stream(sock).send_all(pieces, None)  # type: ignore[arg-type]
    assert bytes(sock.out) == b"".join(pieces)
    assert sock.calls == 3
