"""Scripted hostile servers on loopback, for the clients' hostile-peer suites.

A `HostileServer` accepts one connection and runs a script against it in a
thread: the script gets a `Peer` (send, drip, read a command line, answer the
ordinary commands) and may misbehave at any point. The TLS mode is the one the
client under test uses: ``"none"``, ``"starttls"`` (the peer answers CAPA and
STLS and starts TLS by itself, so scripts begin after the handshake) or
``"implicit"``. Everything is bounded: the script thread gives up after
`HostileServer.lifetime` seconds and `stop` closes the connection, so a client
that would hang fails its test instead.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Literal

import pytest

from tests.server_doubles import Certificates

TLSMode = Literal["none", "starttls", "implicit"]
TLS_MODES: tuple[TLSMode, ...] = ("none", "starttls", "implicit")

CAPA = b"+OK\r\nUSER\r\nTOP\r\nUIDL\r\nPIPELINING\r\n.\r\n"
CAPA_STLS = b"+OK\r\nUSER\r\nSTLS\r\nTOP\r\nUIDL\r\nPIPELINING\r\n.\r\n"


class Gone(Exception):
    """The client hung up, or the test stopped the server."""


class Peer:
    """The server's end of one connection, for scripts."""

    def __init__(self, server: HostileServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self._pending = b""
        self.lines: list[bytes] = []  # every command line received, CRLF stripped

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise Gone from exc

    def drip(self, data: bytes, interval: float) -> None:
        """Send `data` one octet every `interval` seconds (until stopped)."""
        for i in range(len(data)):
            self.send(data[i : i + 1])
            if self.server.stopped.wait(interval):
                raise Gone

    def stream(self, piece: bytes) -> None:
        """Send `piece` again and again until the client hangs up or the test stops."""
        while not self.server.stopped.is_set():
            self.send(piece)
        raise Gone

    def readline(self) -> bytes:
        """The next command line without its end; raises `Gone` at EOF."""
        while b"\n" not in self._pending:
            try:
                chunk = self.sock.recv(4096)
            except TimeoutError:
                if self.server.stopped.is_set():
                    raise Gone from None
                continue
            except OSError as exc:
                raise Gone from exc
            if not chunk:
                raise Gone
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        line = line.rstrip(b"\r")
        self.lines.append(line)
        return line

    def serve_until(self, *keywords: bytes, capa: bytes = CAPA) -> bytes:
        """Answer CAPA, USER, PASS, NOOP, STAT and QUIT as a mailbox would, until
        a command with one of `keywords` arrives; return its line."""
        while True:
            line = self.readline()
            keyword = line.split(b" ", 1)[0].upper()
            if keyword in keywords:
                return line
            if keyword == b"CAPA":
                self.send(capa)
            elif keyword == b"STAT":
                self.send(b"+OK 1 100\r\n")
            elif keyword == b"QUIT":
                self.send(b"+OK bye\r\n")
                raise Gone
            else:
                self.send(b"+OK\r\n")

    def finish(self) -> None:
        """Go on as a mailbox would until the client quits or hangs up."""
        self.serve_until()

    def starttls(self) -> None:
        """Answer CAPA (with STLS) and STLS, then become the TLS server."""
        line = self.serve_until(b"STLS", capa=CAPA_STLS)
        assert line.upper() == b"STLS", line
        self.send(b"+OK begin TLS\r\n")
        self.sock = self.server.tls_context().wrap_socket(self.sock, server_side=True)


Script = Callable[[Peer], None]


class HostileServer:
    """One scripted connection on 127.0.0.1 (see the module docstring).

    The script runs after the greeting (``greeting=None`` leaves the greeting to
    the script) and, in ``"starttls"`` mode, after the TLS handshake.
    """

    lifetime = 20.0

    def __init__(
        self,
        script: Script,
        *,
        tls: TLSMode = "none",
        certs: Certificates | None = None,
        greeting: bytes | None = b"+OK hostile server ready\r\n",
    ) -> None:
        if tls != "none" and certs is None:
            raise ValueError("a TLS mode needs certificates")
        self.script = script
        self.tls = tls
        self.certs = certs
        self.greeting = greeting
        self.stopped = threading.Event()
        self.finished = threading.Event()
        self.peer: Peer | None = None
        self.error: BaseException | None = None
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port: int = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._run, name="hostile-server", daemon=True)
        self.thread.start()

    def tls_context(self) -> ssl.SSLContext:
        assert self.certs is not None
        return self.certs.server_context()

    def _run(self) -> None:
        deadline = time.monotonic() + self.lifetime
        try:
            while not self.stopped.is_set() and time.monotonic() < deadline:
                try:
                    sock, _ = self.listener.accept()
                except TimeoutError:
                    continue
                # Short reads so that `stop` is noticed; the peer retries them.
                sock.settimeout(0.1)
                with contextlib.suppress(Gone, OSError):
                    if self.tls == "implicit":
                        sock.settimeout(5)
                        sock = self.tls_context().wrap_socket(sock, server_side=True)
                        sock.settimeout(0.1)
                    self.peer = peer = Peer(self, sock)
                    try:
                        if self.greeting is not None:
                            peer.send(self.greeting)
                        if self.tls == "starttls":
                            peer.starttls()
                            peer.sock.settimeout(0.1)
                        self.script(peer)
                    finally:
                        with contextlib.suppress(OSError):
                            peer.sock.close()
                return
        except BaseException as exc:  # shown by `stop`, so a broken script fails its test
            self.error = exc
        finally:
            self.finished.set()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(10)
        self.listener.close()
        assert not self.thread.is_alive(), "the hostile script did not stop"
        if self.error is not None:
            raise self.error


class Clock:
    """Seconds since it was made."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.started


@pytest.fixture
def peak_memory() -> Iterator[Callable[[], int]]:
    """Traces allocations for the test; call it for the peak so far, in octets."""
    tracemalloc.start()
    try:
        yield lambda: tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="session")
def certs() -> Certificates:
    return Certificates()


@pytest.fixture
def hostile(certs: Certificates) -> Iterator[Callable[..., HostileServer]]:
    """Make `HostileServer`s (with the session's certificates); all stopped afterwards."""
    servers: list[HostileServer] = []

    def make(script: Script, **kwargs: object) -> HostileServer:
        kwargs.setdefault("certs", certs)
        server = HostileServer(script, **kwargs)  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
