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

import dataclasses
import functools
import logging
import socket
import ssl
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Protocol, TypeVar

from pop3_stores import Maildrop, MailStore, Authenticator, MaildropError, MaildropLocked
from pop3core import (
    IN_USE,
    NEED_DATA,
    PAUSED,
    SYS_TEMP,
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
    StartTLS,
    TokenCheck,
    UpdateRequest,
    XOAuth2Server,
    login_failure_message,
    server_mechanisms,
)

from ._streams import Stream, cleanup_scope, now, sleep_until_closed

__all__ = [
    "TLS_HANDSHAKE_TIMEOUT",
    "Abort",
    "ExternalMapper",
    "SessionDriver",
    "SessionHost",
    "session_options",
]

logger = logging.getLogger("pop3_blocking.server")

AuthRequest = PasswordCheck | SecretRequest | ScramKeysRequest | TokenCheck | ExternalCheck
ExternalMapper = Callable[[dict[str, Any] | None], str | None]
"""Maps a verified client certificate (None without one) to a user name."""

# A TLS handshake that has not finished in this time is abandoned (and never
# outlives the pre-login deadline).
TLS_HANDSHAKE_TIMEOUT = 30.0

# Closing a maildrop or a message reader, shielded from cancellation, takes at most this.
CLEANUP_TIMEOUT = 5.0

T = TypeVar("T")


def session_options(
    authenticator: Authenticator,
    *,
    mechanisms: Sequence[str] | None,
    apop: bool | None,
    oauth: bool,
    external: bool,
    authorize: Callable[[str, str], bool] | None,
    hostname: str | None,
    autologout: float,
    login_timeout: float,
    auth_failure_delay: float,
    options: ServerOptions | None,
) -> ServerOptions:
    """A server's session options from its constructor's arguments (see `Server`).

    SASL mechanisms default to what every record of `authenticator` can
    serve; APOP is offered when they can all serve CRAM-MD5.
    """
    hostname = hostname or socket.gethostname() or "localhost"
    names = list(mechanisms if mechanisms is not None else authenticator.mechanisms())
    sasl = server_mechanisms(names, hostname=hostname)
    if oauth:
        sasl += [OAuthBearerServer(), XOAuth2Server()]
    if external:
        sasl.append(ExternalServer())
    base = options or ServerOptions()
    return dataclasses.replace(
        base,
        hostname=hostname,
        mechanisms=tuple(base.mechanisms) + tuple(sasl),
        apop=("CRAM-MD5" in names) if apop is None else apop,
        authorize=authorize if authorize is not None else base.authorize,
        autologout=autologout,
        login_timeout=login_timeout,
        auth_failure_delay=auth_failure_delay,
    )


class Abort(Exception):
    """The session cannot go on (shutdown, a message that failed mid-stream): hang up."""


class SessionHost(Protocol):
    """What a server gives the sessions it runs."""

    authenticator: Authenticator
    external: ExternalMapper | None
    ssl_context: ssl.SSLContext | None
    read_size: int

    @property
    def store(self) -> MailStore:
        """Where the maildrops are."""

    @property
    def stopping(self) -> bool:
        """Whether shutdown has begun (no UPDATE may begin)."""

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
        number: int = 0,
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
        # Every log record of the session carries these (as LogRecord attributes).
        self.fields: dict[str, object] = {
            "pop3_session": number,
            "pop3_peer": str(peer[0]),
            "pop3_port": peer[1] if len(peer) > 1 else None,
        }

    def log(self, level: int, event: str, message: str, *args: object, **fields: object) -> None:
        """Log one line of this session; `event` and `fields` go in the record's ``pop3_*``.

        Never give a secret here: names and mechanisms only.
        """
        extra = {"pop3_event": event, **self.fields}
        extra.update((f"pop3_{name}", value) for name, value in fields.items())
        logger.log(level, message, *args, extra=extra, exc_info=level >= logging.ERROR)

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
                        self.log(
                            logging.INFO,
                            "ended",
                            "session with %s ended: %s",
                            self.peer,
                            event.error,
                        )
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
            self.log(logging.INFO, "autologout", "autologout of %s", self.peer)
        else:
            self.log(logging.INFO, "login-timeout", "%s did not log in in time", self.peer)
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
            self.log(
                logging.ERROR,
                "backend-error",
                "%s failed for %s",
                type(request).__name__,
                self.peer,
            )
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
        self.log(
            logging.WARNING,
            "login-failed",
            "%s",
            login_failure_message(event, self.peer[0], self.peer[1]),
            user=event.username,
            mechanism=event.mechanism,
        )
        delay = self.host.failure_delay(self.key, event.delay)
        # The reply leaves `delay` after the client's line arrived, however long
        # the check took: a wrong password and an unknown user take as long.
        wait = self.last_read + delay - now()
        if wait > 0:
            sleep_until_closed(self.closing, wait)  # cut short when the session is closed
        self.session.failure_delay_elapsed()

    def open_maildrop(self, request: MaildropRequest) -> None:
        session = self.session
        try:
            maildrop = self.host.store.open(request.username)
        except MaildropLocked:
            session.maildrop_failed("the maildrop is in use by another session", IN_USE)
            return
        except (MaildropError, OSError) as exc:
            self.log(
                logging.WARNING,
                "maildrop-error",
                "cannot open the maildrop of %s: %s",
                request.username,
                exc,
                user=request.username,
            )
            session.maildrop_failed("cannot open the maildrop", SYS_TEMP)
            return
        self.maildrop = maildrop  # from now on `run` closes it, however the session ends
        try:
            listing = maildrop.listing()
            self.host.run_sync(session.maildrop_opened, listing)
        except Exception as exc:
            self.close_maildrop()
            self.log(
                logging.WARNING,
                "maildrop-error",
                "cannot list the maildrop of %s: %s",
                request.username,
                exc,
                user=request.username,
            )
            session.maildrop_failed("cannot read the maildrop", SYS_TEMP)
            return
        self.host.mark(self.key, logged_in=True)  # never evicted from now on
        fields = {"user": request.username, "mechanism": request.mechanism}
        if request.authcid != request.username:
            self.log(
                logging.INFO,
                "login",
                "%s logged in as %s from %s (%s)",
                request.authcid,
                request.username,
                self.peer,
                request.mechanism,
                authcid=request.authcid,
                **fields,
            )
        else:
            self.log(
                logging.INFO,
                "login",
                "%s logged in from %s (%s)",
                request.username,
                self.peer,
                request.mechanism,
                **fields,
            )

    def send_message(self, request: MessageRequest) -> None:
        session = self.session
        assert self.maildrop is not None
        started = False
        chunks = self.maildrop.read(request.index)
        try:
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
                self.log(
                    logging.WARNING,
                    "message-error",
                    "cannot read message %d: %s",
                    request.number,
                    exc,
                )
                session.message_failed("cannot read the message", SYS_TEMP)
                return
            # Half a message has gone out: the only honest signal left is to hang up.
            raise Abort(f"message {request.number} failed mid-stream: {exc}") from exc
        finally:
            # At once, even when cancelled: closing the reader releases its file.
            with cleanup_scope(CLEANUP_TIMEOUT):
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
        session.end_message()

    def update(self, request: UpdateRequest) -> None:
        assert self.maildrop is not None
        self.host.begin_update(self.key)
        try:
            removed = self.maildrop.commit(request.indexes)
        except Exception:
            self.log(logging.ERROR, "commit-error", "commit failed for %s", self.peer)
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
        """Release the maildrop's lock; at once, even in a cancelled task."""
        maildrop, self.maildrop = self.maildrop, None
        if maildrop is not None:
            with cleanup_scope(CLEANUP_TIMEOUT):
                maildrop.close()
