"""pop3_anyio.Client against hostile servers (tests/hostile.py), on asyncio and trio.

The async twin of tests/blocking/test_client_vs_hostile_servers.py, plus endless
lines, servers that hang up mid-reply and broken TLS. The scripted servers run
in threads; the client reaches them over loopback. Every case is bounded in
time (`anyio.fail_after`) and, where memory is the point, in memory, so that a
client without the bound fails instead of hanging. The slower cases (those that
wait for a guard) run in one TLS mode each, chosen so that every mode is used.
"""

from __future__ import annotations

import base64
import contextlib
import io
import socket
import ssl
import threading
import time
import tracemalloc
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import pop3core as p
from pop3_anyio import MAX_PIPELINE_OCTETS, Client, SizeLimitExceeded
from tests.anyio.conftest import TLS_MODES, Connect, assert_closed, login, wait_for
from tests.hostile import CAPA, Clock, HostileServer, Peer, TLSMode
from tests.server_doubles import Certificates

pytestmark = pytest.mark.anyio

Hostile = Callable[..., HostileServer]

# A drip one octet just inside each read timeout: the timeout alone never fires.
TIMEOUT = 0.4
DRIP = 0.3
GUARD = (100, 0.5)  # octets, seconds: small, so that a test trips it soon
BOUND = 3.0  # seconds any hostile case may take on the fixed client
LIMIT = 20.0  # seconds after which a test has hung (fail_after)


@pytest.fixture
def opened(connect: Connect) -> Callable[..., Awaitable[Client]]:
    """``await opened(server, tls, login=True, **client_options)``: a connected client."""

    async def open_client(
        server: HostileServer, tls: TLSMode, *, login: bool = True, **options: Any
    ) -> Client:
        options.setdefault("timeout", 5.0)
        options.setdefault("connect_timeout", 5.0)
        client = connect(server.port, tls, **options)
        with anyio.fail_after(LIMIT):
            await client.open()
            if login:
                await client.login("u", "p", method="USER", allow_cleartext=True)
        return client

    return open_client


Opened = Callable[..., Awaitable[Client]]


class Sink:
    """An async writer that counts what it is given, and fails past `bound` octets
    (a client without a bound would read on)."""

    def __init__(self, bound: int = 8 << 20) -> None:
        self.octets = 0
        self.bound = bound

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        await anyio.lowlevel.checkpoint()
        self.octets += len(data)
        if self.octets > self.bound:
            raise AssertionError(f"the client read {self.octets} octets and went on")

    async def aclose(self) -> None:
        pass


async def commands(server: HostileServer) -> list[bytes]:
    """The command lines the server received, once the session is over."""
    assert await wait_for(server.finished, 5), "the session did not end"
    assert server.peer is not None
    return server.peer.lines


async def drain(iterator: AsyncGenerator[Any, None]) -> list[Any]:
    async with contextlib.aclosing(iterator) as items:
        return [item async for item in items]


async def total(iterator: AsyncGenerator[bytes, None]) -> int:
    return sum(len(chunk) for chunk in await drain(iterator))


# -- 1. the low-speed guard and the deadline -----------------------------------------


@pytest.mark.parametrize("tls", ["implicit"])  # "none" is the same code; STLS needs a greeting
async def test_a_dripped_greeting_times_out(
    hostile: Hostile, opened: Opened, tls: TLSMode
) -> None:
    server = hostile(lambda peer: peer.drip(b"+OK slow\r\n", DRIP), tls=tls, greeting=None)
    clock = Clock()
    with pytest.raises(p.ReplyTimeout, match=r"fewer than 100 octets in 0\.5 seconds"):
        await opened(server, tls, login=False, timeout=TIMEOUT, low_speed=GUARD)
    assert clock() < BOUND


async def test_a_body_dripped_mid_retr_times_out_and_closes(
    hostile: Hostile, opened: Opened
) -> None:
    def script(peer: Peer) -> None:
        peer.serve_until(b"RETR")
        peer.send(b"+OK 16 octets\r\n")
        peer.drip(b"a slow body\r\n.\r\n", DRIP)
        peer.finish()

    server = hostile(script, tls="starttls")
    client = await opened(server, "starttls", timeout=TIMEOUT, low_speed=GUARD)
    clock = Clock()
    with anyio.fail_after(LIMIT), pytest.raises(p.ReplyTimeout, match="fewer than 100 octets"):
        await client.retr(1)
    assert clock() < BOUND
    await assert_closed(client)
    assert b"QUIT" not in await commands(server)


async def test_each_reply_of_a_pipelined_batch_is_guarded(
    hostile: Hostile, opened: Opened
) -> None:
    def script(peer: Peer) -> None:
        peer.serve_until(b"RETR")
        peer.send(b"+OK 6 octets\r\nfast\r\n.\r\n")
        peer.readline()
        peer.send(b"+OK 16 octets\r\n")
        peer.drip(b"a slow body\r\n.\r\n", DRIP)
        peer.finish()

    client = await opened(
        hostile(script, tls="implicit"), "implicit", timeout=TIMEOUT, low_speed=GUARD
    )
    clock = Clock()
    got: list[tuple[int, bytes]] = []

    async def fetch() -> None:
        async with contextlib.aclosing(client.retr_many([1, 2])) as messages:
            async for item in messages:
                got.append(item)  # noqa: PERF401

    with anyio.fail_after(LIMIT), pytest.raises(p.ReplyTimeout, match="fewer than 100 octets"):
        await fetch()
    assert got == [(1, b"fast\r\n")]
    assert clock() < BOUND
    await assert_closed(client)


async def test_the_guard_times_each_reply_from_its_first_octet(
    hostile: Hostile, opened: Opened
) -> None:
    # A server that thinks before answering, and a caller that pauses between
    # commands, longer than the guard's window: neither is a slow reply.
    guard = (100, 0.3)

    def script(peer: Peer) -> None:
        peer.serve_until(b"RETR")
        time.sleep(guard[1] * 1.6)
        peer.send(b"+OK 11 octets\r\nsome body\r\n.\r\n")
        peer.finish()

    client = await opened(hostile(script), "none", timeout=2.0, low_speed=guard)
    with anyio.fail_after(LIMIT):
        await client.noop()
        await anyio.sleep(guard[1] * 1.6)
        assert await client.stat() == (1, 100)
        assert await client.retr(1) == b"some body\r\n"
        await client.quit()


async def test_the_deadline_bounds_a_reply_that_keeps_coming(
    hostile: Hostile, opened: Opened
) -> None:
    # Fast enough for any low-speed guard, but never done.
    def script(peer: Peer) -> None:
        peer.serve_until(b"RETR")
        peer.send(b"+OK\r\n")
        for _ in range(100):
            peer.send(b"x" * 98 + b"\r\n")
            if peer.server.stopped.wait(0.05):
                break
        peer.send(b".\r\n")
        peer.finish()

    client = await opened(hostile(script, tls="starttls"), "starttls", deadline=0.8)
    clock = Clock()
    with (
        anyio.fail_after(LIMIT),
        pytest.raises(p.ReplyTimeout, match=r"no complete reply within 0\.8 seconds"),
    ):
        await client.retr(1, Sink())
    assert 0.7 < clock() < BOUND
    await assert_closed(client)


async def test_the_deadline_is_per_reply_in_a_pipelined_batch(
    hostile: Hostile, opened: Opened
) -> None:
    def script(peer: Peer) -> None:
        line = peer.serve_until(b"RETR")
        for count in range(3):
            if count:
                line = peer.readline()  # already sent: the batch is pipelined
            time.sleep(0.2)
            peer.send(b"+OK 4 octets\r\n" + line[5:] + b"\r\n.\r\n")
        peer.finish()

    client = await opened(hostile(script, tls="implicit"), "implicit", deadline=0.4)
    clock = Clock()
    with anyio.fail_after(LIMIT):
        assert await drain(client.retr_many([11, 12, 13])) == [
            (n, b"%d\r\n" % n) for n in (11, 12, 13)
        ]
    assert clock() > 0.55  # longer than the deadline in all, but no reply was late
    await client.quit()


async def test_a_silent_server_is_an_ordinary_read_timeout(
    hostile: Hostile, opened: Opened
) -> None:
    stop = threading.Event()

    def script(peer: Peer) -> None:
        peer.serve_until(b"STAT")
        stop.wait(5)

    client = await opened(hostile(script), "none", timeout=TIMEOUT, low_speed=GUARD)
    clock = Clock()
    with anyio.fail_after(LIMIT), pytest.raises(TimeoutError) as caught:
        await client.stat()
    stop.set()
    assert not isinstance(caught.value, p.ReplyTimeout)
    assert TIMEOUT - 0.05 < clock() < BOUND
    await assert_closed(client)


# -- 2. endless bodies and endless lines ------------------------------------------------

STREAM = 32 << 20  # "endless": far past any bound here, then a terminator
PIECE = b"".join(b"%06d " % i + b"x" * 56 + b"\r\n" for i in range(1024))  # 64 KiB of lines
LISTED = 1000  # the size LIST gives
SMALL_CEILING = 256 * 1024


def endless(
    status: bytes, *, listing: bytes | None = None, piece: bytes = PIECE
) -> Callable[[Peer], None]:
    """A server that answers LIST (or ``LIST n``) with `listing` if asked, then
    answers RETR or TOP with `status` and a body of `STREAM` octets."""

    def script(peer: Peer) -> None:
        line = peer.serve_until(b"LIST", b"RETR", b"TOP")
        if line.startswith(b"LIST"):
            assert listing is not None
            if line == b"LIST":
                peer.send(b"+OK\r\n" + listing + b".\r\n")
            else:
                peer.send(b"+OK " + listing)
            peer.serve_until(b"RETR", b"TOP")
        peer.send(status)
        sent = 0
        while sent < STREAM:  # until the client hangs up (Gone)
            peer.send(piece)
            sent += len(piece)
        peer.send(b".\r\n")
        peer.finish()

    return script


FETCHES: dict[str, Callable[[Client], Awaitable[object]]] = {
    "retr": lambda client: client.retr(1),
    "retr-sink": lambda client: client.retr(1, Sink()),
    "retr-file": lambda client: client.retr(1, io.BytesIO()),
    "iter_retr": lambda client: total(client.iter_retr(1)),
    "top": lambda client: client.top(1, 10),
    "iter_top": lambda client: total(client.iter_top(1, 10)),
    "retr_many": lambda client: drain(client.retr_many([1])),
    "retr_many_to": lambda client: client.retr_many_to([1], lambda n: Sink()),
}


@pytest.mark.parametrize("tls", TLS_MODES)
async def test_an_endless_retr_is_bounded_by_its_announced_size(
    hostile: Hostile, opened: Opened, tls: TLSMode, peak_memory: Callable[[], int]
) -> None:
    server = hostile(endless(b"+OK 1000 octets\r\n"), tls=tls)
    client = await opened(server, tls)
    clock = Clock()
    with (
        anyio.fail_after(LIMIT),
        pytest.raises(p.RemoteProtocolError, match="far past the size the server announced"),
    ):
        await client.retr(1)
    assert clock() < BOUND
    assert peak_memory() < 4 << 20
    await assert_closed(client)
    assert b"QUIT" not in await commands(server)


@pytest.mark.parametrize("listed", ["LIST", "LIST n"])
@pytest.mark.parametrize("fetch", FETCHES)
async def test_an_endless_body_is_bounded_by_the_size_list_gave(
    *, hostile: Hostile, opened: Opened, fetch: str, listed: str, peak_memory: Callable[[], int]
) -> None:
    tls: TLSMode = "implicit" if fetch.startswith("iter") else "none"
    status = b"+OK message follows\r\n"  # no size: only LIST gave one
    server = hostile(endless(status, listing=b"1 %d\r\n" % LISTED), tls=tls)
    client = await opened(server, tls)
    listing = await (client.list() if listed == "LIST" else client.list(1))
    assert listing == ({1: LISTED} if listed == "LIST" else LISTED)
    clock = Clock()
    with (
        anyio.fail_after(LIMIT),
        pytest.raises(p.RemoteProtocolError, match="runs past the size LIST gave"),
    ):
        await FETCHES[fetch](client)
    assert clock() < BOUND
    assert peak_memory() < 4 << 20
    await assert_closed(client)
    assert b"QUIT" not in await commands(server)


@pytest.mark.parametrize("fetch", FETCHES)
async def test_an_endless_body_of_unknown_size_is_bounded_by_the_ceiling(
    hostile: Hostile, opened: Opened, fetch: str, peak_memory: Callable[[], int]
) -> None:
    tls: TLSMode = "starttls" if fetch.startswith("retr_many") else "none"
    server = hostile(endless(b"+OK\r\n"), tls=tls)
    client = await opened(server, tls, max_message_size=SMALL_CEILING)
    clock = Clock()
    with (
        anyio.fail_after(LIMIT),
        pytest.raises(SizeLimitExceeded, match=f"longer than {SMALL_CEILING} octets") as caught,
    ):
        await FETCHES[fetch](client)
    assert (caught.value.which, caught.value.limit) == (1, SMALL_CEILING)
    assert clock() < BOUND
    assert peak_memory() < 4 << 20
    await assert_closed(client)
    assert b"QUIT" not in await commands(server)


async def test_an_endless_body_line_is_bounded_too(
    hostile: Hostile, opened: Opened, peak_memory: Callable[[], int]
) -> None:
    server = hostile(endless(b"+OK\r\n", piece=b"y" * 65536))  # one line, never ended
    client = await opened(server, "none")
    with anyio.fail_after(LIMIT), pytest.raises(SizeLimitExceeded):
        await client.retr(1, max_size=100_000)
    assert peak_memory() < 4 << 20
    await assert_closed(client)


def endless_line(keyword: bytes | None, start: bytes) -> Callable[[Peer], None]:
    """A server that answers `keyword` (None: greets) with `start` and then octets
    without an end of line, until the client hangs up."""

    def script(peer: Peer) -> None:
        if keyword is not None:
            peer.serve_until(keyword, capa=b"+OK\r\nUSER\r\nSASL PLAIN\r\n.\r\n")
        peer.send(start)
        peer.stream(b"z" * 4096)

    return script


ENDLESS_LINES: dict[str, tuple[bytes | None, bytes, Callable[[Client], Awaitable[object]]]] = {
    "greeting": (None, b"+OK ", lambda client: client.open()),
    "status": (b"STAT", b"+OK 1 ", Client.stat),
    "error": (b"DELE", b"-ERR ", lambda client: client.dele(1)),
    "capa": (b"CAPA", b"+OK\r\nSASL ", Client.capa),
    "listing": (b"UIDL", b"+OK\r\n1 ", Client.uidl),
    "sasl-challenge": (
        b"AUTH",
        b"+ ",
        lambda client: client.login("u", "p", method="PLAIN", allow_cleartext=True),
    ),
}


@pytest.mark.parametrize("where", ENDLESS_LINES)
async def test_an_endless_line_is_refused(
    hostile: Hostile, connect: Connect, where: str, peak_memory: Callable[[], int]
) -> None:
    keyword, start, action = ENDLESS_LINES[where]
    server = hostile(
        endless_line(keyword, start), greeting=None if keyword is None else b"+OK\r\n"
    )
    client = connect(server.port, max_listing_size=1 << 20)
    if keyword is not None:
        with anyio.fail_after(LIMIT):
            await client.open()
            if keyword not in (b"CAPA", b"AUTH"):
                await login(client)
    clock = Clock()
    with anyio.fail_after(LIMIT), pytest.raises(p.RemoteProtocolError):
        await action(client)
    assert clock() < BOUND
    assert peak_memory() < 4 << 20
    await assert_closed(client)
    assert await wait_for(server.finished, 5), "the client did not hang up"


# -- 3. max_size ------------------------------------------------------------------------

MESSAGE = b"Subject: big\r\n\r\n" + b"x" * 1022 + b"\r\n" + b"y" * 1022 + b"\r\n"
BIG = MESSAGE * 100  # about 200 KB
MAX_SIZE = 64 * 1024

LIMITED: dict[str, Callable[[Client, int], Awaitable[object]]] = {
    "retr": lambda client, size: client.retr(1, max_size=size),
    "retr-sink": lambda client, size: client.retr(1, Sink(), max_size=size),
    "iter_retr": lambda client, size: total(client.iter_retr(1, max_size=size)),
    "top": lambda client, size: client.top(1, 10, max_size=size),
    "top-sink": lambda client, size: client.top(1, 10, Sink(), max_size=size),
    "iter_top": lambda client, size: total(client.iter_top(1, 10, max_size=size)),
    "retr_many": lambda client, size: drain(client.retr_many([1], max_size=size)),
    "retr_many_to": lambda client, size: client.retr_many_to([1], lambda n: Sink(), max_size=size),
}


def honest(message: bytes) -> Callable[[Peer], None]:
    """A server that sends `message` (announcing its size) for RETR 1 and TOP 1."""

    def script(peer: Peer) -> None:
        while True:
            peer.serve_until(b"RETR", b"TOP")
            peer.send(b"+OK %d octets\r\n" % len(message) + message + b".\r\n")

    return script


@pytest.mark.parametrize("call", LIMITED)
async def test_max_size_bounds_a_message_and_closes_without_quit(
    hostile: Hostile, opened: Opened, call: str
) -> None:
    tls: TLSMode = TLS_MODES[len(call) % 3]
    server = hostile(honest(BIG), tls=tls)
    client = await opened(server, tls)
    with (
        anyio.fail_after(LIMIT),
        pytest.raises(SizeLimitExceeded, match=f"message 1 is longer than {MAX_SIZE} octets"),
    ):
        async with client:
            await LIMITED[call](client, MAX_SIZE)
    await assert_closed(client)
    assert b"QUIT" not in await commands(server)


@pytest.mark.parametrize("call", ["retr", "iter_top", "retr_many_to"])
async def test_a_message_of_exactly_max_size_is_accepted(
    hostile: Hostile, opened: Opened, call: str
) -> None:
    async with await opened(hostile(honest(BIG)), "none") as client:
        await LIMITED[call](client, len(BIG))
        with pytest.raises(SizeLimitExceeded):
            await LIMITED[call](client, len(BIG) - 1)


async def test_max_size_must_not_be_negative(hostile: Hostile, opened: Opened) -> None:
    server = hostile(honest(BIG))
    async with await opened(server, "none") as client:
        for call in LIMITED.values():
            with pytest.raises(ValueError, match="max_size"):
                await call(client, -1)
        assert await client.retr(1, max_size=len(BIG)) == BIG  # nothing was sent: in step
    assert b"QUIT" in await commands(server)


# -- 4. bytes no command asked for ---------------------------------------------------


@pytest.mark.parametrize("tls", TLS_MODES)
async def test_a_stray_line_in_the_same_segment_ends_the_session(
    hostile: Hostile, opened: Opened, tls: TLSMode
) -> None:
    def script(peer: Peer) -> None:
        peer.serve_until(b"NOOP")
        peer.send(b"+OK\r\n+OK 0 0\r\n")
        peer.finish()

    server = hostile(script, tls=tls)
    client = await opened(server, tls)
    await client.noop()
    with pytest.raises(p.RemoteProtocolError, match=r"no reply was owed: b'\+OK 0 0"):
        await client.stat()  # a client reading out of step says (0, 0)
    await assert_closed(client)
    assert b"STAT" not in await commands(server)


async def test_a_stray_line_sent_later_ends_the_session(hostile: Hostile, opened: Opened) -> None:
    sent = threading.Event()

    def script(peer: Peer) -> None:
        peer.serve_until(b"NOOP")
        peer.send(b"+OK\r\n")
        time.sleep(0.3)
        peer.send(b"+OK 0 0\r\n")
        sent.set()
        peer.finish()

    server = hostile(script, tls="implicit")
    client = await opened(server, "implicit")
    await client.noop()
    assert await wait_for(sent)
    await anyio.sleep(0.1)  # loopback delivers at once; leave it a moment all the same
    with pytest.raises(p.RemoteProtocolError, match="no reply was owed"):
        await client.stat()
    await assert_closed(client)
    assert b"STAT" not in await commands(server)


BULK: dict[str, Callable[[Client], Awaitable[object]]] = {
    "dele_many": lambda client: client.dele_many([1, 2]),
    "retr_many": lambda client: drain(client.retr_many([1, 2])),
}


@pytest.mark.parametrize("bulk", BULK)
async def test_a_stray_line_before_a_pipelined_batch_is_caught(
    hostile: Hostile, opened: Opened, bulk: str
) -> None:
    def script(peer: Peer) -> None:
        peer.serve_until(b"NOOP")
        peer.send(b"+OK\r\n+OK extra\r\n")
        peer.finish()

    server = hostile(script, tls="starttls")
    client = await opened(server, "starttls")
    await client.capa()  # known already: the batch sends no CAPA first
    await client.noop()
    with pytest.raises(p.RemoteProtocolError, match="no reply was owed"):
        await BULK[bulk](client)
    await assert_closed(client)
    assert not {b"DELE 1", b"RETR 1", b"QUIT"} & set(await commands(server))


async def test_a_stray_line_before_quit_deletes_nothing(hostile: Hostile, opened: Opened) -> None:
    def script(peer: Peer) -> None:
        peer.serve_until(b"DELE")
        peer.send(b"+OK marked\r\n+OK 0 0\r\n")
        peer.finish()

    server = hostile(script)
    client = await opened(server, "none")
    with pytest.raises(p.RemoteProtocolError, match="no reply was owed"):
        async with client:
            await client.dele(1)  # leaving the block normally sends QUIT...
    assert b"QUIT" not in await commands(server)  # ...but not to this server


@pytest.mark.parametrize("tls", ["none", "implicit"])
async def test_an_unstuffed_lone_dot_line_is_caught_before_the_next_command(
    hostile: Hostile, opened: Opened, tls: TLSMode
) -> None:
    # Dovecot sends a message whose first line is "." without stuffing it: the
    # reply seems to end there and the rest arrives when no reply is owed. A
    # fetch-and-delete loop must not delete the message it did not get.
    rest = b"Subject: x\r\n\r\n" + b"body line\r\n" * 26

    def script(peer: Peer) -> None:
        peer.serve_until(b"LIST")
        peer.send(b"+OK\r\n1 300\r\n.\r\n")
        peer.serve_until(b"RETR")
        peer.send(b"+OK 300 octets\r\n.\r\n" + rest + b".\r\n")
        peer.finish()

    server = hostile(script, tls=tls)
    client = await opened(server, tls)
    assert await client.list() == {1: 300}

    async def fetch_and_delete() -> None:
        await client.retr(1, Sink())  # the body seems to end at once...
        await client.dele(1)

    # ...and the rest, here already, fails the RETR itself (were it late, the DELE).
    with pytest.raises(p.RemoteProtocolError, match="no reply was owed: b'Subject: x"):
        await fetch_and_delete()
    await assert_closed(client)
    assert b"DELE 1" not in await commands(server)


async def test_the_rest_of_a_body_that_comes_late_is_caught_at_the_next_command(
    hostile: Hostile, opened: Opened
) -> None:
    def script(peer: Peer) -> None:
        peer.serve_until(b"RETR")
        peer.send(b"+OK 300 octets\r\n.\r\n")
        time.sleep(0.2)  # after the client has taken the reply as complete
        peer.send(b"Subject: x\r\n\r\nbody\r\n.\r\n")
        peer.finish()

    server = hostile(script, tls="starttls")
    client = await opened(server, "starttls")
    assert await client.retr(1) == b""
    await anyio.sleep(0.4)
    with pytest.raises(p.RemoteProtocolError, match="no reply was owed: b'Subject: x"):
        await client.dele(1)
    assert b"DELE 1" not in await commands(server)


@pytest.mark.parametrize("tls", TLS_MODES)
async def test_a_server_that_hung_up_gets_no_command(
    hostile: Hostile, opened: Opened, tls: TLSMode
) -> None:
    def script(peer: Peer) -> None:
        peer.serve_until(b"NOOP")
        peer.send(b"+OK\r\n")  # and hang up

    log: list[str] = []
    server = hostile(script, tls=tls)
    client = await opened(server, tls, log=log.append)
    await client.noop()
    assert await wait_for(server.finished)
    await anyio.sleep(0.1)
    with pytest.raises(p.RemoteProtocolError, match=r"^the server closed the connection$"):
        await client.stat()
    assert "C: STAT" not in log
    await assert_closed(client)


# -- 5. servers that hang up mid-reply ----------------------------------------------------

HANGUPS: dict[str, tuple[bytes | None, bytes, Callable[[Client], Awaitable[object]], str]] = {
    # name: (command, what is sent before hanging up, action, error)
    "greeting": (None, b"+OK hal", lambda client: client.open(), "before replying"),
    "status-line": (b"STAT", b"+OK 1 1", Client.stat, "before replying"),
    "body": (
        b"RETR",
        b"+OK 100 octets\r\nSubject: cut\r\n\r\nhalf a li",
        lambda client: client.retr(1),
        "in a multi-line reply",
    ),
    "body-at-a-dot": (
        b"RETR",
        b"+OK\r\nfirst line\r\n.",
        lambda client: client.retr(1, Sink()),
        "in a multi-line reply",
    ),
    "iter_retr": (
        b"RETR",
        b"+OK\r\n" + PIECE,
        lambda client: total(client.iter_retr(1)),
        "in a multi-line reply",
    ),
    "listing": (b"LIST", b"+OK\r\n1 100\r\n2 2", Client.list, "in a multi-line reply"),
    "batch": (
        b"RETR",
        b"+OK 6 octets\r\nfast\r\n.\r\n",
        lambda client: drain(client.retr_many([1, 2])),
        "before replying",
    ),
    "sasl": (
        b"AUTH",
        b"+ ",
        lambda client: client.login("u", "p", method="PLAIN", allow_cleartext=True),
        "before replying",
    ),
}


@pytest.mark.parametrize("where", HANGUPS)
async def test_a_server_that_hangs_up_mid_reply(
    hostile: Hostile, connect: Connect, where: str
) -> None:
    keyword, sent, action, error = HANGUPS[where]

    def script(peer: Peer) -> None:
        if keyword is not None:
            peer.serve_until(keyword, capa=b"+OK\r\nUSER\r\nSASL PLAIN\r\nPIPELINING\r\n.\r\n")
        peer.send(sent)  # and hang up

    tls: TLSMode = "implicit" if where in ("body", "listing") else "none"
    server = hostile(script, tls=tls, greeting=None if keyword is None else b"+OK\r\n")
    log: list[str] = []
    client = connect(server.port, tls, log=log.append)
    if keyword is not None:
        with anyio.fail_after(LIMIT):
            await client.open()
            if keyword != b"AUTH":
                await login(client)
    with anyio.fail_after(LIMIT), pytest.raises(p.RemoteProtocolError, match=error):
        await action(client)
    await assert_closed(client)
    assert "C: QUIT" not in log


# -- 6. broken TLS ------------------------------------------------------------------------


def until_hangup(peer: Peer) -> None:
    """Say nothing; return when the client hangs up (or the test stops)."""
    while not peer.server.stopped.is_set():
        try:
            if not peer.sock.recv(65536):
                return
        except TimeoutError:  # noqa: PERF203 - a short timeout, to notice `stopped`
            continue
        except OSError:
            return


CAPA_STLS = b"+OK\r\nUSER\r\nSTLS\r\n.\r\n"


def stls_then(reply: bytes, after: Callable[[Peer], None]) -> Callable[[Peer], None]:
    def script(peer: Peer) -> None:
        peer.serve_until(b"STLS", capa=CAPA_STLS)
        peer.send(reply)
        after(peer)

    return script


def wrap(peer: Peer) -> None:
    """Become the TLS server (as after a proper +OK to STLS), then serve."""
    peer.sock.settimeout(5)
    peer.sock = peer.server.tls_context().wrap_socket(peer.sock, server_side=True)
    peer.sock.settimeout(0.1)
    peer.finish()


def plaintext_reply(peer: Peer) -> None:
    """Answer the ClientHello in plain text, as a server that never started TLS."""
    with contextlib.suppress(OSError):
        peer.sock.recv(4096)
    peer.send(b"-ERR what is this?\r\n")
    until_hangup(peer)


def read_a_little(peer: Peer) -> None:
    """Take the start of the ClientHello, then hang up."""
    with contextlib.suppress(OSError):
        peer.sock.recv(10)


BAD_TLS: dict[str, tuple[TLSMode, Callable[[Peer], None], bytes | None, type[BaseException]]] = {
    # name: (client mode, script, greeting, error)
    "implicit-plain-server": ("implicit", plaintext_reply, b"+OK plain\r\n", ssl.SSLError),
    "implicit-hangup": ("implicit", read_a_little, None, ssl.SSLError),
    "implicit-silent": ("implicit", until_hangup, None, TimeoutError),
    "stls-refused": (
        "starttls",
        stls_then(b"-ERR [SYS/TEMP] not now\r\n", until_hangup),
        b"+OK\r\n",
        p.TemporaryError,
    ),
    "stls-not-offered": ("starttls", lambda peer: peer.finish(), b"+OK\r\n", p.TLSNotOffered),
    "stls-injected": (
        "starttls",
        stls_then(b"+OK begin TLS\r\n+OK injected\r\n", wrap),
        b"+OK\r\n",
        p.RemoteProtocolError,
    ),
    "stls-plain-server": (
        "starttls",
        stls_then(b"+OK begin TLS\r\n", plaintext_reply),
        b"+OK\r\n",
        ssl.SSLError,
    ),
    "stls-hangup": (
        "starttls",
        stls_then(b"+OK begin TLS\r\n", lambda peer: None),
        b"+OK\r\n",
        ssl.SSLError,
    ),
    "stls-silent": (
        "starttls",
        stls_then(b"+OK begin TLS\r\n", until_hangup),
        b"+OK\r\n",
        TimeoutError,
    ),
}


@pytest.mark.parametrize("case", BAD_TLS)
async def test_broken_tls_fails_the_connection(
    hostile: Hostile, connect: Connect, case: str
) -> None:
    mode, script, greeting, error = BAD_TLS[case]
    server = hostile(script, greeting=greeting)
    log: list[str] = []
    client = connect(server.port, mode, connect_timeout=0.25, log=log.append)
    clock = Clock()
    with anyio.fail_after(LIMIT), pytest.raises(error):
        await client.open()
    assert clock() < BOUND
    with pytest.raises(p.LocalProtocolError):  # closed, or never connected
        await client.noop()
    if mode == "starttls":
        assert not client.tls_active
    assert not any(line.startswith("C: USER") for line in log)
    assert await wait_for(server.finished, 5), "the client did not hang up"


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
async def test_a_certificate_from_an_unknown_authority_is_refused(
    hostile: Hostile, connect: Connect, tls: TLSMode
) -> None:
    strangers = Certificates()  # another CA, which the client does not trust
    server = hostile(lambda peer: peer.finish(), tls=tls, certs=strangers)
    client = connect(server.port, tls)
    with anyio.fail_after(LIMIT), pytest.raises(ssl.SSLCertVerificationError):
        await client.open()
    assert await wait_for(server.finished, 5)
    assert server.peer is None or b"USER" not in b" ".join(server.peer.lines)


# -- 7. listings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keyword", "call"),
    [(b"LIST", Client.list), (b"UIDL", Client.uidl), (b"LANG", Client.lang)],
)
async def test_a_listing_longer_than_the_limit_closes(
    hostile: Hostile, opened: Opened, keyword: bytes, call: Callable[[Client], Awaitable[Any]]
) -> None:
    def script(peer: Peer) -> None:
        peer.serve_until(keyword)
        peer.send(b"+OK\r\n")
        peer.stream(b"1 abcdef\r\n" * 1000)  # never the final "."

    server = hostile(script)
    client = await opened(server, "none", max_listing_size=16 * 1024, read_size=4096)
    with anyio.fail_after(LIMIT), pytest.raises(p.RemoteProtocolError, match="longer than 16384"):
        await call(client)
    await assert_closed(client)
    assert await wait_for(server.finished, 5)  # the client hung up


ENTRIES = 100_000


@pytest.mark.parametrize("kind", ["list", "uidl"])
async def test_a_large_listing_is_parsed_as_it_arrives_into_a_compact_mapping(
    hostile: Hostile, opened: Opened, kind: str
) -> None:
    numbers = range(1, ENTRIES + 1)
    if kind == "list":
        values: list[Any] = [1000 + n % 5000 for n in numbers]
        body = b"".join(b"%d %d\r\n" % entry for entry in zip(numbers, values, strict=True))
    else:
        values = [f"{n:08X}{n * 7919 % 65536:08X}" for n in numbers]
        body = b"".join(
            b"%d %s\r\n" % (n, v.encode()) for n, v in zip(numbers, values, strict=True)
        )

    def script(peer: Peer) -> None:
        peer.serve_until(b"LIST", b"UIDL")
        peer.send(b"+OK\r\n" + body + b".\r\n")
        peer.finish()

    client = await opened(hostile(script), "none")
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        with anyio.fail_after(LIMIT):
            result = await (client.list() if kind == "list" else client.uidl())
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # See the blocking twin: a compact mapping, and a peak of a read's worth of tokens.
    assert kept - before < ENTRIES * (9 if kind == "list" else 22) + (1 << 20)
    assert peak - before < 8 << 20
    assert isinstance(result, p.MessageSizes if kind == "list" else p.UniqueIds)
    expected: object = dict(zip(numbers, values, strict=True))
    assert result == expected
    await client.quit()


@pytest.mark.parametrize(
    ("reply", "call"),
    [
        (b"+OK lots\r\n", Client.stat),
        (b"+OK 1" + b"9" * 30 + b" 5\r\n", Client.stat),
        (b"+OK\r\n", lambda client: client.list(1)),
        (b"+OK 1\r\n", lambda client: client.uidl(1)),
        (b"+OK\r\nfoo bar\r\n.\r\n", Client.list),
        (b"+OK\r\n1 2\r\n1 3\r\n.\r\n", Client.list),
    ],
    ids=["stat-words", "stat-huge", "list-one", "uidl-one", "list-words", "list-twice"],
)
async def test_a_malformed_reply_closes_the_connection(
    hostile: Hostile, opened: Opened, reply: bytes, call: Callable[[Client], Awaitable[Any]]
) -> None:
    def script(peer: Peer) -> None:
        peer.serve_until(b"STAT", b"LIST", b"UIDL")
        peer.send(reply)
        peer.finish()

    server = hostile(script)
    client = await opened(server, "none")
    with pytest.raises(p.RemoteProtocolError):
        await call(client)
    await assert_closed(client)
    assert b"QUIT" not in await commands(server)


# -- 8. pipelining and abandoned iterators -----------------------------------------------


def mailbox(messages: dict[int, bytes], capa: bytes = CAPA) -> Callable[[Peer], None]:
    """A well-behaved server for `messages`; records whether each RETR came alone."""

    def script(peer: Peer) -> None:
        while True:
            line = peer.serve_until(b"RETR", b"LIST", b"DELE", capa=capa)
            keyword, _, rest = line.partition(b" ")
            if keyword == b"LIST":
                listing = b"".join(b"%d %d\r\n" % (n, len(m)) for n, m in messages.items())
                peer.send(b"+OK\r\n" + listing + b".\r\n")
            elif keyword == b"DELE":
                peer.send(b"+OK\r\n")
            elif int(rest) in messages:
                peer.send(b"+OK\r\n" + messages[int(rest)] + b".\r\n")
            else:
                peer.send(b"-ERR no such message\r\n")

    return script


MESSAGES = {
    1: b"Subject: one\r\n\r\n" + b"line of the first message\r\n" * 1000,
    2: b"Subject: two\r\n\r\nhello\r\n",
}


async def test_without_pipelining_a_batch_goes_one_at_a_time(
    hostile: Hostile, opened: Opened
) -> None:
    log: list[str] = []
    client = await opened(
        hostile(mailbox(MESSAGES, capa=b"+OK\r\nUSER\r\nUIDL\r\n.\r\n")), "none", log=log.append
    )
    assert await drain(client.retr_many([2, 1, 2])) == [
        (2, MESSAGES[2]),
        (1, MESSAGES[1]),
        (2, MESSAGES[2]),
    ]
    sent = [line for line in log if line.startswith(("C: RETR", "S: +OK"))][-6:]
    assert [line[:6] for line in sent] == ["C: RET", "S: +OK"] * 3
    await client.quit()


async def test_the_commands_in_flight_are_bounded_in_octets(
    hostile: Hostile, opened: Opened
) -> None:
    lines: list[str] = []
    server = hostile(mailbox(MESSAGES))
    async with await opened(server, "none", pipeline_window=1_000_000, log=lines.append) as client:
        await client.capa()
        lines.clear()
        with anyio.fail_after(LIMIT):
            await client.dele_many(range(1, 3001))
    in_flight: deque[int] = deque()  # the octets of each command not answered yet
    octets = most_octets = most_commands = 0
    for line in lines:
        if line.startswith("C: DELE"):
            in_flight.append(len(line) - len("C: ") + len("\r\n"))
            octets += in_flight[-1]
            most_octets = max(most_octets, octets)
            most_commands = max(most_commands, len(in_flight))
        elif line.startswith(("S: +OK", "S: -ERR")) and in_flight:
            octets -= in_flight.popleft()
    assert not in_flight
    assert most_commands > 500  # the window was used
    assert most_octets <= MAX_PIPELINE_OCTETS + 255  # one command line (RFC 2449) over


def stalled_body(release: threading.Event) -> Callable[[Peer], None]:
    """RETR 1 sends part of the message, then waits for `release` before the rest."""
    body = MESSAGES[1]

    def script(peer: Peer) -> None:
        while True:
            line = peer.serve_until(b"RETR")
            number = int(line.split()[1])
            if number == 1:
                peer.send(b"+OK\r\n" + body[:100])
                if not release.wait(5):
                    return
                peer.send(body[100:] + b".\r\n")
            else:
                peer.send(b"+OK\r\n" + MESSAGES[number] + b".\r\n")

    return script


@pytest.mark.parametrize("how", ["iter_retr", "retr_many"])
async def test_an_abandoned_iterator_is_read_by_the_next_command(
    hostile: Hostile, opened: Opened, how: str
) -> None:
    release = threading.Event()
    server = hostile(stalled_body(release))
    async with await opened(server, "none") as client:
        clock = Clock()
        if how == "iter_retr":
            async with contextlib.aclosing(client.iter_retr(1)) as chunks:
                async for _ in chunks:
                    break
        else:
            async with contextlib.aclosing(client.retr_many([2, 1, 2])) as messages:
                async for number, message in messages:
                    assert (number, message) == (2, MESSAGES[2])
                    break
        assert clock() < 1  # the rest was not waited for
        release.set()
        with anyio.fail_after(LIMIT):
            assert await client.retr(2) == MESSAGES[2]  # it reads and discards the rest first
            assert await client.stat() == (1, 100)


@pytest.mark.parametrize("how", ["iter_retr", "retr_many"])
async def test_an_exception_in_the_loop_closes_without_reading_the_rest(
    hostile: Hostile, opened: Opened, how: str
) -> None:
    release = threading.Event()
    server = hostile(stalled_body(release))
    client = await opened(server, "none")
    clock = Clock()

    async def consume() -> None:
        async with client:
            iterator = client.iter_retr(1) if how == "iter_retr" else client.retr_many([2, 1])
            async with contextlib.aclosing(iterator) as items:
                async for _ in items:
                    raise RuntimeError("the consumer failed")

    with pytest.raises(RuntimeError, match="the consumer failed"):
        await consume()
    assert clock() < 1
    await assert_closed(client)
    release.set()
    assert b"QUIT" not in await commands(server)


# -- 9. SASL -------------------------------------------------------------------------------

CAPA_SCRAM = b"+OK\r\nSASL SCRAM-SHA-256\r\n.\r\n"


def scram_server(challenge: bytes, after_cancel: bytes) -> Callable[[Peer], None]:
    def script(peer: Peer) -> None:
        peer.serve_until(b"AUTH", capa=CAPA_SCRAM)
        peer.send(challenge)
        if peer.readline() == b"*":
            peer.send(after_cancel)
        peer.serve_until(capa=CAPA_SCRAM)

    return script


@pytest.mark.parametrize(
    ("challenge", "reason"),
    [
        (
            b"+ " + base64.b64encode(b"r=not-our-nonce,s=QSXCR+Q6sek8bf92,i=4096") + b"\r\n",
            "nonce",
        ),
        (b"+ !!!not base64!!!\r\n", "base64"),
    ],
    ids=["nonce", "base64"],
)
async def test_an_invalid_challenge_raises_the_sasl_error(
    hostile: Hostile, opened: Opened, challenge: bytes, reason: str
) -> None:
    server = hostile(scram_server(challenge, b"-ERR [AUTH] cancelled\r\n"))
    async with await opened(server, "none", login=False) as client:
        with pytest.raises(p.SASLError, match=reason) as info:
            await client.login("alice", "secret")
        refused = info.value.__cause__
        assert isinstance(refused, p.AuthenticationError)
        assert refused.text == "cancelled"
        assert await client.capa() is not None  # the exchange is over: still in step
    assert (await commands(server))[-1] == b"QUIT"


async def test_a_protocol_error_in_the_sasl_exchange_closes(
    hostile: Hostile, opened: Opened
) -> None:
    # A second challenge after the client cancelled, where -ERR was due.
    server = hostile(scram_server(b"+ !!!\r\n", b"+ again\r\n"))
    client = await opened(server, "none", login=False)
    with pytest.raises(p.ProtocolError):
        await client.login("alice", "secret")
    await assert_closed(client)


async def test_a_stray_line_after_a_sasl_challenge_is_caught(
    hostile: Hostile, opened: Opened
) -> None:
    # A "+OK" right behind the challenge would be taken as the answer to our response.
    def script(peer: Peer) -> None:
        peer.serve_until(b"AUTH", capa=b"+OK\r\nSASL LOGIN\r\n.\r\n")
        peer.send(b"+ VXNlcm5hbWU6\r\n+OK you are in\r\n")
        peer.finish()

    server = hostile(script)
    client = await opened(server, "none", login=False)
    with pytest.raises(p.RemoteProtocolError, match=r"no reply was owed|unexpected"):
        await client.login("alice", "secret", method="LOGIN", allow_cleartext=True)
    await assert_closed(client)


# -- 10. a refused connection ----------------------------------------------------------------


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return int(sock.getsockname()[1])


async def test_a_refused_connection_is_an_oserror(connect: Connect, closed_port: int) -> None:
    client = connect(closed_port)
    with anyio.fail_after(LIMIT), pytest.raises(OSError):
        await client.open()
    with pytest.raises(p.LocalProtocolError, match="not connected"):
        await client.noop()
