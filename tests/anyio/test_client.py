"""pop3_anyio.Client against the threaded server, over loopback, on asyncio and trio."""

from __future__ import annotations

import contextlib
import gc
import io
import socket
import ssl
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import pop3core as p
from pop3_anyio import MAX_LISTING_SIZE, MAX_MESSAGE_SIZE, Client, SizeLimitExceeded, TLSMode
from tests.anyio.conftest import (
    MESSAGES,
    TLS_MODES,
    Connect,
    Serve,
    assert_closed,
    expected,
    login,
)
from tests.peers import free_port
from tests.server_doubles import Certificates, DictAuthenticator

pytestmark = pytest.mark.anyio

ALL = {i + 1: expected(i) for i in range(len(MESSAGES))}


class AsyncSink:
    """An async writer (the `AsyncWriter` protocol) that keeps what it is given."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.writes = 0
        self.closed = False

    async def write(self, data: bytes | bytearray | memoryview) -> int:
        await anyio.lowlevel.checkpoint()
        self.writes += 1
        self.data += data
        return len(data)

    async def aclose(self) -> None:
        await anyio.lowlevel.checkpoint()
        self.closed = True


# ------------------------------------------------------------- connecting


async def test_constructing_does_not_connect(connect: Connect) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        client = connect(listener.getsockname()[1])
        with pytest.raises(BlockingIOError):  # nobody knocked
            listener.accept()
        assert client.state == "GREETING"
        with pytest.raises(p.LocalProtocolError, match="not connected"):
            await client.stat()
        assert client.greeting == p.Greeting()  # none was read
    client = connect(free_port())  # nothing listens there: only open() finds out
    with pytest.raises(OSError):
        await client.open()


@pytest.mark.parametrize("style", ["async-with", "open"])
@pytest.mark.parametrize("mode", TLS_MODES)
async def test_a_session_in_every_tls_mode(
    serve: Serve, connect: Connect, mode: TLSMode, style: str
) -> None:
    served = serve()
    client = connect(served, mode)
    async with contextlib.AsyncExitStack() as stack:
        if style == "async-with":
            assert await stack.enter_async_context(client) is client
        else:
            assert await client.open() is client
            assert await client.open() is client  # again: nothing happens
        assert client.tls_active == (mode != "none")
        assert client.state == "AUTHORIZATION"
        assert client.greeting.text.startswith(b"POP3")
        known: object = client.capabilities
        assert known is None  # the async client asks only when told to
        capabilities = await client.capa()
        assert capabilities is not None
        assert client.capabilities is capabilities
        assert capabilities.stls == (mode == "none")  # not offered once TLS is on
        assert capabilities.pipelining
        await client.login("alice", "secret")
        assert client.state == "TRANSACTION"

        stat = await client.stat()
        assert isinstance(stat, p.MaildropStat)
        assert stat == (3, sum(map(len, ALL.values())))
        assert (stat.messages, stat.octets) == tuple(stat)

        sizes = await client.list()
        assert isinstance(sizes, p.MessageSizes)
        assert sizes == {n: len(m) for n, m in ALL.items()}
        assert await client.list(2) == len(ALL[2])

        uids = await client.uidl()
        assert isinstance(uids, p.UniqueIds)
        assert uids == {1: "alice-0", 2: "alice-1", 3: "alice-2"}
        assert await client.uidl(3) == "alice-2"

        for number, message in ALL.items():
            fetched = await client.retr(number)
            assert type(fetched) is bytes
            assert fetched == message
        assert await client.top(1, 0) == b"Subject: one\r\n\r\n"
        assert await client.top(1, 1) == b"Subject: one\r\n\r\n.leading dot line\r\n"

        await client.dele(2)
        with pytest.raises(p.ResponseError, match="deleted"):
            await client.retr(2)
        assert await client.stat() == (2, len(ALL[1]) + len(ALL[3]))
        await client.rset()
        assert (await client.stat()).messages == 3
        await client.dele(2)
        await client.noop()
        if style == "open":
            await client.quit()
            await assert_closed(client)
    assert served.store.commits == [("alice", ["alice-1"])]


async def test_ipv6_loopback(serve: Serve, connect: Connect) -> None:
    served = serve(host="::1")
    async with connect(served, "starttls", host="::1") as client:
        assert client.tls_active
        await client.login("alice", "secret")
        assert await client.retr(3) == ALL[3]


@pytest.mark.parametrize("mode", ["implicit", "starttls"])
async def test_certificates_are_verified(
    serve: Serve, connect: Connect, certs: Certificates, mode: TLSMode
) -> None:
    served = serve()
    # Another name than the certificate's.
    client = connect(served, mode, server_hostname="not-localhost")
    with pytest.raises(ssl.SSLCertVerificationError):
        await client.open()
    if mode == "implicit":  # the connection failed: open() may be tried again
        with pytest.raises(p.LocalProtocolError, match="the client is not connected"):
            await client.noop()
    else:  # the connection was made, then closed
        await assert_closed(client)
    # The default trust store does not know the test CA.
    client = connect(served, mode, ssl_context=None, server_hostname=None, host="localhost")
    with pytest.raises(ssl.SSLCertVerificationError):
        await client.open()
    # And the name is checked with the trusted CA too: 127.0.0.1 is in the certificate.
    async with connect(served, mode, server_hostname=None) as client:
        assert client.tls_active
    assert served.store.commits == []


async def test_starttls_is_required_when_asked_for(serve: Serve, connect: Connect) -> None:
    served = serve(tls=False)
    client = connect(served, "starttls")
    with pytest.raises(p.TLSNotOffered):
        await client.open()
    await assert_closed(client)


async def test_starttls_after_connecting(serve: Serve, connect: Connect) -> None:
    lines: list[str] = []
    async with connect(serve(), log=lines.append) as client:
        tls_before: object = client.tls_active
        assert not tls_before
        await client.starttls()
        assert client.tls_active
        assert client.capabilities is None  # RFC 2595: forgotten after STLS
        capabilities = await client.capa()
        assert capabilities is not None
        assert not capabilities.stls
        await client.login("alice", "secret", method="PLAIN")
        assert await client.retr(1) == ALL[1]
    assert lines.count("C: STLS") == 1


async def test_the_greeting_is_refused_when_the_server_is_full(
    serve: Serve, connect: Connect
) -> None:
    served = serve(max_connections=1)
    async with connect(served) as first:
        await login(first)
        second = connect(served)
        with pytest.raises(p.TemporaryError):
            await second.open()
        await assert_closed(second)
        assert await first.stat() == (3, sum(map(len, ALL.values())))


# ------------------------------------------------------------- logging in


PASSWORD_METHODS = [
    ("SCRAM-SHA-256", "none"),
    ("SCRAM-SHA-1", "none"),
    ("CRAM-MD5", "none"),
    ("APOP", "none"),
    ("PLAIN", "implicit"),
    ("LOGIN", "starttls"),
    ("USER", "implicit"),
]


@pytest.mark.parametrize(("method", "mode"), PASSWORD_METHODS)
async def test_every_password_method(
    serve: Serve, connect: Connect, method: str, mode: TLSMode
) -> None:
    served = serve(mechanisms=["SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN"])
    lines: list[str] = []
    async with connect(served, mode, log=lines.append) as client:
        await client.login("alice", "secret", method=method)
        assert client.state == "TRANSACTION"
        assert (await client.stat()).messages == 3
    sent = [line for line in lines if line.startswith("C: ")]
    expected_first = {"USER": "C: USER alice", "APOP": "C: APOP alice <hidden>"}.get(
        method, f"C: AUTH {method}"
    )
    assert any(line.startswith(expected_first) for line in sent), sent
    assert not any("secret" in line for line in lines)


async def test_a_wrong_password_in_every_method(serve: Serve, connect: Connect) -> None:
    served = serve(mechanisms=["SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN"])
    for method, _ in PASSWORD_METHODS:
        served.wait_unlocked()  # the last session's QUIT may still be releasing it
        async with connect(served, "implicit") as client:
            with pytest.raises(p.AuthenticationError) as caught:
                await client.login("alice", "wrong", method=method)
            assert caught.value.code == p.AUTH, method
            assert client.state == "AUTHORIZATION"
            await client.login("alice", "secret")  # the session is still in step
            assert await client.retr(2) == ALL[2]


async def test_the_strongest_method_is_chosen_and_secrets_are_hidden(
    serve: Serve, connect: Connect
) -> None:
    lines: list[str] = []
    async with connect(serve(), log=lines.append) as client:
        await client.login("alice", "secret")
        await client.stat()
    assert lines[0].startswith("S: +OK POP3")
    assert "C: CAPA" in lines
    assert any(line.startswith("C: AUTH SCRAM-SHA-256") for line in lines), lines
    assert "C: <hidden> (SASL response)" in lines
    assert "C: STAT" in lines
    assert any(line.startswith("S: +OK 3 ") for line in lines)
    assert lines[-2:] == ["C: QUIT", lines[-1]]
    assert lines[-1].startswith("S: +OK")
    assert not any("secret" in line for line in lines)


async def test_apop_and_user_pass_are_hidden_in_the_log(serve: Serve, connect: Connect) -> None:
    served = serve(allow_cleartext=True)
    lines: list[str] = []
    async with connect(served, log=lines.append) as client:
        timestamp = client.greeting.timestamp
        assert timestamp is not None
        await client.login("alice", "secret", method="APOP")
        digest = p.apop_digest(timestamp, "secret")
    served.wait_unlocked()
    async with connect(served, log=lines.append) as client:
        await client.login("alice", "secret", method="USER", allow_cleartext=True)
    assert "C: APOP alice <hidden>" in lines
    assert "C: USER alice" in lines
    assert "C: PASS <hidden>" in lines
    assert not any("secret" in line or digest in line for line in lines)


@pytest.mark.parametrize("method", ["XOAUTH2", "OAUTHBEARER"])
async def test_token_login_over_tls(serve: Serve, connect: Connect, method: str) -> None:
    served = serve(oauth=True)
    lines: list[str] = []
    async with connect(served, "implicit", log=lines.append) as client:
        await client.login("alice", token="tok-en", method=method)
        assert (await client.stat()).messages == 3
    assert not any("tok-en" in line for line in lines)
    async with connect(served, "implicit") as client:
        with pytest.raises(p.AuthenticationError):
            await client.login("alice", token="wrong", method=method)


async def test_cleartext_is_refused_by_the_client_without_tls(
    serve: Serve, connect: Connect
) -> None:
    hashed = p.Credential.parse(p.hash_password("secret", "SSHA512"))

    class Hashed(DictAuthenticator):
        def credential(self, username: str) -> p.Credential | None:
            return hashed if username == "alice" else None

        def mechanisms(self) -> list[str]:
            return p.store_mechanisms([hashed])  # only PLAIN and LOGIN

    served = serve(authenticator=Hashed({}))
    async with connect(served) as client:
        with pytest.raises(p.LoginMethodUnavailable, match="without TLS"):
            await client.login("alice", "secret")
        await client.login("alice", "secret", allow_cleartext=True)
    served.wait_unlocked()
    async with connect(served, "starttls") as client:
        await client.login("alice", "secret")  # over TLS PLAIN is fine


async def test_the_failed_login_delay_is_waited_for(serve: Serve, connect: Connect) -> None:
    served = serve(auth_failure_delay=0.3)
    async with connect(served) as client:
        started = anyio.current_time()
        with pytest.raises(p.AuthenticationError):
            await login(client, password="wrong")
        assert anyio.current_time() - started >= 0.29
        await login(client)


async def test_a_maildrop_in_use(serve: Serve, connect: Connect) -> None:
    served = serve()
    async with connect(served) as first:
        await login(first)
        async with connect(served) as second:
            with pytest.raises(p.MailboxInUse):
                await login(second)
            assert second.state == "AUTHORIZATION"
    served.wait_unlocked()
    async with connect(served) as again:  # the lock was released at QUIT
        await login(again)


async def test_utf8_and_lang(serve: Serve, connect: Connect) -> None:
    served = serve(options=p.ServerOptions(utf8=True))
    async with connect(served) as client:
        assert await client.lang() == [("en", "English")]
        assert await client.lang("en") == "en"
        await client.utf8()
        await login(client)
        assert await client.retr(1) == ALL[1]


async def test_a_message_that_needs_utf8_is_refused_without_it(
    serve: Serve, connect: Connect
) -> None:
    mail = [b"Subject: caf\xc3\xa9\r\n\r\nbody\r\n", b"Subject: plain\r\n\r\nbody\r\n"]
    served = serve({"alice": mail}, options=p.ServerOptions(utf8=True))
    async with connect(served) as client:
        await login(client)
        with pytest.raises(p.UTF8Required):
            await client.retr(1)
        assert await client.retr(2) == mail[1]  # a single -ERR line: still in step
    served.wait_unlocked()
    async with connect(served) as client:
        await client.utf8()
        await login(client)
        assert await client.retr(1) == mail[0]


# ------------------------------------------------------------- QUIT and closing


async def test_an_exception_in_the_block_sends_no_quit(serve: Serve, connect: Connect) -> None:
    served = serve()
    lines: list[str] = []
    client = connect(served, log=lines.append)

    async def fail_midway() -> None:
        async with client:
            await login(client)
            await client.dele(1)
            raise RuntimeError("the application failed")

    with pytest.raises(RuntimeError, match="the application failed"):
        await fail_midway()
    await assert_closed(client)
    assert "C: QUIT" not in lines
    served.wait_unlocked()
    assert served.store.commits == []
    async with connect(served) as client:
        await login(client)
        assert (await client.stat()).messages == 3


async def test_a_cancelled_block_sends_no_quit(serve: Serve, connect: Connect) -> None:
    served = serve()
    lines: list[str] = []
    client = connect(served, log=lines.append)
    with anyio.CancelScope() as scope:
        async with client:
            await login(client)
            await client.dele(1)
            scope.cancel()
            await anyio.sleep(5)
    assert scope.cancelled_caught
    await assert_closed(client)
    assert "C: QUIT" not in lines
    served.wait_unlocked()
    assert served.store.commits == []


async def test_quit_commits_and_closes(serve: Serve, connect: Connect) -> None:
    served = serve()
    client = await connect(served).open()
    await login(client)
    await client.dele(3)
    await client.quit()
    await assert_closed(client)
    await client.quit()  # again: nothing happens
    await client.aclose()
    assert served.store.commits == [("alice", ["alice-2"])]


async def test_aclose_without_quit_deletes_nothing(serve: Serve, connect: Connect) -> None:
    served = serve()
    client = await connect(served).open()
    await login(client)
    await client.dele(3)
    await client.aclose()
    await client.aclose()
    await assert_closed(client)
    served.wait_unlocked()
    assert served.store.commits == []


# ------------------------------------------------------------- streaming

BIG = b"".join(b"line %07d of a large message\r\n" % i for i in range(60_000))  # ~2 MB
BIG += b".a dot line at the end\r\n"


async def test_retr_into_sinks_and_files(serve: Serve, connect: Connect, tmp_path: Path) -> None:
    served = serve({"alice": [BIG, b"small\r\n"]})
    async with connect(served, "implicit", read_size=64 * 1024) as client:
        await login(client)
        sink = AsyncSink()
        assert await client.retr(1, sink) == len(BIG)
        assert bytes(sink.data) == BIG
        assert sink.writes > 1  # streamed, not collected first
        assert not sink.closed  # the caller's to close

        buffer = io.BytesIO()
        assert await client.top(2, 5, buffer) == len(b"small\r\n")
        assert buffer.getvalue() == b"small\r\n"

        path = tmp_path / "1.eml"
        with path.open("wb") as out:
            assert await client.retr(1, out) == len(BIG)
        assert path.read_bytes() == BIG

        path = tmp_path / "async.eml"
        async with await anyio.open_file(path, "wb") as async_file:
            assert await client.retr(1, async_file) == len(BIG)
        assert path.read_bytes() == BIG


async def test_iter_retr_is_an_async_iterator_of_chunks(serve: Serve, connect: Connect) -> None:
    served = serve({"alice": [BIG, b"small\r\n"]})
    async with connect(served, read_size=16 * 1024) as client:
        await login(client)
        chunks = [chunk async for chunk in client.iter_retr(1)]
        assert len(chunks) > 1
        assert all(type(chunk) is bytes for chunk in chunks)
        assert b"".join(chunks) == BIG

        async with contextlib.aclosing(client.iter_retr(1)) as iterator:
            first = await iterator.__anext__()
            assert BIG.startswith(first)
            with pytest.raises(p.LocalProtocolError, match="cannot send DELE"):
                await client.dele(2)  # refused before anything is sent
        # Closed early: the next command reads the rest of the message first.
        assert await client.retr(2) == b"small\r\n"
        assert [chunk async for chunk in client.iter_top(2, 0)] == [b"small\r\n"]
        assert await client.stat() == (2, len(BIG) + 7)  # DELE 2 never went out


async def test_leaving_the_block_with_an_iterator_open_sends_no_quit(
    serve: Serve, connect: Connect
) -> None:
    served = serve({"alice": [BIG, b"small\r\n"]})
    lines: list[str] = []
    client = connect(served, log=lines.append, read_size=4096)

    async def leave_with_the_iterator_open(iterator: AsyncGenerator[bytes, None]) -> None:
        async with client:
            await login(client)
            await client.dele(2)
            await iterator.__anext__()

    async with contextlib.aclosing(client.iter_retr(1)) as iterator:
        with pytest.raises(p.LocalProtocolError, match="cannot send QUIT"):
            await leave_with_the_iterator_open(iterator)
    await assert_closed(client)
    assert "C: QUIT" not in lines
    served.wait_unlocked()
    assert served.store.commits == []


async def test_a_dropped_iterator_holds_the_client_until_the_loop_finalizes_it(
    serve: Serve, connect: Connect, anyio_backend: str
) -> None:
    # Unlike a blocking generator, an async one is not closed when dropped: the
    # event loop's finalizer closes it a moment later (trio warns). Use aclosing().
    served = serve({"alice": [BIG, b"small\r\n"]})
    async with connect(served, read_size=4096) as client:
        await login(client)
        iterator = client.iter_retr(1)
        await iterator.__anext__()
        with (
            pytest.warns(ResourceWarning, match="aclosing")
            if anyio_backend == "trio"
            else contextlib.nullcontext()
        ):
            del iterator
            gc.collect()
        with pytest.raises(p.LocalProtocolError, match="an iterator is still reading a reply"):
            await client.retr(2)
        for _ in range(100):  # the finalizer runs on one of the loop's next turns
            await anyio.sleep(0.01)
            with contextlib.suppress(p.LocalProtocolError):
                assert await client.retr(2) == b"small\r\n"  # the rest of RETR 1 read first
                break
        else:
            raise AssertionError("the dropped iterator was never closed")
        assert await client.stat() == (2, len(BIG) + 7)


async def test_the_rest_of_an_abandoned_reply_is_read_after_a_pause(
    serve: Serve, connect: Connect
) -> None:
    # The client, not the server, stopped reading: the low-speed guard must not
    # count the pause against the reply when the next command reads its rest.
    served = serve({"alice": [BIG, b"small\r\n"]})
    async with connect(served, low_speed=(1000, 0.2), read_size=1024) as client:
        await login(client)
        async with contextlib.aclosing(client.iter_retr(1)) as iterator:
            await iterator.__anext__()
        await anyio.sleep(0.3)
        assert await client.retr(2) == b"small\r\n"
        assert (await client.stat()).messages == 2


# ------------------------------------------------------------- pipelining


async def test_pipelined_bulk_fetch_and_delete(serve: Serve, connect: Connect) -> None:
    mail = [b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i) for i in range(200)]
    served = serve({"alice": mail})
    lines: list[str] = []
    async with connect(served, "starttls", pipeline_window=16, log=lines.append) as client:
        await login(client)
        got = {number: message async for number, message in client.retr_many(range(1, 201))}
        assert got == {i + 1: m for i, m in enumerate(mail)}

        sinks: dict[int, AsyncSink | io.BytesIO] = {}

        class Keep(io.BytesIO):
            def close(self) -> None:  # keep the data for the assertion
                self.was_closed = True

        def opener(number: int) -> AsyncSink | io.BytesIO:
            sinks[number] = AsyncSink() if number % 2 else Keep()
            return sinks[number]

        await client.retr_many_to([5, 6, 7], opener)
        assert {
            n: bytes(s.data) if isinstance(s, AsyncSink) else s.getvalue()
            for n, s in sinks.items()
        } == {n: mail[n - 1] for n in (5, 6, 7)}
        assert all(
            s.closed if isinstance(s, AsyncSink) else getattr(s, "was_closed", False)
            for s in sinks.values()
        )
        await client.dele_many(range(1, 101))
        assert (await client.stat()).messages == 100
    # The window was used: 16 RETRs went out before the first reply came back.
    retr_lines = [i for i, line in enumerate(lines) if line.startswith("C: RETR")]
    first_reply = next(
        i for i, line in enumerate(lines) if line.startswith("S: +OK") and i > retr_lines[0]
    )
    assert sum(1 for i in retr_lines if i < first_reply) == 16
    assert served.store.commits == [("alice", sorted(f"alice-{i}" for i in range(100)))]


async def test_a_refused_message_in_a_batch_raises_after_draining(
    serve: Serve, connect: Connect
) -> None:
    served = serve()
    async with connect(served) as client:
        await login(client)
        await client.dele(2)
        got: list[tuple[int, bytes]] = []

        async def fetch() -> None:
            async with contextlib.aclosing(client.retr_many([1, 2, 3])) as messages:
                async for item in messages:
                    got.append(item)  # noqa: PERF401

        with pytest.raises(p.ResponseError, match="deleted"):
            await fetch()
        assert got == [(1, ALL[1])]
        assert await client.retr(3) == ALL[3]  # the session is still in step
        with pytest.raises(p.ResponseError, match="DELE: -ERR message 2 is deleted"):
            await client.dele_many([1, 2, 3])
        # DELE 3 was sent with the others (pipelined): its reply was read, and it was done.
        assert await client.stat() == (0, 0)
    assert served.store.commits == [("alice", ["alice-0", "alice-1", "alice-2"])]


@pytest.mark.parametrize("bad", [10**300, 0], ids=["too-long", "zero"])
async def test_a_refused_number_in_a_batch_keeps_the_session_in_step(
    serve: Serve, connect: Connect, bad: int
) -> None:
    served = serve()
    async with connect(served) as client:
        await login(client)
        with pytest.raises(p.LocalProtocolError):
            await client.dele_many([1, 2, bad])
        assert await client.list() == {3: len(ALL[3])}
    assert served.store.commits == [("alice", ["alice-0", "alice-1"])]


# ------------------------------------------------------------- errors and limits


async def test_a_failing_sink_closes_without_quit(serve: Serve, connect: Connect) -> None:
    class Full(AsyncSink):
        async def write(self, data: bytes | bytearray | memoryview) -> int:
            if self.writes:
                raise OSError(28, "No space left on device")
            return await super().write(data)

    served = serve({"alice": [BIG, b"small\r\n"]})
    lines: list[str] = []
    client = connect(served, read_size=4096, log=lines.append)
    async with client:
        await login(client)
        await client.dele(2)
        with pytest.raises(OSError, match="No space left"):
            await client.retr(1, Full())
        await assert_closed(client)
    assert "C: QUIT" not in lines  # the block ended normally, but the client was closed
    served.wait_unlocked()
    assert served.store.commits == []


async def test_a_failing_open_file_in_retr_many_to_closes(serve: Serve, connect: Connect) -> None:
    served = serve()
    opened: list[AsyncSink] = []

    def open_file(number: int) -> AsyncSink:
        if number == 2:
            raise PermissionError("no room for message 2")
        opened.append(AsyncSink())
        return opened[-1]

    async with connect(served) as client:
        await login(client)
        with pytest.raises(PermissionError):
            await client.retr_many_to([1, 2, 3], open_file)
        await assert_closed(client)
    assert len(opened) == 1
    assert opened[0].closed
    assert bytes(opened[0].data) == ALL[1]


LIMITED: dict[str, Any] = {
    "retr": lambda client, size: client.retr(1, max_size=size),
    "retr-sink": lambda client, size: client.retr(1, AsyncSink(), max_size=size),
    "top": lambda client, size: client.top(1, 100_000, max_size=size),
    "iter_retr": lambda client, size: _drain(client.iter_retr(1, max_size=size)),
    "retr_many": lambda client, size: _drain(client.retr_many([1], max_size=size)),
    "retr_many_to": lambda client, size: client.retr_many_to(
        [1], lambda n: AsyncSink(), max_size=size
    ),
}


async def _drain(iterator: Any) -> list[Any]:
    async with contextlib.aclosing(iterator) as items:
        return [item async for item in items]


@pytest.mark.parametrize("call", LIMITED)
async def test_max_size_bounds_a_message_and_closes_without_quit(
    serve: Serve, connect: Connect, call: str
) -> None:
    served = serve({"alice": [BIG, b"small\r\n"]})
    lines: list[str] = []
    client = connect(served, log=lines.append)

    async def session() -> None:
        async with client:
            await login(client)
            await client.dele(2)
            await LIMITED[call](client, 65536)

    with pytest.raises(SizeLimitExceeded, match="message 1 is longer than 65536 octets") as info:
        await session()
    assert (info.value.which, info.value.limit) == (1, 65536)
    await assert_closed(client)
    assert "C: QUIT" not in lines
    served.wait_unlocked()
    assert served.store.commits == []


@pytest.mark.parametrize("call", ["retr", "iter_retr", "retr_many_to"])
async def test_a_message_of_exactly_max_size_is_accepted(
    serve: Serve, connect: Connect, call: str
) -> None:
    async with connect(serve({"alice": [BIG]})) as client:
        await login(client)
        await LIMITED[call](client, len(BIG))
        with pytest.raises(SizeLimitExceeded):
            await LIMITED[call](client, len(BIG) - 1)


async def test_max_message_size_bounds_what_nothing_else_does(
    serve: Serve, connect: Connect
) -> None:
    served = serve({"alice": [BIG]})
    async with connect(served, max_message_size=100_000) as client:
        await login(client)
        # The server's RETR reply says how long the message is: that bounds it.
        assert await client.retr(1) == BIG
        # TOP's reply does not, and no LIST was asked for: the ceiling applies.
        with pytest.raises(SizeLimitExceeded, match="longer than 100000 octets"):
            await client.top(1, 100_000)
        await assert_closed(client)
    served.wait_unlocked()
    async with connect(served, max_message_size=100_000) as client:
        await login(client)
        assert await client.list(1) == len(BIG)  # the size LIST gave bounds TOP now
        assert await client.top(1, 100_000) == BIG


async def test_max_size_must_not_be_negative(serve: Serve, connect: Connect) -> None:
    async with connect(serve()) as client:
        await login(client)
        for call in LIMITED.values():
            with pytest.raises(ValueError, match="max_size"):
                await call(client, -1)
        assert await client.retr(1, max_size=len(ALL[1])) == ALL[1]  # still in step


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tls": "ssl"}, "tls must be"),
        ({"pipeline_window": 0}, "pipeline_window"),
        ({"read_size": 0}, "read_size"),
        ({"max_listing_size": 0}, "max_listing_size"),
        ({"max_message_size": -1}, "max_message_size"),
        ({"low_speed": (0, 1.0)}, "low_speed"),
        ({"deadline": 0}, "deadline"),
    ],
)
async def test_the_settings_are_checked(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Client("127.0.0.1", 1, **{"tls": "none", **options})


def test_the_defaults() -> None:
    client = Client("example.org")
    assert (client.port, client.tls_mode, client.timeout) == (995, "implicit", 60.0)
    assert Client("example.org", tls="starttls").port == 110
    assert client.max_listing_size == MAX_LISTING_SIZE
    assert client.max_message_size == MAX_MESSAGE_SIZE


async def test_a_read_timeout_closes_the_connection(serve: Serve, connect: Connect) -> None:
    # The server holds a failed login's -ERR back for a second: longer than the timeout.
    served = serve(auth_failure_delay=1.0)
    lines: list[str] = []
    async with connect(served, timeout=0.2, log=lines.append) as client:
        started = anyio.current_time()
        with pytest.raises(TimeoutError) as caught:
            await login(client, password="wrong")
        assert not isinstance(caught.value, p.ReplyTimeout)  # the server did not begin to reply
        assert anyio.current_time() - started < 0.9
        await assert_closed(client)
    assert "C: QUIT" not in lines


# ------------------------------------------------------------------ a slow consumer


class SlowSink:
    """An async sink that takes its time over every chunk."""

    def __init__(self, pause: float) -> None:
        self.pause = pause
        self.data = bytearray()

    async def write(self, data: bytes | bytearray | memoryview) -> int:
        await anyio.sleep(self.pause)
        self.data += data
        return len(data)


async def test_a_slow_consumer_is_not_a_slow_server(serve: Serve, connect: Connect) -> None:
    """The low-speed guard and the deadline time the server, not the caller's work.

    The window is 0.2 s; the caller spends 0.3 s on each chunk, message and write.
    """
    big = b"Subject: big\r\n\r\n" + b"z" * 70 + b"\r\n"
    mail = [big * 200, big * 200, big * 200]  # about 18 KiB each
    served = serve({"alice": mail})
    client = connect(served, low_speed=(1000, 0.2), deadline=0.5, read_size=4096)
    async with client:
        await login(client)
        chunks = []
        async with contextlib.aclosing(client.iter_retr(1)) as iterator:
            async for chunk in iterator:
                chunks.append(chunk)
                await anyio.sleep(0.3)
        assert b"".join(chunks) == expected(0, mail)
        assert len(chunks) >= 2  # several pauses in one reply
        sink = SlowSink(0.3)
        assert await client.retr(2, sink) == len(expected(1, mail))
        async with contextlib.aclosing(client.retr_many([1, 2, 3])) as messages:
            async for number, message in messages:
                assert message == expected(number - 1, mail)
                await anyio.sleep(0.3)
        assert (await client.stat()).messages == 3
