"""pop3_blocking over real loopback sockets, against stdlib poplib and a raw socket read.

Every figure comes from the same server (ours, threaded, an in-memory store; see
`_loopback`), in the same run. Each round opens a fresh session and logs in with
USER/PASS in its untimed setup; only the command is timed. Groups:

* ``lo-retr-<corpus>``: RETR of the `_harness` corpus (64 MiB; quick 8 MiB) by
  stdlib ``poplib.POP3.retr`` (``poplib``), the drop-in
  ``pop3_blocking.poplib.POP3.retr`` (``dropin-poplib``), ``Client.retr(1, file)``
  into a discarding writer (``client-stream``), ``Client.retr(1)`` returning
  bytes (``client-bytes``), and a plain socket that sends ``RETR 1`` and
  ``recv_into``'s one buffer until the terminator (``raw-socket``, the ceiling).
* ``lo-list-<N>``, ``lo-uidl-<N>``: ``Client.list()`` / ``.uidl()`` (dicts) against
  poplib's ``.list()`` / ``.uidl()`` then the caller's split-and-convert into the
  same dict (``poplib``), poplib's call alone (``poplib-unparsed``) and the raw read
  of the same reply (``raw-socket``: what the server and the kernel cost).
* ``lo-latency-<K>``: K small messages fetched through a proxy adding 5 ms each
  way: ``Client.retr_many`` (pipelined) against poplib's ``retr`` one at a time.

``test_memory_peak`` (not timed) streams a 1 GiB message (quick 128 MiB) from a
server process to a client process and records each one's peak RSS growth; see
`memory_peak`.
"""

from __future__ import annotations

import dataclasses
import io
import poplib
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, BinaryIO, Generic, TypeVar, cast

import pytest

import memory_peak
import pop3_blocking.poplib as dropin
from _harness import (
    POPLIB,
    POPLIB_UNPARSED,
    RAW_SOCKET,
    Corpus,
    Listing,
    Measure,
    MiB,
    Settings,
    SetupResult,
    add_goal,
    add_note,
    record_limit,
)
from _loopback import (
    HOST,
    LISTING_USER,
    PASSWORD,
    SMALL_USER,
    TIMEOUT,
    Loopback,
    RawSession,
    Sink,
    Spec,
    small_messages,
)
from pop3_blocking._client import Client

CORPORA = ("text", "attachment")
DROPIN = "dropin-poplib"
STREAM = "client-stream"
CLIENT_BYTES = "client-bytes"
CLIENT = "client"
PIPELINED = "client-pipelined"
RAW_BUFFER = 256 * 1024  # the raw reader's recv_into buffer (the client's read size)
DELAY = 0.005  # the proxy's latency, each way

S = TypeVar("S")


def small_count(settings: Settings) -> int:
    return 200 if settings.quick else 1000


def memory_size(settings: Settings) -> int:
    return 128 * MiB if settings.quick else 1024 * MiB


@pytest.fixture(scope="module")
def loopback(settings: Settings) -> Iterator[Loopback]:
    spec = Spec(settings.message_size, settings.listing_entries, small_count(settings), DELAY)
    with Loopback(spec) as server:
        add_note(
            f"loopback server ({server.mode}): pop3_blocking.Server on {HOST}, in-memory store; "
            f"latency proxy adds {DELAY * 1e3:.0f} ms each way"
        )
        yield server


# ---------------------------------------------------------------- sessions


class Sessions(Generic[S]):
    """A fresh logged-in session per round (in the untimed setup); the last one closed."""

    def __init__(self, opener: Callable[[], S], closer: Callable[[S], None]) -> None:
        self.opener, self.closer = opener, closer
        self.current: S | None = None

    def open(self) -> S:
        self.close()
        self.current = self.opener()
        return self.current

    def setup(self) -> SetupResult:
        return (self.open(),), {}

    def close(self) -> None:
        current, self.current = self.current, None
        if current is not None:
            self.closer(current)

    def __enter__(self) -> Sessions[S]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def poplib_opener(cls: type[poplib.POP3], port: int, user: str) -> Callable[[], poplib.POP3]:
    def opener() -> poplib.POP3:
        pop = cls(HOST, port, timeout=TIMEOUT)
        try:
            pop.user(user)
            pop.pass_(PASSWORD)
        except BaseException:
            pop.close()
            raise
        return pop

    return opener


def poplib_closer(pop: poplib.POP3) -> None:
    try:
        pop.quit()
    finally:
        pop.close()


def poplib_sessions(cls: type[poplib.POP3], port: int, user: str) -> Sessions[poplib.POP3]:
    return Sessions(poplib_opener(cls, port, user), poplib_closer)


def client_sessions(port: int, user: str) -> Sessions[Client]:
    def opener() -> Client:
        client = Client(HOST, port, tls="none", connect_timeout=TIMEOUT, timeout=TIMEOUT)
        try:
            client.login(user, PASSWORD, method="USER", allow_cleartext=True)
        except BaseException:
            client.close()
            raise
        return client

    return Sessions(opener, Client.quit)


def raw_sessions(port: int, user: str) -> Sessions[RawSession]:
    return Sessions(lambda: RawSession(port, user), RawSession.close)


def rounds_for_latency(measure: Measure) -> Measure:
    """1,000 round trips of 10 ms make a poplib round take 10 s: 3 rounds (quick 2)."""
    settings = measure.settings
    rounds = min(settings.rounds, 2 if settings.quick else 3)
    return Measure(
        measure.benchmark, dataclasses.replace(settings, rounds=rounds, warmup_rounds=0)
    )


# -------------------------------------------------------------------- RETR


def retr_group(name: str) -> str:
    group = f"lo-retr-{name}"
    add_goal(group, DROPIN, POPLIB, 3.0)
    add_goal(group, STREAM, POPLIB, 14.0)
    add_goal(group, STREAM, RAW_SOCKET, 0.35 if name == "text" else 0.75)
    return group


def poplib_retr(pop: poplib.POP3) -> tuple[bytes, list[bytes], int]:
    return pop.retr(1)


def check_poplib_retr(reply: tuple[bytes, list[bytes], int], corpus: Corpus) -> None:
    status, lines, octets = reply
    assert status.startswith(b"+OK")
    assert len(lines) == corpus.lines
    assert octets == len(corpus.body)  # poplib counts the lines' CRLFs, not the stuffing


POPLIB_API: dict[str, type[poplib.POP3]] = {POPLIB: poplib.POP3, DROPIN: dropin.POP3}


@pytest.mark.parametrize("impl", list(POPLIB_API))
@pytest.mark.parametrize("name", CORPORA)
def test_retr_poplib_api(
    name: str, impl: str, corpora: Callable[[str], Corpus], loopback: Loopback, measure: Measure
) -> None:
    """stdlib poplib and the drop-in, the same calls on the same bytes."""
    corpus = corpora(name)
    group = retr_group(name)
    with poplib_sessions(POPLIB_API[impl], loopback.port, name) as sessions:
        reply = poplib_retr(sessions.open())
        assert b"\r\n".join(reply[1]) + b"\r\n" == corpus.body
        check_poplib_retr(reply, corpus)
        del reply
        result = measure(group, impl, len(corpus.wire), poplib_retr, setup=sessions.setup)
        check_poplib_retr(result, corpus)


def client_stream(client: Client) -> int:
    return client.retr(1, cast(BinaryIO, Sink()))


@pytest.mark.parametrize("name", CORPORA)
def test_retr_client_stream(
    name: str, corpora: Callable[[str], Corpus], loopback: Loopback, measure: Measure
) -> None:
    corpus = corpora(name)
    group = retr_group(name)
    with client_sessions(loopback.port, name) as sessions:
        copy = io.BytesIO()
        assert sessions.open().retr(1, copy) == len(corpus.body)
        assert copy.getvalue() == corpus.body
        del copy
        result = measure(group, STREAM, len(corpus.wire), client_stream, setup=sessions.setup)
        assert result == len(corpus.body)


def client_bytes(client: Client) -> bytes:
    return client.retr(1)


@pytest.mark.parametrize("name", CORPORA)
def test_retr_client_bytes(
    name: str, corpora: Callable[[str], Corpus], loopback: Loopback, measure: Measure
) -> None:
    corpus = corpora(name)
    group = retr_group(name)
    with client_sessions(loopback.port, name) as sessions:
        assert client_bytes(sessions.open()) == corpus.body
        result = measure(group, CLIENT_BYTES, len(corpus.wire), client_bytes, setup=sessions.setup)
        assert len(result) == len(corpus.body)


@pytest.mark.parametrize("name", CORPORA)
def test_retr_raw_socket(
    name: str, corpora: Callable[[str], Corpus], loopback: Loopback, measure: Measure
) -> None:
    corpus = corpora(name)
    group = retr_group(name)
    buffer = bytearray(RAW_BUFFER)

    def raw_retr(raw: RawSession) -> int:
        return raw.multiline(b"RETR 1", buffer)

    with raw_sessions(loopback.port, name) as sessions:
        wire = bytearray()
        assert sessions.open().multiline(b"RETR 1", buffer, keep=wire) == len(corpus.wire)
        assert wire == corpus.wire  # our server's status line is the corpus's
        del wire
        result = measure(group, RAW_SOCKET, len(corpus.wire), raw_retr, setup=sessions.setup)
        assert result == len(corpus.wire)


# ------------------------------------------------------------ LIST and UIDL

Parsed = dict[int, int] | dict[int, str]


def listing_group(kind: str, listing: Listing) -> str:
    group = f"lo-{kind}-{listing.entries}"
    add_goal(group, CLIENT, POPLIB, 12.0)
    return group


@pytest.fixture(scope="module")
def listing_wires(loopback: Loopback, listing: Listing) -> dict[str, bytes]:
    """The LIST and UIDL replies as our server sends them, read once by a raw socket."""
    wires = {}
    buffer = bytearray(RAW_BUFFER)
    raw = RawSession(loopback.port, LISTING_USER)
    try:
        for kind, body in (("list", listing.list_wire), ("uidl", listing.uidl_wire)):
            wire = bytearray()
            raw.multiline(kind.upper().encode(), buffer, keep=wire)
            status_end = wire.index(b"\r\n") + 2
            assert wire[status_end:] == body[body.index(b"\r\n") + 2 :]
            wires[kind] = bytes(wire)
    finally:
        raw.close()
    return wires


def expected_listing(kind: str, listing: Listing) -> Parsed:
    return listing.sizes if kind == "list" else listing.uids


def poplib_parsed(kind: str) -> Callable[[poplib.POP3], Parsed]:
    """poplib's call, then what its caller writes to get the same dict as ours."""
    if kind == "list":

        def list_(pop: poplib.POP3) -> dict[int, int]:
            _, lines, _ = pop.list()
            return {int(n): int(size) for n, size in (line.split() for line in lines)}

        return list_

    def uidl(pop: poplib.POP3) -> dict[int, str]:
        _, lines, _ = pop.uidl()
        return {int(n): uid.decode("ascii") for n, uid in (line.split() for line in lines)}

    return uidl


@pytest.mark.parametrize("kind", ["list", "uidl"])
def test_listing_client(
    kind: str,
    listing: Listing,
    listing_wires: dict[str, bytes],
    loopback: Loopback,
    measure: Measure,
) -> None:
    group = listing_group(kind, listing)
    call: Callable[[Client], Parsed] = Client.list if kind == "list" else Client.uidl
    nbytes = len(listing_wires[kind])
    with client_sessions(loopback.port, LISTING_USER) as sessions:
        assert call(sessions.open()) == expected_listing(kind, listing)
        result = measure(group, CLIENT, nbytes, call, setup=sessions.setup, items=listing.entries)
        assert len(result) == listing.entries


@pytest.mark.parametrize("kind", ["list", "uidl"])
def test_listing_poplib(
    kind: str,
    listing: Listing,
    listing_wires: dict[str, bytes],
    loopback: Loopback,
    measure: Measure,
) -> None:
    group = listing_group(kind, listing)
    call = poplib_parsed(kind)
    nbytes = len(listing_wires[kind])
    with poplib_sessions(poplib.POP3, loopback.port, LISTING_USER) as sessions:
        assert call(sessions.open()) == expected_listing(kind, listing)
        result = measure(group, POPLIB, nbytes, call, setup=sessions.setup, items=listing.entries)
        assert len(result) == listing.entries


@pytest.mark.parametrize("kind", ["list", "uidl"])
def test_listing_poplib_unparsed(
    kind: str,
    listing: Listing,
    listing_wires: dict[str, bytes],
    loopback: Loopback,
    measure: Measure,
) -> None:
    group = listing_group(kind, listing)
    call: Callable[[poplib.POP3], Any] = poplib.POP3.list if kind == "list" else poplib.POP3.uidl
    nbytes = len(listing_wires[kind])
    with poplib_sessions(poplib.POP3, loopback.port, LISTING_USER) as sessions:
        result = measure(
            group, POPLIB_UNPARSED, nbytes, call, setup=sessions.setup, items=listing.entries
        )
        assert len(result[1]) == listing.entries


@pytest.mark.parametrize("kind", ["list", "uidl"])
def test_listing_raw_socket(
    kind: str,
    listing: Listing,
    listing_wires: dict[str, bytes],
    loopback: Loopback,
    measure: Measure,
) -> None:
    group = listing_group(kind, listing)
    buffer = bytearray(RAW_BUFFER)
    command = kind.upper().encode()
    nbytes = len(listing_wires[kind])

    def raw_listing(raw: RawSession) -> int:
        return raw.multiline(command, buffer)

    with raw_sessions(loopback.port, LISTING_USER) as sessions:
        result = measure(
            group, RAW_SOCKET, nbytes, raw_listing, setup=sessions.setup, items=listing.entries
        )
        assert result == nbytes


# ------------------------------------------------------- fetching over latency


def latency_group(count: int) -> str:
    group = f"lo-latency-{count}"
    add_goal(group, PIPELINED, POPLIB, 20.0)
    return group


def test_latency_client_pipelined(
    settings: Settings, loopback: Loopback, measure: Measure
) -> None:
    count = small_count(settings)
    messages = small_messages(count)
    numbers = range(1, count + 1)

    def fetch(client: Client) -> int:
        return sum(len(message) for _, message in client.retr_many(numbers))

    with client_sessions(loopback.proxy_port, SMALL_USER) as sessions:
        fetched = list(sessions.open().retr_many(numbers))
        assert fetched == [(n, messages[n - 1]) for n in numbers]
        result = rounds_for_latency(measure)(
            latency_group(count), PIPELINED, sum(map(len, messages)), fetch, setup=sessions.setup
        )
        assert result == sum(map(len, messages))


def test_latency_poplib(settings: Settings, loopback: Loopback, measure: Measure) -> None:
    count = small_count(settings)
    messages = small_messages(count)
    numbers = range(1, count + 1)

    def fetch(pop: poplib.POP3) -> int:
        return sum(octets for _, _, octets in map(pop.retr, numbers))

    with poplib_sessions(poplib.POP3, loopback.proxy_port, SMALL_USER) as sessions:
        pop = sessions.open()
        for n in (1, count):
            assert b"\r\n".join(pop.retr(n)[1]) + b"\r\n" == messages[n - 1]
        result = rounds_for_latency(measure)(
            latency_group(count), POPLIB, sum(map(len, messages)), fetch, setup=sessions.setup
        )
        assert result == sum(map(len, messages))


# ------------------------------------------------------------------ memory


def test_memory_peak(settings: Settings) -> None:
    size = memory_size(settings)
    report = memory_peak.measure(size)
    assert report.octets == report.size
    label = f"{report.size / MiB:.0f} MiB"
    for side, growth in (("client", report.client_growth), ("server", report.server_growth)):
        record_limit(
            f"mem-{label} {side} peak RSS growth",
            growth / MiB,
            64,
            "MiB",
            f"{report.seconds:.1f} s, {report.size / report.seconds / 1e6:.0f} MB/s",
        )
