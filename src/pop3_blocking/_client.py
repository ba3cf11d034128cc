# GENERATED FILE: do not edit. scripts/unasync.py makes it from src/pop3_anyio/_client.py;
# change that file and run `python scripts/unasync.py` (CI checks it is current).
"""The modern blocking POP3 client: typed, streaming, pipelined, TLS by default.

The async client is the source of both: scripts/unasync.py generates the
blocking client from it (``async``/``await`` removed, the stream backend
swapped; ``# unasync:`` directives mark the few lines where the two differ).
"""

from __future__ import annotations

import contextlib
import ssl
from collections import deque
from collections.abc import Generator, Callable, Iterable, Sequence
from time import monotonic
from types import TracebackType
from typing import Literal, overload

from pop3core import (
    CLIENT,
    DEFAULT_LOW_SPEED,
    NEED_DATA,
    PAUSED,
    Apop,
    AuthChallenge,
    AuthExchange,
    Capa,
    Capabilities,
    ClientMechanism,
    Command,
    Connection,
    ConnectionClosed,
    Data,
    Dele,
    EndOfMultiline,
    ErrResponse,
    Event,
    Exchange,
    Greeting,
    Lang,
    List,
    ListParser,
    LocalProtocolError,
    MaildropStat,
    MessageSizes,
    Noop,
    OkResponse,
    Pass,
    Quit,
    RemoteProtocolError,
    ReplyTimer,
    ResponseError,
    Retr,
    Rset,
    Stat,
    Stls,
    TLSNotOffered,
    Top,
    Uidl,
    UidlParser,
    UniqueIds,
    User,
    Utf8,
    apop_digest,
    body_limit,
    choose_login_method,
    client_mechanism,
    describe,
    error_for,
    parse_capa,
    parse_lang_listing,
    parse_list_line,
    parse_stat,
    parse_uidl_line,
    size_hint,
)

from ._streams import Sink, Stream, cleanup_scope, close_sink, connect, write_to

__all__ = [
    "MAX_LISTING_SIZE",
    "MAX_MESSAGE_SIZE",
    "MAX_PIPELINE_OCTETS",
    "Client",
    "SizeLimitExceeded",
    "TLSMode",
]

TLSMode = Literal["implicit", "starttls", "none"]
LogFunction = Callable[[str], None]

POP3_PORT = 110
POP3S_PORT = 995

# Listings (LIST, UIDL, LANG) are collected whole, so a server that never ends
# one could take all our memory. A million messages with 70-character unique
# ids make a UIDL listing of about 80 MB.
MAX_LISTING_SIZE = 128 * 1024 * 1024

# A message body has no length on the wire. When neither the RETR reply nor a
# LIST says how long it is, and the caller set no max_size, this bounds it, so
# that a server that never ends one cannot take all our memory or our time.
MAX_MESSAGE_SIZE = 1024 * 1024 * 1024

# Above any limit a body can reach.
_UNBOUNDED = 1 << 62

# Pipelined commands are written without reading, while the server may be
# blocked writing replies we have not read yet: the commands in flight must fit
# in the socket buffers (Linux gives a send buffer 16 KiB to start with), or
# both sides wait on each other. So they are bounded in octets as well as in
# number; 8 KiB is still some 600 RETR commands.
MAX_PIPELINE_OCTETS = 8 * 1024

# A file `retr_many_to` opened is closed even when the fetch is cancelled (the
# close is shielded), but not waited for longer than this.
_CLOSE_FILE_WAIT = 10.0


class SizeLimitExceeded(Exception):
    """A message body grew past the caller's ``max_size`` or the client's
    ``max_message_size``; the connection was closed (without QUIT).

    Not a protocol error: the message may be legitimately that large.
    """

    def __init__(self, which: int, limit: int) -> None:
        super().__init__(f"message {which} is longer than {limit} octets")
        self.which = which
        self.limit = limit


def _check_max_size(max_size: int | None) -> None:
    if max_size is not None and max_size < 0:
        raise ValueError("max_size must not be negative")


def _ends_reply(command: Command, event: Event) -> bool:
    """Whether `event` is the last one of the reply to `command`."""
    kind = type(event)
    return (
        kind is ErrResponse
        or kind is EndOfMultiline
        or (kind is OkResponse and not command.expects_multiline)
    )


class _Guard:
    """A context that closes `client`'s connection if an exception leaves it unusable.

    Stateless, so one instance serves nested and interleaved uses.
    """

    __slots__ = ("_client",)

    def __init__(self, client: Client) -> None:
        self._client = client

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        client = self._client
        if exc is not None and not client._closed and client._lost(exc):
            client.close()


class _Reading:
    """A context held by an iterator while it reads a reply: commands are refused meanwhile."""

    __slots__ = ("_client",)

    def __init__(self, client: Client) -> None:
        self._client = client

    def __enter__(self) -> None:
        self._client._reading = True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._client._reading = False


class Client:
    """A POP3 client (blocking).

    Constructing it connects (`open` does it).

    ``tls`` is ``"implicit"`` (RFC 8314, port 995: TLS before the greeting, the
    default), ``"starttls"`` (port 110, STLS required: the client refuses to go
    on if the server does not offer it) or ``"none"``. Certificates are verified
    and the host name checked by default (`ssl.create_default_context`).
    ``connect_timeout`` bounds connecting and the TLS handshake; ``timeout``
    bounds every later read and write (`TimeoutError`).

    A read timeout cannot stop a server that sends one octet just inside it,
    so each reply is also timed from when it is owed (the greeting, each
    command's reply, each reply of a pipelined batch) until it has arrived:
    ``low_speed=(octets, seconds)`` fails a reply that, once begun, brings
    fewer than ``octets`` in the last ``seconds`` (`DEFAULT_LOW_SPEED`, 1 KiB
    a minute: slower than any real link; a server that thinks before it
    answers is left to ``timeout``); ``deadline``, in seconds, bounds the whole
    of each reply (off by default: a large message takes as long as it takes).
    Either raises `pop3core.ReplyTimeout` (a `TimeoutError`); None turns it off.
    Any timeout closes the connection: the session is out of step.

    Use it as a context manager: leaving the block normally sends QUIT, which
    commits deletions; leaving it by an exception closes the connection
    without QUIT, so nothing is deleted. Replies of ``-ERR`` raise
    `pop3core.ResponseError` or a subclass chosen by the response code
    (`MailboxInUse`, `AuthenticationError`, `TemporaryError`, ...); a peer that
    breaks the protocol raises `pop3core.RemoteProtocolError` and the
    connection is closed. So does any other exception that escapes while a
    reply is still being read (a file's ``write`` fails, ``KeyboardInterrupt``,
    a cancellation): the rest of the reply is not waited for. A command
    cancelled from outside (a cancel scope, ``move_on_after``) closes the
    connection too, whatever it was doing: the client is never left out of
    step with the server.

    An iterator over a reply (`iter_retr`, `iter_top`, `retr_many`) holds the
    connection while it is open: another command raises
    `pop3core.LocalProtocolError` before anything is sent, and so does leaving
    the ``with`` block normally (without QUIT: nothing is deleted). Close an
    iterator you stop early (``contextlib.closing``, or its ``close()``);
    that leaves the rest of its replies unread, and the next command reads
    and discards them first.

    A message body is bounded too. The server's own size, from the RETR
    reply (``+OK 320 octets``) or else from a LIST of this session (kept for
    the session: message numbers do not change), bounds RETR and TOP replies:
    a body far past it (`pop3core.body_limit`) is a
    `pop3core.RemoteProtocolError`. ``max_size`` on `retr`, `top`, their
    iterators and the bulk fetches bounds each message for the caller: a
    longer one raises `SizeLimitExceeded`. When neither is known,
    ``max_message_size`` (`MAX_MESSAGE_SIZE`, 1 GiB) applies the same way.
    Either closes the connection without QUIT.

    Before each command sent while no reply is owed, what the server sent
    unasked is looked for (one poll): a line nobody asked for, or the rest of
    a body the server ended early (an unstuffed ``.`` line), would be taken as
    the reply to that command. It raises `pop3core.RemoteProtocolError`
    instead, and so does a server that has closed the connection (``"the
    server closed the connection"``); the command is not sent.

    ``pipeline_window`` bounds the commands in flight when the server offers
    PIPELINING (their octets are bounded by `MAX_PIPELINE_OCTETS` too, so that
    they always fit in the socket buffers); ``read_size`` is the most read at
    once; ``max_listing_size`` bounds the octets of a LIST, UIDL or LANG
    listing (`MAX_LISTING_SIZE` by default): a longer one is a
    `pop3core.RemoteProtocolError`. LIST and UIDL listings are parsed as they
    arrive into compact read-only mappings (`pop3core.MessageSizes`,
    `pop3core.UniqueIds`) that compare equal to the equivalent ``dict``.

    ``log``, if given, receives one line per protocol element (``"C: STAT"``,
    ``"S: +OK 2 320"``) with passwords, digests, SASL data and tokens hidden.
    """

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        tls: TLSMode = "implicit",
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        connect_timeout: float | None = 30.0,
        timeout: float | None = 60.0,
        low_speed: tuple[int, float] | None = DEFAULT_LOW_SPEED,
        deadline: float | None = None,
        source_address: tuple[str, int] | None = None,
        strict: bool = True,
        pipeline_window: int = 32,
        read_size: int = 256 * 1024,
        max_listing_size: int = MAX_LISTING_SIZE,
        max_message_size: int = MAX_MESSAGE_SIZE,
        log: LogFunction | None = None,
    ) -> None:
        if tls not in ("implicit", "starttls", "none"):
            raise ValueError(f"tls must be 'implicit', 'starttls' or 'none', not {tls!r}")
        if pipeline_window < 1:
            raise ValueError("pipeline_window must be at least 1")
        if read_size < 1:
            raise ValueError("read_size must be at least 1")
        if max_listing_size < 1:
            raise ValueError("max_listing_size must be at least 1")
        if max_message_size < 0:
            raise ValueError("max_message_size must not be negative")
        self.host = host
        self.port = port if port is not None else POP3S_PORT if tls == "implicit" else POP3_PORT
        self.tls_mode: TLSMode = tls
        self.server_hostname = server_hostname or host
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.pipeline_window = pipeline_window
        self.max_listing_size = max_listing_size
        self.max_message_size = max_message_size
        self._timer = ReplyTimer(low_speed, deadline)  # validates them
        self._owed = False  # a reply is owed, and timed by _timer
        self._ssl_context = ssl_context
        self._source_address = source_address
        self._read_size = read_size
        self._log = log
        self._capabilities: Capabilities | None = None
        self._capa_known = False  # CAPA was asked in this state (None then means "refused")
        self._stream: Stream | None = None
        self._closed = False
        self._reading = False  # an open iterator is reading a reply
        self._guard = _Guard(self)
        # Message sizes from LIST and LIST n in this session, to bound bodies.
        self._sizes: MessageSizes | None = None
        self._listed: dict[int, int] = {}
        self._conn = Connection(CLIENT, strict=strict, tls_active=tls == "implicit")
        self.greeting = Greeting()
        self.open()

    def open(self) -> Client:
        """Connect, read the greeting and, for ``tls="starttls"``, upgrade; return self.

        Called by ``with``; calling it again does nothing. If it fails,
        the connection is closed, and so is the client (`LocalProtocolError`
        if opened again: make a new one).
        """
        if self._closed:
            raise LocalProtocolError("the connection is closed")
        if self._stream is not None:
            return self
        implicit = self.tls_mode == "implicit"
        stream = connect(
            self.host,
            self.port,
            timeout=self.connect_timeout,
            source_address=self._source_address,
            ssl_context=self._context() if implicit else None,
            server_hostname=self.server_hostname,
        )
        self._stream = stream
        try:
            self._owe_reply()
            greeting = self._next_event()
            if isinstance(greeting, ErrResponse):
                raise error_for(greeting)
            if not isinstance(greeting, Greeting):
                raise RemoteProtocolError(f"expected a greeting, got {greeting!r}")
            self.greeting = greeting
            if self.tls_mode == "starttls":
                self.starttls(connect_timeout=self.connect_timeout)
        except BaseException:
            self.close()
            raise
        return self

    # ----------------------------------------------------------- plumbing

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def _connected(self) -> Stream:
        """The stream; `LocalProtocolError` if the connection is not open."""
        if self._closed or self._stream is None:
            raise LocalProtocolError(
                "the connection is closed" if self._closed else "the client is not connected"
            )
        return self._stream

    def _note(self, direction: str, event: Event) -> None:
        if self._log is not None:
            self._log(f"{direction} {describe(event)}")

    def _next_event(self) -> Event:
        """The next event from the server, read as needed.

        Any exception closes the connection: what was read of the reply is lost.
        """
        stream = self._connected()
        conn = self._conn
        try:
            while True:
                event = conn.next_event()
                if event is NEED_DATA:
                    self._receive(stream)
                    continue
                if event is PAUSED:
                    raise LocalProtocolError("the connection is paused (STLS or SASL in progress)")
                if type(event) is not Data:
                    self._note("S:", event)
                    if conn.exchange is not Exchange.DATA:
                        self._replied()
                return event
        except BaseException:
            self.close()
            raise

    def _receive(self, stream: Stream) -> None:
        """Feed the engine one read, within ``timeout`` and the owed reply's guard.

        Raises `ReplyTimeout` when the reply is too slow or too late, and
        `TimeoutError` when the read alone timed out.
        """
        started = monotonic()
        while True:
            now = monotonic()
            wait = self.timeout
            if wait is not None:
                wait -= now - started
                if wait <= 0:
                    raise TimeoutError("timed out")
            guarded = False
            if self._owed:
                limit = self._timer.wait_limit(now)  # raises ReplyTimeout once it is over
                if limit is not None and (wait is None or limit < wait):
                    wait, guarded = limit, True
            try:
                data = stream.receive(self._read_size, wait)
            except TimeoutError:
                if guarded:
                    continue  # the guard's wait is over: it decides (above)
                raise
            break
        if self._owed:
            self._timer.received(len(data), monotonic())
        self._conn.receive_data(data)

    def _owe_reply(self) -> None:
        """A reply is owed from now: time it, unless one already is being timed."""
        if not self._owed:
            self._owed = True
            self._timer.start(monotonic())

    def _replied(self) -> None:
        """A reply is complete: time the next one owed, if any."""
        if self._conn.exchange is Exchange.RESPONSE:  # a pipelined command's reply is next
            self._timer.start(monotonic())
        else:
            self._owed = False
            self._timer.stop()

    def _begin(self, what: str) -> None:
        """Get ready to send a command (`what`, for errors): nothing is sent if this raises.

        Refused (`LocalProtocolError`) while an iterator is reading a reply; the
        replies an abandoned iterator left are read and discarded first.
        """
        self._connected()
        if self._reading:
            raise LocalProtocolError(
                f"cannot send {what}: an iterator is still reading a reply"
                " (exhaust or close it first)"
            )
        self._drain()
        self._check_unasked()

    def _check_unasked(self) -> None:
        """Raise `RemoteProtocolError` (and close) if the server sent anything while
        no reply was owed, or closed the connection.

        Such bytes would be taken as the reply to the next command. One poll.
        """
        stream = self._connected()
        conn = self._conn
        try:
            data = stream.receive_if_ready(self._read_size)
            if data is not None:
                conn.receive_data(data)
            event = conn.next_event()  # raises on bytes that arrived unasked
        except BaseException:
            self.close()
            raise
        if event is NEED_DATA or event is PAUSED:  # PAUSED: our SASL response is owed
            return
        self.close()
        if type(event) is ConnectionClosed:
            raise RemoteProtocolError("the server closed the connection")
        raise RemoteProtocolError(f"unexpected {event!r} while no reply was owed")

    def _check_ended(self, command: Command) -> None:
        """After the last reply owed to a fetch: what the server sent after it ends the session.

        A server that did not stuff a lone "." line (Dovecot, for a message whose
        first line is ".") ends the body early and sends the rest when nothing is
        owed; found now, the message is not returned as complete. (If the rest is
        not here yet, the next command finds it.)
        """
        if type(command) in (Retr, Top) and not self._conn.pending_commands:
            self._check_unasked()

    def _drain(self) -> None:
        """Read and discard the replies still owed for commands already sent.

        The caller left them unread (an iterator closed early) and may have
        paused since: that time was not the server's, so what is left of them
        is timed afresh (a pause longer than the low-speed window would
        otherwise fail a reply that is waiting in full in the socket).
        """
        if self._conn.pending_commands:
            self._timer.start(monotonic())
        while self._conn.pending_commands:
            self._next_event()

    def _send(self, event: Event) -> None:
        self._connected()
        self._write([event], [self._conn.send(event)])

    def _write(self, events: Sequence[Event], lines: list[bytes]) -> None:
        """Write the lines the engine made for `events` (and registered: they must go out)."""
        stream = self._connected()
        for event in events:
            self._note("C:", event)
        try:
            stream.send(b"".join(lines), self.timeout)
        except BaseException:  # also a cancellation: some of it may have gone out
            self._conn.send_failed()
            self.close()
            raise
        self._owe_reply()

    def _lost(self, error: BaseException) -> bool:
        """Whether the session cannot go on after `error` escaped a command."""
        if isinstance(error, RemoteProtocolError):
            return True
        # LocalProtocolError: we refused to send, after writing all the engine
        # registered. GeneratorExit: an iterator was abandoned; the next command
        # reads the rest. Anything else in mid-reply: don't wait for the rest.
        return not isinstance(error, (LocalProtocolError, GeneratorExit)) and bool(
            self._conn.pending_commands
        )

    def _reply(self, command: Command) -> OkResponse:
        """Send `command` and return its +OK (raise on -ERR); a body, if any, follows."""
        self._begin(command.keyword)
        self._send(command)
        event = self._next_event()
        if isinstance(event, ErrResponse):
            raise error_for(event, command)
        if not isinstance(event, OkResponse):
            raise RemoteProtocolError(f"unexpected reply to {command.keyword}: {event!r}")
        return event

    def _multiline(self, command: Command) -> bytes:
        """Send `command` and return its whole body, of at most `max_listing_size` octets."""
        self._reply(command)
        limit = self.max_listing_size
        parts: list[bytes] = []
        size = 0
        while True:
            event = self._next_event()
            if type(event) is EndOfMultiline:
                return b"".join(parts)
            assert isinstance(event, Data)
            size += len(event.data)
            if size > limit:
                self.close()
                raise RemoteProtocolError(f"{command.keyword} reply longer than {limit} octets")
            parts.append(bytes(event.data))

    def _listing(self, command: Command, parser: ListParser | UidlParser) -> None:
        """Send `command` and feed its body, of at most `max_listing_size` octets, to `parser`.

        A malformed line is reported once the body has ended (or the limit is
        passed, which is reported first), as when the body was parsed whole.
        """
        self._reply(command)
        limit = self.max_listing_size
        size = 0
        malformed: RemoteProtocolError | None = None
        while True:
            event = self._next_event()
            if type(event) is EndOfMultiline:
                if malformed is not None:
                    raise malformed
                return
            assert isinstance(event, Data)
            size += len(event.data)
            if size > limit:
                self.close()
                raise RemoteProtocolError(f"{command.keyword} reply longer than {limit} octets")
            if malformed is None:
                try:
                    parser.feed(bytes(event.data))
                except RemoteProtocolError as exc:
                    malformed = exc

    def _listed_size(self, which: int) -> int | None:
        """The size of message `which` that LIST gave in this session, if it did."""
        size = self._listed.get(which)
        if size is None and self._sizes is not None:
            size = self._sizes.get(which)
        return size

    def _body_bound(
        self, command: Retr | Top, ok: OkResponse, max_size: int | None
    ) -> tuple[int, int]:
        """The octets the body of the reply `ok` may bring, and how many of them the
        server's own size allows (beyond that, the server is at fault)."""
        allowed = _UNBOUNDED
        known = type(command) is Retr and size_hint(ok.text) is not None  # the engine bounds it
        if not known:
            listed = self._listed_size(command.which)
            if listed is not None:
                allowed, known = body_limit(listed), True
        if max_size is None and not known:
            max_size = self.max_message_size
        return (allowed if max_size is None else min(allowed, max_size)), allowed

    def _too_long(self, command: Retr | Top, limit: int, allowed: int) -> BaseException:
        """The error for a body longer than `limit` (see `_body_bound`); closes first."""
        self.close()
        if limit == allowed:
            return RemoteProtocolError(
                f"message {command.which} runs past the size LIST gave (over {limit} octets)"
            )
        return SizeLimitExceeded(command.which, limit)

    def _stream_body(
        self, command: Retr | Top, max_size: int | None = None
    ) -> Generator[bytes, None, None]:
        """Send `command` and yield the chunks of its body as they arrive.

        Closed early, it leaves the rest unread for the next command to discard.
        """
        with self._guard:
            ok = self._reply(command)
            limit, allowed = self._body_bound(command, ok, max_size)
            received = 0
            with _Reading(self):
                while True:
                    event = self._next_event()
                    if type(event) is EndOfMultiline:
                        self._check_ended(command)
                        return
                    assert isinstance(event, Data)
                    received += len(event.data)
                    if received > limit:
                        raise self._too_long(command, limit, allowed)
                    # The caller's time with the chunk is not the server's.
                    self._timer.pause(monotonic())
                    try:
                        yield bytes(event.data)
                    finally:
                        self._timer.resume(monotonic())

    # ----------------------------------------------------------- session

    @property
    def tls_active(self) -> bool:
        """Whether the connection is encrypted now (False before it is open)."""
        return self._stream is not None and self._conn.tls_active

    @property
    def state(self) -> str:
        """The session state (``"AUTHORIZATION"``, ``"TRANSACTION"``, ...)."""
        return self._conn.state.value

    @property
    def capabilities(self) -> Capabilities | None:
        """The server's capabilities in the current state (CAPA is sent once per state).

        None if the server does not implement CAPA. (The async client answers
        with what is known: call `capa` first; login asks by itself.)
        """
        if not self._capa_known:
            self.capa()
        return self._capabilities

    def _known_capabilities(self) -> Capabilities | None:
        """The capabilities in the current state, asked for once per state."""
        if not self._capa_known:
            self.capa()
        return self._capabilities

    def capa(self) -> Capabilities | None:
        """Ask for the capabilities again; None if the server refuses CAPA."""
        with self._guard:
            try:
                body = self._multiline(Capa())
            except ResponseError:
                self._capabilities = None
            else:
                self._capabilities = parse_capa(body)
        self._capa_known = True
        return self._capabilities

    def starttls(self, *, connect_timeout: float | None = None) -> None:
        """Upgrade to TLS with STLS (RFC 2595); done on connecting for ``tls="starttls"``."""
        capabilities = self._known_capabilities()
        if capabilities is None or not capabilities.stls:
            self.close()
            raise TLSNotOffered("the server does not offer STLS; refusing to go on without TLS")
        with self._guard:
            self._reply(Stls())
            # Raises RemoteProtocolError on bytes sent before the handshake (injection).
            if self._conn.next_event() is not PAUSED:
                raise AssertionError("the connection did not pause after STLS")
        stream = self._connected()
        try:
            stream.start_tls(
                self._context(),
                server_side=False,
                hostname=self.server_hostname,
                timeout=connect_timeout,
            )
            self._conn.tls_established()
        except BaseException:
            self.close()
            raise
        self._capabilities, self._capa_known = None, False  # RFC 2595: forget them

    def login(
        self,
        username: str,
        password: str | None = None,
        *,
        token: str | None = None,
        method: str | None = None,
        allow_cleartext: bool = False,
        authzid: str = "",
    ) -> None:
        """Authenticate with the strongest method both sides support.

        With a password: SCRAM-SHA-256, SCRAM-SHA-1, CRAM-MD5, APOP, then PLAIN,
        LOGIN or USER/PASS, which reveal the password and are used only over TLS
        unless ``allow_cleartext``. With an OAuth 2.0 ``token``: OAUTHBEARER or
        XOAUTH2. ``method`` names one method (a SASL mechanism, ``"APOP"`` or
        ``"USER"``) and is not replaced by another.

        A SASL exchange the client cancelled because the server's challenge was
        invalid raises that `pop3core.SASLError` (the server's ``-ERR`` as its
        ``__cause__``), not `AuthenticationError`: a broken or hostile server is
        not a wrong password.
        """
        with self._guard:
            name = choose_login_method(
                self._known_capabilities(),
                self.greeting.timestamp,
                tls_active=self.tls_active,
                allow_cleartext=allow_cleartext,
                have_password=password is not None,
                have_token=token is not None,
                method=method,
            )
            if name == "USER":
                assert password is not None
                self._reply(User(username))
                self._reply(Pass(password))
            elif name == "APOP":
                assert password is not None
                assert self.greeting.timestamp is not None
                self._reply(Apop(username, apop_digest(self.greeting.timestamp, password)))
            else:
                self._authenticate(
                    client_mechanism(
                        name,
                        username=username,
                        password=password,
                        token=token,
                        authzid=authzid,
                        host=self.server_hostname,
                        port=self.port,
                    )
                )
        self._capabilities, self._capa_known = None, False  # they may differ after login

    def authenticate(self, mechanism: ClientMechanism) -> None:
        """Run one SASL exchange with `mechanism` (a built-in one, or a plug-in).

        Raises like `login`.
        """
        with self._guard:
            self._authenticate(mechanism)
        self._capabilities, self._capa_known = None, False

    def _authenticate(self, mechanism: ClientMechanism) -> None:
        capabilities = self._known_capabilities()
        exchange = AuthExchange(mechanism, capabilities, strict=self._conn.strict)
        command = exchange.start()
        self._begin(command.keyword)
        self._send(command)
        while not exchange.done:
            event = self._next_event()
            if not isinstance(event, (AuthChallenge, OkResponse, ErrResponse)):
                raise RemoteProtocolError(f"unexpected event during AUTH: {event!r}")
            try:
                answer = exchange.receive(event)
            except BaseException:
                # SASLError: the server says we are in, but it did not prove who
                # it is. Anything else: the exchange cannot go on.
                self.close()
                raise
            if answer is not None:
                self._check_unasked()  # a line now would be taken as the answer to ours
                self._send(answer)
        if isinstance(exchange.reply, ErrResponse):
            refused = error_for(exchange.reply, command)
            if exchange.error is not None:
                raise exchange.error from refused  # we cancelled: the server is at fault
            raise refused

    def utf8(self) -> None:
        """Enter UTF-8 mode (RFC 6856); only before login."""
        with self._guard:
            self._reply(Utf8())

    def lang(self, tag: str | None = None) -> list[tuple[str, str]] | str:
        """List the languages (no argument), or select one and return its tag."""
        with self._guard:
            if tag is None:
                return parse_lang_listing(self._multiline(Lang()))
            ok = self._reply(Lang(tag))
            return ok.text.split(b" ", 1)[0].decode("ascii", "replace")

    # ----------------------------------------------------------- transaction

    def stat(self) -> MaildropStat:
        """Message count and total octets (messages marked deleted excluded)."""
        with self._guard:
            return parse_stat((self._reply(Stat())).text)

    @overload
    def list(self) -> MessageSizes: ...
    @overload
    def list(self, which: int) -> int: ...

    def list(self, which: int | None = None) -> MessageSizes | int:
        """``{number: size}`` for every message, or the size of message `which`.

        The listing is a read-only mapping that compares equal to the ``dict``,
        in the server's order. The sizes bound later RETR and TOP replies.
        """
        with self._guard:
            if which is not None:
                size = parse_list_line((self._reply(List(which))).text).size
                self._listed[which] = size
                return size
            parser = ListParser()
            self._listing(List(), parser)
            self._sizes = sizes = parser.finish()
            return sizes

    @overload
    def uidl(self) -> UniqueIds: ...
    @overload
    def uidl(self, which: int) -> str: ...

    def uidl(self, which: int | None = None) -> UniqueIds | str:
        """``{number: unique id}`` for every message, or the unique id of `which`.

        The listing is a read-only mapping that compares equal to the ``dict``,
        in the server's order.
        """
        with self._guard:
            if which is not None:
                return parse_uidl_line((self._reply(Uidl(which))).text).uid
            parser = UidlParser()
            self._listing(Uidl(), parser)
            return parser.finish()

    @overload
    def retr(self, which: int, *, max_size: int | None = None) -> bytes: ...
    @overload
    def retr(self, which: int, file: Sink, *, max_size: int | None = None) -> int: ...

    def retr(
        self, which: int, file: Sink | None = None, *, max_size: int | None = None
    ) -> bytes | int:
        """Message `which`: its bytes, or written to `file` (then the octet count).

        Writing to a file keeps memory bounded whatever the message size. If
        ``file.write`` raises, the connection is closed (without QUIT). A
        message longer than `max_size` octets raises `SizeLimitExceeded` (what
        was read of it may already be in `file`).
        """
        return self._fetch(Retr(which), file, max_size)

    @overload
    def top(self, which: int, lines: int, *, max_size: int | None = None) -> bytes: ...
    @overload
    def top(
        self, which: int, lines: int, file: Sink, *, max_size: int | None = None
    ) -> int: ...

    def top(
        self,
        which: int,
        lines: int,
        file: Sink | None = None,
        *,
        max_size: int | None = None,
    ) -> bytes | int:
        """The headers of message `which` and its first `lines` body lines; see `retr`."""
        return self._fetch(Top(which, lines), file, max_size)

    def _fetch(
        self, command: Retr | Top, file: Sink | None, max_size: int | None
    ) -> bytes | int:
        _check_max_size(max_size)
        with (
            self._guard,
            contextlib.closing(self._stream_body(command, max_size)) as chunks,
        ):
            if file is None:
                return b"".join([chunk for chunk in chunks])
            octets = 0
            for chunk in chunks:
                write_to(file, chunk)
                octets += len(chunk)
            return octets

    def iter_retr(
        self,
        which: int,
        *,
        max_size: int | None = None,
    ) -> Generator[bytes, None, None]:
        """Message `which` as chunks, as they arrive; RETR is sent at the first ``next``.

        Until the iterator is exhausted or closed, other commands raise
        `pop3core.LocalProtocolError`. If the loop stops early, the rest of the
        message is not read then: the next command reads and discards it first.
        `max_size` as in `retr`.
        """
        _check_max_size(max_size)
        return self._stream_body(Retr(which), max_size)

    def iter_top(
        self, which: int, lines: int, *, max_size: int | None = None
    ) -> Generator[bytes, None, None]:
        """`top` as chunks, as they arrive; see `iter_retr`."""
        _check_max_size(max_size)
        return self._stream_body(Top(which, lines), max_size)

    def dele(self, which: int) -> None:
        """Mark message `which` deleted; it is removed when the session ends with QUIT."""
        with self._guard:
            self._reply(Dele(which))

    def rset(self) -> None:
        """Unmark every message marked deleted in this session."""
        with self._guard:
            self._reply(Rset())

    def noop(self) -> None:
        with self._guard:
            self._reply(Noop())

    # ----------------------------------------------------------- bulk

    def _pipelining(self) -> bool:
        capabilities = self._known_capabilities()
        return capabilities is not None and capabilities.pipelining

    def _pipeline(
        self, commands: Iterable[Command]
    ) -> Generator[tuple[Command, Event], None, None]:
        """Send `commands`, up to a window at a time when the server pipelines.

        Yields each reply event with its command, in order. The window (at most
        `pipeline_window` commands and about `MAX_PIPELINE_OCTETS` octets)
        always fits in the socket buffers, and each finished reply lets one more
        command go, so neither side can block the other. Closed early, it sends
        nothing more and leaves the replies already asked for to the next
        command, which reads them first.
        """
        todo = iter(commands)
        outstanding: deque[tuple[Command, int]] = deque()  # with their octets
        in_flight = 0

        def fill(window: int) -> None:
            nonlocal in_flight
            sent: list[Command] = []
            lines: list[bytes] = []
            try:
                while len(outstanding) + len(sent) < window and in_flight < MAX_PIPELINE_OCTETS:
                    command = next(todo, None)  # may raise: a bad message number
                    if command is None:
                        break
                    lines.append(self._conn.send(command))  # registered: it must be written
                    sent.append(command)
                    in_flight += len(lines[-1])
            finally:
                if sent:  # also when refusing the next one: keep engine and wire in step
                    outstanding.extend(zip(sent, map(len, lines), strict=True))
                    self._write(sent, lines)

        with self._guard:
            window = self.pipeline_window if self._pipelining() else 1
            self._begin("pipelined commands")
            with _Reading(self):
                fill(window)
                while outstanding:
                    command, octets = outstanding[0]
                    event = self._next_event()
                    finished = _ends_reply(command, event)
                    if finished:
                        outstanding.popleft()  # before yielding: the caller may stop here
                        in_flight -= octets
                        if not outstanding:
                            self._check_ended(command)
                    self._timer.pause(monotonic())  # the caller's time is not the server's
                    try:
                        yield command, event
                    finally:
                        self._timer.resume(monotonic())
                    if finished:
                        fill(window)

    def _refused(
        self,
        replies: Generator[tuple[Command, Event], None, None],
        command: Command,
        event: Event,
    ) -> ResponseError:
        """The error for a pipelined ``-ERR``, once the replies already asked for are read."""
        assert isinstance(event, ErrResponse)
        replies.close()  # sends nothing more
        self._drain()
        return error_for(event, command)

    def retr_many(
        self, numbers: Iterable[int], *, max_size: int | None = None
    ) -> Generator[tuple[int, bytes], None, None]:
        """Yield ``(number, message)`` for each of `numbers`, pipelined when possible.

        A message the server refuses raises its `ResponseError` (after the
        replies already asked for are read). Like `iter_retr`, the iterator
        holds the connection while it is open. `max_size` bounds each message,
        as in `retr`.
        """
        _check_max_size(max_size)
        with (
            self._guard,
            contextlib.closing(self._pipeline(Retr(n) for n in numbers)) as replies,
        ):
            parts: list[bytes] = []
            received = limit = allowed = 0
            for command, event in replies:
                if type(event) is Data:
                    assert isinstance(event, Data)
                    received += len(event.data)
                    if received > limit:
                        assert isinstance(command, Retr)
                        raise self._too_long(command, limit, allowed)
                    parts.append(bytes(event.data))
                elif type(event) is OkResponse:
                    assert isinstance(command, Retr)
                    assert isinstance(event, OkResponse)
                    limit, allowed = self._body_bound(command, event, max_size)
                    received = 0
                elif type(event) is EndOfMultiline:
                    assert isinstance(command, Retr)
                    yield command.which, b"".join(parts)
                    parts = []
                elif isinstance(event, ErrResponse):
                    raise self._refused(replies, command, event)

    def retr_many_to(
        self,
        numbers: Iterable[int],
        open_file: Callable[[int], Sink],
        *,
        max_size: int | None = None,
    ) -> None:
        """Stream each of `numbers` into ``open_file(number)`` (closed when written).

        Memory stays bounded by a receive, whatever the message sizes. A message
        the server refuses raises as in `retr_many`; if ``open_file`` or a
        file's ``write`` raises, the connection is closed (without QUIT).
        `max_size` bounds each message, as in `retr`.
        """
        _check_max_size(max_size)
        file: Sink | None = None
        try:
            with (
                self._guard,
                contextlib.closing(self._pipeline(Retr(n) for n in numbers)) as replies,
            ):
                received = limit = allowed = 0
                for command, event in replies:
                    assert isinstance(command, Retr)
                    if type(event) is OkResponse:
                        assert isinstance(event, OkResponse)
                        limit, allowed = self._body_bound(command, event, max_size)
                        received = 0
                        file = open_file(command.which)
                    elif type(event) is Data:
                        assert isinstance(event, Data)
                        assert file is not None
                        received += len(event.data)
                        if received > limit:
                            raise self._too_long(command, limit, allowed)
                        write_to(file, event.data)
                    elif type(event) is EndOfMultiline:
                        assert file is not None
                        close_sink(file)
                        file = None
                    elif isinstance(event, ErrResponse):
                        raise self._refused(replies, command, event)
        finally:
            if file is not None:
                with cleanup_scope(_CLOSE_FILE_WAIT):  # also when cancelled
                    close_sink(file)

    def dele_many(self, numbers: Iterable[int]) -> None:
        """Mark each of `numbers` deleted, pipelined when possible."""
        with (
            self._guard,
            contextlib.closing(self._pipeline(Dele(n) for n in numbers)) as replies,
        ):
            for command, event in replies:
                if isinstance(event, ErrResponse):
                    raise self._refused(replies, command, event)

    # ----------------------------------------------------------- ending

    def quit(self) -> None:
        """End the session with QUIT: deletions are committed. Then close.

        While an iterator holds the connection, QUIT is not sent (nothing is
        deleted): the connection is closed and `pop3core.LocalProtocolError` raised.
        """
        try:
            if not self._closed:
                self._reply(Quit())
        finally:
            self.close()

    def close(self) -> None:
        """Close the connection without QUIT: nothing marked is deleted."""
        if self._closed:
            return
        self._closed = True
        if self._stream is not None:
            self._stream.close()

    def __enter__(self) -> Client:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None and not self._closed:
            self.quit()
        else:
            self.close()
