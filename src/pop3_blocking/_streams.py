"""The blocking stream backend: a connection's bytes over a socket, plain or TLS.

The client and the server's session driver (generated from `pop3_anyio`'s
async source by scripts/unasync.py) use only this interface: `Stream`,
`connect`, `write_to`, `close_sink`; `pop3_anyio._streams` is the async twin.
What only blocking sockets can do fast lives here: scatter-gather writes
(`sendmsg`, no joined copy of a stuffed body) and a non-blocking look at what
the peer has sent.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import time
from collections.abc import Sequence
from typing import Any, BinaryIO

__all__ = [
    "Sink",
    "Stream",
    "cleanup_scope",
    "close_sink",
    "connect",
    "now",
    "read_if_ready",
    "sleep_until_closed",
    "write_to",
]

Sink = BinaryIO
"""Where a fetched message may be written: a binary file (``write``, ``close``)."""

# Linux's IOV_MAX; sendmsg refuses more buffers than this in one call.
_MAX_BUFFERS = 1024
_poll = getattr(select, "poll", None)


def now() -> float:
    """The clock timeouts are counted in (monotonic seconds)."""
    return time.monotonic()


class Stream:
    """One connection over a blocking socket; owns it.

    Every wait takes its own timeout in seconds (None: wait as long as it
    takes); a wait that runs out raises `TimeoutError`. The socket's timeout
    is changed only when a different one is asked for.
    """

    __slots__ = ("_timeout", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._timeout = sock.gettimeout()

    @property
    def tls_active(self) -> bool:
        return isinstance(self.sock, ssl.SSLSocket)

    def _wait_at_most(self, timeout: float | None) -> None:
        if timeout != self._timeout:
            self.sock.settimeout(timeout)
            self._timeout = timeout

    def receive(self, max_bytes: int, timeout: float | None) -> bytes:
        """Up to `max_bytes` octets, as soon as some arrive; ``b""`` at EOF."""
        self._wait_at_most(timeout)
        return self.sock.recv(max_bytes)

    def receive_if_ready(self, max_bytes: int) -> bytes | None:
        """`read_if_ready` on this connection."""
        return read_if_ready(self.sock, max_bytes)

    def send(self, data: bytes, timeout: float | None) -> None:
        self._wait_at_most(timeout)
        self.sock.sendall(data)

    def send_all(
        self, pieces: Sequence[bytes | bytearray | memoryview], timeout: float | None
    ) -> None:
        """Write every piece in order; on a plain socket without joining them (``sendmsg``).

        A stuffed body is many views into one chunk (see `pop3core.BodyEncoder`):
        joining them would copy the whole message once more.
        """
        self._wait_at_most(timeout)
        sock = self.sock
        if len(pieces) == 1:
            sock.sendall(pieces[0])
            return
        if isinstance(sock, ssl.SSLSocket):
            sock.sendall(b"".join(pieces))
            return
        views = [memoryview(piece) for piece in pieces]
        first = 0
        while first < len(views):
            sent = sock.sendmsg(views[first : first + _MAX_BUFFERS])
            while first < len(views) and sent >= views[first].nbytes:
                sent -= views[first].nbytes
                first += 1
            if sent:
                views[first] = views[first][sent:]

    def start_tls(
        self,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        hostname: str | None,
        timeout: float | None,
    ) -> None:
        """Run the TLS handshake on this connection (after STLS, or at once for implicit TLS)."""
        self._wait_at_most(timeout)
        self.sock = context.wrap_socket(
            self.sock, server_side=server_side, server_hostname=None if server_side else hostname
        )

    def getpeercert(self) -> dict[str, Any] | None:
        """The peer's verified certificate (TLS, when one was asked for and given)."""
        sock = self.sock
        return sock.getpeercert() if isinstance(sock, ssl.SSLSocket) else None

    def close(self) -> None:
        """Close the connection at once. Idempotent."""
        with contextlib.suppress(OSError):
            self.sock.close()


def read_if_ready(sock: socket.socket, max_bytes: int) -> bytes | None:
    """What the peer has sent and a read would return at once; None if nothing.

    Never blocks. ``b""`` means the peer closed the connection. On TLS, bytes
    that are only protocol records (a TLS 1.3 session ticket) are consumed and
    count as nothing.
    """
    if isinstance(sock, ssl.SSLSocket):
        if not sock.pending() and not _readable(sock):
            return None
        timeout = sock.gettimeout()
        sock.settimeout(0.0)
        try:
            return sock.recv(max_bytes)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return None
        finally:
            sock.settimeout(timeout)
    if not _readable(sock):
        return None
    try:
        return sock.recv(max_bytes, socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return None


def _readable(sock: socket.socket) -> bool:
    if _poll is not None:
        poller = _poll()
        poller.register(sock, select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))
    readable, _, _ = select.select([sock], [], [], 0)  # pragma: no cover - not on Linux
    return bool(readable)


def connect(
    host: str,
    port: int,
    *,
    timeout: float | None,
    source_address: tuple[str, int] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> Stream:
    """Open a TCP connection (and, with `ssl_context`, run the TLS handshake)."""
    sock = socket.create_connection((host, port), timeout=timeout, source_address=source_address)
    stream = Stream(sock)
    try:
        # Commands are written whole; a pipelined one must not wait for an ACK.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ssl_context is not None:
            stream.start_tls(
                ssl_context, server_side=False, hostname=server_hostname, timeout=timeout
            )
    except BaseException:
        stream.close()
        raise
    return stream


def write_to(sink: Sink, data: bytes | bytearray | memoryview) -> None:
    sink.write(data)


def close_sink(sink: Sink) -> None:
    sink.close()


def sleep_until_closed(closing: Any, seconds: float) -> None:
    """Wait `seconds`, or less if `closing` (a `threading.Event`) is set meanwhile."""
    closing.wait(seconds)


def cleanup_scope(seconds: float) -> contextlib.AbstractContextManager[object]:
    """Where cleanup runs (closing a maildrop, say): here, plainly (see the anyio twin)."""
    return contextlib.nullcontext()
