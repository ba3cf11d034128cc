"""pop3_blocking.Client against scripted servers: limits, failures mid-reply, pipelining."""

from __future__ import annotations

import base64
import contextlib
import io
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO

import pytest

import pop3core as p
from pop3_blocking._client import MAX_LISTING_SIZE, MAX_PIPELINE_OCTETS, Client

Answer = Callable[["FakeServer", bytes], Iterable[bytes] | None]
"""Gives the pieces to send for a command line (CRLF stripped); None hangs up."""

CAPA_PIPELINING = b"+OK\r\nUSER\r\nPIPELINING\r\nUIDL\r\nTOP\r\n.\r\n"


class FakeServer:
    """A scripted POP3 server for one connection on loopback, in a thread.

    It greets, answers CAPA, USER, PASS and QUIT itself, and asks `answer` for
    the rest. `lines` records every command line received, in order.
    """

    def __init__(self, answer: Answer, *, capa: bytes = CAPA_PIPELINING) -> None:
        self.answer = answer
        self.capa = capa
        self.lines: list[bytes] = []
        self.release = threading.Event()  # for scripts that `hold`
        self.stopped = threading.Event()
        self.conn: socket.socket | None = None
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)  # to notice `stop` soon
        self.port: int = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + 5
        while not self.stopped.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            with conn, contextlib.suppress(OSError):  # the client hung up mid-reply
                conn.settimeout(5)
                self.conn = conn
                self._serve(conn)
            return

    def hold(self) -> bool:
        """Wait until the test sets `release` (True), or the client hangs up (False)."""
        assert self.conn is not None
        deadline = time.monotonic() + 5
        while not self.release.wait(0.01):
            readable, _, _ = select.select([self.conn], [], [], 0)
            if (
                readable and not self.conn.recv(1, socket.MSG_PEEK)
            ) or time.monotonic() > deadline:
                return False
        return True

    def _serve(self, conn: socket.socket) -> None:
        conn.sendall(b"+OK ready\r\n")
        with conn.makefile("rb") as reader:
            self._answer_lines(conn, reader)

    def _answer_lines(self, conn: socket.socket, reader: BinaryIO) -> None:
        while line := reader.readline():
            line = line.rstrip(b"\r\n")
            self.lines.append(line)
            keyword = line.split(b" ", 1)[0].upper()
            pieces: Iterable[bytes] | None
            if keyword == b"CAPA":
                pieces = [self.capa]
            elif keyword in (b"USER", b"PASS"):
                pieces = [b"+OK\r\n"]
            elif keyword == b"QUIT":
                pieces = [b"+OK bye\r\n"]
            else:
                pieces = self.answer(self, line)
            if pieces is None:
                return
            for piece in pieces:
                conn.sendall(piece)

    def join(self) -> None:
        """Wait for the session to end (the client closed its side)."""
        self.thread.join(5)
        assert not self.thread.is_alive()

    def stop(self) -> None:
        self.stopped.set()
        self.release.set()
        self.thread.join(5)
        self.listener.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., FakeServer]]:
    servers: list[FakeServer] = []

    def make(answer: Answer, **kwargs: Any) -> FakeServer:
        server = FakeServer(answer, **kwargs)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def connect(server: FakeServer, **kwargs: Any) -> Client:
    client = Client("127.0.0.1", server.port, tls="none", timeout=5, **kwargs)
    try:
        client.login("u", "p", method="USER", allow_cleartext=True)
    except BaseException:
        client.close()
        raise
    return client


MESSAGES = {
    1: b"Subject: one\r\n\r\n" + b"line of the first message\r\n" * 1000,
    2: b"Subject: two\r\n\r\nhello\r\n",
}


def mailbox(messages: dict[int, bytes] = MESSAGES) -> Answer:
    """A well-behaved server's answers for `messages` (CRLF, no line starts with a dot)."""

    def answer(server: FakeServer, line: bytes) -> list[bytes]:
        keyword, _, rest = line.partition(b" ")
        if keyword == b"STAT":
            return [b"+OK %d %d\r\n" % (len(messages), sum(map(len, messages.values())))]
        if keyword == b"LIST" and not rest:
            listing = b"".join(b"%d %d\r\n" % (n, len(m)) for n, m in messages.items())
            return [b"+OK\r\n" + listing + b".\r\n"]
        if keyword in (b"RETR", b"TOP"):
            number = int(rest.split()[0])
            if number not in messages:
                return [b"-ERR no such message\r\n"]
            return [b"+OK\r\n" + messages[number] + b".\r\n"]
        return [b"+OK\r\n"]

    return answer


def assert_closed(client: Client) -> None:
    with pytest.raises(p.LocalProtocolError, match="closed"):
        client.noop()


# ------------------------------------------------------------- listings are bounded


@pytest.mark.parametrize(
    ("keyword", "call"),
    [(b"LIST", Client.list), (b"UIDL", Client.uidl), (b"LANG", Client.lang)],
)
def test_a_listing_longer_than_the_limit_closes(
    serve: Callable[..., FakeServer], keyword: bytes, call: Callable[[Client], object]
) -> None:
    def answer(server: FakeServer, line: bytes) -> Iterator[bytes]:
        if line != keyword:
            yield b"+OK\r\n"
            return
        yield b"+OK\r\n" + b"1 abcdef\r\n" * 10_000  # 100 kB, and never the final "."
        server.hold()

    server = serve(answer)
    client = connect(server, max_listing_size=16 * 1024, read_size=4096)
    with pytest.raises(p.RemoteProtocolError, match="longer than 16384 octets"):
        call(client)
    assert_closed(client)
    server.join()  # the client hung up


def test_a_listing_of_exactly_the_limit_is_accepted(serve: Callable[..., FakeServer]) -> None:
    messages = {n: b"x" * n + b"\r\n" for n in range(1, 200)}
    size = sum(len(b"%d %d\r\n" % (n, len(m))) for n, m in messages.items())
    server = serve(mailbox(messages))
    with connect(server, max_listing_size=size, read_size=100) as client:
        assert client.list() == {n: len(m) for n, m in messages.items()}
        client.max_listing_size = size - 1
        with pytest.raises(p.RemoteProtocolError):
            client.list()


def test_the_default_listing_limit_fits_a_million_long_uids() -> None:
    uidl_listing = 1_000_000 * len(b"1000000 " + b"u" * 70 + b"\r\n")
    assert uidl_listing <= MAX_LISTING_SIZE
    with pytest.raises(ValueError, match="max_listing_size"):
        Client("127.0.0.1", 1, tls="none", max_listing_size=0)


# ------------------------------------------------------------- failures mid-reply


class FailingFile(io.BytesIO):
    """A file whose second write raises `error`."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error
        self.writes = 0

    def write(self, data: Any) -> int:
        self.writes += 1
        if self.writes == 2:
            raise self.error
        return super().write(data)


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failing_write_mid_body_closes_without_quit(
    serve: Callable[..., FakeServer], error: BaseException
) -> None:
    server = serve(mailbox())
    client = connect(server, read_size=1024)
    with pytest.raises(type(error)):
        client.retr(1, FailingFile(error))
    assert_closed(client)
    server.join()
    assert server.lines[-1] == b"RETR 1"  # and no QUIT: nothing is deleted


def test_a_failing_open_file_in_retr_many_to_closes_without_quit(
    serve: Callable[..., FakeServer],
) -> None:
    server = serve(mailbox())
    client = connect(server)

    def open_file(number: int) -> BinaryIO:
        if number == 2:
            raise PermissionError("no room for message 2")
        return io.BytesIO()

    started = time.monotonic()
    with pytest.raises(PermissionError):
        client.retr_many_to([1, 2, 1, 2], open_file)
    assert time.monotonic() - started < 1
    assert_closed(client)
    server.join()
    assert b"QUIT" not in server.lines


@pytest.mark.parametrize("how", ["iter_retr", "retr_many"])
def test_a_command_while_an_iterator_reads_is_refused_before_sending(
    serve: Callable[..., FakeServer], how: str
) -> None:
    server = serve(mailbox())
    with connect(server, read_size=1024) as client:
        if how == "iter_retr":
            chunks = client.iter_retr(1)
            first = next(chunks)
            with pytest.raises(p.LocalProtocolError, match="cannot send DELE"):
                client.dele(2)
            assert first + b"".join(chunks) == MESSAGES[1]  # the iterator goes on
        else:
            messages = client.retr_many([1, 2])
            assert next(messages) == (1, MESSAGES[1])
            with pytest.raises(p.LocalProtocolError, match="cannot send DELE"):
                client.dele(2)
            assert list(messages) == [(2, MESSAGES[2])]
        client.noop()
    assert b"DELE 2" not in server.lines


def test_leaving_the_block_with_an_iterator_open_sends_no_quit(
    serve: Callable[..., FakeServer],
) -> None:
    server = serve(mailbox())
    client = connect(server, read_size=1024)
    chunks = client.iter_retr(1)
    with pytest.raises(p.LocalProtocolError, match="cannot send QUIT"), client:
        next(chunks)
    assert_closed(client)
    server.join()
    assert b"QUIT" not in server.lines  # so nothing is deleted


def stalled_body() -> Answer:
    """RETR 1 sends part of the message, then `hold`s before the rest."""
    body = MESSAGES[1]
    fallback = mailbox()

    def answer(server: FakeServer, line: bytes) -> Iterable[bytes] | None:
        if line != b"RETR 1":
            return fallback(server, line)
        return stall(server)

    def stall(server: FakeServer) -> Iterator[bytes]:
        yield b"+OK\r\n" + body[:100]
        if server.hold():
            yield body[100:] + b".\r\n"

    return answer


@pytest.mark.parametrize("how", ["iter_retr", "retr_many", "dropped"])
def test_an_abandoned_iterator_is_read_by_the_next_command(
    serve: Callable[..., FakeServer], how: str
) -> None:
    server = serve(stalled_body())
    with connect(server) as client:
        started = time.monotonic()
        if how == "iter_retr":
            for _ in client.iter_retr(1):
                break
        elif how == "retr_many":
            for number, message in client.retr_many([2, 1, 2]):
                assert (number, message) == (2, MESSAGES[2])
                break
        else:
            next(client.iter_retr(1))  # the iterator is garbage at once
        assert time.monotonic() - started < 1  # the rest was not waited for
        server.release.set()
        assert client.stat().messages == 2  # it reads and discards the rest first
        assert client.retr(2) == MESSAGES[2]


@pytest.mark.parametrize("how", ["iter_retr", "retr_many"])
def test_an_exception_in_the_loop_closes_without_reading_the_rest(
    serve: Callable[..., FakeServer], how: str
) -> None:
    server = serve(stalled_body())
    client = connect(server)

    def consume() -> None:
        with client:
            # The iterator is only the loop's: the exception drops it on its way out.
            for _ in client.iter_retr(1) if how == "iter_retr" else client.retr_many([2, 1]):
                raise RuntimeError("the consumer failed")

    started = time.monotonic()
    with pytest.raises(RuntimeError):
        consume()
    assert time.monotonic() - started < 1
    server.join()
    assert b"QUIT" not in server.lines


# ------------------------------------------------------------- pipelining


@pytest.mark.parametrize("bad", [10**300, 0], ids=["too-long", "zero"])
def test_a_refused_command_in_a_pipelined_batch_keeps_the_session_in_step(
    serve: Callable[..., FakeServer], bad: int
) -> None:
    server = serve(mailbox())
    with connect(server) as client:
        with pytest.raises(p.LocalProtocolError):
            client.dele_many([1, 2, bad])
        assert client.list() == {n: len(m) for n, m in MESSAGES.items()}
    assert server.lines[-4:] == [b"DELE 1", b"DELE 2", b"LIST", b"QUIT"]


def test_the_commands_in_flight_are_bounded_in_octets(serve: Callable[..., FakeServer]) -> None:
    lines: list[str] = []
    server = serve(mailbox())
    with connect(server, pipeline_window=1_000_000, log=lines.append) as client:
        lines.clear()
        client.dele_many(range(1, 5001))
    in_flight: deque[int] = deque()  # the octets of each command not answered yet
    octets = most_octets = most_commands = 0
    for line in lines:
        if line.startswith("C: "):
            in_flight.append(len(line) - len("C: ") + len("\r\n"))
            octets += in_flight[-1]
            most_octets = max(most_octets, octets)
            most_commands = max(most_commands, len(in_flight))
        elif line.startswith(("S: +OK", "S: -ERR")):  # a reply (not a body's end)
            octets -= in_flight.popleft()
    assert not in_flight
    assert most_commands > 500  # the window was used
    assert most_octets <= MAX_PIPELINE_OCTETS + 255  # one command line (RFC 2449) over


# ------------------------------------------------------------- malformed replies


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
def test_a_malformed_reply_closes_the_connection(
    serve: Callable[..., FakeServer], reply: bytes, call: Callable[[Client], object]
) -> None:
    server = serve(lambda server, line: [reply])
    client = connect(server)
    with pytest.raises(p.RemoteProtocolError):
        call(client)
    assert_closed(client)
    server.join()


# ------------------------------------------------------------- arguments


@pytest.mark.parametrize("read_size", [0, -1])
def test_read_size_must_be_positive(serve: Callable[..., FakeServer], read_size: int) -> None:
    server = serve(mailbox())
    with pytest.raises(ValueError, match="read_size"):
        Client("127.0.0.1", server.port, tls="none", timeout=5, read_size=read_size)
    server.stop()  # it was never connected to


# ------------------------------------------------------------- SASL


def scram_server(challenge: bytes, after_cancel: bytes) -> Answer:
    def answer(server: FakeServer, line: bytes) -> list[bytes]:
        if line.startswith(b"AUTH"):
            return [challenge]
        if line == b"*":
            return [after_cancel]
        return [b"-ERR what?\r\n"]

    return answer


CAPA_SCRAM = b"+OK\r\nSASL SCRAM-SHA-256\r\n.\r\n"


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
def test_an_invalid_challenge_raises_the_sasl_error(
    serve: Callable[..., FakeServer], challenge: bytes, reason: str
) -> None:
    server = serve(scram_server(challenge, b"-ERR [AUTH] cancelled\r\n"), capa=CAPA_SCRAM)
    with Client("127.0.0.1", server.port, tls="none", timeout=5) as client:
        with pytest.raises(p.SASLError, match=reason) as info:
            client.login("alice", "secret")
        refused = info.value.__cause__
        assert isinstance(refused, p.AuthenticationError)
        assert refused.text == "cancelled"
        assert client.capa() is not None  # the exchange is over: still in step
    assert server.lines[-1] == b"QUIT"


def test_a_protocol_error_in_the_sasl_exchange_closes(serve: Callable[..., FakeServer]) -> None:
    # A second challenge after the client cancelled, where -ERR was due.
    server = serve(scram_server(b"+ !!!\r\n", b"+ again\r\n"), capa=CAPA_SCRAM)
    client = Client("127.0.0.1", server.port, tls="none", timeout=5)
    with pytest.raises(p.ProtocolError):
        client.login("alice", "secret")
    assert_closed(client)
    server.join()
