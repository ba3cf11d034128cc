# GENERATED FILE: do not edit. scripts/unasync.py makes it from src/pop3_anyio/_session.py;
# change that file and run `python scripts/unasync.py` (CI checks it is current).
"""The session driver: one POP3 server session between a stream and the stores.

It moves bytes between a `Stream` and a `pop3core.ServerSession`, and turns
the session's requests into store and authenticator calls. It is the source of
both servers' drivers: scripts/unasync.py generates the blocking one from it.
What differs between the servers (how connections are accepted and counted,
how blocking store calls are run, what shutdown means) is the `SessionHost`'s.
"""

from __future__ import annotations

import functools
import logging
import ssl
from collections.abc import Callable, Hashable, Iterator
from typing import Any, Protocol, TypeVar

from pop3_stores import Authenticator, Maildrop, MaildropError, MaildropLocked, MailStore
from pop3core import (
    IN_USE,
    NEED_DATA,
    PAUSED,
    SYS_TEMP,
    ExternalCheck,
    LoginFailed,
    MaildropRequest,
    MessageRequest,
    PasswordCheck,
    ScramKeysRequest,
    SecretRequest,
    ServerOptions,
    ServerSession,
    SessionEnded,
    StartTLS,
    TokenCheck,
    UpdateRequest,
    login_failure_message,
)

from ._streams import Stream, now, sleep_until_closed

__all__ = ["TLS_HANDSHAKE_TIMEOUT", "Abort", "SessionDriver", "SessionHost"]

logger = logging.getLogger("pop3_blocking.server")

AuthRequest = PasswordCheck | SecretRequest | ScramKeysRequest | TokenCheck | ExternalCheck
ExternalMapper = Callable[[dict[str, Any] | None], str | None]
"""Maps a verified client certificate (None without one) to a user name."""

# A TLS handshake that has not finished in this time is abandoned (and never
# outlives the pre-login deadline).
TLS_HANDSHAKE_TIMEOUT = 30.0

T = TypeVar("T")


class Abort(Exception):
    """The session cannot go on (shutdown, a message that failed mid-stream): hang up."""


class SessionHost(Protocol):
    """What a server gives the sessions it runs."""

    store: MailStore
    authenticator: Authenticator
    external: ExternalMapper | None
    ssl_context: ssl.SSLContext | None
    read_size: int

    @property
    def stopping(self) -> bool:
        """Whether shutdown has begun."""

    def run_sync(self, function: Callable[..., T], *args: Any) -> T:
        """Run a blocking store or authenticator call (the async server: in a worker thread)."""

    def mark(self, key: Hashable, *, busy: bool | None = None, logged_in: bool = False) -> None:
        """The session `key` is waiting on a backend (or no longer), or has logged in."""

    def failure_delay(self, key: Hashable, delay: float) -> float:
        """The session's failure delay, grown for its address's recent failures."""

    def begin_update(self, key: Hashable) -> None:
        """The session `key` begins its UPDATE; raises `Abort` if shutdown has begun."""


class SessionDriver:
    """Drives one session: call `run`; the caller closes the stream afterwards.

    ``key`` names the session to the host; ``closing`` is set when the
    connection is cut (it ends a failed login's delay early); ``started`` is
    when the connection was accepted (`now`'s clock).
    """

    def __init__(
        self,
        host: SessionHost,
        key: Hashable,
        stream: Stream,
        *,
        peer: tuple[Any, ...],
        options: ServerOptions,
        started: float,
        closing: Any,
    ) -> None:
        self.host = host
        self.key = key
        self.stream = stream
        self.peer = peer
        self.started = started
        self.closing = closing
        self.last_read = started  # when the client's last bytes arrived
        self.session = ServerSession(options, tls_active=stream.tls_active)
        self.maildrop: Maildrop | None = None

    def run(self) -> None:
        """Serve the session until it ends. `Abort` and `OSError` end it early."""
        session = self.session
        try:
            self.flush()
            while True:
                if self.host.stopping:
                    # No UPDATE may begin now; one under way finishes (ServerSession.stop).
                    session.stop()
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
                self.handle(event)
                self.flush()
        finally:
            self.close_maildrop()

    def receive(self) -> bytes | None:
        """The client's next bytes; None when the session must end without a reply.

        Waits at most what the session allows: the rest of the pre-login
        deadline, or the autologout (RFC 1939: no reply, no UPDATE).
        """
        timeout = self.session.read_timeout(now() - self.started)
        if timeout > 0:
            try:
                data = self.stream.receive(self.host.read_size, timeout)
            except TimeoutError:
                pass
            else:
                self.last_read = now()
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
        # A client that does not read holds the write; the autologout bounds it.
        self.stream.send_all(pieces, self.session.options.autologout)
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

    def backend(self, call: Callable[[Any], Any], event: Any) -> None:
        """Run a login step that waits on a backend; meanwhile the session is not evicted."""
        self.host.mark(self.key, busy=True)
        try:
            call(event)
        finally:
            self.host.mark(self.key, busy=False)

    def answer_auth(self, request: AuthRequest) -> None:
        """Ask the authenticator (or the certificate mapper), then answer the session.

        Any failure of the backend (a lookup, a stored hash it cannot use, a
        mapper that raises) is an answer too: -ERR [SYS/TEMP], never a dead session.
        """
        try:
            answer = self.host.run_sync(self.ask_backend, request)
        except Exception:
            logger.exception("%s failed for %s", type(request).__name__, self.peer)
            self.session.backend_failed()
            return
        answer()

    def ask_backend(self, request: AuthRequest) -> Callable[[], None]:
        """The backend's answer to `request`, as the session call that gives it (blocking)."""
        host, session = self.host, self.session
        if isinstance(request, TokenCheck):
            owner = host.authenticator.check_token(
                request.username, request.token, request.mechanism
            )
            return functools.partial(session.token_checked, owner)
        if isinstance(request, ExternalCheck):
            certificate = self.stream.getpeercert()
            username = None if host.external is None else host.external(certificate)
            return functools.partial(session.external_checked, username)
        credential = host.authenticator.credential(request.username)
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
        delay = self.host.failure_delay(self.key, event.delay)
        # The reply leaves `delay` after the client's line arrived, however long
        # the check took: a wrong password and an unknown user take as long.
        wait = self.last_read + delay - now()
        if wait > 0:
            sleep_until_closed(self.closing, wait)  # cut short when the session is closed
        self.session.failure_delay_elapsed()

    def open_maildrop(self, request: MaildropRequest) -> None:
        session = self.session
        host = self.host
        try:
            maildrop = host.run_sync(host.store.open, request.username)
        except MaildropLocked:
            session.maildrop_failed("the maildrop is in use by another session", IN_USE)
            return
        except (MaildropError, OSError) as exc:
            logger.warning("cannot open the maildrop of %s: %s", request.username, exc)
            session.maildrop_failed("cannot open the maildrop", SYS_TEMP)
            return
        try:
            listing = host.run_sync(maildrop.listing)
            host.run_sync(session.maildrop_opened, listing)
        except Exception as exc:
            host.run_sync(maildrop.close)
            logger.warning("cannot list the maildrop of %s: %s", request.username, exc)
            session.maildrop_failed("cannot read the maildrop", SYS_TEMP)
            return
        self.maildrop = maildrop
        host.mark(self.key, logged_in=True)  # never evicted from now on
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
        run_sync = self.host.run_sync
        assert self.maildrop is not None
        started = False
        chunks: Iterator[bytes] | None = None
        try:
            chunks = run_sync(_chunks, self.maildrop, request.index)
            while (chunk := run_sync(next, chunks, None)) is not None:
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
            raise Abort(f"message {request.number} failed mid-stream: {exc}") from exc
        finally:
            # At once, even when cancelled: closing the reader releases its file.
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        session.end_message()

    def update(self, request: UpdateRequest) -> None:
        assert self.maildrop is not None
        self.host.begin_update(self.key)
        try:
            removed = self.host.run_sync(self.maildrop.commit, request.indexes)
        except Exception:
            logger.exception("commit failed for %s", self.peer)
            removed = False
        self.session.update_done(removed)

    def start_tls(self) -> None:
        context = self.host.ssl_context
        assert context is not None
        self.flush()  # the +OK goes out in plaintext, then the handshake
        remaining = self.session.read_timeout(now() - self.started)
        self.stream.start_tls(
            context,
            server_side=True,
            hostname=None,
            timeout=max(0.001, min(TLS_HANDSHAKE_TIMEOUT, remaining)),
        )
        self.session.tls_established()

    def close_maildrop(self) -> None:
        """Release the maildrop's lock; at once, even in a cancelled task (it is quick)."""
        maildrop, self.maildrop = self.maildrop, None
        if maildrop is not None:
            maildrop.close()


def _chunks(maildrop: Maildrop, index: int) -> Iterator[bytes]:
    return iter(maildrop.read(index))
