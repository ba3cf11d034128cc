"""Cancelling pop3_anyio.Client's commands from outside, at every await point.

The promise: a cancelled command leaves the client either usable and in step
with the server (the next commands return correct results) or closed (the next
command raises `pop3core.LocalProtocolError`); never out of step, which would
return the wrong data. And the server stays consistent: nothing is deleted
unless QUIT was sent.

Two ways. A `Tripwire` wraps the client's stream so that its k-th await
(receive, send, receive_if_ready, start_tls, connect) cancels the enclosing
scope, just before the call or just after it returned (what it read is then
lost, what it wrote is gone), for k = 1, 2, ... until the command completes
uncancelled; the invariant is checked after each. Then timed cancellations
(`anyio.move_on_after`, another task cancelling a task group) against servers
that stall at each step.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from typing import Any, Literal

import anyio
import anyio.lowlevel
import pytest

import pop3_anyio._client
import pop3_anyio._streams
import pop3core as p
from pop3_anyio import Client
from pop3_anyio._streams import Stream
from tests.anyio.conftest import (
    MESSAGES,
    Connect,
    Serve,
    Served,
    assert_closed,
    expected,
    login,
    wait_for,
)
from tests.hostile import CAPA, HostileServer, Peer

pytestmark = pytest.mark.anyio

When = Literal["before", "after"]
ALL = {i + 1: expected(i) for i in range(len(MESSAGES))}
SIZES = {n: len(m) for n, m in ALL.items()}
STAT = p.MaildropStat(len(ALL), sum(SIZES.values()))


class Tripwire:
    """Counts the awaits of a client on its stream while armed; the `target`-th
    cancels the armed scope, `when` ``"before"`` or ``"after"`` the real call."""

    def __init__(self) -> None:
        self.scope: anyio.CancelScope | None = None
        self.target = 0
        self.when: When = "before"
        self.seen = 0
        self.fired: str | None = None

    def arm(self, scope: anyio.CancelScope, target: int, when: When) -> None:
        self.scope, self.target, self.when = scope, target, when
        self.seen, self.fired = 0, None

    def disarm(self) -> None:
        self.scope = None

    async def point(self, name: str, when: When) -> None:
        if self.scope is None or when != self.when:
            return
        self.seen += 1
        if self.seen == self.target:
            self.fired = name
            self.scope.cancel()
            await anyio.sleep(10)  # the cancellation is delivered here
            raise AssertionError("the cancellation was not delivered")


class TrippedStream:
    """A `Stream` whose every wait passes the tripwire before and after."""

    def __init__(self, inner: Stream, trip: Tripwire) -> None:
        self.inner = inner
        self.trip = trip

    @property
    def tls_active(self) -> bool:
        return self.inner.tls_active

    async def receive(self, max_bytes: int, timeout: float | None) -> bytes:
        await self.trip.point("receive", "before")
        data = await self.inner.receive(max_bytes, timeout)
        await self.trip.point("receive", "after")
        return data

    async def receive_if_ready(self, max_bytes: int) -> bytes | None:
        await self.trip.point("receive_if_ready", "before")
        data = await self.inner.receive_if_ready(max_bytes)
        await self.trip.point("receive_if_ready", "after")
        return data

    async def send(self, data: bytes, timeout: float | None) -> None:
        await self.trip.point("send", "before")
        await self.inner.send(data, timeout)
        await self.trip.point("send", "after")

    async def start_tls(self, *args: Any, **kwargs: Any) -> None:
        await self.trip.point("start_tls", "before")
        await self.inner.start_tls(*args, **kwargs)
        await self.trip.point("start_tls", "after")

    def getpeercert(self) -> dict[str, Any] | None:
        return self.inner.getpeercert()

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
def trip(monkeypatch: pytest.MonkeyPatch) -> Tripwire:
    """Every client connected in the test gets a `TrippedStream` on this tripwire."""
    tripwire = Tripwire()
    real_connect = pop3_anyio._streams.connect  # what the client module calls

    async def connect(*args: Any, **kwargs: Any) -> TrippedStream:
        await tripwire.point("connect", "before")
        return TrippedStream(await real_connect(*args, **kwargs), tripwire)

    monkeypatch.setattr(pop3_anyio._client, "connect", connect)
    return tripwire


class Sink:
    """An async writer; it also passes the tripwire (a cancellation may come there)."""

    def __init__(self, trip: Tripwire | None = None) -> None:
        self.trip = trip
        self.data = bytearray()
        self.closed = False

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed
        if self.trip is not None:
            await self.trip.point("sink.write", "before")
        else:
            await anyio.lowlevel.checkpoint()
        self.data += data

    async def aclose(self) -> None:
        await anyio.lowlevel.checkpoint()
        self.closed = True


async def collect(iterator: AsyncGenerator[Any, None], trip: Tripwire | None = None) -> list[Any]:
    """The items of `iterator`; with `trip`, the consumer's own await after each item
    (where a cancellation leaves the client usable) passes the tripwire too."""
    items: list[Any] = []
    async with contextlib.aclosing(iterator) as iterating:
        async for item in iterating:
            items.append(item)
            if trip is not None:
                await trip.point("consumer", trip.when)
    return items


async def is_closed(client: Client) -> bool:
    """Whether the client is closed (or was never connected); if not, it must be usable."""
    try:
        await client.capa()  # allowed in every state a cancelled command can leave
    except p.LocalProtocolError as exc:
        refusal = str(exc)
    else:
        return False
    assert refusal in ("the connection is closed", "the client is not connected"), refusal
    return True


Setup = Callable[[], Awaitable[Client]]
Run = Callable[[Client], Awaitable[Any]]
Check = Callable[[Client, Any], Awaitable[None]]


async def cancel_everywhere(
    trip: Tripwire, when: When, *, setup: Setup, run: Run, check: Check, in_step: Run
) -> Counter[str]:
    """Run `run` on a client from `setup` with its k-th await point cancelled, for
    k = 1, 2, ... until it completes; `check` its result then. After each
    cancellation the client is either closed (a new one is set up) or must be in
    step (`in_step` runs on it). Returns how often each kind of point was hit."""
    hits: Counter[str] = Counter()
    client: Client | None = None
    for target in itertools.count(1):
        assert target < 500, "the command never completed"
        if client is None:
            client = await setup()
        with anyio.CancelScope() as scope:
            trip.arm(scope, target, when)
            try:
                result = await run(client)
            finally:
                trip.disarm()
        if trip.fired is None:
            assert not scope.cancelled_caught
            await check(client, result)
            await client.aclose()  # without QUIT
            return hits
        # The cancellation went through to the caller: nothing swallowed it.
        assert scope.cancelled_caught, f"the cancellation at {trip.fired} was lost"
        hits[trip.fired] += 1
        if await is_closed(client):
            client = None
        else:
            hits["usable"] += 1
            await in_step(client)
    raise AssertionError("unreachable")


WHEN: list[When] = ["before", "after"]


async def logged_in(served: Served, connect: Connect, **options: Any) -> Client:
    served.wait_unlocked()  # the session of a client cancelled mid-command has ended
    client = await connect(served, **options).open()
    await login(client)
    return client


async def stat_and_retr(client: Client) -> None:
    assert await client.stat() == STAT
    assert await client.retr(2) == ALL[2]


def assert_untouched(served: Served) -> None:
    served.wait_unlocked()
    assert served.store.commits == []
    assert [m for _, m in served.store.mail["alice"]] == list(ALL.values())


# ------------------------------------------------------------- every await point

TRANSACTION: dict[str, tuple[Callable[[Client, Tripwire], Awaitable[Any]], Any]] = {
    # name: (the command, its result)
    "retr": (lambda c, t: c.retr(3), ALL[3]),
    "top": (lambda c, t: c.top(1, 1), b"Subject: one\r\n\r\n.leading dot line\r\n"),
    "list": (lambda c, t: c.list(), SIZES),
    "list-one": (lambda c, t: c.list(3), SIZES[3]),
    "uidl": (lambda c, t: c.uidl(), {1: "alice-0", 2: "alice-1", 3: "alice-2"}),
    "stat": (lambda c, t: c.stat(), STAT),
    "iter_retr": (lambda c, t: collect(c.iter_retr(3), t), ALL[3]),
    "retr_many": (
        lambda c, t: collect(c.retr_many([3, 1, 2, 3]), t),
        [(3, ALL[3]), (1, ALL[1]), (2, ALL[2]), (3, ALL[3])],
    ),
}


@pytest.mark.parametrize("when", WHEN)
@pytest.mark.parametrize("command", TRANSACTION)
async def test_a_command_cancelled_at_every_await_point(
    serve: Serve, connect: Connect, trip: Tripwire, command: str, when: When
) -> None:
    served = serve()
    run, expected_result = TRANSACTION[command]

    async def check(client: Client, result: Any) -> None:
        if command == "iter_retr":
            result = b"".join(result)
        assert result == expected_result
        await stat_and_retr(client)

    hits = await cancel_everywhere(
        trip,
        when,
        setup=lambda: logged_in(served, connect, read_size=64),
        run=lambda client: run(client, trip),
        check=check,
        in_step=stat_and_retr,
    )
    assert hits["send"] >= 1
    assert hits["receive_if_ready"] >= 1
    long_reply = command in ("retr", "iter_retr", "retr_many")
    assert hits["receive"] >= (10 if long_reply else 1)
    if command in ("iter_retr", "retr_many"):
        # Cancelled in the consumer's own await, between items: the iterator was
        # closed, and the client read the rest of its replies before the next command.
        assert hits["usable"] >= hits["consumer"] >= 3
    assert_untouched(served)


@pytest.mark.parametrize("when", WHEN)
async def test_retr_into_a_sink_cancelled_at_every_await_point(
    serve: Serve, connect: Connect, trip: Tripwire, when: When
) -> None:
    served = serve()
    sinks: list[Sink] = []

    async def run(client: Client) -> int:
        sinks.append(Sink(trip))
        return await client.retr(3, sinks[-1])

    async def check(client: Client, result: Any) -> None:
        assert result == len(ALL[3])
        assert bytes(sinks[-1].data) == ALL[3]
        await stat_and_retr(client)

    hits = await cancel_everywhere(
        trip,
        when,
        setup=lambda: logged_in(served, connect, read_size=128),
        run=run,
        check=check,
        in_step=stat_and_retr,
    )
    if when == "before":
        assert hits["sink.write"] >= 3
    assert all(ALL[3].startswith(sink.data) for sink in sinks)  # never a wrong octet
    assert_untouched(served)


@pytest.mark.parametrize("when", WHEN)
async def test_retr_many_to_cancelled_at_every_await_point(
    serve: Serve, connect: Connect, trip: Tripwire, when: When
) -> None:
    served = serve()
    sinks: list[tuple[int, Sink]] = []

    def open_file(number: int) -> Sink:
        sinks.append((number, Sink(trip)))
        return sinks[-1][1]

    async def run(client: Client) -> None:
        sinks.clear()
        await client.retr_many_to([3, 1, 2], open_file)

    async def check(client: Client, result: Any) -> None:
        assert [(n, bytes(s.data)) for n, s in sinks] == [(n, ALL[n]) for n in (3, 1, 2)]
        await stat_and_retr(client)

    async def in_step(client: Client) -> None:
        await stat_and_retr(client)

    async def setup() -> Client:
        return await logged_in(served, connect, read_size=256)

    hits = Counter[str]()
    for target in itertools.count(1):
        # cancel_everywhere, unrolled: the files must be closed after each cancellation.
        assert target < 500
        client = await setup()
        with anyio.CancelScope() as scope:
            trip.arm(scope, target, when)
            try:
                await run(client)
            finally:
                trip.disarm()
        assert all(sink.closed for _, sink in sinks), "a file was left open"
        assert all(ALL[n].startswith(sink.data) for n, sink in sinks)
        if trip.fired is None:
            await check(client, None)
            await client.aclose()
            break
        assert scope.cancelled_caught
        hits[trip.fired] += 1
        if not await is_closed(client):
            await in_step(client)
        await client.aclose()
    assert hits["sink.write"] >= (3 if when == "before" else 0)
    assert_untouched(served)


@pytest.mark.parametrize("when", WHEN)
async def test_dele_many_cancelled_at_every_await_point(
    serve: Serve, connect: Connect, trip: Tripwire, when: When
) -> None:
    served = serve()

    async def check(client: Client, result: Any) -> None:
        assert await client.stat() == (0, 0)
        await client.rset()
        await stat_and_retr(client)

    async def in_step(client: Client) -> None:
        await client.rset()
        await stat_and_retr(client)

    await cancel_everywhere(
        trip,
        when,
        setup=lambda: logged_in(served, connect),
        run=lambda client: client.dele_many([1, 2, 3]),
        check=check,
        in_step=in_step,
    )
    assert_untouched(served)  # QUIT was never sent: no DELE was committed


LOGINS: dict[str, dict[str, Any]] = {
    "USER": {"method": "USER", "allow_cleartext": True},
    "APOP": {"method": "APOP"},
    "CRAM-MD5": {"method": "CRAM-MD5"},
    "SCRAM-SHA-256": {"method": "SCRAM-SHA-256"},
    "PLAIN": {"method": "PLAIN", "allow_cleartext": True},
    "best": {},
}


@pytest.mark.parametrize("when", WHEN)
@pytest.mark.parametrize("method", LOGINS)
async def test_login_cancelled_at_every_await_point(
    serve: Serve, connect: Connect, trip: Tripwire, method: str, when: When
) -> None:
    served = serve(mechanisms=["SCRAM-SHA-256", "CRAM-MD5", "PLAIN"])

    async def setup() -> Client:
        served.wait_unlocked()
        return await connect(served).open()

    async def check(client: Client, result: Any) -> None:
        assert client.state == "TRANSACTION"
        await stat_and_retr(client)

    async def in_step(client: Client) -> None:
        if client.state == "AUTHORIZATION":
            await login(client)
        await stat_and_retr(client)

    hits = await cancel_everywhere(
        trip,
        when,
        setup=setup,
        run=lambda client: client.login("alice", "secret", **LOGINS[method]),
        check=check,
        in_step=in_step,
    )
    # CAPA, then USER and PASS, or AUTH and its responses: several round trips.
    assert hits["send"] >= (1 if method == "APOP" else 2)
    assert hits["receive"] >= (1 if method == "APOP" else 2)
    assert_untouched(served)


@pytest.mark.parametrize("when", WHEN)
@pytest.mark.parametrize("how", ["starttls-mode", "starttls-call", "implicit"])
async def test_opening_with_tls_cancelled_at_every_await_point(
    serve: Serve, connect: Connect, trip: Tripwire, how: str, when: When
) -> None:
    served = serve()
    mode = "implicit" if how == "implicit" else "starttls" if how == "starttls-mode" else "none"

    async def run(client: Client) -> None:
        await client.open()
        if how == "starttls-call":
            await client.starttls()

    async def check(client: Client, result: Any) -> None:
        assert client.tls_active
        capabilities = await client.capa()
        assert capabilities is not None
        assert not capabilities.stls
        await client.login("alice", "secret", method="PLAIN")
        await stat_and_retr(client)
        await client.aclose()

    async def in_step(client: Client) -> None:
        # Usable: only when nothing was sent yet (then it is as it was).
        assert not client.tls_active
        assert how == "starttls-call"
        await client.starttls()
        await check(client, None)

    async def setup() -> Client:
        served.wait_unlocked()
        return connect(served, mode)

    hits = await cancel_everywhere(trip, when, setup=setup, run=run, check=check, in_step=in_step)
    if how != "implicit":
        assert hits["start_tls"] == 1
        assert hits["send"] >= 2  # CAPA and STLS
    if when == "before":
        assert hits["connect"] == 1
    assert_untouched(served)


async def test_a_cancelled_open_can_be_tried_again_only_if_it_never_connected(
    serve: Serve, connect: Connect, trip: Tripwire
) -> None:
    served = serve()
    client = connect(served)
    with anyio.CancelScope() as scope:
        trip.arm(scope, 1, "before")  # connect
        await client.open()
    trip.disarm()
    assert trip.fired == "connect"
    assert scope.cancelled_caught
    with pytest.raises(p.LocalProtocolError, match="not connected"):
        await client.noop()
    await client.open()  # it was never connected: it may connect now
    await login(client)
    await stat_and_retr(client)

    client = connect(served)
    with anyio.CancelScope() as scope:
        trip.arm(scope, 1, "after")  # the greeting was read, then cancelled
        await client.open()
    trip.disarm()
    assert trip.fired == "receive"
    with pytest.raises(p.LocalProtocolError, match="the connection is closed"):
        await client.open()  # closed: it stays closed, and says so
    await assert_closed(client)


# ------------------------------------------------------------- usable after a cancellation


@pytest.mark.parametrize("how", ["iter_retr", "retr_many"])
async def test_a_consumer_cancelled_between_chunks_leaves_the_client_usable(
    serve: Serve, connect: Connect, how: str
) -> None:
    big = b"".join(b"line %06d\r\n" % i for i in range(20_000))
    served = serve({"alice": [big, b"small\r\n", b"other\r\n"]})
    async with connect(served, read_size=4096) as client:
        await login(client)
        await client.dele(3)
        received = 0
        with anyio.move_on_after(0.2) as scope:
            iterator = (
                client.iter_retr(1) if how == "iter_retr" else client.retr_many([2, 1, 2, 1])
            )
            async with contextlib.aclosing(iterator) as items:
                async for _ in items:
                    received += 1
                    await anyio.sleep(1)  # the consumer is cancelled here
        assert scope.cancelled_caught
        assert received == 1
        # Not cancelled in the client: it reads the rest first, then answers.
        assert await client.stat() == (2, len(big) + len(b"small\r\n"))
        assert await client.retr(2) == b"small\r\n"
        assert await client.retr(1) == big
    assert served.store.commits == [("alice", ["alice-2"])]  # QUIT: the DELE is committed


async def test_a_cancelled_block_does_not_quit(serve: Serve, connect: Connect) -> None:
    served = serve()
    lines: list[str] = []
    with anyio.move_on_after(0.3) as scope:
        async with connect(served, log=lines.append) as client:
            await login(client)
            await client.dele_many([1, 2])
            await anyio.sleep(5)
    assert scope.cancelled_caught
    await assert_closed(client)
    assert "C: QUIT" not in lines
    assert_untouched(served)


# ------------------------------------------------------------- servers that stall


def until_hangup(peer: Peer) -> None:
    """Say nothing more; return when the client hangs up (or the test stops)."""
    while not peer.server.stopped.is_set():
        try:
            if not peer.sock.recv(65536):
                return
        except TimeoutError:  # noqa: PERF203 - a short timeout, to notice `stopped`
            continue
        except OSError:
            return


def stall_at(keyword: bytes, reply: bytes = b"", capa: bytes = CAPA) -> Callable[[Peer], None]:
    """Serve until `keyword`, send `reply` (the start of its answer), then stall."""

    def script(peer: Peer) -> None:
        peer.serve_until(keyword, capa=capa)
        peer.send(reply)
        until_hangup(peer)

    return script


CAPA_STLS = b"+OK\r\nUSER\r\nSTLS\r\nPIPELINING\r\n.\r\n"
CAPA_SCRAM = b"+OK\r\nSASL SCRAM-SHA-256\r\nPIPELINING\r\n.\r\n"

Action = Callable[[Client], Awaitable[Any]]


async def _open(client: Client) -> None:
    await client.open()


async def _login(client: Client) -> None:
    await client.open()
    await login(client)


async def _then(client: Client, action: Action) -> Any:
    await _login(client)
    return await action(client)


async def _open_and_login_with_scram(client: Client) -> None:
    await client.open()
    await client.login("alice", "secret")  # the CAPA offers SCRAM-SHA-256 only


class Stall:
    """A server that stalls at one step, and what the client does meanwhile."""

    def __init__(
        self,
        script: Callable[[Peer], None],
        action: Action,
        *,
        server: str = "none",
        client: str = "none",
        greeting: bytes | None = b"+OK ready\r\n",
    ) -> None:
        self.script = script
        self.action = action
        self.server = server  # the HostileServer's TLS mode ("starttls": it does STLS first)
        self.client = client
        self.greeting = greeting


STALLS = {
    "greeting": Stall(until_hangup, _open, greeting=None),
    "half-a-greeting": Stall(until_hangup, _open, greeting=b"+OK hal"),
    "tls-handshake": Stall(until_hangup, _open, client="implicit", greeting=None),
    "capa": Stall(stall_at(b"CAPA"), _open, client="starttls"),
    "stls": Stall(stall_at(b"STLS", capa=CAPA_STLS), _open, client="starttls"),
    "stls-handshake": Stall(
        stall_at(b"STLS", b"+OK go ahead\r\n", capa=CAPA_STLS), _open, client="starttls"
    ),
    "pass": Stall(stall_at(b"PASS"), _login),
    "sasl-challenge": Stall(stall_at(b"AUTH", capa=CAPA_SCRAM), _open_and_login_with_scram),
    "stat": Stall(stall_at(b"STAT"), lambda c: _then(c, Client.stat)),
    "retr-status": Stall(stall_at(b"RETR"), lambda c: _then(c, lambda c: c.retr(1))),
    "retr-body": Stall(
        stall_at(b"RETR", b"+OK 100 octets\r\nSubject: a slow one\r\n"),
        lambda c: _then(c, lambda c: c.retr(1)),
        server="implicit",
        client="implicit",
    ),
    "second-of-a-batch": Stall(
        stall_at(b"RETR", b"+OK 6 octets\r\nfast\r\n.\r\n+OK 9 octets\r\n"),
        lambda c: _then(c, lambda c: collect(c.retr_many([1, 2]))),
        server="starttls",
        client="starttls",
    ),
}


@pytest.mark.parametrize("stall", STALLS)
async def test_move_on_after_a_stalled_server(
    hostile: Callable[..., HostileServer], connect: Connect, stall: str
) -> None:
    case = STALLS[stall]
    server = hostile(case.script, tls=case.server, greeting=case.greeting)
    lines: list[str] = []
    client = connect(server.port, case.client, log=lines.append)
    started = anyio.current_time()
    with anyio.move_on_after(0.15) as scope:
        await case.action(client)
    assert scope.cancelled_caught
    assert anyio.current_time() - started < 2
    # Closed, or (cancelled while connecting) never connected: no command goes out.
    with pytest.raises(p.LocalProtocolError):
        await client.noop()
    assert "C: NOOP" not in lines
    assert "C: QUIT" not in lines
    assert await wait_for(server.finished, 5), "the client did not hang up"
    if stall == "second-of-a-batch":  # pipelined: both went out before the first reply
        assert lines.index("C: RETR 2") < lines.index("S: +OK 6 octets")


async def test_a_task_cancelled_by_another_closes_its_client(
    hostile: Callable[..., HostileServer], connect: Connect
) -> None:
    asked = threading.Event()

    def script(peer: Peer) -> None:
        peer.serve_until(b"RETR")
        peer.send(b"+OK 1000 octets\r\npart of it\r\n")
        asked.set()
        until_hangup(peer)

    server = hostile(script)
    client = await connect(server.port).open()
    await login(client)
    outcome: list[str] = []

    async def fetch() -> None:
        try:
            await client.retr(1)
        except BaseException:
            outcome.append("cancelled")
            raise
        outcome.append("returned")  # pragma: no cover - the test fails then

    async with anyio.create_task_group() as group:
        group.start_soon(fetch)
        assert await wait_for(asked)
        await anyio.sleep(0.05)  # the reply's start has arrived, the rest is owed
        group.cancel_scope.cancel()
    assert outcome == ["cancelled"]
    await assert_closed(client)
    assert await wait_for(server.finished, 5)
    assert server.peer is not None
    assert b"QUIT" not in server.peer.lines


async def test_a_slow_reply_cancelled_by_the_caller_is_not_read_by_the_next_client(
    hostile: Callable[..., HostileServer], connect: Connect
) -> None:
    # The stalled reply arrives after the cancellation: nobody reads it as the
    # answer to another command (the connection is gone).
    def script(peer: Peer) -> None:
        peer.serve_until(b"STAT")
        if not peer.server.stopped.wait(0.3):
            with contextlib.suppress(Exception):
                peer.send(b"+OK 7 700\r\n")
        until_hangup(peer)

    server = hostile(script)
    client = await connect(server.port).open()
    await login(client)
    with anyio.move_on_after(0.1):
        await client.stat()
    await anyio.sleep(0.4)
    with pytest.raises(p.LocalProtocolError, match="closed"):
        await client.stat()
    assert await wait_for(server.finished, 5)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A socket that accepts connections (in the backlog) and never answers."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock


async def test_a_connect_cancelled_leaks_nothing(
    listener: socket.socket, connect: Connect
) -> None:
    # With warnings as errors, a socket left for the garbage collector fails a test.
    for mode in ("none", "implicit"):
        client = connect(listener.getsockname()[1], mode)
        with anyio.move_on_after(0.1) as scope:
            await client.open()
        assert scope.cancelled_caught
        with pytest.raises(p.LocalProtocolError):
            await client.noop()
