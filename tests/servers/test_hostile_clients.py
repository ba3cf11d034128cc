"""Both servers against hostile clients: nobody starves the service.

Idle floods, clients that never log in, drip-fed commands, stalled TLS
handshakes, password guessing, log injection, and QUIT racing shutdown. Every
case is bounded in time (short limits, client sockets with timeouts) and in
resources (a few hundred sockets at most). The tests that take a `make_server`
run against the threaded server and the async one on asyncio and on trio
(`tests.server_kinds`); the shutdown races are the threaded server's (the async
server's shutdown has its own tests in tests/anyio/test_server.py).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import resource
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

import pop3core as p
from pop3_blocking import Client, MemoryAuthenticator, Server
from pop3_stores import Maildrop
from tests.server_doubles import Certificates, DictMaildrop, DictStore
from tests.server_kinds import SERVER_KINDS, RunningServer

MAIL = {"alice": [b"Subject: hi\n\nhello\n"], "bob": [b"Subject: one\n\n1\n"] * 2}
USERS = {"alice": "alice-pw", "bob": "bob-pw"}

ServerFactory = Callable[..., RunningServer]


@pytest.fixture(params=SERVER_KINDS)
def make_server(certs: Certificates, request: pytest.FixtureRequest) -> Iterator[ServerFactory]:
    servers: list[RunningServer] = []

    def make(**kwargs: Any) -> RunningServer:
        kwargs.setdefault("auth_failure_delay", 0)
        if request.param != "threads":
            kwargs.setdefault("max_connections", 1000)  # the threaded server's default
        server = RunningServer(
            request.param,
            kwargs.pop("store", None) or DictStore(MAIL),
            kwargs.pop("authenticator", None) or MemoryAuthenticator(USERS),
            port=0,
            tls_port=0,
            ssl_context=certs.server_context(),
            **kwargs,
        )
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.shutdown()


def port_for(server: RunningServer, mode: str) -> int:
    port = server.tls_port if mode == "implicit" else server.port
    assert port is not None
    return port


def fetch(server: RunningServer, certs: Certificates, mode: str) -> float:
    """Log in as alice and fetch her mail; the seconds it took."""
    started = time.monotonic()
    with Client(
        "127.0.0.1",
        port_for(server, mode),
        tls=mode,  # type: ignore[arg-type]
        ssl_context=certs.client_context(),
        server_hostname="localhost",
        connect_timeout=5,
        timeout=5,
    ) as client:
        client.login("alice", "alice-pw")
        assert client.retr(1) == p.normalize_newlines(MAIL["alice"][0])
    return time.monotonic() - started


def idle_connections(port: int, count: int) -> list[socket.socket]:
    """`count` clients that connect and say nothing (not even a TLS hello)."""
    wanted = count * 4 + 256  # theirs, the server's, its handles, and the rest
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    return [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes `sock` within `within` seconds (a greeting is read past)."""
    sock.settimeout(within)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except OSError:  # reset: closed all the same
        return True
    return True


# ------------------------------------------------------------- idle floods


@pytest.mark.parametrize("mode", ["none", "starttls", "implicit"])
def test_300_idle_connections_do_not_keep_a_client_out(
    make_server: ServerFactory, certs: Certificates, mode: str
) -> None:
    """Issue acceptance: with the default limits, from one address, in every TLS mode."""
    server = make_server()
    flood = idle_connections(port_for(server, mode), 300)
    try:
        took = fetch(server, certs, mode)
        assert took < 1.0, f"{took:.2f} s"
        # The oldest idle ones were closed to make room (100 per address by default).
        assert sum(closed_by_server(sock, 0.01) for sock in flood[:150]) >= 150
    finally:
        for sock in flood:
            sock.close()


def test_the_total_limit_makes_room_too(make_server: ServerFactory, certs: Certificates) -> None:
    server = make_server(max_connections=20, max_connections_per_address=1000)
    flood = idle_connections(port_for(server, "none"), 60)
    try:
        assert fetch(server, certs, "none") < 1.0
    finally:
        for sock in flood:
            sock.close()


def test_logged_in_sessions_are_never_closed_to_make_room(
    make_server: ServerFactory, certs: Certificates
) -> None:
    server = make_server(max_connections_per_address=2)
    with (
        Client("127.0.0.1", server.port, tls="none", timeout=5, connect_timeout=5) as bob,
        Client("127.0.0.1", server.port, tls="none", timeout=5) as alice,
    ):
        bob.login("bob", "bob-pw")
        alice.login("alice", "alice-pw")
        # Both slots of this address are logged in: the newcomer is refused.
        with pytest.raises(p.TemporaryError):
            Client("127.0.0.1", server.port, tls="none", timeout=5)
        assert bob.stat().messages == 2
        assert alice.stat().messages == 1


# ------------------------------------------------------------- the pre-login deadline


def test_a_client_that_never_logs_in_is_closed_at_the_deadline(
    make_server: ServerFactory,
) -> None:
    server = make_server(login_timeout=0.5)
    with socket.create_connection(("127.0.0.1", port_for(server, "none")), timeout=5) as sock:
        started = time.monotonic()
        assert closed_by_server(sock, 5)
        assert 0.4 < time.monotonic() - started < 3


def test_the_deadline_is_not_reset_by_chatter(make_server: ServerFactory) -> None:
    """CAPA after CAPA, a command drip-fed a byte at a time: closed all the same."""
    server = make_server(login_timeout=0.8)
    with socket.create_connection(("127.0.0.1", port_for(server, "none")), timeout=5) as sock:
        started = time.monotonic()
        sock.recv(512)
        with contextlib.suppress(OSError):
            for _ in range(4):
                sock.sendall(b"CAPA\r\n")
                time.sleep(0.1)
            for byte in b"USER alice":
                sock.sendall(bytes([byte]))
                time.sleep(0.1)
        assert closed_by_server(sock, 5)
        assert time.monotonic() - started < 3


@pytest.mark.parametrize("mode", ["implicit", "starttls"])
def test_a_stalled_tls_handshake_ends_at_the_deadline(
    make_server: ServerFactory, mode: str
) -> None:
    server = make_server(login_timeout=0.5)
    with socket.create_connection(("127.0.0.1", port_for(server, mode)), timeout=5) as sock:
        started = time.monotonic()
        if mode == "starttls":
            sock.recv(512)
            sock.sendall(b"STLS\r\n")
            assert sock.recv(512).startswith(b"+OK")
        assert closed_by_server(sock, 5)
        assert time.monotonic() - started < 3


def test_after_login_only_the_autologout_counts(
    make_server: ServerFactory, certs: Certificates
) -> None:
    server = make_server(login_timeout=0.3)
    with Client("127.0.0.1", server.port, tls="none", timeout=5) as client:
        client.login("alice", "alice-pw")
        time.sleep(0.6)  # past the login deadline
        assert client.stat().messages == 1


# ------------------------------------------------------------- password guessing


def plain(name: str, password: str) -> bytes:
    return b"AUTH PLAIN " + base64.b64encode(f"\0{name}\0{password}".encode()) + b"\r\n"


def test_failed_logins_are_logged_delayed_and_limited(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = make_server(auth_failure_delay=0.2)
    caplog.set_level(logging.WARNING, logger=server.logger_name)
    with (
        socket.create_connection(("127.0.0.1", port_for(server, "none")), timeout=5) as sock,
        sock.makefile("rb") as reader,
    ):
        reader.readline()
        local_port = sock.getsockname()[1]
        for name, delay in (("alice", 0.2), ("nobody", 0.4), ("bob", 0.8)):
            started = time.monotonic()
            sock.sendall(plain(name, "guess"))
            assert reader.readline().startswith(b"-ERR [AUTH]")
            # The delay doubles with each failure from this address.
            assert time.monotonic() - started >= delay - 0.01
        assert reader.readline() == b""  # the third failure ends the session
    lines = [r.getMessage() for r in caplog.records if "login failed" in r.getMessage()]
    assert lines == [
        f'login failed: address=127.0.0.1 port={local_port} user="{name}" mechanism=PLAIN '
        'reason="invalid user name or password"'
        for name in ("alice", "nobody", "bob")
    ]


def test_guessing_from_many_connections_is_slowed_for_the_whole_address(
    make_server: ServerFactory,
) -> None:
    """Parallel connections do not multiply the guesses: the address's delay grows."""
    server = make_server(auth_failure_delay=0.05, max_login_penalty=0.4)
    took = []
    for _ in range(5):  # a fresh connection for every guess
        with (
            socket.create_connection(("127.0.0.1", port_for(server, "none")), timeout=5) as sock,
            sock.makefile("rb") as reader,
        ):
            reader.readline()
            started = time.monotonic()
            sock.sendall(plain("alice", "guess"))
            assert reader.readline().startswith(b"-ERR [AUTH]")
            took.append(time.monotonic() - started)
    for seconds, floor in zip(took, (0.05, 0.1, 0.2, 0.4, 0.4), strict=True):
        assert seconds >= floor - 0.01, took
    assert took[-1] < 1.0  # capped


def test_a_user_name_cannot_forge_a_log_line(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = make_server()
    caplog.set_level(logging.WARNING, logger=server.logger_name)
    forged = 'x"\nlogin failed: address=6.6.6.6 port=1 user="\u2028'
    with (
        socket.create_connection(("127.0.0.1", port_for(server, "none")), timeout=5) as sock,
        sock.makefile("rb") as reader,
    ):
        reader.readline()
        sock.sendall(plain(forged, "pw"))
        assert reader.readline().startswith(b"-ERR [AUTH]")
    (line,) = [r.getMessage() for r in caplog.records if "login failed" in r.getMessage()]
    assert "\n" not in line
    assert "\u2028" not in line
    assert line.startswith("login failed: address=127.0.0.1 port=")
    assert 'user="x\\"\\x0alogin failed: address=6.6.6.6 port=1 user=\\"\\u2028"' in line


def test_an_unknown_user_and_a_wrong_password_take_as_long(
    make_server: ServerFactory,
) -> None:
    """The reply is timed from the client's line, so an expensive hash tells nothing."""
    # A stored hash that takes a while to check: only known users pay for it.
    slow = p.Credential.parse(p.hash_password("alice-pw", "SCRAM-SHA-256", rounds=200_000))
    server = make_server(
        authenticator=MemoryAuthenticator({"alice": slow}),
        auth_failure_delay=0.3,
        max_login_penalty=0.3,  # no doubling: every reply is due 0.3 s after its line
    )
    timings: dict[str, list[float]] = {"alice": [], "nobody": []}
    for _ in range(3):
        for name, taken in timings.items():
            with (
                socket.create_connection(("127.0.0.1", server.port or 0), timeout=5) as sock,
                sock.makefile("rb") as reader,
            ):
                reader.readline()
                started = time.monotonic()
                sock.sendall(b"USER " + name.encode() + b"\r\nPASS wrong\r\n")
                assert reader.readline().startswith(b"+OK")
                assert reader.readline().startswith(b"-ERR [AUTH] invalid user name or password")
                taken.append(time.monotonic() - started)
    known, unknown = min(timings["alice"]), min(timings["nobody"])
    assert known >= 0.3
    assert unknown >= 0.3
    assert abs(known - unknown) < 0.05, timings


# ------------------------------------------------------------- QUIT racing shutdown


class SlowCommitStore(DictStore):
    """Commits take a while, so that a shutdown lands in the middle of one."""

    def open(self, username: str) -> Maildrop:
        maildrop = super().open(username)
        commit = maildrop.commit

        def slow_commit(indexes: Sequence[int]) -> bool:
            time.sleep(0.05)
            return commit(indexes)

        maildrop.commit = slow_commit  # type: ignore[method-assign]
        return maildrop


@pytest.mark.parametrize("pause", [0.0, 0.001, 0.01, 0.03, 0.06])
def test_quit_and_shutdown_together_never_lose_the_reply(
    certs: Certificates, pause: float
) -> None:
    """A commit that has begun ends with its +OK; one that has not never happens."""
    for _ in range(4):
        store = SlowCommitStore({"alice": list(MAIL["alice"])})
        server = Server(store, MemoryAuthenticator(USERS), port=0, auth_failure_delay=0).start()
        with (
            socket.create_connection(("127.0.0.1", server.port or 0), timeout=5) as sock,
            sock.makefile("rb") as reader,
        ):
            reader.readline()
            sock.sendall(b"USER alice\r\nPASS alice-pw\r\nDELE 1\r\n")
            for _ in range(3):
                assert reader.readline().startswith(b"+OK")
            sock.sendall(b"QUIT\r\n")
            time.sleep(pause)
            server.shutdown(timeout=5)
            try:
                reply = reader.readline()
            except OSError:
                reply = b""
        committed = bool(store.commits)
        if committed:
            assert reply.startswith(b"+OK"), (pause, reply)
        else:
            assert not reply.startswith(b"+OK"), (pause, reply)
            assert store.mail["alice"], "deleted without a commit"


def test_a_commit_that_outlives_the_shutdown_timeout_is_cut(certs: Certificates) -> None:
    release = threading.Event()

    class StuckStore(DictStore):
        def open(self, username: str) -> DictMaildrop:
            maildrop = super().open(username)
            maildrop.commit = lambda indexes: release.wait(10)  # type: ignore[method-assign,assignment,return-value]
            return maildrop

    server = Server(
        StuckStore({"alice": list(MAIL["alice"])}),
        MemoryAuthenticator(USERS),
        port=0,
        auth_failure_delay=0,
    ).start()
    try:
        with socket.create_connection(("127.0.0.1", server.port or 0), timeout=5) as sock:
            sock.sendall(b"USER alice\r\nPASS alice-pw\r\nQUIT\r\n")
            time.sleep(0.2)
            started = time.monotonic()
            server.shutdown(timeout=0.5)
            assert time.monotonic() - started < 3
    finally:
        release.set()


def test_shutdown_does_not_wait_for_idle_sessions(
    make_server: ServerFactory, certs: Certificates
) -> None:
    server = make_server()
    with Client("127.0.0.1", server.port, tls="none", timeout=5) as client:
        client.login("alice", "alice-pw")
        started = time.monotonic()
        server.shutdown(timeout=5)
        assert time.monotonic() - started < 1
        with pytest.raises((p.RemoteProtocolError, OSError)):
            client.stat()
    if server.kind == "threads":
        slots = server.server._slots
        assert not [s for s in slots if s.thread is not None and s.thread.is_alive()]
    else:
        assert server.server.sessions == 0
