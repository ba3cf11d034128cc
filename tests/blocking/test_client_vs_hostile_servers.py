"""pop3_blocking.Client against hostile servers, in every TLS mode that applies.

Slow replies (the low-speed guard and the deadline), endless bodies (the
server's own sizes, ``max_size`` and ``max_message_size``), bytes no command
asked for, and listings too large to hold as dicts. Every case is bounded in
time (and, where memory is the point, in memory) also on a client without the
bound, so that it fails instead of hanging.
"""

from __future__ import annotations

import threading
import time
import tracemalloc
from array import array
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, cast

import pytest

import pop3core as p
from pop3_blocking._client import Client, SizeLimitExceeded
from tests.hostile import TLS_MODES, Clock, HostileServer, Peer, TLSMode
from tests.server_doubles import Certificates

Hostile = Callable[..., HostileServer]
Connect = Callable[..., Client]

# A drip one octet just inside each read timeout: the timeout alone never fires.
TIMEOUT = 0.4
DRIP = 0.3
GUARD = (100, 0.5)  # octets, seconds: small, so that a test trips it soon
BOUND = 3.0  # seconds any hostile case may take on the fixed client


@pytest.fixture
def connect(certs: Certificates) -> Iterator[Connect]:
    """Opens clients to a `HostileServer` in its TLS mode (and logs in); all closed afterwards.

    ``connect(server, tls, login=True, timeout=5.0, **client_options)``.
    """
    clients: list[Client] = []

    def open_client(
        server: HostileServer, tls: TLSMode, *, login: bool = True, **options: Any
    ) -> Client:
        options.setdefault("timeout", 5.0)
        client = Client(
            "127.0.0.1",
            server.port,
            tls=tls,
            ssl_context=certs.client_context(),
            server_hostname="localhost",
            connect_timeout=5.0,
            **options,
        )
        clients.append(client)
        if login:
            client.login("u", "p", method="USER", allow_cleartext=True)
        return client

    yield open_client
    for client in clients:
        client.close()


class Sink:
    """A file that counts what is written, and fails past `bound` octets (a client
    without a bound would read on)."""

    def __init__(self, bound: int = 8 << 20) -> None:
        self.octets = 0
        self.bound = bound

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.octets += len(data)
        if self.octets > self.bound:
            raise AssertionError(f"the client read {self.octets} octets and went on")
        return len(data)

    def close(self) -> None:
        pass


def as_file(sink: Sink) -> BinaryIO:
    return cast(BinaryIO, sink)


def assert_closed(client: Client) -> None:
    with pytest.raises(p.LocalProtocolError, match="closed"):
        client.noop()


def commands(server: HostileServer) -> list[bytes]:
    """The command lines the server received, once the session is over."""
    assert server.finished.wait(5), "the session did not end"
    assert server.peer is not None
    return server.peer.lines


# -- 1. the low-speed guard and the deadline -----------------------------------------


@pytest.mark.parametrize("tls", ["none", "implicit"])  # STLS needs the greeting first
def test_a_dripped_greeting_times_out(hostile: Hostile, connect: Connect, tls: TLSMode) -> None:
    server = hostile(lambda peer: peer.drip(b"+OK slow\r\n", DRIP), tls=tls, greeting=None)
    clock = Clock()
    with pytest.raises(p.ReplyTimeout, match=r"fewer than 100 octets in 0\.5 seconds"):
        connect(server, tls, login=False, timeout=TIMEOUT, low_speed=GUARD)
    assert clock() < BOUND


@pytest.mark.parametrize("tls", TLS_MODES)
def test_a_body_dripped_mid_retr_times_out_and_closes(
    hostile: Hostile, connect: Connect, tls: TLSMode
) -> None:
    def script(peer: Peer) -> None:
        peer.serve_until(b"RETR")
        peer.send(b"+OK 16 octets\r\n")
        peer.drip(b"a slow body\r\n.\r\n", DRIP)
        peer.finish()

    server = hostile(script, tls=tls)
    client = connect(server, tls, timeout=TIMEOUT, low_speed=GUARD)
    clock = Clock()
    with pytest.raises(p.ReplyTimeout, match="fewer than 100 octets"):
        client.retr(1)
    assert clock() < BOUND
    assert_closed(client)
    assert b"QUIT" not in commands(server)


@pytest.mark.parametrize("tls", TLS_MODES)
def test_each_reply_of_a_pipelined_batch_is_guarded(
    hostile: Hostile, connect: Connect, tls: TLSMode
) -> None:
    def script(peer: Peer) -> None:
        peer.serve_until(b"RETR")
        peer.send(b"+OK 6 octets\r\nfast\r\n.\r\n")
        peer.readline()
        peer.send(b"+OK 16 octets\r\n")
        peer.drip(b"a slow body\r\n.\r\n", DRIP)
        peer.finish()

    client = connect(hostile(script, tls=tls), tls, timeout=TIMEOUT, low_speed=GUARD)
    clock = Clock()
    messages = client.retr_many([1, 2])
    assert next(messages) == (1, b"fast\r\n")
    with pytest.raises(p.ReplyTimeout, match="fewer than 100 octets"):
        next(messages)
    assert clock() < BOUND
    assert_closed(client)


@pytest.mark.parametrize("tls", TLS_MODES)
def test_the_guard_times_each_reply_from_its_first_octet(
    hostile: Hostile, connect: Connect, tls: TLSMode
) -> None:
    # A server that thinks before answering, and a caller that pauses between
    # commands, longer than the guard's window: neither is a slow reply.
    def script(peer: Peer) -> None:
        peer.serve_until(b"RETR")
        time.sleep(GUARD[1] * 1.6)
        peer.send(b"+OK 11 octets\r\nsome body\r\n.\r\n")
        peer.finish()

    client = connect(hostile(script, tls=tls), tls, timeout=2.0, low_speed=GUARD)
    client.noop()
    time.sleep(GUARD[1] * 1.6)
    assert client.stat() == (1, 100)
    assert client.retr(1) == b"some body\r\n"
    client.quit()


@pytest.mark.parametrize("tls", TLS_MODES)
def test_the_deadline_bounds_a_reply_that_keeps_coming(
    hostile: Hostile, connect: Connect, tls: TLSMode
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

    client = connect(hostile(script, tls=tls), tls, timeout=TIMEOUT, deadline=1.0)
    clock = Clock()
    with pytest.raises(p.ReplyTimeout, match="no complete reply within 1 seconds"):
        client.retr(1, as_file(Sink()))
    assert 0.9 < clock() < BOUND
    assert_closed(client)


@pytest.mark.parametrize("tls", TLS_MODES)
def test_the_deadline_is_per_reply_in_a_pipelined_batch(
    hostile: Hostile, connect: Connect, tls: TLSMode
) -> None:
    def script(peer: Peer) -> None:
        line = peer.serve_until(b"RETR")
        for count in range(3):
            if count:
                line = peer.readline()  # already sent: the batch is pipelined
            time.sleep(0.3)
            peer.send(b"+OK 4 octets\r\n" + line[5:] + b"\r\n.\r\n")
        peer.finish()

    client = connect(hostile(script, tls=tls), tls, deadline=0.6)
    clock = Clock()
    assert list(client.retr_many([11, 12, 13])) == [(n, b"%d\r\n" % n) for n in (11, 12, 13)]
    assert clock() > 0.9  # longer than the deadline in all, but no reply was late
    client.quit()


@pytest.mark.parametrize("tls", TLS_MODES)
def test_a_silent_server_is_an_ordinary_read_timeout(
    hostile: Hostile, connect: Connect, tls: TLSMode
) -> None:
    stop = threading.Event()

    def script(peer: Peer) -> None:
        peer.serve_until(b"STAT")
        stop.wait(5)

    client = connect(hostile(script, tls=tls), tls, timeout=TIMEOUT, low_speed=GUARD)
    with pytest.raises(TimeoutError) as caught:
        client.stat()
    stop.set()
    assert not isinstance(caught.value, p.ReplyTimeout)
    assert_closed(client)


def test_the_guard_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="low_speed"):
        Client("127.0.0.1", 1, tls="none", low_speed=(0, 1.0))
    with pytest.raises(ValueError, match="deadline"):
        Client("127.0.0.1", 1, tls="none", deadline=0)
    with pytest.raises(ValueError, match="max_message_size"):
        Client("127.0.0.1", 1, tls="none", max_message_size=-1)


# -- 2. endless bodies ----------------------------------------------------------------

STREAM = 32 << 20  # "endless": far past any bound here, then a terminator
PIECE = b"".join(b"%06d " % i + b"x" * 56 + b"\r\n" for i in range(1024))  # 64 KiB of lines
LISTED = 1000  # the size LIST gives
SMALL_CEILING = 256 * 1024


def endless(status: bytes, *, listing: bytes | None = None) -> Callable[[Peer], None]:
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
            peer.send(PIECE)
            sent += len(PIECE)
        peer.send(b".\r\n")
        peer.finish()

    return script


FETCHES: dict[str, Callable[[Client], object]] = {
    "retr": lambda client: client.retr(1),
    "retr-file": lambda client: client.retr(1, as_file(Sink())),
    "iter_retr": lambda client: sum(map(len, client.iter_retr(1))),
    "top": lambda client: client.top(1, 10),
    "iter_top": lambda client: sum(map(len, client.iter_top(1, 10))),
    "retr_many": lambda client: list(client.retr_many([1])),
    "retr_many_to": lambda client: client.retr_many_to([1], lambda n: as_file(Sink())),
}


@pytest.mark.parametrize("tls", TLS_MODES)
def test_an_endless_retr_is_bounded_by_its_announced_size(
    hostile: Hostile, connect: Connect, tls: TLSMode, peak_memory: Callable[[], int]
) -> None:
    server = hostile(endless(b"+OK 1000 octets\r\n"), tls=tls)
    client = connect(server, tls)
    clock = Clock()
    with pytest.raises(p.RemoteProtocolError, match="far past the size the server announced"):
        client.retr(1)
    assert clock() < BOUND
    assert peak_memory() < 4 << 20
    assert_closed(client)
    assert b"QUIT" not in commands(server)


@pytest.mark.parametrize("listed", ["LIST", "LIST n"])
@pytest.mark.parametrize("fetch", FETCHES)
@pytest.mark.parametrize("tls", TLS_MODES)
def test_an_endless_body_is_bounded_by_the_size_list_gave(
    *,
    hostile: Hostile,
    connect: Connect,
    tls: TLSMode,
    fetch: str,
    listed: str,
    peak_memory: Callable[[], int],
) -> None:
    status = b"+OK message follows\r\n"  # no size: only LIST gave one
    server = hostile(endless(status, listing=b"1 %d\r\n" % LISTED), tls=tls)
    client = connect(server, tls)
    assert (client.list() if listed == "LIST" else client.list(1)) == (
        {1: LISTED} if listed == "LIST" else LISTED
    )
    clock = Clock()
    with pytest.raises(p.RemoteProtocolError, match="runs past the size LIST gave"):
        FETCHES[fetch](client)
    assert clock() < BOUND
    assert peak_memory() < 4 << 20
    assert_closed(client)
    assert b"QUIT" not in commands(server)


@pytest.mark.parametrize("fetch", FETCHES)
@pytest.mark.parametrize("tls", TLS_MODES)
def test_an_endless_body_of_unknown_size_is_bounded_by_the_ceiling(
    hostile: Hostile,
    connect: Connect,
    tls: TLSMode,
    fetch: str,
    peak_memory: Callable[[], int],
) -> None:
    server = hostile(endless(b"+OK\r\n"), tls=tls)
    client = connect(server, tls, max_message_size=SMALL_CEILING)
    clock = Clock()
    with pytest.raises(SizeLimitExceeded, match=f"longer than {SMALL_CEILING} octets") as caught:
        FETCHES[fetch](client)
    assert (caught.value.which, caught.value.limit) == (1, SMALL_CEILING)
    assert clock() < BOUND
    assert peak_memory() < 4 << 20
    assert_closed(client)
    assert b"QUIT" not in commands(server)


MESSAGE = b"Subject: big\r\n\r\n" + b"x" * 1022 + b"\r\n" * 1 + b"y" * 1022 + b"\r\n"
BIG = MESSAGE * 100  # about 200 KB
MAX_SIZE = 64 * 1024

LIMITED: dict[str, Callable[[Client, int], object]] = {
    "retr": lambda client, size: client.retr(1, max_size=size),
    "retr-file": lambda client, size: client.retr(1, as_file(Sink()), max_size=size),
    "iter_retr": lambda client, size: b"".join(client.iter_retr(1, max_size=size)),
    "top": lambda client, size: client.top(1, 10, max_size=size),
    "top-file": lambda client, size: client.top(1, 10, as_file(Sink()), max_size=size),
    "iter_top": lambda client, size: b"".join(client.iter_top(1, 10, max_size=size)),
    "retr_many": lambda client, size: list(client.retr_many([1], max_size=size)),
    "retr_many_to": lambda client, size: client.retr_many_to(
        [1], lambda n: as_file(Sink()), max_size=size
    ),
}


def honest(message: bytes) -> Callable[[Peer], None]:
    """A server that sends `message` (announcing its size) for RETR 1 and TOP 1."""

    def script(peer: Peer) -> None:
        while True:
            peer.serve_until(b"RETR", b"TOP")
            peer.send(b"+OK %d octets\r\n" % len(message) + message + b".\r\n")

    return script


@pytest.mark.parametrize("call", LIMITED)
@pytest.mark.parametrize("tls", TLS_MODES)
def test_max_size_bounds_a_message_and_closes_without_quit(
    hostile: Hostile, connect: Connect, tls: TLSMode, call: str
) -> None:
    server = hostile(honest(BIG), tls=tls)
    with (
        pytest.raises(SizeLimitExceeded, match=f"message 1 is longer than {MAX_SIZE} octets"),
        connect(server, tls) as client,
    ):
        LIMITED[call](client, MAX_SIZE)
    assert_closed(client)
    assert b"QUIT" not in commands(server)


@pytest.mark.parametrize("call", ["retr", "iter_top", "retr_many_to"])
def test_a_message_of_exactly_max_size_is_accepted(
    hostile: Hostile, connect: Connect, call: str
) -> None:
    with connect(hostile(honest(BIG)), "none") as client:
        LIMITED[call](client, len(BIG))
        with pytest.raises(SizeLimitExceeded):
            LIMITED[call](client, len(BIG) - 1)


def test_max_size_must_not_be_negative(hostile: Hostile, connect: Connect) -> None:
    server = hostile(honest(BIG))
    with connect(server, "none") as client:
        for call in LIMITED.values():
            with pytest.raises(ValueError, match="max_size"):
                call(client, -1)
        assert client.retr(1, max_size=len(BIG)) == BIG  # nothing was sent: still in step
    assert b"QUIT" in commands(server)


# -- 3. bytes no command asked for ---------------------------------------------------


@pytest.mark.parametrize("tls", TLS_MODES)
def test_a_stray_line_in_the_same_segment_ends_the_session(
    hostile: Hostile, connect: Connect, tls: TLSMode
) -> None:
    def script(peer: Peer) -> None:
        peer.serve_until(b"NOOP")
        peer.send(b"+OK\r\n+OK 0 0\r\n")
        peer.finish()

    server = hostile(script, tls=tls)
    client = connect(server, tls)
    client.noop()
    with pytest.raises(p.RemoteProtocolError, match=r"no reply was owed: b'\+OK 0 0"):
        client.stat()  # a client reading out of step says (0, 0)
    assert_closed(client)
    assert b"STAT" not in commands(server)


@pytest.mark.parametrize("tls", TLS_MODES)
def test_a_stray_line_sent_later_ends_the_session(
    hostile: Hostile, connect: Connect, tls: TLSMode
) -> None:
    sent = threading.Event()

    def script(peer: Peer) -> None:
        peer.serve_until(b"NOOP")
        peer.send(b"+OK\r\n")
        time.sleep(0.5)
        peer.send(b"+OK 0 0\r\n")
        sent.set()
        peer.finish()

    server = hostile(script, tls=tls)
    client = connect(server, tls)
    client.noop()
    assert sent.wait(5)
    time.sleep(0.1)  # loopback delivers at once; leave it a moment all the same
    with pytest.raises(p.RemoteProtocolError, match="no reply was owed"):
        client.stat()
    assert_closed(client)
    assert b"STAT" not in commands(server)


@pytest.mark.parametrize("tls", TLS_MODES)
def test_a_stray_line_before_a_pipelined_batch_is_caught(
    hostile: Hostile, connect: Connect, tls: TLSMode
) -> None:
    def script(peer: Peer) -> None:
        peer.serve_until(b"NOOP")
        peer.send(b"+OK\r\n+OK extra\r\n")
        peer.finish()

    server = hostile(script, tls=tls)
    client = connect(server, tls)
    client.noop()
    with pytest.raises(p.RemoteProtocolError, match="no reply was owed"):
        client.dele_many([1, 2])
    assert_closed(client)
    assert not {b"DELE 1", b"QUIT"} & set(commands(server))


@pytest.mark.parametrize("tls", TLS_MODES)
def test_a_stray_line_before_quit_deletes_nothing(
    hostile: Hostile, connect: Connect, tls: TLSMode
) -> None:
    def script(peer: Peer) -> None:
        peer.serve_until(b"DELE")
        peer.send(b"+OK marked\r\n+OK 0 0\r\n")
        peer.finish()

    server = hostile(script, tls=tls)
    client = connect(server, tls)
    client.dele(1)
    with pytest.raises(p.RemoteProtocolError, match="no reply was owed"):
        client.quit()  # as leaving a ``with`` block normally does
    assert b"QUIT" not in commands(server)


@pytest.mark.parametrize("tls", TLS_MODES)
def test_an_unstuffed_lone_dot_line_is_caught_before_the_next_command(
    hostile: Hostile, connect: Connect, tls: TLSMode
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
    client = connect(server, tls)
    assert client.list() == {1: 300}

    def fetch_and_delete() -> None:
        client.retr(1, as_file(Sink()))  # the body seems to end at once...
        client.dele(1)

    # ...and the rest, here already, fails the RETR itself (were it late, the DELE).
    with pytest.raises(p.RemoteProtocolError, match="no reply was owed: b'Subject: x"):
        fetch_and_delete()
    assert_closed(client)
    assert b"DELE 1" not in commands(server)


@pytest.mark.parametrize("tls", TLS_MODES)
def test_the_rest_of_a_body_that_comes_late_is_caught_at_the_next_command(
    hostile: Hostile, connect: Connect, tls: TLSMode
) -> None:
    def script(peer: Peer) -> None:
        peer.serve_until(b"RETR")
        peer.send(b"+OK 300 octets\r\n.\r\n")
        time.sleep(0.3)  # after the client has taken the reply as complete
        peer.send(b"Subject: x\r\n\r\nbody\r\n.\r\n")
        peer.finish()

    server = hostile(script, tls=tls)
    client = connect(server, tls)
    assert client.retr(1) == b""
    time.sleep(0.6)
    with pytest.raises(p.RemoteProtocolError, match="no reply was owed: b'Subject: x"):
        client.dele(1)
    assert b"DELE 1" not in commands(server)


@pytest.mark.parametrize("tls", TLS_MODES)
def test_a_server_that_hung_up_gets_no_command(
    hostile: Hostile, connect: Connect, tls: TLSMode
) -> None:
    def script(peer: Peer) -> None:
        peer.serve_until(b"NOOP")
        peer.send(b"+OK\r\n")  # and hang up

    log: list[str] = []
    server = hostile(script, tls=tls)
    client = connect(server, tls, log=log.append)
    client.noop()
    assert server.finished.wait(5)
    time.sleep(0.1)
    with pytest.raises(p.RemoteProtocolError, match=r"^the server closed the connection$"):
        client.stat()
    assert "C: STAT" not in log
    assert_closed(client)


# -- 4. listings too large to hold as dicts --------------------------------------------

ENTRIES = 100_000


def listing_server(body: bytes) -> Callable[[Peer], None]:
    def script(peer: Peer) -> None:
        while True:
            peer.serve_until(b"LIST", b"UIDL")
            peer.send(b"+OK\r\n" + body + b".\r\n")

    return script


@pytest.mark.parametrize("kind", ["list", "uidl"])
@pytest.mark.parametrize("tls", TLS_MODES)
def test_a_large_listing_is_parsed_as_it_arrives_into_a_compact_mapping(
    hostile: Hostile, connect: Connect, tls: TLSMode, kind: str
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
    client = connect(hostile(listing_server(body), tls=tls), tls)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()  # if it was tracing already
        before = tracemalloc.get_traced_memory()[0]
        result = client.list() if kind == "list" else client.uidl()
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Kept: 4 octets a number, and 4 a size or 16 for the uid (all 16 long: no
    # offsets), arrays' slack and what the engine's receive buffer keeps. Dicts
    # kept 11 MB (LIST) and 15 MB (UIDL) here, and parsing the joined body took
    # as much again; now the peak is a read's worth of tokens, whatever the size
    # of the listing.
    assert kept - before < ENTRIES * (9 if kind == "list" else 22) + (512 << 10)
    assert peak - before < 8 << 20
    assert isinstance(result, p.MessageSizes if kind == "list" else p.UniqueIds)
    expected = dict(zip(numbers, values, strict=True))
    assert result == expected
    assert list(result) == list(expected)
    assert result[1] == expected[1]
    assert result[ENTRIES] == expected[ENTRIES]
    assert 0 not in result
    assert ENTRIES + 1 not in result
    client.quit()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"3 30\r\n1 10\r\n7 70\r\n", {3: 30, 1: 10, 7: 70}),  # the server's order is kept
        (b"2 20\r\n4 40\r\n", {2: 20, 4: 40}),  # gaps: messages deleted in this session
        (b"1 5000000000\r\n2 1\r\n", {1: 5_000_000_000, 2: 1}),  # over 4 GiB
        (b"4294967297 1\r\n1 2\r\n", {4294967297: 1, 1: 2}),  # a number over 2**32
        (b"1 " + b"9" * 20 + b"\r\n", {1: 10**20 - 1}),  # over 2**64: still exact
        (b"1 120 octets\r\n\r\n2\t200\n", {1: 120, 2: 200}),  # free text, blank line, LF
    ],
)
def test_a_scan_listing_keeps_every_entry_in_any_split(
    body: bytes, expected: dict[int, int]
) -> None:
    for size in (1, 2, 3, 7, len(body)):
        parser = p.ListParser()
        for start in range(0, len(body), size):
            parser.feed(body[start : start + size])
        result = parser.finish()
        assert result == expected
        assert expected == result
        assert list(result.items()) == list(expected.items())
        assert list(result.values()) == list(expected.values())
        assert all(result[number] == size for number, size in expected.items())
        assert result.get(5) is None
        assert "1" not in result
        assert len(result) == len(expected)
        assert repr(result) == f"MessageSizes({expected!r})"


@pytest.mark.parametrize(
    "body",
    [
        b"1 10\r\n2 20\r\n1 30\r\n",  # a number twice, far apart
        b"2 20\r\n1 10\r\n2 30\r\n",  # ... out of order
        b"1 10\r\n0 20\r\n",
        b"0 10\r\n",
        b"1 10\r\n2\r\n",
        b"1 10\r\nx 20\r\n",
    ],
)
def test_a_malformed_scan_listing_is_refused_in_any_split(body: bytes) -> None:
    for size in (1, 4, len(body)):
        parser = p.ListParser()
        with pytest.raises(p.RemoteProtocolError):  # noqa: PT012
            for start in range(0, len(body), size):
                parser.feed(body[start : start + size])
            parser.finish()


def test_unique_ids_keep_their_octets_and_the_server_order() -> None:
    body = b"3 c\xff\r\n1 same\r\n2 same\r\n10 " + b"u" * 300 + b"\r\n"
    expected = {3: "c\udcff", 1: "same", 2: "same", 10: "u" * 300}
    for size in (1, 5, len(body)):
        parser = p.UidlParser()
        for start in range(0, len(body), size):
            parser.feed(body[start : start + size])
        result = parser.finish()
        assert result == expected
        assert list(result.items()) == list(expected.items())
        assert [result[n] for n in (1, 2, 3, 10)] == ["same", "same", "c\udcff", "u" * 300]
        assert 4 not in result


def test_a_dense_listing_is_looked_up_by_index() -> None:
    sizes = p.parse_list(b"".join(b"%d %d\r\n" % (n, n * 3) for n in range(5, 1005)))
    assert sizes[5] == 15
    assert sizes[1004] == 3012
    assert 4 not in sizes
    assert 1005 not in sizes
    assert sizes == {n: n * 3 for n in range(5, 1005)}
    assert array("I", sizes.values()) == array("I", range(15, 3015, 3))
