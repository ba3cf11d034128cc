"""The async stream backend: a connection's bytes over an anyio stream, plain or TLS.

The client and the server's session driver are written against this small
interface (`Stream`, `connect`, `write_to`, `close_sink`); their blocking
twins in `pop3_blocking` are generated from them and use
`pop3_blocking._streams`, which has the same names with plain methods.
"""

from __future__ import annotations

import contextlib
import inspect
import select
import socket
import ssl
from collections.abc import Sequence
from typing import Any, BinaryIO, Protocol

import anyio
import anyio.abc
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSAttribute, TLSStream

__all__ = [
    "AsyncWriter",
    "Sink",
    "Stream",
    "cleanup_scope",
    "close_sink",
    "connect",
    "now",
    "sleep_until_closed",
    "write_to",
]


class AsyncWriter(Protocol):
    """An async file-like sink (for example anyio's `anyio.AsyncFile`)."""

    async def write(self, data: bytes | bytearray | memoryview, /) -> Any: ...


Sink = BinaryIO | AsyncWriter
"""Where a fetched message may be written: a binary file, or an async writer."""

# A look for bytes that may have arrived waits this long at most: on TLS, bytes
# in the socket may be protocol records only (TLS 1.3 session tickets, right
# after every handshake), with no data; the look then costs this much, once.
# Whole records that are there decrypt at once, so a short wait misses nothing.
_READY_WAIT = 0.005
# Closing a TLS stream says goodbye to the peer: never wait long for that.
_CLOSE_WAIT = 1.0
_poll = getattr(select, "poll", None)


def now() -> float:
    """The clock timeouts are counted in (anyio's: the event loop's)."""
    return anyio.current_time()


def _map_errors(exc: BaseException) -> OSError:
    """anyio's stream errors as the `OSError`s the blocking twin raises."""
    if isinstance(exc, anyio.ClosedResourceError):
        return ConnectionAbortedError("the connection is closed")
    return ConnectionResetError(str(exc) or "the connection broke")


class Stream:
    """One connection over an anyio byte stream; owns it.

    Every wait takes its own timeout in seconds (None: wait as long as it
    takes); a wait that runs out raises `TimeoutError`. A broken connection
    raises `ConnectionError`, as a blocking socket would.
    """

    __slots__ = ("_raw", "stream")

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self._raw: socket.socket | None = stream.extra(SocketAttribute.raw_socket, None)

    @property
    def tls_active(self) -> bool:
        return isinstance(self.stream, TLSStream)

    async def receive(self, max_bytes: int, timeout: float | None) -> bytes:
        """Up to `max_bytes` octets, as soon as some arrive; ``b""`` at EOF.

        A read that would wait longer than `timeout` raises `TimeoutError`. One
        that cannot wait at all (the socket has bytes, an EOF or an error for
        it) needs no deadline, so it is done without a cancel scope: one per
        256 KiB read cost the asyncio client about 55 % more CPU on a 64 MiB
        RETR of base64, 12 % on prose (trio: no measurable difference); see
        benchmarks/README.md.
        """
        try:
            if timeout is None or (timeout > 0 and self._readable_now()):
                return await self.stream.receive(max_bytes)
            with anyio.fail_after(timeout):
                return await self.stream.receive(max_bytes)
        except anyio.EndOfStream:
            return b""
        except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise _map_errors(exc) from exc

    def _readable_now(self) -> bool:
        """Whether a read returns at once: a plain socket the kernel has something for.

        POLLIN, POLLHUP or POLLERR: `recv` then returns bytes, ``b""`` or an
        error without waiting (asyncio's transport reads it on the loop's next
        turn). False whenever that cannot be told: on TLS (the bytes may be
        part of a record), without a raw socket, on a closed one.
        """
        raw = self._raw
        if raw is None or isinstance(self.stream, TLSStream):
            return False
        fd = raw.fileno()
        if fd < 0:
            return False
        if _poll is not None:
            poller = _poll()
            poller.register(fd, select.POLLIN)
            return bool(poller.poll(0))
        readable, _, _ = select.select([fd], [], [fd], 0)  # pragma: no cover - not on Linux
        return bool(readable)

    def _maybe_ready(self) -> bool:
        stream = self.stream
        if isinstance(stream, TLSStream) and stream.extra(TLSAttribute.ssl_object).pending():
            return True
        raw = self._raw
        if raw is None or raw.fileno() < 0:
            return True  # cannot tell: look
        if _poll is not None:
            poller = _poll()
            poller.register(raw, select.POLLIN | select.POLLPRI)
            return bool(poller.poll(0))
        readable, _, _ = select.select([raw], [], [], 0)  # pragma: no cover - not on Linux
        return bool(readable)

    async def receive_if_ready(self, max_bytes: int) -> bytes | None:
        """What the peer has sent; None if nothing came. ``b""`` means the peer closed.

        Returns at once when the socket has nothing; otherwise reads, waiting a
        moment at most (what is there may be TLS records without data).
        """
        if not self._maybe_ready():
            return None
        with anyio.move_on_after(_READY_WAIT):
            return await self.receive(max_bytes, None)
        return None

    async def send(self, data: bytes, timeout: float | None) -> None:
        try:
            if timeout is None:
                await self.stream.send(data)
                return
            with anyio.fail_after(timeout):
                await self.stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise _map_errors(exc) from exc

    async def send_all(
        self, pieces: Sequence[bytes | bytearray | memoryview], timeout: float | None
    ) -> None:
        """Write every piece in order (joined: an anyio stream takes one buffer per send)."""
        await self.send(pieces[0] if len(pieces) == 1 else b"".join(pieces), timeout)  # type: ignore[arg-type]

    async def start_tls(
        self,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        hostname: str | None,
        timeout: float | None,
    ) -> None:
        """Run the TLS handshake on this connection (after STLS, or at once for implicit TLS)."""
        try:
            with anyio.fail_after(timeout):
                self.stream = await TLSStream.wrap(
                    self.stream,
                    server_side=server_side,
                    hostname=None if server_side else hostname,
                    ssl_context=context,
                    standard_compatible=False,
                )
        except (anyio.BrokenResourceError, anyio.EndOfStream) as exc:
            raise ssl.SSLError(f"TLS handshake failed: {exc!r}") from exc

    def getpeercert(self) -> dict[str, Any] | None:
        """The peer's verified certificate (TLS, when one was asked for and given)."""
        stream = self.stream
        if not isinstance(stream, TLSStream):
            return None
        certificate: dict[str, Any] | None = stream.extra(TLSAttribute.peer_certificate, None)
        return certificate

    async def aclose(self) -> None:
        """Close the connection. Idempotent; done even in a cancelled task, and never
        waits long for a peer that does not read the TLS goodbye."""
        with anyio.move_on_after(_CLOSE_WAIT, shield=True):
            with contextlib.suppress(Exception):
                await self.stream.aclose()
            return
        with contextlib.suppress(Exception):
            await anyio.aclose_forcefully(self.stream)


async def connect(
    host: str,
    port: int,
    *,
    timeout: float | None,
    source_address: tuple[str, int] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> Stream:
    """Open a TCP connection (and, with `ssl_context`, run the TLS handshake)."""
    local_host, local_port = (None, None) if source_address is None else source_address
    with anyio.fail_after(timeout):
        tcp = await anyio.connect_tcp(host, port, local_host=local_host, local_port=local_port)
    stream = Stream(tcp)
    try:
        raw = stream._raw
        if raw is not None:
            # Commands are written whole; a pipelined one must not wait for an ACK.
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ssl_context is not None:
            await stream.start_tls(
                ssl_context, server_side=False, hostname=server_hostname, timeout=timeout
            )
    except BaseException:
        await stream.aclose()
        raise
    return stream


async def write_to(sink: Sink, data: bytes | bytearray | memoryview) -> None:
    """Write to a binary file or an async writer."""
    result = sink.write(data)
    if inspect.isawaitable(result):
        await result


async def close_sink(sink: Sink) -> None:
    close = getattr(sink, "aclose", None) or sink.close  # type: ignore[union-attr]
    result = close()
    if inspect.isawaitable(result):
        await result


async def sleep_until_closed(closing: anyio.Event, seconds: float) -> None:
    """Wait `seconds`, or less if `closing` is set meanwhile."""
    with anyio.move_on_after(seconds):
        await closing.wait()


def cleanup_scope(seconds: float) -> anyio.CancelScope:
    """Where cleanup runs: shielded from the task's cancellation, for `seconds` at most.

    Closing a maildrop releases its lock; a session cancelled at shutdown or
    eviction must still do it, but never hang the server doing it.
    """
    return anyio.move_on_after(seconds, shield=True)
