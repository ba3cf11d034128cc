"""Loopback plumbing for `bench_blocking` and `memory_peak`: store, server, raw reads, a proxy.

One server per benchmark module serves every mailbox, by user name:

* ``text``, ``attachment``: one message each, the `_harness` corpus of that name;
* ``listing``: the `_harness` listing (LIST/UIDL only; its messages are never read);
* ``small``: many small text messages (a few KB each), for the latency runs;
* ``big`` (`memory_peak` only): one huge message generated from a repeated block.

By default the server runs in a subprocess of its own (``python _loopback.py
SPEC``): its threads then do not share a GIL with the client being measured, as
with a real server. ``POP3_BENCH_SERVER=thread`` runs it in a thread of the
benchmark process instead, as the tests do. A `LatencyProxy` in front of the
server adds a delay to each direction, for the pipelining runs.

Every socket is on 127.0.0.1 and has a timeout; the subprocess ends when its stdin
closes (and is killed if it does not within a few seconds).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import random
import select
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import pop3core as p
from _harness import corpus, make_listing, make_text_message
from pop3_blocking._server import Server
from pop3_stores import Maildrop, MaildropError

HOST = "127.0.0.1"
PASSWORD = "secret"
TIMEOUT = 60.0  # bounds every connect, read and write of the benchmarks
START_TIMEOUT = 180.0  # the server subprocess builds 2 x 64 MiB of corpora first
TERMINATOR = b"\r\n.\r\n"
CORPUS_USERS = ("text", "attachment")
LISTING_USER = "listing"
SMALL_USER = "small"
SERVER_MODE_ENV = "POP3_BENCH_SERVER"

Reader = Callable[[int, int], Iterator[bytes]]


# ----------------------------------------------------------------- the store


@dataclass(frozen=True)
class Mailbox:
    """What one user's maildrop holds: the listing, and how to read a message."""

    listing: Sequence[p.MessageInfo]
    read: Reader


def stored(messages: Sequence[bytes], prefix: str) -> Mailbox:
    """Messages held in memory (CRLF-normalised), read in slices of the asked size."""

    def read(index: int, chunk_size: int) -> Iterator[bytes]:
        data = messages[index]
        for start in range(0, len(data), chunk_size):
            yield data[start : start + chunk_size]

    listing = [p.MessageInfo(len(m), f"{prefix}-{i}") for i, m in enumerate(messages)]
    return Mailbox(listing, read)


def listed_only(sizes: dict[int, int], uids: dict[int, str]) -> Mailbox:
    """A big listing whose messages are never read (LIST and UIDL only)."""

    def read(index: int, chunk_size: int) -> Iterator[bytes]:
        raise MaildropError("the listing mailbox is for LIST and UIDL only")

    return Mailbox([p.MessageInfo(sizes[n], uids[n]) for n in sorted(sizes)], read)


def repeated(block: bytes, count: int) -> Mailbox:
    """One message of `block` repeated `count` times, generated as it is read.

    The store holds only `block`; each read hands out the same object.
    """
    assert block.endswith(b"\r\n")

    def read(index: int, chunk_size: int) -> Iterator[bytes]:
        for _ in range(count):
            yield block

    return Mailbox([p.MessageInfo(len(block) * count, "big-0")], read)


class MemoryMaildrop:
    """A `Maildrop` over a `Mailbox`; nothing is ever deleted, nothing is locked."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    def listing(self) -> Sequence[p.MessageInfo]:
        return self.mailbox.listing

    def read(self, index: int, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
        return self.mailbox.read(index, chunk_size)

    def commit(self, indexes: Sequence[int]) -> bool:
        return not indexes

    def close(self) -> None:
        pass


class MemoryStore:
    """A `MailStore` of fixed mailboxes. Sessions do not lock: each benchmark round
    opens a new session while the server may not have seen the last one close."""

    def __init__(self, mailboxes: dict[str, Mailbox]) -> None:
        self.mailboxes = mailboxes

    def open(self, username: str) -> Maildrop:
        mailbox = self.mailboxes.get(username)
        if mailbox is None:
            raise MaildropError(f"no maildrop for {username!r}")
        return MemoryMaildrop(mailbox)


class OnePassword:
    """An `Authenticator`: every user of the store, with the same password."""

    def __init__(self, users: Sequence[str]) -> None:
        self.users = frozenset(users)
        self._credential = p.Credential.from_password(PASSWORD)

    def credential(self, username: str) -> p.Credential | None:
        return self._credential if username in self.users else None

    def mechanisms(self) -> list[str]:
        return p.store_mechanisms([self._credential])

    def check_token(self, username: str, token: str, mechanism: str) -> bool | dict[str, Any]:
        return False


def start_server(mailboxes: dict[str, Mailbox]) -> Server:
    """Our threaded server on a free loopback port, serving `mailboxes`."""
    return Server(
        MemoryStore(mailboxes),
        OnePassword(list(mailboxes)),
        host=HOST,
        port=0,
        auth_failure_delay=0,
    ).start()


# ------------------------------------------------------------ the mailboxes


@functools.cache
def small_messages(count: int, seed: int = 4242) -> tuple[bytes, ...]:
    """`count` text messages of 2-6 KB: a short header block and corpus prose."""
    rng = random.Random(seed)
    prose = make_text_message(count * 6 * 1024 + 64 * 1024, seed=seed)
    lines = prose[prose.index(b"\r\n\r\n") + 4 :].split(b"\r\n")[:-1]
    messages = []
    at = 0
    for n in range(1, count + 1):
        head = [
            b"From: alice@example.org",
            b"To: bob@example.com",
            b"Subject: message %d of %d" % (n, count),
            b"Message-ID: <%d.%d@bench.example.org>" % (n, seed),
            b"",
        ]
        target = rng.randrange(2048, 6144)
        body: list[bytes] = []
        size = 0
        while size < target:
            body.append(lines[at])
            size += len(lines[at]) + 2
            at += 1
        messages.append(b"\r\n".join(head + body) + b"\r\n")
    return tuple(messages)


@dataclass(frozen=True)
class Spec:
    """The sizes the server is built for (the benchmark mode decides them)."""

    message_size: int
    listing_entries: int
    small_messages: int
    delay: float  # the proxy's added latency, each way, in seconds


def mailboxes_for(spec: Spec) -> dict[str, Mailbox]:
    listing = make_listing(spec.listing_entries)
    boxes = {name: stored([corpus(name, spec.message_size).body], name) for name in CORPUS_USERS}
    boxes[LISTING_USER] = listed_only(listing.sizes, listing.uids)
    boxes[SMALL_USER] = stored(small_messages(spec.small_messages), SMALL_USER)
    return boxes


# -------------------------------------------------------------- the proxy


class _Direction:
    """Bytes from `src` to `dst`, each chunk sent `delay` seconds after it arrived.

    A reader thread stamps chunks and queues them; a writer thread sends each when
    due (all the chunks due by then in one write). Order is kept, and the delay is
    not serialised: reading goes on while the writer waits.
    """

    def __init__(self, src: socket.socket, dst: socket.socket, delay: float) -> None:
        self.src, self.dst, self.delay = src, dst, delay
        self.queue: deque[tuple[float, bytes]] = deque()
        self.cond = threading.Condition()
        self.threads = [
            threading.Thread(target=self._read, name="proxy-read", daemon=True),
            threading.Thread(target=self._write, name="proxy-write", daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    def _put(self, data: bytes) -> None:
        with self.cond:
            self.queue.append((time.monotonic() + self.delay, data))
            self.cond.notify()

    def _read(self) -> None:
        try:
            while data := self.src.recv(256 * 1024):
                self._put(data)
        except OSError:
            pass
        self._put(b"")  # end of stream

    def _write(self) -> None:
        while True:
            with self.cond:
                while not self.queue:
                    self.cond.wait()
                due = self.queue[0][0]
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            pieces: list[bytes] = []
            ended = False
            with self.cond:
                now = time.monotonic()
                while self.queue and self.queue[0][0] <= now:
                    data = self.queue.popleft()[1]
                    if not data:
                        ended = True
                        break
                    pieces.append(data)
            try:
                if pieces:
                    self.dst.sendall(b"".join(pieces))
                if ended:
                    self.dst.shutdown(socket.SHUT_WR)
            except OSError:
                ended = True
            if ended:
                return


class LatencyProxy:
    """A loopback TCP proxy to `target` adding `delay` seconds to each direction."""

    def __init__(self, target: tuple[str, int], delay: float) -> None:
        self.target = target
        self.delay = delay
        self._listener = socket.create_server((HOST, 0))
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._links: list[tuple[socket.socket, socket.socket, list[_Direction]]] = []
        self._accepter = threading.Thread(target=self._accept, name="proxy-accept", daemon=True)
        self._accepter.start()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                down, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                up = socket.create_connection(self.target, timeout=TIMEOUT)
            except OSError:
                down.close()
                continue
            for sock in (down, up):
                sock.settimeout(None)  # the directions block; close() ends them
                # Forward each chunk as it comes: no Nagle delay of our own.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            directions = [_Direction(down, up, self.delay), _Direction(up, down, self.delay)]
            with self._lock:
                self._links.append((down, up, directions))
                self._reap()

    def _reap(self) -> None:
        """Close the sockets of links whose both directions have ended."""
        alive = []
        for down, up, directions in self._links:
            if any(t.is_alive() for d in directions for t in d.threads):
                alive.append((down, up, directions))
            else:
                down.close()
                up.close()
        self._links = alive

    def close(self) -> None:
        self._stopping.set()
        self._accepter.join(5)
        self._listener.close()
        with self._lock:
            links, self._links = self._links, []
        for down, up, directions in links:
            for sock in (down, up):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            for direction in directions:
                with direction.cond:
                    direction.queue.append((0.0, b""))
                    direction.cond.notify()
            for direction in directions:
                for thread in direction.threads:
                    thread.join(5)
            down.close()
            up.close()


# ------------------------------------------------------- running the server


class Loopback:
    """The benchmark server (and its proxy), in a subprocess or in threads here."""

    def __init__(self, spec: Spec, mode: str | None = None) -> None:
        self.spec = spec
        self.mode = mode or os.environ.get(SERVER_MODE_ENV, "process")
        self._proc: subprocess.Popen[str] | None = None
        self._server: Server | None = None
        self._proxy: LatencyProxy | None = None
        if self.mode == "thread":
            self._server = start_server(mailboxes_for(spec))
            assert self._server.port is not None
            self._proxy = LatencyProxy((HOST, self._server.port), spec.delay)
            self.port, self.proxy_port = self._server.port, self._proxy.port
        elif self.mode == "process":
            self._proc = subprocess.Popen(
                [sys.executable, str(Path(__file__)), json.dumps(dataclasses.asdict(spec))],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                cwd=Path(__file__).parent,
            )
            try:
                ports = json.loads(_read_line(self._proc, START_TIMEOUT))
            except BaseException:
                self.close()
                raise
            self.port, self.proxy_port = ports["port"], ports["proxy_port"]
        else:
            raise ValueError(f"{SERVER_MODE_ENV} must be 'process' or 'thread', not {self.mode!r}")

    def close(self) -> None:
        if self._proxy is not None:
            self._proxy.close()
            self._proxy = None
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        if self._proc is not None:
            stop(self._proc)
            self._proc = None

    def __enter__(self) -> Loopback:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """One line of the subprocess's stdout, or an error if none comes in time."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if not line:
        raise RuntimeError(f"{proc.args!r} said nothing in {timeout:.0f} s (exit {proc.poll()})")
    return line


def stop(proc: subprocess.Popen[str], timeout: float = 15.0) -> None:
    """Close the subprocess's stdin (it then shuts down), kill it if it lingers."""
    with contextlib.suppress(OSError):
        if proc.stdin is not None:
            proc.stdin.close()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)
    if proc.stdout is not None:
        proc.stdout.close()


def _serve(spec: Spec) -> None:
    """The subprocess: serve until stdin closes."""
    server = start_server(mailboxes_for(spec))
    assert server.port is not None
    proxy = LatencyProxy((HOST, server.port), spec.delay)
    try:
        print(json.dumps({"port": server.port, "proxy_port": proxy.port}), flush=True)
        sys.stdin.read()
    finally:
        proxy.close()
        server.shutdown()


# ------------------------------------------------------------ the raw reader


class RawSession:
    """A plain socket logged in with USER/PASS: the ceiling for reading a reply.

    `multiline` sends a command and ``recv_into``'s one reusable buffer until the
    stream ends with the terminator: no parsing, no unstuffing, no copy.
    """

    def __init__(self, port: int, user: str) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=TIMEOUT)
        try:
            self._line()  # the greeting
            for command in (b"USER %s" % user.encode(), b"PASS %s" % PASSWORD.encode()):
                self.sock.sendall(command + b"\r\n")
                if not self._line().startswith(b"+OK"):
                    raise ConnectionError(f"login of {user} refused")
        except BaseException:
            self.sock.close()
            raise

    def _line(self) -> bytes:
        line = b""
        while not line.endswith(b"\r\n"):
            data = self.sock.recv(4096)
            if not data:
                raise ConnectionError("the server closed the connection")
            line += data
        return line

    def multiline(self, command: bytes, buffer: bytearray, keep: bytearray | None = None) -> int:
        """Octets of the reply to `command` (status line and terminator included)."""
        sock = self.sock
        sock.sendall(command + b"\r\n")
        view = memoryview(buffer)
        total = 0
        tail = b""
        while True:
            n = sock.recv_into(view)
            if not n:
                raise ConnectionError("the server closed the connection")
            if not total and buffer.startswith(b"-ERR"):
                raise ConnectionError(bytes(view[:n]).decode("ascii", "replace"))
            total += n
            if keep is not None:
                keep += view[:n]
            tail = (tail + view[max(0, n - 5) : n])[-5:]
            if tail == TERMINATOR:
                return total

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(b"QUIT\r\n")
            self._line()
        self.sock.close()


class Sink:
    """A discarding binary writer that counts octets (a `BinaryIO` for `Client.retr`)."""

    def __init__(self) -> None:
        self.octets = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        n = len(data)
        self.octets += n
        return n

    def flush(self) -> None:
        pass


if __name__ == "__main__":
    _serve(Spec(**json.loads(sys.argv[1])))
