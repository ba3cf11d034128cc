"""The threaded POP3 server: one thread per connection around a `ServerSession`.

Why threads: a POP3 session is long and mostly idle, the stores do blocking
file I/O (Maildir reads, fsync-free renames, flock), and TLS with the `ssl`
module is simplest on blocking sockets. A thread per connection keeps each
session a straight-line drive loop; the connection limit bounds the threads.
(The anyio server is the choice for many thousands of connections.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from types import TracebackType
from typing import Any, Literal, TypeVar

from pop3_stores import Authenticator, MailStore
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

__all__ = ["MINIMUM_AUTOLOGOUT", "Server"]

logger = logging.getLogger("pop3_blocking.server")

T = TypeVar("T")


class _Slot:
    """One session's entry in the server's registry: its thread and current socket.

    The socket changes when TLS starts (``wrap_socket`` detaches the plain one),
    and the handshake runs before the new one is stored here; so shutdown cuts
    the connection through `handle`, a duplicate descriptor of the accepted
    socket, which stays valid through every change.
    """

    __slots__ = ("closing", "committing", "handle", "number", "sock", "thread")

    def __init__(self, sock: socket.socket, number: int) -> None:
        self.number = number
        self.sock = sock
        self.handle = sock.dup()
        self.thread: threading.Thread | None = None
        self.closing = threading.Event()  # cut: waits in the session end early
        self.committing = False  # UPDATE has begun: shutdown lets it finish

    def cut(self) -> None:
        """End the connection: the session thread's next or current read sees EOF."""
        self.closing.set()
        with contextlib.suppress(OSError):
            self.handle.shutdown(socket.SHUT_RDWR)


class Server:
    """A POP3 server on blocking sockets, a thread per connection.

    Listens on ``host``:``port`` (plain POP3; STLS is offered when an
    ``ssl_context`` is given) and, if ``tls_port`` is set, on ``host``:``tls_port``
    with implicit TLS (RFC 8314). Port 0 picks a free port: see `addresses`.

    Safe defaults: it binds to loopback; cleartext logins (USER/PASS, PLAIN,
    LOGIN) are refused without TLS except from loopback clients
    (``allow_cleartext="loopback"``; True or False to decide for everyone); a
    client must log in within ``login_timeout`` seconds of connecting, and a
    logged-in session ends after ``autologout`` seconds of silence (at least 10
    minutes, RFC 1939), both without UPDATE; a failed login is answered
    ``auth_failure_delay`` seconds after the client's line arrived, doubled for
    each recent failure from the same address up to ``max_login_penalty``
    seconds, and the session ends after ``options.max_login_failures`` of
    them; a session that sends too many bad commands is closed
    (``options.max_bad_commands``).

    At most ``max_connections`` sessions, and ``max_connections_per_address``
    from one client address (an IPv4 address or an IPv6 /64): when a limit is
    reached, the oldest session that has not logged in (and is not waiting on
    a backend) is closed to make room; a session that has logged in never is.
    Only when nobody can be closed is a client refused (``-ERR [SYS/TEMP]`` on
    the plain port). Failed logins are logged as WARNING in a stable format
    for fail2ban (see `pop3core.login_failure_message`).

    `shutdown` closes every session without committing anything, except that
    a session whose UPDATE (QUIT) has begun finishes it and gets its reply.

    SASL mechanisms default to what every record of the ``authenticator`` can
    serve; APOP is offered when they can all serve CRAM-MD5 (plaintext secrets).
    ``oauth=True`` adds XOAUTH2 and OAUTHBEARER (tokens checked by
    ``authenticator.check_token``); ``external`` (a callable mapping the
    verified client certificate to a user name) adds EXTERNAL. A client may
    act as another user than the one it proved only if ``authorize(authcid,
    authzid)`` returns True (default: never).
    """

    def __init__(
        self,
        store: MailStore,
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
        max_connections: int = 1000,
        max_connections_per_address: int = 100,
        max_login_penalty: float = 15.0,
        options: ServerOptions | None = None,
        read_size: int = 64 * 1024,
    ) -> None:
        if tls_port is not None and ssl_context is None:
            raise ValueError("tls_port needs an ssl_context")
        if port is None and tls_port is None:
            raise ValueError("nothing to listen on: give port and/or tls_port")
        self.store = store
        self.authenticator = authenticator
        self.ssl_context = ssl_context
        self.allow_cleartext = allow_cleartext
        self.external = external
        self.limits = ConnectionLimits(
            max_connections, max_connections_per_address, max_login_penalty=max_login_penalty
        )
        self.read_size = read_size
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

        self._listeners: list[tuple[socket.socket, bool]] = []
        try:
            for listen_port, implicit in ((port, False), (tls_port, True)):
                if listen_port is None:
                    continue
                # An IPv6 address ("::1", "::") needs an AF_INET6 socket.
                family = socket.getaddrinfo(
                    host, listen_port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
                )[0][0]
                try:
                    listener = socket.create_server((host, listen_port), family=family)
                except OSError as exc:
                    exc.filename = f"{host}:{listen_port}"  # which one, for the message
                    raise
                self._listeners.append((listener, implicit))
                listener.setblocking(False)
        except BaseException:
            for listener, _ in self._listeners:  # the first port, if the second failed
                listener.close()
            raise
        self._stopping = threading.Event()
        self._draining = threading.Event()  # no new sessions; the running ones go on
        self._shut_down = False
        self._lock = threading.Lock()  # guards _slots, _table and the slots' committing
        self._slots: set[_Slot] = set()  # every session thread still running
        self._table = SessionTable(self.limits)  # the sessions that count against the limits
        self._accept_thread: threading.Thread | None = None
        self._count = 0  # sessions so far: each one's number in the log
        self._wake_r, self._wake_w = socket.socketpair()

    # ----------------------------------------------------------- lifecycle

    @property
    def addresses(self) -> list[tuple[str, int, bool]]:
        """``(host, port, implicit_tls)`` of each listening socket."""
        result = []
        for listener, implicit in self._listeners:
            host, port = listener.getsockname()[:2]
            result.append((host, port, implicit))
        return result

    @property
    def port(self) -> int | None:
        """The plain POP3 port (the one with STLS), if any."""
        return next((port for _, port, implicit in self.addresses if not implicit), None)

    @property
    def tls_port(self) -> int | None:
        """The implicit-TLS port, if any."""
        return next((port for _, port, implicit in self.addresses if implicit), None)

    def start(self) -> Server:
        """Accept connections in a background thread; return self."""
        if self._accept_thread is None:
            self._accept_thread = threading.Thread(
                target=self.serve_forever, name="pop3-accept", daemon=True
            )
            self._accept_thread.start()
        return self

    def serve_forever(self) -> None:
        """Accept connections until `shutdown` is called."""
        with selectors.DefaultSelector() as selector:
            for listener, implicit in self._listeners:
                selector.register(listener, selectors.EVENT_READ, implicit)
            selector.register(self._wake_r, selectors.EVENT_READ, None)
            while not (self._stopping.is_set() or self._draining.is_set()):
                for key, _ in selector.select():
                    if key.data is None:
                        continue  # woken up by shutdown
                    ready = key.fileobj
                    assert isinstance(ready, socket.socket)
                    try:
                        sock, peer = ready.accept()
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError as exc:
                        if self._stopping.is_set() or self._draining.is_set():
                            break
                        # Out of descriptors or memory, or a connection reset before
                        # it was accepted: pause, and keep serving once it passes.
                        logger.warning("accept failed: %s", exc)
                        self._stopping.wait(0.1)
                        continue
                    self._admit(sock, peer, implicit=bool(key.data))

    def _admit(self, sock: socket.socket, peer: Any, *, implicit: bool) -> None:
        sock.setblocking(True)
        # Replies are written whole; Nagle's algorithm would hold a short one (a
        # terminator, a status line) until the client's delayed ACK, ~40 ms.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            if self._stopping.is_set() or self._draining.is_set():
                sock.close()
                return
            self._count += 1
            try:
                slot = _Slot(sock, self._count)
            except OSError as exc:  # no descriptor left for the duplicate
                logger.warning("refusing %s: %s", peer, exc)
                sock.close()
                return
            victims = self._table.admit(slot, str(peer[0]))
            if victims is not None:
                for victim in victims:
                    assert isinstance(victim, _Slot)
                    victim.cut()
                slot.thread = threading.Thread(
                    target=self._serve_connection,
                    args=(slot, peer, implicit),
                    name=f"pop3-session-{peer}",
                    daemon=True,
                )
                self._slots.add(slot)
                try:
                    slot.thread.start()
                except RuntimeError as exc:  # no thread can be started
                    logger.warning("refusing %s: %s", peer, exc)
                    self._slots.discard(slot)
                    self._table.release(slot)
                    slot.handle.close()
                    sock.close()
                else:
                    if victims:
                        logger.info("closed %d idle session(s) to admit %s", len(victims), peer)
                return
            slot.handle.close()
        logger.warning(
            "refusing %s: %d sessions (%d from its address), all logged in or busy",
            peer,
            len(self._table),
            self._table.count(str(peer[0])),
        )
        try:
            if not implicit:
                refusal = Connection(SERVER).send(
                    ErrResponse("too many connections, try again later", SYS_TEMP)
                )
                sock.settimeout(5)
                sock.sendall(refusal)
        except OSError:
            pass
        finally:
            sock.close()

    def shutdown(self, timeout: float = 10.0, grace: float = 0.0) -> None:
        """Stop accepting, end every session without UPDATE, and wait for them.

        With a `grace` period, sessions first go on as usual for up to that
        many seconds (a client may finish and QUIT, and that QUIT commits).
        Then a session whose UPDATE has begun is left to finish it and send
        its reply, for up to `timeout` seconds; the others are cut at once,
        and that one too when the time is up. Idempotent.
        """
        if self._shut_down:
            return
        self._shut_down = True
        if grace > 0:
            self._drain(grace)
        with self._lock:
            # Under the lock: a session either began its UPDATE before this, or
            # will see `_stopping` and never begin it.
            self._stopping.set()
            slots = list(self._slots)
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if (
            self._accept_thread is not None
            and self._accept_thread is not threading.current_thread()
        ):
            self._accept_thread.join(timeout)
        for listener, _ in self._listeners:
            listener.close()
        for slot in slots:
            if not slot.committing:
                slot.cut()
        deadline = time.monotonic() + timeout
        for slot in slots:
            if slot.thread is not None:
                slot.thread.join(max(0.0, deadline - time.monotonic()))
        for slot in slots:  # a commit that outlived the timeout
            slot.cut()
            if slot.thread is not None:
                slot.thread.join(1.0)
        self._wake_r.close()
        self._wake_w.close()

    def _drain(self, grace: float) -> None:
        """Stop accepting; wait up to `grace` seconds for the sessions to end by themselves."""
        self._draining.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if (
            self._accept_thread is not None
            and self._accept_thread is not threading.current_thread()
        ):
            self._accept_thread.join(grace)
        for listener, _ in self._listeners:
            listener.close()
        with self._lock:
            slots = list(self._slots)
        if slots:
            logger.info("shutting down: %d session(s) have %.1f s to end", len(slots), grace)
        deadline = time.monotonic() + grace
        for slot in slots:
            if slot.thread is not None:
                slot.thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    # ----------------------------------------------------------- sessions

    def _options_for(self, peer: Any, *, implicit: bool) -> ServerOptions:
        return dataclasses.replace(
            self._options,
            allow_cleartext=cleartext_allowed(self.allow_cleartext, str(peer[0])),
            tls_available=self.ssl_context is not None and not implicit,
        )

    def _serve_connection(self, slot: _Slot, peer: Any, implicit: bool) -> None:
        started = time.monotonic()
        logger.info("connection from %s%s", peer, " (TLS)" if implicit else "")
        options = self._options_for(peer, implicit=implicit)
        stream = Stream(slot.sock)
        try:
            if implicit:
                assert self.ssl_context is not None
                stream.start_tls(
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
            driver.run()
        except (OSError, Abort) as exc:
            logger.info("connection from %s ended: %s", peer, exc)
        except Exception:
            logger.exception("session with %s failed", peer)
        finally:
            stream.close()
            slot.handle.close()
            with self._lock:
                self._slots.discard(slot)
                self._table.release(slot)
            logger.info("connection from %s closed", peer)

    # ----------------------------------------------------------- the sessions' host

    @property
    def stopping(self) -> bool:
        """Whether shutdown has begun."""
        return self._stopping.is_set()

    def run_sync(self, function: Callable[..., T], *args: Any) -> T:
        """Run a store call: here, in the session's own thread."""
        return function(*args)

    def mark(self, key: Hashable, *, busy: bool | None = None, logged_in: bool = False) -> None:
        with self._lock:
            if logged_in:
                self._table.logged_in(key)
            elif busy is not None:
                self._table.busy(key, busy)

    def failure_delay(self, key: Hashable, delay: float) -> float:
        """The session's failure delay, doubled for the address's recent failures."""
        with self._lock:
            return self._table.login_failed(key, time.monotonic(), delay)

    def begin_update(self, key: Hashable) -> None:
        """Mark the session as committing, unless shutdown has begun (then abort).

        Under the lock that shutdown takes too: a session either began its
        UPDATE before shutdown, which then lets it finish, or never begins it.
        """
        with self._lock:
            if self._stopping.is_set():
                raise Abort("the server is shutting down")
            assert isinstance(key, _Slot)
            key.committing = True
