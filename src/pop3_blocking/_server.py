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
import functools
import ipaddress
import logging
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Any, Literal

from pop3_stores import Authenticator, Maildrop, MaildropError, MaildropLocked, MailStore
from pop3core import (
    IN_USE,
    MINIMUM_AUTOLOGOUT,
    NEED_DATA,
    PAUSED,
    SERVER,
    SYS_TEMP,
    Connection,
    ConnectionLimits,
    ErrResponse,
    ExternalCheck,
    ExternalServer,
    LoginFailed,
    MaildropRequest,
    MessageRequest,
    OAuthBearerServer,
    PasswordCheck,
    ScramKeysRequest,
    SecretRequest,
    ServerOptions,
    ServerSession,
    SessionEnded,
    SessionTable,
    StartTLS,
    TokenCheck,
    UpdateRequest,
    XOAuth2Server,
    login_failure_message,
    server_mechanisms,
)

__all__ = ["MINIMUM_AUTOLOGOUT", "Server"]

logger = logging.getLogger("pop3_blocking.server")

AuthRequest = PasswordCheck | SecretRequest | ScramKeysRequest | TokenCheck | ExternalCheck

ExternalMapper = Callable[[dict[str, Any] | None], str | None]
"""Maps a verified client certificate (``getpeercert()``, None without one) to a user."""

# A TLS handshake that has not finished in this time is abandoned (and never
# outlives the pre-login deadline).
TLS_HANDSHAKE_TIMEOUT = 30.0


class _Abort(Exception):
    """The session cannot go on (a message failed mid-stream); close the connection."""


class _Slot:
    """One session's entry in the server's registry: its thread and current socket.

    The socket changes when TLS starts (``wrap_socket`` detaches the plain one),
    and the handshake runs before the new one is stored here; so shutdown cuts
    the connection through `handle`, a duplicate descriptor of the accepted
    socket, which stays valid through every change.
    """

    __slots__ = ("closing", "committing", "handle", "sock", "thread")

    def __init__(self, sock: socket.socket) -> None:
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
        self._read_size = read_size
        hostname = hostname or socket.gethostname() or "localhost"
        names = list(mechanisms if mechanisms is not None else authenticator.mechanisms())
        sasl = server_mechanisms(names, hostname=hostname)
        if oauth:
            sasl += [OAuthBearerServer(), XOAuth2Server()]
        if external is not None:
            sasl.append(ExternalServer())
        base = options or ServerOptions()
        self._options = dataclasses.replace(
            base,
            hostname=hostname,
            mechanisms=tuple(base.mechanisms) + tuple(sasl),
            apop=("CRAM-MD5" in names) if apop is None else apop,
            authorize=authorize if authorize is not None else base.authorize,
            autologout=autologout,
            login_timeout=login_timeout,
            auth_failure_delay=auth_failure_delay,
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
                listener = socket.create_server((host, listen_port), family=family)
                self._listeners.append((listener, implicit))
                listener.setblocking(False)
        except BaseException:
            for listener, _ in self._listeners:  # the first port, if the second failed
                listener.close()
            raise
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # guards _slots, _table and the slots' committing
        self._slots: set[_Slot] = set()  # every session thread still running
        self._table = SessionTable(self.limits)  # the sessions that count against the limits
        self._accept_thread: threading.Thread | None = None
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
            while not self._stopping.is_set():
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
                        if self._stopping.is_set():
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
            if self._stopping.is_set():
                sock.close()
                return
            try:
                slot = _Slot(sock)
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

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop accepting, end every session without UPDATE, and wait for them.

        A session whose UPDATE has begun is left to finish it and send its
        reply, for up to `timeout` seconds; then it is cut too.
        """
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
        if self.allow_cleartext == "loopback":
            try:
                address = ipaddress.ip_address(str(peer[0]).split("%")[0])
            except ValueError:
                cleartext = False
            else:
                # On a dual-stack socket an IPv4 client shows as ::ffff:a.b.c.d.
                mapped = getattr(address, "ipv4_mapped", None)
                cleartext = (mapped or address).is_loopback
        else:
            cleartext = bool(self.allow_cleartext)
        return dataclasses.replace(
            self._options,
            allow_cleartext=cleartext,
            tls_available=self.ssl_context is not None and not implicit,
        )

    def _serve_connection(self, slot: _Slot, peer: Any, implicit: bool) -> None:
        started = time.monotonic()
        logger.info("connection from %s%s", peer, " (TLS)" if implicit else "")
        options = self._options_for(peer, implicit=implicit)
        handler: _Handler | None = None
        try:
            if implicit:
                assert self.ssl_context is not None
                slot.sock.settimeout(min(TLS_HANDSHAKE_TIMEOUT, options.login_timeout))
                slot.sock = self.ssl_context.wrap_socket(slot.sock, server_side=True)
            handler = _Handler(self, slot, peer, options, started)
            handler.run()
        except (OSError, _Abort) as exc:
            logger.info("connection from %s ended: %s", peer, exc)
        except Exception:
            logger.exception("session with %s failed", peer)
        finally:
            if handler is not None:
                handler.close_maildrop()
            with contextlib.suppress(OSError):
                slot.sock.close()
            slot.handle.close()
            with self._lock:
                self._slots.discard(slot)
                self._table.release(slot)
            logger.info("connection from %s closed", peer)

    def _mark(self, slot: _Slot, *, busy: bool | None = None, logged_in: bool = False) -> None:
        with self._lock:
            if logged_in:
                self._table.logged_in(slot)
            elif busy is not None:
                self._table.busy(slot, busy)

    def _failure_delay(self, slot: _Slot, delay: float) -> float:
        """The session's failure delay, doubled for the address's recent failures."""
        with self._lock:
            return self._table.login_failed(slot, time.monotonic(), delay)

    def _begin_update(self, slot: _Slot) -> None:
        """Mark `slot` as committing, unless shutdown has begun (then abort)."""
        with self._lock:
            if self._stopping.is_set():
                raise _Abort("the server is shutting down")
            slot.committing = True


class _Handler:
    """The drive loop of one session: socket bytes in and out, store calls."""

    def __init__(
        self, server: Server, slot: _Slot, peer: Any, options: ServerOptions, started: float
    ) -> None:
        self.server = server
        self.slot = slot
        self.peer = peer
        self.started = started
        self.last_read = started  # when the client's last bytes arrived
        self.session = ServerSession(options, tls_active=isinstance(slot.sock, ssl.SSLSocket))
        self.maildrop: Maildrop | None = None

    def run(self) -> None:
        session = self.session
        self.flush()
        while True:
            event = session.next_event()
            if event is NEED_DATA:
                self.flush()  # the session may have answered commands by itself
                data = self.receive()
                if data is None:
                    return
                session.receive_data(data)
                continue
            if event is PAUSED:
                # Replies to pipelined commands wait to be written: the writes block
                # while the client does not read, and so the session is held too.
                if not self.flush():
                    raise AssertionError("the session is waiting for an answer it never got")
                continue
            if isinstance(event, SessionEnded):
                self.flush()
                if event.error is not None:
                    logger.info("session with %s ended: %s", self.peer, event.error)
                return
            if self.server._stopping.is_set():
                # Commands read before shutdown cut the connection are not acted
                # on: above all, a QUIT must not commit once shutdown has begun.
                raise _Abort("the server is shutting down")
            self.handle(event)
            self.flush()

    def receive(self) -> bytes | None:
        """The client's next bytes; None when the session must end without a reply.

        Waits at most what the session allows: the rest of the pre-login
        deadline, or the autologout (RFC 1939: no reply, no UPDATE).
        """
        sock = self.slot.sock
        timeout = self.session.read_timeout(time.monotonic() - self.started)
        if timeout > 0:
            sock.settimeout(timeout)
            try:
                data = sock.recv(self.server._read_size)
            except TimeoutError:
                pass
            else:
                self.last_read = time.monotonic()
                return data
        if self.session.logged_in:
            logger.info("autologout of %s", self.peer)
        else:
            logger.info("%s did not log in in time", self.peer)
        return None

    def flush(self) -> bool:
        """Write out what the session queued; whether there was anything."""
        pieces = self.session.data_to_send()
        if not pieces:
            return False
        sock = self.slot.sock
        if len(pieces) == 1 or isinstance(sock, ssl.SSLSocket):
            sock.sendall(pieces[0] if len(pieces) == 1 else b"".join(pieces))
        else:
            _send_pieces(sock, pieces)
        return True

    def handle(self, event: object) -> None:
        if isinstance(
            event, (PasswordCheck, SecretRequest, ScramKeysRequest, TokenCheck, ExternalCheck)
        ):
            self.backend(self.answer_auth, event)
        elif isinstance(event, LoginFailed):
            self.login_failed(event)
        elif isinstance(event, MaildropRequest):
            self.backend(self.open_maildrop, event)
        elif isinstance(event, MessageRequest):
            self.send_message(event)
        elif isinstance(event, UpdateRequest):
            self.update(event)
        elif isinstance(event, StartTLS):
            self.start_tls()
        else:
            raise AssertionError(f"unexpected session event {event!r}")

    def backend(self, call: Callable[[Any], None], event: Any) -> None:
        """Run a login step that waits on a backend; meanwhile the session is not evicted."""
        self.server._mark(self.slot, busy=True)
        try:
            call(event)
        finally:
            self.server._mark(self.slot, busy=False)

    def answer_auth(self, request: AuthRequest) -> None:
        """Ask the authenticator (or the certificate mapper), then answer the session.

        Any failure of the backend (a lookup, a stored hash it cannot use, a
        mapper that raises) is an answer too: -ERR [SYS/TEMP], never a dead session.
        """
        try:
            answer = self.ask_backend(request)
        except Exception:
            logger.exception("%s failed for %s", type(request).__name__, self.peer)
            self.session.backend_failed()
            return
        answer()

    def ask_backend(self, request: AuthRequest) -> Callable[[], None]:
        """The backend's answer to `request`, as the session call that gives it."""
        server, session = self.server, self.session
        if isinstance(request, TokenCheck):
            owner = server.authenticator.check_token(
                request.username, request.token, request.mechanism
            )
            return functools.partial(session.token_checked, owner)
        if isinstance(request, ExternalCheck):
            sock = self.slot.sock
            certificate = sock.getpeercert() if isinstance(sock, ssl.SSLSocket) else None
            username = None if server.external is None else server.external(certificate)
            return functools.partial(session.external_checked, username)
        credential = server.authenticator.credential(request.username)
        if isinstance(request, PasswordCheck):
            ok = credential is not None and credential.verify_password(request.password)
            return functools.partial(session.password_checked, ok)
        if isinstance(request, SecretRequest):
            secret = None if credential is None else credential.secret
            return functools.partial(session.secret_provided, secret)
        keys = None if credential is None else credential.scram_keys(request.mechanism)
        return functools.partial(session.scram_keys_provided, keys)

    def login_failed(self, event: LoginFailed) -> None:
        logger.warning(login_failure_message(event, self.peer[0], self.peer[1]))
        delay = self.server._failure_delay(self.slot, event.delay)
        # The reply leaves `delay` after the client's line arrived, however long
        # the check took: a wrong password and an unknown user take as long.
        wait = self.last_read + delay - time.monotonic()
        if wait > 0:
            self.slot.closing.wait(wait)  # cut short when the session is closed
        self.session.failure_delay_elapsed()

    def open_maildrop(self, request: MaildropRequest) -> None:
        session = self.session
        try:
            maildrop = self.server.store.open(request.username)
        except MaildropLocked:
            session.maildrop_failed("the maildrop is in use by another session", IN_USE)
            return
        except (MaildropError, OSError) as exc:
            logger.warning("cannot open the maildrop of %s: %s", request.username, exc)
            session.maildrop_failed("cannot open the maildrop", SYS_TEMP)
            return
        try:
            listing = maildrop.listing()
            session.maildrop_opened(listing)
        except Exception as exc:
            maildrop.close()
            logger.warning("cannot list the maildrop of %s: %s", request.username, exc)
            session.maildrop_failed("cannot read the maildrop", SYS_TEMP)
            return
        self.maildrop = maildrop
        self.server._mark(self.slot, logged_in=True)  # never evicted from now on
        if request.authcid != request.username:
            logger.info(
                "%s logged in as %s from %s (%s)",
                request.authcid,
                request.username,
                self.peer,
                request.mechanism,
            )
        else:
            logger.info(
                "%s logged in from %s (%s)", request.username, self.peer, request.mechanism
            )

    def send_message(self, request: MessageRequest) -> None:
        session = self.session
        assert self.maildrop is not None
        started = False
        chunks: Iterator[bytes] | None = None
        try:
            chunks = iter(self.maildrop.read(request.index))
            for chunk in chunks:
                # Each chunk goes out when the next one is in hand, so the last
                # one leaves together with the terminator, in one write.
                if started:
                    self.flush()
                more = session.send_message(chunk)
                started = True
                if not more:
                    break
        except (MaildropError, OSError) as exc:
            if not session.message_started:  # chunks may be held unsent (RFC 6856 check)
                logger.warning("cannot read message %d: %s", request.number, exc)
                session.message_failed("cannot read the message", SYS_TEMP)
                return
            # Half a message has gone out: the only honest signal left is to hang up.
            raise _Abort(f"message {request.number} failed mid-stream: {exc}") from exc
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        session.end_message()

    def update(self, request: UpdateRequest) -> None:
        assert self.maildrop is not None
        self.server._begin_update(self.slot)
        try:
            removed = self.maildrop.commit(request.indexes)
        except Exception:
            logger.exception("commit failed for %s", self.peer)
            removed = False
        self.session.update_done(removed)

    def start_tls(self) -> None:
        context = self.server.ssl_context
        assert context is not None
        self.flush()  # the +OK goes out in plaintext, then the handshake
        sock = self.slot.sock
        remaining = self.session.read_timeout(time.monotonic() - self.started)
        sock.settimeout(max(0.001, min(TLS_HANDSHAKE_TIMEOUT, remaining)))
        self.slot.sock = context.wrap_socket(sock, server_side=True)
        self.session.tls_established()

    def close_maildrop(self) -> None:
        if self.maildrop is not None:
            self.maildrop.close()
            self.maildrop = None


# Linux's IOV_MAX; sendmsg refuses more buffers than this in one call.
_MAX_BUFFERS = 1024


def _send_pieces(sock: socket.socket, pieces: list[bytes | bytearray | memoryview]) -> None:
    """Write every piece in order with scatter-gather writes: no joined copy.

    A stuffed body is many views into one chunk (see `pop3core.BodyEncoder`);
    joining them would copy the whole message once more.
    """
    views = [memoryview(piece) for piece in pieces]
    first = 0
    while first < len(views):
        sent = sock.sendmsg(views[first : first + _MAX_BUFFERS])
        while first < len(views) and sent >= views[first].nbytes:
            sent -= views[first].nbytes
            first += 1
        if sent:
            views[first] = views[first][sent:]
