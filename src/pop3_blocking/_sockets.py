"""Socket helpers shared by the blocking clients."""

from __future__ import annotations

import select
import socket
import ssl

__all__ = ["read_if_ready"]

_poll = getattr(select, "poll", None)


def _readable(sock: socket.socket) -> bool:
    if _poll is not None:
        poller = _poll()
        poller.register(sock, select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))
    readable, _, _ = select.select([sock], [], [], 0)  # pragma: no cover - not on Linux
    return bool(readable)


def read_if_ready(sock: socket.socket, size: int) -> bytes | None:
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
            return sock.recv(size)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return None
        finally:
            sock.settimeout(timeout)
    if not _readable(sock):
        return None
    try:
        return sock.recv(size, socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return None
