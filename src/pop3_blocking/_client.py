"""The modern blocking POP3 client: typed, streaming, pipelined, TLS by default."""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from types import TracebackType
from typing import BinaryIO, Literal, overload

from pop3core import (
    CLIENT,
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
    Data,
    Dele,
    EndOfMultiline,
    ErrResponse,
    Event,
    Greeting,
    Lang,
    List,
    LocalProtocolError,
    MaildropStat,
    Noop,
    OkResponse,
    Pass,
    Quit,
    RemoteProtocolError,
    ResponseError,
    Retr,
    Rset,
    Stat,
    Stls,
    TLSNotOffered,
    Top,
    Uidl,
    User,
    Utf8,
    apop_digest,
    choose_login_method,
    client_mechanism,
    describe,
    error_for,
    parse_capa,
    parse_lang_listing,
    parse_list,
    parse_list_line,
    parse_stat,
    parse_uidl,
    parse_uidl_line,
)

__all__ = ["MAX_LISTING_SIZE", "MAX_PIPELINE_OCTETS", "Client", "TLSMode"]

TLSMode = Literal["implicit", "starttls", "none"]
LogFunction = Callable[[str], None]

POP3_PORT = 110
POP3S_PORT = 995

# Listings (LIST, UIDL, LANG) are collected whole, so a server that never ends
# one could take all our memory. A million messages with 70-character unique
# ids make a UIDL listing of about 80 MB.
MAX_LISTING_SIZE = 128 * 1024 * 1024

# Pipelined commands are written without reading, while the server may be
# blocked writing replies we have not read yet: the commands in flight must fit
# in the socket buffers (Linux gives a send buffer 16 KiB to start with), or
# both sides wait on each other. So they are bounded in octets as well as in
# number; 8 KiB is still some 600 RETR commands.
MAX_PIPELINE_OCTETS = 8 * 1024


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
    """A POP3 client over a blocking socket.

    ``tls`` is ``"implicit"`` (RFC 8314, port 995: TLS before the greeting, the
    default), ``"starttls"`` (port 110, STLS required: the client refuses to go
    on if the server does not offer it) or ``"none"``. Certificates are verified
    and the host name checked by default (`ssl.create_default_context`).
    ``connect_timeout`` bounds connecting and the TLS handshake; ``timeout``
    bounds every later read and write (`TimeoutError`).

    Use it as a context manager: leaving the block normally sends QUIT, which
    commits deletions; leaving it by an exception closes the connection
    without QUIT, so nothing is deleted. Replies of ``-ERR`` raise
    `pop3core.ResponseError` or a subclass chosen by the response code
    (`MailboxInUse`, `AuthenticationError`, `TemporaryError`, ...); a peer that
    breaks the protocol raises `pop3core.RemoteProtocolError` and the
    connection is closed. So does any other exception that escapes while a
    reply is still being read (a file's ``write`` fails, ``KeyboardInterrupt``):
    the rest of the reply is not waited for.

    An iterator over a reply (`iter_retr`, `iter_top`, `retr_many`) holds the
    connection while it is open: another command raises
    `pop3core.LocalProtocolError` before anything is sent, and so does leaving
    the ``with`` block normally (without QUIT: nothing is deleted). Closing
    the iterator early, or dropping it, leaves the rest of its replies unread;
    the next command reads and discards them first.

    ``pipeline_window`` bounds the commands in flight when the server offers
    PIPELINING (their octets are bounded by `MAX_PIPELINE_OCTETS` too, so that
    they always fit in the socket buffers); ``read_size`` is the most read at
    once; ``max_listing_size`` bounds the octets of a LIST, UIDL or LANG
    listing (`MAX_LISTING_SIZE` by default): a longer one is a
    `pop3core.RemoteProtocolError`.

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
        source_address: tuple[str, int] | None = None,
        strict: bool = True,
        pipeline_window: int = 32,
        read_size: int = 256 * 1024,
        max_listing_size: int = MAX_LISTING_SIZE,
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
        self.host = host
        self.port = port if port is not None else POP3S_PORT if tls == "implicit" else POP3_PORT
        self.tls_mode: TLSMode = tls
        self.server_hostname = server_hostname or host
        self.timeout = timeout
        self.pipeline_window = pipeline_window
        self.max_listing_size = max_listing_size
        self._ssl_context = ssl_context
        self._read_size = read_size
        self._log = log
        self._capabilities: Capabilities | None = None
        self._capa_known = False  # CAPA was asked in this state (None then means "refused")
        self._closed = False
        self._reading = False  # an open iterator is reading a reply
        self._guard = _Guard(self)

        sock = socket.create_connection(
            (host, self.port), timeout=connect_timeout, source_address=source_address
        )
        try:
            # Commands are written whole; a pipelined one must not wait for an ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls == "implicit":
                sock = self._context().wrap_socket(sock, server_hostname=self.server_hostname)
            sock.settimeout(timeout)
            self._sock: socket.socket = sock
            self._conn = Connection(CLIENT, strict=strict, tls_active=tls == "implicit")
            greeting = self._next_event()
            if isinstance(greeting, ErrResponse):
                raise error_for(greeting)
            if not isinstance(greeting, Greeting):
                raise RemoteProtocolError(f"expected a greeting, got {greeting!r}")
            self.greeting = greeting
            if tls == "starttls":
                self.starttls(connect_timeout=connect_timeout)
        except BaseException:
            sock.close()
            self._closed = True
            raise

    # ----------------------------------------------------------- plumbing

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def _note(self, direction: str, event: Event) -> None:
        if self._log is not None:
            self._log(f"{direction} {describe(event)}")

    def _next_event(self) -> Event:
        """The next event from the server, read as needed.

        Any exception closes the connection: what was read of the reply is lost.
        """
        if self._closed:
            raise LocalProtocolError("the connection is closed")
        conn = self._conn
        try:
            while True:
                event = conn.next_event()
                if event is NEED_DATA:
                    conn.receive_data(self._sock.recv(self._read_size))
                    continue
                if event is PAUSED:
                    raise LocalProtocolError("the connection is paused (STLS or SASL in progress)")
                if type(event) is not Data:
                    self._note("S:", event)
                return event
        except BaseException:
            self.close()
            raise

    def _begin(self, what: str) -> None:
        """Get ready to send a command (`what`, for errors): nothing is sent if this raises.

        Refused (`LocalProtocolError`) while an iterator is reading a reply; the
        replies an abandoned iterator left are read and discarded first.
        """
        if self._closed:
            raise LocalProtocolError("the connection is closed")
        if self._reading:
            raise LocalProtocolError(
                f"cannot send {what}: an iterator is still reading a reply"
                " (exhaust or close it first)"
            )
        self._drain()

    def _drain(self) -> None:
        """Read and discard the replies still owed for commands already sent."""
        while self._conn.pending_commands:
            self._next_event()

    def _send(self, event: Event) -> None:
        if self._closed:
            raise LocalProtocolError("the connection is closed")
        self._write([event], [self._conn.send(event)])

    def _write(self, events: Sequence[Event], lines: list[bytes]) -> None:
        """Write the lines the engine made for `events` (and registered: they must go out)."""
        for event in events:
            self._note("C:", event)
        try:
            self._sock.sendall(b"".join(lines))
        except BaseException:  # also KeyboardInterrupt: some of it may have gone out
            self._conn.send_failed()
            self.close()
            raise

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

    def _stream(self, command: Command) -> Generator[bytes, None, None]:
        """Send `command` and yield the chunks of its body as they arrive.

        Closed early, it leaves the rest unread for the next command to discard.
        """
        with self._guard:
            self._reply(command)
            with _Reading(self):
                while True:
                    event = self._next_event()
                    if type(event) is EndOfMultiline:
                        return
                    assert isinstance(event, Data)
                    yield bytes(event.data)

    # ----------------------------------------------------------- session

    @property
    def tls_active(self) -> bool:
        return self._conn.tls_active

    @property
    def state(self) -> str:
        """The session state (``"AUTHORIZATION"``, ``"TRANSACTION"``, ...)."""
        return self._conn.state.value

    @property
    def capabilities(self) -> Capabilities | None:
        """The server's capabilities in the current state (CAPA is sent once per state).

        None if the server does not implement CAPA.
        """
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
        """Upgrade to TLS with STLS (RFC 2595); done by the constructor for ``tls="starttls"``."""
        capabilities = self.capabilities
        if capabilities is None or not capabilities.stls:
            self.close()
            raise TLSNotOffered("the server does not offer STLS; refusing to go on without TLS")
        with self._guard:
            self._reply(Stls())
            # Raises RemoteProtocolError on bytes sent before the handshake (injection).
            if self._conn.next_event() is not PAUSED:
                raise AssertionError("the connection did not pause after STLS")
        if connect_timeout is not None:
            self._sock.settimeout(connect_timeout)
        try:
            self._sock = self._context().wrap_socket(
                self._sock, server_hostname=self.server_hostname
            )
            self._conn.tls_established()
        except BaseException:
            self.close()
            raise
        self._sock.settimeout(self.timeout)
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
                self.capabilities,
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
        exchange = AuthExchange(mechanism, self.capabilities, strict=self._conn.strict)
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
            return parse_stat(self._reply(Stat()).text)

    @overload
    def list(self) -> dict[int, int]: ...
    @overload
    def list(self, which: int) -> int: ...

    def list(self, which: int | None = None) -> dict[int, int] | int:
        """``{number: size}`` for every message, or the size of message `which`."""
        with self._guard:
            if which is not None:
                return parse_list_line(self._reply(List(which)).text).size
            return parse_list(self._multiline(List()))

    @overload
    def uidl(self) -> dict[int, str]: ...
    @overload
    def uidl(self, which: int) -> str: ...

    def uidl(self, which: int | None = None) -> dict[int, str] | str:
        """``{number: unique id}`` for every message, or the unique id of `which`."""
        with self._guard:
            if which is not None:
                return parse_uidl_line(self._reply(Uidl(which)).text).uid
            return parse_uidl(self._multiline(Uidl()))

    @overload
    def retr(self, which: int) -> bytes: ...
    @overload
    def retr(self, which: int, file: BinaryIO) -> int: ...

    def retr(self, which: int, file: BinaryIO | None = None) -> bytes | int:
        """Message `which`: its bytes, or written to `file` (then the octet count).

        Writing to a file keeps memory bounded whatever the message size. If
        ``file.write`` raises, the connection is closed (without QUIT).
        """
        return self._fetch(Retr(which), file)

    @overload
    def top(self, which: int, lines: int) -> bytes: ...
    @overload
    def top(self, which: int, lines: int, file: BinaryIO) -> int: ...

    def top(self, which: int, lines: int, file: BinaryIO | None = None) -> bytes | int:
        """The headers of message `which` and its first `lines` body lines."""
        return self._fetch(Top(which, lines), file)

    def _fetch(self, command: Command, file: BinaryIO | None) -> bytes | int:
        with self._guard, contextlib.closing(self._stream(command)) as chunks:
            if file is None:
                return b"".join(chunks)
            octets = 0
            for chunk in chunks:
                file.write(chunk)
                octets += len(chunk)
            return octets

    def iter_retr(self, which: int) -> Iterator[bytes]:
        """Message `which` as chunks, as they arrive; RETR is sent at the first ``next``.

        Until the iterator is exhausted or closed, other commands raise
        `pop3core.LocalProtocolError`. If the loop stops early, the rest of the
        message is not read then: the next command reads and discards it first.
        """
        return self._stream(Retr(which))

    def iter_top(self, which: int, lines: int) -> Iterator[bytes]:
        """`top` as chunks, as they arrive; see `iter_retr`."""
        return self._stream(Top(which, lines))

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
        capabilities = self.capabilities
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
                    yield command, event
                    if finished:
                        fill(window)

    def _refused(
        self, replies: Generator[tuple[Command, Event], None, None], command: Command, event: Event
    ) -> ResponseError:
        """The error for a pipelined ``-ERR``, once the replies already asked for are read."""
        assert isinstance(event, ErrResponse)
        replies.close()  # sends nothing more
        self._drain()
        return error_for(event, command)

    def retr_many(self, numbers: Iterable[int]) -> Iterator[tuple[int, bytes]]:
        """Yield ``(number, message)`` for each of `numbers`, pipelined when possible.

        A message the server refuses raises its `ResponseError` (after the
        replies already asked for are read). Like `iter_retr`, the iterator
        holds the connection while it is open.
        """
        with (
            self._guard,
            contextlib.closing(self._pipeline(Retr(n) for n in numbers)) as replies,
        ):
            parts: list[bytes] = []
            for command, event in replies:
                if type(event) is Data:
                    assert isinstance(event, Data)
                    parts.append(bytes(event.data))
                elif type(event) is EndOfMultiline:
                    assert isinstance(command, Retr)
                    yield command.which, b"".join(parts)
                    parts = []
                elif isinstance(event, ErrResponse):
                    raise self._refused(replies, command, event)

    def retr_many_to(self, numbers: Iterable[int], open_file: Callable[[int], BinaryIO]) -> None:
        """Stream each of `numbers` into ``open_file(number)`` (closed when written).

        Memory stays bounded by a receive, whatever the message sizes. A message
        the server refuses raises as in `retr_many`; if ``open_file`` or a
        file's ``write`` raises, the connection is closed (without QUIT).
        """
        file: BinaryIO | None = None
        try:
            with (
                self._guard,
                contextlib.closing(self._pipeline(Retr(n) for n in numbers)) as replies,
            ):
                for command, event in replies:
                    assert isinstance(command, Retr)
                    if type(event) is OkResponse:
                        file = open_file(command.which)
                    elif type(event) is Data:
                        assert isinstance(event, Data)
                        assert file is not None
                        file.write(event.data)
                    elif type(event) is EndOfMultiline:
                        assert file is not None
                        file.close()
                        file = None
                    elif isinstance(event, ErrResponse):
                        raise self._refused(replies, command, event)
        finally:
            if file is not None:
                file.close()

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
        with contextlib.suppress(OSError):
            self._sock.close()

    def __enter__(self) -> Client:
        return self

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
