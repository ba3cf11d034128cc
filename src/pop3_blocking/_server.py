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
import ipaddress
import logging
import selectors
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Any, Literal

from pop3core import (
    IN_USE,
    NEED_DATA,
    PAUSED,
    SERVER,
    SYS_TEMP,
    Connection,
    ErrResponse,
    ExternalCheck,
    ExternalServer,
    MaildropRequest,
    MessageRequest,
    OAuthBearerServer,
    PasswordCheck,
    ScramKeysRequest,
    SecretRequest,
    ServerOptions,
    ServerSession,
    SessionEnded,
    StartTLS,
    TokenCheck,
    UpdateRequest,
    XOAuth2Server,
    server_mechanisms,
)

from ._storage import Authenticator, Maildrop, MaildropError, MaildropLocked, MailStore

__all__ = ["MINIMUM_AUTOLOGOUT", "Server"]

logger = logging.getLogger("pop3_blocking.server")

# RFC 1939 section 3: an autologout timer MUST be of at least 10 minutes.
MINIMUM_AUTOLOGOUT = 600.0

ExternalMapper = Callable[[dict[str, Any] | None, str], str | None]


class _Abort(Exception):
    """The session cannot go on (a message failed mid-stream); close the connection."""


class _Slot:
    """One session's entry in the server's registry: its thread and current socket.

    The socket changes when TLS starts (``wrap_socket`` detaches the plain one),
    and the handshake runs before the new one is stored here; so shutdown cuts
    the connection through `handle`, a duplicate descriptor of the accepted
    socket, which stays valid through every change.
    """

    __slots__ = ("handle", "sock", "thread")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.handle = sock.dup()
        self.thread: threading.Thread | None = None

    def cut(self) -> None:
        """End the connection: the session thread's next or current read sees EOF."""
        with contextlib.suppress(OSError):
            self.handle.shutdown(socket.SHUT_RDWR)


class Server:
    """A POP3 server on blocking sockets, a thread per connection.

    Listens on ``host``:``port`` (plain POP3; STLS is offered when an
    ``ssl_context`` is given) and, if ``tls_port`` is set, on ``host``:``tls_port``
    with implicit TLS (RFC 8314). Port 0 picks a free port: see `addresses`.

    Safe defaults: it binds to loopback; cleartext logins (USER/PASS, PLAIN,
    LOGIN) are refused without TLS except from loopback clients
    (``allow_cleartext="loopback"``; True or False to decide for everyone);
    idle sessions end after ``autologout`` seconds (at least 10 minutes, RFC
    1939) without UPDATE; a failed login is answered after
    ``auth_failure_delay`` seconds; ``max_connections`` sessions at most, more
    get ``-ERR [SYS/TEMP]``; a session that sends too many bad commands is
    closed (``options.max_bad_commands``). `shutdown` closes every session
    without committing anything.

    SASL mechanisms default to what every record of the ``authenticator`` can
    serve; APOP is offered when they can all serve CRAM-MD5 (plaintext secrets).
    ``oauth=True`` adds XOAUTH2 and OAUTHBEARER (tokens checked by
    ``authenticator.check_token``); ``external`` (a callable mapping the client
    certificate and the requested identity to a user name) adds EXTERNAL.
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
        hostname: str | None = None,
        autologout: float = MINIMUM_AUTOLOGOUT,
        auth_failure_delay: float = 2.0,
        max_connections: int = 100,
        options: ServerOptions | None = None,
        read_size: int = 64 * 1024,
    ) -> None:
        if autologout < MINIMUM_AUTOLOGOUT:
            raise ValueError("RFC 1939: the autologout timer must be at least 10 minutes")
        if tls_port is not None and ssl_context is None:
            raise ValueError("tls_port needs an ssl_context")
        if port is None and tls_port is None:
            raise ValueError("nothing to listen on: give port and/or tls_port")
        self.store = store
        self.authenticator = authenticator
        self.ssl_context = ssl_context
        self.allow_cleartext = allow_cleartext
        self.external = external
        self.auth_failure_delay = auth_failure_delay
        self.max_connections = max_connections
        self._autologout = autologout
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
        )

        self._listeners: list[tuple[socket.socket, bool]] = []
        try:
            for listen_port, implicit in ((port, False), (tls_port, True)):
                if listen_port is None:
                    continue
                listener = socket.create_server((host, listen_port), reuse_port=False)
                self._listeners.append((listener, implicit))
                listener.setblocking(False)
        except BaseException:
            for listener, _ in self._listeners:  # the first port, if the second failed
                listener.close()
            raise
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._slots: set[_Slot] = set()
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
            full = len(self._slots) >= self.max_connections
            if not full and not self._stopping.is_set():
                try:
                    slot = _Slot(sock)
                except OSError as exc:  # no descriptor left for the duplicate
                    logger.warning("refusing %s: %s", peer, exc)
                    sock.close()
                    return
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
                    slot.handle.close()
                    sock.close()
                return
        logger.warning("refusing %s: %d sessions already", peer, self.max_connections)
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
        """Stop accepting, end every session without UPDATE, and wait for them."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if (
            self._accept_thread is not None
            and self._accept_thread is not threading.current_thread()
        ):
            self._accept_thread.join(timeout)
        for listener, _ in self._listeners:
            listener.close()
        with self._lock:
            slots = list(self._slots)
        for slot in slots:
            slot.cut()
        for slot in slots:
            if slot.thread is not None:
                slot.thread.join(timeout)
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
        logger.info("connection from %s%s", peer, " (TLS)" if implicit else "")
        handler: _Handler | None = None
        try:
            if implicit:
                assert self.ssl_context is not None
                slot.sock.settimeout(30)
                slot.sock = self.ssl_context.wrap_socket(slot.sock, server_side=True)
            slot.sock.settimeout(self._autologout)
            handler = _Handler(self, slot, peer, self._options_for(peer, implicit=implicit))
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
            logger.info("connection from %s closed", peer)


class _Handler:
    """The drive loop of one session: socket bytes in and out, store calls."""

    def __init__(self, server: Server, slot: _Slot, peer: Any, options: ServerOptions) -> None:
        self.server = server
        self.slot = slot
        self.peer = peer
        self.session = ServerSession(options, tls_active=isinstance(slot.sock, ssl.SSLSocket))
        self.maildrop: Maildrop | None = None
        self._failures_seen = 0

    def run(self) -> None:
        session = self.session
        self.flush()
        while True:
            event = session.next_event()
            if event is NEED_DATA:
                self.flush()  # the session may have answered commands by itself
                try:
                    data = self.slot.sock.recv(self.server._read_size)
                except TimeoutError:
                    # RFC 1939: the autologout timer ends the session without a reply
                    # and without UPDATE.
                    logger.info("autologout of %s", self.peer)
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

    def flush(self) -> bool:
        """Write out what the session queued; whether there was anything."""
        session = self.session
        if session.login_failures > self._failures_seen:
            self._failures_seen = session.login_failures
            # Slow down password guessing; shutdown cuts the wait short.
            self.server._stopping.wait(self.server.auth_failure_delay)
        pieces = session.data_to_send()
        if not pieces:
            return False
        sock = self.slot.sock
        if len(pieces) == 1 or isinstance(sock, ssl.SSLSocket):
            sock.sendall(pieces[0] if len(pieces) == 1 else b"".join(pieces))
        else:
            _send_pieces(sock, pieces)
        return True

    def handle(self, event: object) -> None:
        session = self.session
        if isinstance(event, (PasswordCheck, SecretRequest, ScramKeysRequest)):
            self.answer_credentials(event)
        elif isinstance(event, TokenCheck):
            self.answer(lambda: session.token_checked(
                self.server.authenticator.check_token(event.username, event.token, event.mechanism)
            ))  # fmt: skip
        elif isinstance(event, ExternalCheck):
            mapper = self.server.external
            sock = self.slot.sock
            certificate = sock.getpeercert() if isinstance(sock, ssl.SSLSocket) else None
            self.answer(lambda: session.external_checked(
                mapper(certificate, event.authzid) if mapper is not None else None
            ))  # fmt: skip
        elif isinstance(event, MaildropRequest):
            self.open_maildrop(event)
        elif isinstance(event, MessageRequest):
            self.send_message(event)
        elif isinstance(event, UpdateRequest):
            self.update(event)
        elif isinstance(event, StartTLS):
            self.start_tls()
        else:
            raise AssertionError(f"unexpected session event {event!r}")

    def answer(self, call: Callable[[], None]) -> None:
        try:
            call()
        except Exception:
            logger.exception("authentication backend failed for %s", self.peer)
            self.session.backend_failed()

    def answer_credentials(
        self, request: PasswordCheck | SecretRequest | ScramKeysRequest
    ) -> None:
        session = self.session
        # Any failure of the backend (a lookup, or a stored hash it cannot use)
        # is an answer too: -ERR [SYS/TEMP], never a dead session.
        try:
            credential = self.server.authenticator.credential(request.username)
            if isinstance(request, PasswordCheck):
                ok = credential is not None and credential.verify_password(request.password)
            elif isinstance(request, SecretRequest):
                secret = None if credential is None else credential.secret
            else:
                keys = None if credential is None else credential.scram_keys(request.mechanism)
        except Exception:
            logger.exception("credential check failed for %s", self.peer)
            session.backend_failed()
            return
        if isinstance(request, PasswordCheck):
            session.password_checked(ok)
        elif isinstance(request, SecretRequest):
            session.secret_provided(secret)
        else:
            session.scram_keys_provided(keys)

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
        logger.info("%s logged in from %s (%s)", request.username, self.peer, request.mechanism)

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
        self.slot.sock = context.wrap_socket(self.slot.sock, server_side=True)
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
