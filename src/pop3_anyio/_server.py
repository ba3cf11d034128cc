"""The async POP3 server: a task per connection around a `ServerSession`, on asyncio or trio.

Each connection is a task in the server's task group, running the same
session driver as the threaded server (`_session.py`, from which the blocking
one is generated). Blocking store and authenticator calls go to worker
threads, never the event loop; an `AsyncMailStore` is awaited directly. An
idle session costs a task and a socket, so one process holds many thousands.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import ssl
import time
from collections.abc import Callable, Hashable, Sequence
from types import TracebackType
from typing import Any, Literal, TypeVar

import anyio
import anyio.abc
import anyio.to_thread
from anyio.abc import SocketAttribute

from pop3_stores import AsyncMailStore, Authenticator, MailStore
from pop3core import (
    MINIMUM_AUTOLOGOUT,
    SERVER,
    SYS_TEMP,
    Connection,
    ConnectionLimits,
    ErrResponse,
    ServerOptions,
    SessionTable,
    cleartext_allowed,
)

from ._session import (
    TLS_HANDSHAKE_TIMEOUT,
    Abort,
    ExternalMapper,
    SessionDriver,
    session_options,
)
from ._streams import Stream
from ._threaded import as_async_store

__all__ = ["MINIMUM_AUTOLOGOUT", "Server"]

logger = logging.getLogger("pop3_anyio.server")

T = TypeVar("T")

# Descriptors kept out of the sessions' count: the listeners, the host program,
# and the maildrops of logged-in sessions (a lock each, a message file while one
# is read). A session not logged in holds one, its socket: the count must run
# out before the descriptors do, or a flood of those would never be evicted.
_RESERVED_DESCRIPTORS = 64
_RESERVED_SHARE = 8  # and 1/8 of the limit
# Sessions held at most unless told otherwise (and the descriptors allow it).
DEFAULT_MAX_CONNECTIONS = 10_000
# A refusal (``-ERR [SYS/TEMP]``) to a client that does not read gives up after this.
_REFUSAL_TIMEOUT = 5.0


def _descriptor_bound(wanted: int) -> int:
    """`wanted`, or fewer if the process may not open enough descriptors for them."""
    try:
        import resource  # noqa: PLC0415 - POSIX only
    except ImportError:  # pragma: no cover - not on Windows
        return wanted
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    reserved = max(_RESERVED_DESCRIPTORS, soft // _RESERVED_SHARE)
    return max(1, min(wanted, soft - reserved))


class _Slot:
    """One session's entry in the server's registry; the key it has in the `SessionTable`."""

    __slots__ = ("closing", "committing", "number", "scope")

    def __init__(self, number: int) -> None:
        self.number = number
        self.scope = anyio.CancelScope()  # cancelled to cut the connection
        self.closing = anyio.Event()  # set when cut: a failed login's delay ends early
        self.committing = False  # UPDATE has begun: shutdown lets it finish

    def cut(self) -> None:
        """End the session now, without UPDATE (unless its commit is already running)."""
        self.closing.set()
        self.scope.cancel()

    def __repr__(self) -> str:
        return f"<session {self.number}>"


class Server:
    """A POP3 server on anyio (asyncio or trio), a task per connection.

    Constructing it does no I/O. ``async with server:`` binds the listeners and
    serves in the background until the block ends (then `shutdown`); or run
    ``await task_group.start(server.serve)`` in a task group of your own and
    call `shutdown` to end it. Either way, `addresses`, `port` and `tls_port`
    tell where it listens once it has started.

    Listens on ``host``:``port`` (plain POP3; STLS is offered when an
    ``ssl_context`` is given) and, if ``tls_port`` is set, on ``host``:``tls_port``
    with implicit TLS (RFC 8314). Port 0 picks a free port.

    ``store`` is a blocking `pop3_stores.MailStore` (its calls run in worker
    threads, at most ``worker_threads`` at once) or an `AsyncMailStore` (awaited
    on the event loop). The ``authenticator``'s calls always run in worker
    threads.

    The safe defaults, the limits and the login policy are the threaded
    server's (see `pop3_blocking.Server`): loopback only; cleartext logins
    refused without TLS except from loopback; ``login_timeout`` to log in,
    ``autologout`` of silence after it; a failed login answered after
    ``auth_failure_delay``, doubled per recent failure from the address up to
    ``max_login_penalty``; at most ``max_connections`` sessions (by default
    10,000; fewer when the process's descriptor limit is lower, keeping an
    eighth of it for maildrops) and
    ``max_connections_per_address``, making room by closing the oldest session
    that has not logged in.

    `shutdown` stops accepting, lets the sessions finish for a while, then
    closes the rest without UPDATE; a session whose UPDATE (QUIT) has begun
    completes it and gets its ``+OK``.
    """

    def __init__(
        self,
        store: MailStore | AsyncMailStore,
        authenticator: Authenticator,
        *,
        host: str = "127.0.0.1",
        port: int | None = 8110,
        tls_port: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
        allow_cleartext: bool | Literal["loopback"] = "loopback",
        mechanisms: Sequence[str] | None = None,
        apop: bool | None = None,
        oauth: bool = False,
        external: ExternalMapper | None = None,
        authorize: Callable[[str, str], bool] | None = None,
        hostname: str | None = None,
        autologout: float = MINIMUM_AUTOLOGOUT,
        login_timeout: float = 180.0,
        auth_failure_delay: float = 2.0,
        max_connections: int | None = None,
        max_connections_per_address: int = 100,
        max_login_penalty: float = 15.0,
        options: ServerOptions | None = None,
        read_size: int = 64 * 1024,
        worker_threads: int = 16,
    ) -> None:
        if tls_port is not None and ssl_context is None:
            raise ValueError("tls_port needs an ssl_context")
        if port is None and tls_port is None:
            raise ValueError("nothing to listen on: give port and/or tls_port")
        if worker_threads < 1:
            raise ValueError("worker_threads must be at least 1")
        self.blocking_store = store
        self.authenticator = authenticator
        self.ssl_context = ssl_context
        self.allow_cleartext = allow_cleartext
        self.external = external
        self.read_size = read_size
        self.worker_threads = worker_threads
        self.host = host
        self._ports = [(p, implicit) for p, implicit in ((port, False), (tls_port, True))]
        wanted = DEFAULT_MAX_CONNECTIONS if max_connections is None else max_connections
        self.limits = ConnectionLimits(
            _descriptor_bound(wanted),
            max_connections_per_address,
            max_login_penalty=max_login_penalty,
        )
        if max_connections is not None and self.limits.max_connections < max_connections:
            logger.warning(
                "max_connections lowered from %d to %d: the process may open too few "
                "file descriptors (raise `ulimit -n`)",
                max_connections,
                self.limits.max_connections,
            )
        self._options = session_options(
            authenticator,
            mechanisms=mechanisms,
            apop=apop,
            oauth=oauth,
            external=external is not None,
            authorize=authorize,
            hostname=hostname,
            autologout=autologout,
            login_timeout=login_timeout,
            auth_failure_delay=auth_failure_delay,
            options=options,
        )
        self._listeners: list[tuple[anyio.abc.SocketListener, bool]] = []
        self._table = SessionTable(self.limits)
        self._slots: set[_Slot] = set()
        self._sessions_done: anyio.Event | None = None  # set when the last slot goes
        self._stopped: anyio.Event | None = None  # set when shutdown is complete
        self._limiter: anyio.CapacityLimiter | None = None
        self._store: AsyncMailStore | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._own_group: anyio.abc.TaskGroup | None = None  # `async with`'s
        self._draining = False  # no new connections; sessions run on
        self._stopping = False  # no UPDATE may begin; sessions are being closed
        self._count = 0

    # ----------------------------------------------------------- where it listens

    @property
    def addresses(self) -> list[tuple[str, int, bool]]:
        """``(host, port, implicit_tls)`` of each listening socket (empty before it starts)."""
        result = []
        for listener, implicit in self._listeners:
            local: tuple[str, int] = listener.extra(SocketAttribute.local_address)  # type: ignore[assignment]
            result.append((str(local[0]), int(local[1]), implicit))
        return result

    @property
    def port(self) -> int | None:
        """The plain POP3 port (the one with STLS), if any."""
        return next((port for _, port, implicit in self.addresses if not implicit), None)

    @property
    def tls_port(self) -> int | None:
        """The implicit-TLS port, if any."""
        return next((port for _, port, implicit in self.addresses if implicit), None)

    @property
    def store(self) -> AsyncMailStore:
        """The store as the sessions see it (a blocking one, wrapped for worker threads)."""
        if self._store is None:
            raise RuntimeError("the server has not started")
        return self._store

    @property
    def sessions(self) -> int:
        """How many sessions are running now."""
        return len(self._slots)

    # ----------------------------------------------------------- lifecycle

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[Server] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Bind the listeners, report started (with ``task_group.start``), and serve
        until `shutdown` has finished. Cancelling this closes every session at
        once, without UPDATE. A port that cannot be bound raises `OSError`
        (its ``filename`` is the ``host:port``)."""
        await self._open()
        await self._run(task_status=task_status)

    async def _open(self) -> None:
        if self._stopped is not None:
            raise RuntimeError("a Server serves once")
        self._stopped = anyio.Event()
        self._sessions_done = anyio.Event()
        self._limiter = anyio.CapacityLimiter(self.worker_threads)
        self._store = as_async_store(self.blocking_store, self._limiter)
        await self._bind()

    async def _run(
        self, *, task_status: anyio.abc.TaskStatus[Server] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        assert self._stopped is not None
        try:
            async with anyio.create_task_group() as group:
                self._task_group = group
                for listener, implicit in self._listeners:
                    group.start_soon(self._accept, listener, implicit)
                task_status.started(self)
                await self._stopped.wait()
                group.cancel_scope.cancel()  # the accept loops; the sessions are gone
        finally:
            self._draining = self._stopping = True
            for slot in list(self._slots):
                slot.cut()
            await self._close_listeners()
            self._stopped.set()

    async def _bind(self) -> None:
        try:
            for port, implicit in self._ports:
                if port is None:
                    continue
                try:
                    listener = await anyio.create_tcp_listener(
                        local_host=self.host, local_port=port
                    )
                except OSError as exc:
                    exc.filename = f"{self.host}:{port}"  # which one, for the message
                    raise
                for one in listener.listeners:
                    assert isinstance(one, anyio.abc.SocketListener)
                    self._listeners.append((one, implicit))
        except BaseException:
            await self._close_listeners()  # the first port, if the second failed
            raise

    async def _close_listeners(self) -> None:
        for listener, _ in self._listeners:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await listener.aclose()

    async def shutdown(self, grace: float = 10.0, timeout: float = 10.0) -> None:
        """Stop accepting; give the sessions `grace` seconds to finish; then close the rest.

        During the grace period sessions go on as usual (a client may QUIT
        and have its deletions committed). Then every session is closed
        without UPDATE, except one whose UPDATE has begun: its commit
        completes and its ``+OK`` is sent if that takes less than `timeout`
        seconds more (a commit running in a worker thread is never
        interrupted: shutdown waits for it, then cuts the connection).
        Returns when every session has ended. Idempotent.
        """
        if self._stopped is None or self._stopped.is_set():
            return  # never started, or done
        self._draining = True
        await self._close_listeners()
        assert self._sessions_done is not None
        if self._slots:
            logger.info(
                "shutting down: %d session(s) have %.1f s to end",
                len(self._slots),
                grace,
                extra={"pop3_event": "shutdown"},
            )
            with anyio.move_on_after(grace):
                await self._sessions_done.wait()
        # Sessions see `_stopping` at their next step: no UPDATE begins after this.
        self._stopping = True
        for slot in list(self._slots):
            if not slot.committing:
                slot.cut()
        if self._slots:
            with anyio.move_on_after(timeout):
                await self._sessions_done.wait()
        for slot in list(self._slots):  # a commit that outlived the timeout
            slot.cut()
        if self._slots:
            await self._sessions_done.wait()
        self._stopped.set()

    async def __aenter__(self) -> Server:
        await self._open()  # outside the task group: a bind error is raised as it is
        group = anyio.create_task_group()
        await group.__aenter__()
        try:
            await group.start(self._run)
        except BaseException as exc:
            await group.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._own_group = group
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        group, self._own_group = self._own_group, None
        assert group is not None
        try:
            await self.shutdown()
        finally:
            if self._stopped is not None and not self._stopped.is_set():
                group.cancel_scope.cancel()  # shutdown was cancelled: cut everything
        return await group.__aexit__(exc_type, exc, tb)

    # ----------------------------------------------------------- connections

    async def _accept(self, listener: anyio.abc.SocketListener, implicit: bool) -> None:
        while not self._draining:
            try:
                stream = await listener.accept()
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return
            except OSError as exc:
                # Out of descriptors or memory, or a connection reset before it
                # was accepted: pause, and keep serving once it passes.
                logger.warning("accept failed: %s", exc, extra={"pop3_event": "accept-failed"})
                await anyio.sleep(0.1)
                continue
            self._admit(stream, implicit)

    def _admit(self, stream: anyio.abc.SocketStream, implicit: bool) -> None:
        peer = stream.extra(SocketAttribute.remote_address)
        address = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        group = self._task_group
        assert group is not None
        if self._draining:
            group.start_soon(_close_now, stream)
            return
        self._count += 1
        slot = _Slot(self._count)
        victims = self._table.admit(slot, address)
        if victims is None:
            logger.warning(
                "refusing %s: %d sessions (%d from its address), all logged in or busy",
                peer,
                len(self._table),
                self._table.count(address),
                extra={"pop3_event": "refused", "pop3_peer": address},
            )
            group.start_soon(_refuse, stream, implicit)
            return
        for victim in victims:
            assert isinstance(victim, _Slot)
            victim.cut()
        if victims:
            logger.info(
                "closed %d idle session(s) to admit %s",
                len(victims),
                peer,
                extra={"pop3_event": "evicted", "pop3_peer": address},
            )
        self._slots.add(slot)
        group.start_soon(self._serve_connection, slot, stream, peer, implicit)

    def _options_for(self, address: str, *, implicit: bool) -> ServerOptions:
        return dataclasses.replace(
            self._options,
            allow_cleartext=cleartext_allowed(self.allow_cleartext, address),
            tls_available=self.ssl_context is not None and not implicit,
        )

    async def _serve_connection(
        self, slot: _Slot, raw: anyio.abc.SocketStream, peer: Any, implicit: bool
    ) -> None:
        started = anyio.current_time()
        peer = peer if isinstance(peer, tuple) else (str(peer), 0)
        address = str(peer[0])
        fields = {"pop3_session": slot.number, "pop3_peer": address}
        logger.info(
            "connection from %s%s",
            peer,
            " (TLS)" if implicit else "",
            extra={"pop3_event": "connected", **fields},
        )
        options = self._options_for(address, implicit=implicit)
        stream = Stream(raw)
        try:
            with slot.scope:
                if implicit:
                    assert self.ssl_context is not None
                    await stream.start_tls(
                        self.ssl_context,
                        server_side=True,
                        hostname=None,
                        timeout=min(TLS_HANDSHAKE_TIMEOUT, options.login_timeout),
                    )
                driver = SessionDriver(
                    self,
                    slot,
                    stream,
                    peer=peer,
                    options=options,
                    started=started,
                    closing=slot.closing,
                    number=slot.number,
                )
                await driver.run()
        except (OSError, Abort) as exc:  # ssl.SSLError and TimeoutError are OSErrors
            logger.info(
                "connection from %s ended: %s",
                peer,
                exc,
                extra={"pop3_event": "ended", **fields},
            )
        except Exception:
            logger.exception(
                "session with %s failed", peer, extra={"pop3_event": "error", **fields}
            )
        finally:
            await stream.aclose()
            self._slots.discard(slot)
            self._table.release(slot)
            if not self._slots and self._sessions_done is not None and self._draining:
                self._sessions_done.set()
            logger.info(
                "connection from %s closed after %.1f s",
                peer,
                anyio.current_time() - started,
                extra={"pop3_event": "closed", **fields},
            )

    # ----------------------------------------------------------- the sessions' host

    @property
    def stopping(self) -> bool:
        """Whether shutdown has passed its grace period (no UPDATE may begin)."""
        return self._stopping

    async def run_sync(self, function: Callable[..., T], *args: Any) -> T:
        """Run blocking work (an authenticator call, a big listing) in a worker thread."""
        assert self._limiter is not None
        return await anyio.to_thread.run_sync(
            functools.partial(function, *args), limiter=self._limiter
        )

    def mark(self, key: Hashable, *, busy: bool | None = None, logged_in: bool = False) -> None:
        if logged_in:
            self._table.logged_in(key)
        elif busy is not None:
            self._table.busy(key, busy)

    def failure_delay(self, key: Hashable, delay: float) -> float:
        """The session's failure delay, doubled for the address's recent failures."""
        return self._table.login_failed(key, time.monotonic(), delay)

    def begin_update(self, key: Hashable) -> None:
        """Mark the session as committing, unless the grace period is over (then abort).

        The event loop runs one task at a time: a session either began its
        UPDATE before `shutdown` looked, which then lets it finish, or never does.
        """
        if self._stopping:
            raise Abort("the server is shutting down")
        assert isinstance(key, _Slot)
        key.committing = True


async def _close_now(stream: anyio.abc.SocketStream) -> None:
    with contextlib.suppress(Exception):
        await anyio.aclose_forcefully(stream)


async def _refuse(stream: anyio.abc.SocketStream, implicit: bool) -> None:
    """Tell a client there is no room (on the plain port) and hang up."""
    try:
        if not implicit:
            refusal = Connection(SERVER).send(
                ErrResponse("too many connections, try again later", SYS_TEMP)
            )
            with anyio.move_on_after(_REFUSAL_TIMEOUT):
                await stream.send(refusal)
    except Exception:  # the client is gone already
        logger.debug("refusal not sent", exc_info=True)
    finally:
        await _close_now(stream)
