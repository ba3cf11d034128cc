"""pop3_anyio.Server: its lifecycle, graceful shutdown, the stores in threads, async stores, logs.

What both servers share (limits, eviction, deadlines, failure delays, log
format, interop) is tested against all of them in tests/servers and
tests/interop. Here: what is the async server's own. Each test runs on
asyncio and on trio (the ``anyio_backend`` fixture of conftest.py).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

import pop3core as p
from pop3_anyio import Client, Server
from pop3_stores import MaildirStore, Maildrop, MemoryAuthenticator, MemoryStore
from tests.server_doubles import Certificates, DictMaildrop, DictStore

pytestmark = pytest.mark.anyio

MAIL = {
    "alice": [b"Subject: one\n\nhello\n", b".dot first\n", b"Subject: big\n\n" + b"y" * 300_000]
}
USERS = {"alice": "alice-pw", "bob": "bob-pw"}


def new_server(store: Any = None, **kwargs: Any) -> Server:
    kwargs.setdefault("auth_failure_delay", 0)
    return Server(store or DictStore(MAIL), MemoryAuthenticator(USERS), port=0, **kwargs)


def client(server: Server, **kwargs: Any) -> Client:
    return Client("127.0.0.1", server.port, tls="none", timeout=10, connect_timeout=5, **kwargs)


async def read_line(stream: anyio.abc.ByteStream, buffer: bytearray) -> bytes:
    while b"\r\n" not in buffer:
        data = await stream.receive()
        buffer += data
    line, _, rest = bytes(buffer).partition(b"\r\n")
    buffer[:] = rest
    return line


async def closed(stream: anyio.abc.ByteStream, within: float = 5.0) -> bool:
    """Whether the server hangs up within `within` seconds (anything it sends is read past)."""
    with anyio.move_on_after(within):
        try:
            while await stream.receive():
                pass
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            pass
        return True
    return False


# ------------------------------------------------------------------ lifecycle


async def test_constructing_does_no_io_and_serves_once() -> None:
    server = new_server()
    assert server.addresses == []
    assert server.port is None
    with pytest.raises(RuntimeError):
        _ = server.store
    async with server:
        assert server.port is not None
        async with client(server) as c:
            await c.login("alice", "alice-pw")
            assert (await c.stat()).messages == 3
    with pytest.raises(RuntimeError, match="serves once"):
        async with server:
            pass


async def test_serve_in_a_task_group_of_your_own() -> None:
    server = new_server()
    async with anyio.create_task_group() as group:
        started = await group.start(server.serve)
        assert started is server
        async with client(server) as c:
            await c.login("alice", "alice-pw")
            assert await c.retr(2) == b".dot first\r\n"
        await server.shutdown()
    assert server.sessions == 0


async def test_a_port_in_use_raises_oserror_naming_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = Server(DictStore(MAIL), MemoryAuthenticator(USERS), port=port)
        with pytest.raises(OSError) as raised:
            async with server:
                pass
        assert raised.value.filename == f"127.0.0.1:{port}"


async def test_tls_ports_and_verified_certificates(certs: Certificates) -> None:
    server = new_server(tls_port=0, ssl_context=certs.server_context())
    async with server:
        assert {implicit for _, _, implicit in server.addresses} == {False, True}
        for mode, port in (("implicit", server.tls_port), ("starttls", server.port)):
            async with Client(
                "127.0.0.1", port, tls=mode, ssl_context=certs.client_context(), timeout=10
            ) as c:
                await c.login("alice", "alice-pw")  # type: ignore[arg-type]
                assert c.tls_active
                assert await c.retr(1) == b"Subject: one\r\n\r\nhello\r\n"


async def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    server = Server(DictStore(MAIL), MemoryAuthenticator(USERS), host="::1", port=0)
    async with server:
        assert server.addresses[0][0] == "::1"
        async with Client("::1", server.port, tls="none", timeout=10) as c:
            await c.login("alice", "alice-pw")
            assert (await c.stat()).messages == 3


async def test_many_sessions_at_once_each_get_their_mail() -> None:
    mail = {f"user{i}": [b"Subject: %d\n\nbody %d\n" % (i, i)] for i in range(40)}
    users = {f"user{i}": f"pw{i}" for i in range(40)}
    server = Server(DictStore(mail), MemoryAuthenticator(users), port=0, auth_failure_delay=0)
    results: dict[int, bytes] = {}

    async def fetch(i: int) -> None:
        async with Client("127.0.0.1", server.port, tls="none", timeout=10) as c:
            await c.login(f"user{i}", f"pw{i}")
            results[i] = await c.retr(1)

    async with server, anyio.create_task_group() as group:
        for i in range(40):
            group.start_soon(fetch, i)
    assert results == {i: b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i) for i in range(40)}


# ------------------------------------------------------------------ graceful shutdown


class SlowCommitStore(DictStore):
    """Commits take `seconds`, so that a shutdown lands in the middle of one."""

    def __init__(self, mail: dict[str, list[bytes]], seconds: float) -> None:
        super().__init__(mail)
        self.seconds = seconds

    def open(self, username: str) -> DictMaildrop:
        maildrop = super().open(username)
        commit = maildrop.commit

        def slow_commit(indexes: Sequence[int]) -> bool:
            time.sleep(self.seconds)
            return commit(indexes)

        maildrop.commit = slow_commit  # type: ignore[method-assign]
        return maildrop


async def test_sessions_finish_within_the_grace_period() -> None:
    """A fetch under way completes and its QUIT commits, after shutdown has begun."""
    store = DictStore(MAIL)
    server = new_server(store)
    async with anyio.create_task_group() as group:
        await group.start(server.serve)
        async with client(server) as c:
            await c.login("alice", "alice-pw")
            await c.dele(1)
            group.start_soon(server.shutdown, 5.0)
            await anyio.sleep(0.1)
            # Shutdown has begun: new connections are not accepted...
            with pytest.raises(OSError):
                async with client(server):
                    pass
            # ...but this session goes on, and its QUIT commits.
            assert len(await c.retr(3)) > 300_000
        assert store.commits == [("alice", ["alice-0"])]
    assert server.sessions == 0


async def test_after_the_grace_period_sessions_close_without_update() -> None:
    store = DictStore(MAIL)
    server = new_server(store)
    async with server:
        stream = await anyio.connect_tcp("127.0.0.1", server.port or 0)
        async with stream:
            buffer = bytearray()
            assert (await read_line(stream, buffer)).startswith(b"+OK")
            await stream.send(b"USER alice\r\nPASS alice-pw\r\nDELE 1\r\n")
            for _ in range(3):
                assert (await read_line(stream, buffer)).startswith(b"+OK")
            started = anyio.current_time()
            await server.shutdown(grace=0.3)
            took = anyio.current_time() - started
            assert 0.25 < took < 3
            assert await closed(stream)
    assert store.commits == []
    assert not store.locked, "the maildrop was not released"


async def test_a_commit_under_way_completes_and_its_ok_goes_out() -> None:
    store = SlowCommitStore(MAIL, 0.5)
    server = new_server(store)
    async with server:
        stream = await anyio.connect_tcp("127.0.0.1", server.port or 0)
        async with stream:
            buffer = bytearray()
            await read_line(stream, buffer)
            await stream.send(b"USER alice\r\nPASS alice-pw\r\nDELE 2\r\n")
            for _ in range(3):
                assert (await read_line(stream, buffer)).startswith(b"+OK")
            await stream.send(b"QUIT\r\n")
            await anyio.sleep(0.2)  # the commit is running
            await server.shutdown(grace=0, timeout=5)
            assert (await read_line(stream, buffer)).startswith(b"+OK")
    assert store.commits == [("alice", ["alice-1"])]


@pytest.mark.parametrize("pause", [0.0, 0.001, 0.01, 0.03])
async def test_quit_racing_shutdown_never_loses_the_reply(pause: float) -> None:
    """A commit that has begun ends with its +OK; one that has not never happens."""
    for _ in range(3):
        store = SlowCommitStore({"alice": [b"x\n"]}, 0.05)
        server = new_server(store)
        async with server:
            stream = await anyio.connect_tcp("127.0.0.1", server.port or 0)
            async with stream:
                buffer = bytearray()
                await read_line(stream, buffer)
                await stream.send(b"USER alice\r\nPASS alice-pw\r\nDELE 1\r\n")
                for _ in range(3):
                    assert (await read_line(stream, buffer)).startswith(b"+OK")
                await stream.send(b"QUIT\r\n")
                await anyio.sleep(pause)
                await server.shutdown(grace=0, timeout=5)
                try:
                    reply = await read_line(stream, buffer)
                except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                    reply = b""
        if store.commits:
            assert reply.startswith(b"+OK"), (pause, reply)
        else:
            assert not reply.startswith(b"+OK"), (pause, reply)
            assert store.mail["alice"], "deleted without a commit"


async def test_a_stuck_commit_is_waited_for_then_cut() -> None:
    """A commit in a worker thread cannot be interrupted: shutdown waits for it."""
    release = threading.Event()

    class StuckStore(DictStore):
        def open(self, username: str) -> DictMaildrop:
            maildrop = super().open(username)
            commit = maildrop.commit

            def stuck(indexes: Sequence[int]) -> bool:
                release.wait(10)
                return commit(indexes)

            maildrop.commit = stuck  # type: ignore[method-assign]
            return maildrop

    store = StuckStore(MAIL)
    server = new_server(store)
    async with server:
        stream = await anyio.connect_tcp("127.0.0.1", server.port or 0)
        async with stream:
            await stream.send(b"USER alice\r\nPASS alice-pw\r\nDELE 1\r\nQUIT\r\n")
            await anyio.sleep(0.2)
            started = anyio.current_time()
            async with anyio.create_task_group() as group:
                group.start_soon(server.shutdown, 0.0, 0.3)
                await anyio.sleep(0.6)
                assert server.sessions == 1  # still committing, past the timeout
                await anyio.to_thread.run_sync(release.set)
            assert anyio.current_time() - started < 3
            assert server.sessions == 0
    assert store.commits == [("alice", ["alice-0"])]  # the commit was never torn


async def test_cancelling_serve_closes_everything_without_update(tmp_path: Path) -> None:
    """A hard stop: no UPDATE, and every maildrop lock released (a Maildir here)."""
    store = MaildirStore(str(tmp_path / "{user}" / "Maildir"), create=True)
    store.open("alice").close()
    (tmp_path / "alice" / "Maildir" / "new" / "1.M1P1.host").write_bytes(b"Subject: a\n\nb\n")
    server = Server(store, MemoryAuthenticator(USERS), port=0, auth_failure_delay=0)
    async with anyio.create_task_group() as group:
        await group.start(server.serve)
        stream = await anyio.connect_tcp("127.0.0.1", server.port or 0)
        async with stream:
            buffer = bytearray()
            await read_line(stream, buffer)
            await stream.send(b"USER alice\r\nPASS alice-pw\r\nDELE 1\r\n")
            for _ in range(3):
                assert (await read_line(stream, buffer)).startswith(b"+OK")
            group.cancel_scope.cancel()
    assert server.sessions == 0
    maildrop = store.open("alice")  # the lock is free again
    try:
        assert len(maildrop.listing()) == 1
    finally:
        maildrop.close()


# ------------------------------------------------------------------ the stores


class ThreadRecordingStore(DictStore):
    """Records the thread of every store call, and is slow to open."""

    def __init__(self, mail: dict[str, list[bytes]]) -> None:
        super().__init__(mail)
        self.threads: set[int] = set()

    def open(self, username: str) -> DictMaildrop:
        self.threads.add(threading.get_ident())
        time.sleep(0.3)
        maildrop = super().open(username)
        for name in ("listing", "read", "commit"):
            method = getattr(maildrop, name)

            def recorded(*args: Any, _method: Any = method) -> Any:
                self.threads.add(threading.get_ident())
                return _method(*args)

            setattr(maildrop, name, recorded)
        return maildrop


async def test_blocking_store_calls_never_run_on_the_event_loop() -> None:
    store = ThreadRecordingStore({**MAIL, "bob": [b"x\n"]})
    server = new_server(store)
    loop_thread = threading.get_ident()
    async with server, client(server) as slow, client(server) as other:
        await other.login("bob", "bob-pw")
        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                group.start_soon(slow.login, "alice", "alice-pw")
                await anyio.sleep(0.05)
                # The loop is free while the store sleeps in a thread.
                started = anyio.current_time()
                await other.noop()
                assert anyio.current_time() - started < 0.2
        await slow.retr(3)
        await slow.dele(1)
    assert store.threads
    assert loop_thread not in store.threads
    assert ("alice", ["alice-0"]) in store.commits


class AsyncMemoryMaildrop:
    """A natively async maildrop over a `MemoryStore`'s (its calls awaited, not threaded)."""

    def __init__(self, maildrop: Maildrop, calls: list[str]) -> None:
        self.maildrop = maildrop
        self.calls = calls

    async def listing(self) -> Sequence[p.MessageInfo]:
        self.calls.append("listing")
        await anyio.sleep(0)
        return self.maildrop.listing()

    async def read(self, index: int, chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
        self.calls.append("read")
        for chunk in self.maildrop.read(index, 7):  # small chunks: many awaits
            await anyio.sleep(0)
            yield chunk

    async def commit(self, indexes: Sequence[int]) -> bool:
        self.calls.append("commit")
        return self.maildrop.commit(indexes)

    async def close(self) -> None:
        self.calls.append("close")
        self.maildrop.close()


class AsyncMemoryStore:
    def __init__(self, mail: dict[str, list[bytes]]) -> None:
        self.store = MemoryStore(mail)
        self.calls: list[str] = []

    async def open(self, username: str) -> AsyncMemoryMaildrop:
        self.calls.append("open")
        return AsyncMemoryMaildrop(self.store.open(username), self.calls)


async def test_an_async_store_is_awaited_directly() -> None:
    store = AsyncMemoryStore({"alice": list(MAIL["alice"])})
    server = Server(store, MemoryAuthenticator(USERS), port=0, auth_failure_delay=0)
    async with server:
        assert server.store is store
        async with client(server) as c:
            await c.login("alice", "alice-pw")
            assert await c.retr(2) == b".dot first\r\n"
            assert await c.top(1, 0) == b"Subject: one\r\n\r\n"
            await c.dele(2)
        async with client(server) as c:
            await c.login("alice", "alice-pw")
            assert (await c.stat()).messages == 2
    assert store.calls[:4] == ["open", "listing", "read", "read"]
    assert store.calls.count("commit") == 2  # QUIT in TRANSACTION, every time
    assert store.calls.count("close") == 2


async def test_a_message_that_fails_mid_stream_ends_the_session() -> None:
    class Failing(DictStore):
        def open(self, username: str) -> DictMaildrop:
            maildrop = super().open(username)

            def read(index: int, chunk_size: int = 256 * 1024) -> Any:
                yield b"Subject: half\r\n" * 1000
                raise OSError("the disk went away")

            maildrop.read = read  # type: ignore[method-assign]
            return maildrop

    store = Failing(MAIL)
    server = new_server(store)
    async with server, client(server) as c:
        await c.login("alice", "alice-pw")
        await c.dele(2)
        with pytest.raises((p.RemoteProtocolError, OSError)):
            await c.retr(3)
    assert store.commits == []
    assert not store.locked


# ------------------------------------------------------------------ structured logs


async def test_log_records_carry_fields_and_no_secrets(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pop3_anyio.server")
    server = new_server()
    async with server:
        async with client(server) as c:
            await c.login("alice", "alice-pw")
            await c.stat()
        with pytest.raises(p.AuthenticationError):
            async with client(server) as c:
                await c.login("bob", "not-bobs-pw")
    by_event: dict[str, list[logging.LogRecord]] = {}
    for record in caplog.records:
        by_event.setdefault(getattr(record, "pop3_event", "?"), []).append(record)
    for event in ("connected", "login", "login-failed", "closed"):
        assert event in by_event, sorted(by_event)
    (login,) = by_event["login"]
    assert login.pop3_user == "alice"  # type: ignore[attr-defined]
    assert login.pop3_peer == "127.0.0.1"  # type: ignore[attr-defined]
    assert login.pop3_mechanism == "SCRAM-SHA-256"  # type: ignore[attr-defined]
    failed = by_event["login-failed"][0]
    assert failed.levelno == logging.WARNING
    assert failed.pop3_user == "bob"  # type: ignore[attr-defined]
    assert failed.getMessage().startswith("login failed: address=127.0.0.1 port=")
    sessions = {r.pop3_session for r in caplog.records if hasattr(r, "pop3_session")}  # type: ignore[attr-defined]
    assert len(sessions) == 2
    for record in caplog.records:
        text = record.getMessage() + repr(vars(record))
        assert "alice-pw" not in text
        assert "not-bobs-pw" not in text
