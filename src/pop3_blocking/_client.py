"""The modern blocking POP3 client: typed, streaming, pipelined, TLS by default."""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
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
    SASLError,
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

__all__ = ["Client", "TLSMode"]

TLSMode = Literal["implicit", "starttls", "none"]
LogFunction = Callable[[str], None]

POP3_PORT = 110
POP3S_PORT = 995


def _ends_reply(command: Command, event: Event) -> bool:
    """Whether `event` is the last one of the reply to `command`."""
    kind = type(event)
    return (
        kind is ErrResponse
        or kind is EndOfMultiline
        or (kind is OkResponse and not command.expects_multiline)
    )


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
    connection is closed.

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
        log: LogFunction | None = None,
    ) -> None:
        if tls not in ("implicit", "starttls", "none"):
            raise ValueError(f"tls must be 'implicit', 'starttls' or 'none', not {tls!r}")
        if pipeline_window < 1:
            raise ValueError("pipeline_window must be at least 1")
        self.host = host
        self.port = port if port is not None else POP3S_PORT if tls == "implicit" else POP3_PORT
        self.tls_mode: TLSMode = tls
        self.server_hostname = server_hostname or host
        self.timeout = timeout
        self.pipeline_window = pipeline_window
        self._ssl_context = ssl_context
        self._read_size = read_size
        self._log = log
        self._capabilities: Capabilities | None = None
        self._capa_known = False  # CAPA was asked in this state (None then means "refused")
        self._closed = False

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
        conn = self._conn
        while True:
            try:
                event = conn.next_event()
            except RemoteProtocolError:
                self.close()
                raise
            if event is NEED_DATA:
                try:
                    data = self._sock.recv(self._read_size)
                except OSError:
                    self.close()
                    raise
                conn.receive_data(data)
                continue
            if event is PAUSED:
                raise LocalProtocolError("the connection is paused (STLS or SASL in progress)")
            if type(event) is not Data:
                self._note("S:", event)
            return event

    def _send(self, *events: Event) -> None:
        if self._closed:
            raise LocalProtocolError("the connection is closed")
        data = b"".join(self._conn.send(event) for event in events)
        for event in events:
            self._note("C:", event)
        try:
            self._sock.sendall(data)
        except OSError:
            self._conn.send_failed()
            self.close()
            raise

    def _reply(self, command: Command) -> OkResponse:
        """Send `command` and return its +OK (raise on -ERR); a body, if any, follows."""
        self._send(command)
        event = self._next_event()
        if isinstance(event, ErrResponse):
            raise error_for(event, command)
        if not isinstance(event, OkResponse):
            raise RemoteProtocolError(f"unexpected reply to {command.keyword}: {event!r}")
        return event

    def _body(self) -> Iterator[bytes]:
        """The chunks of the multi-line body now arriving, up to its end."""
        while True:
            event = self._next_event()
            if type(event) is EndOfMultiline:
                return
            assert isinstance(event, Data)
            yield bytes(event.data)

    def _drain(self) -> None:
        for _ in self._body():
            pass

    def _multiline(self, command: Command) -> bytes:
        self._reply(command)
        return b"".join(self._body())

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
        self._reply(Stls())
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
        """
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
        """Run one SASL exchange with `mechanism` (a built-in one, or a plug-in)."""
        self._authenticate(mechanism)
        self._capabilities, self._capa_known = None, False

    def _authenticate(self, mechanism: ClientMechanism) -> None:
        exchange = AuthExchange(mechanism, self.capabilities, strict=self._conn.strict)
        command = exchange.start()
        self._send(command)
        while not exchange.done:
            event = self._next_event()
            if not isinstance(event, (AuthChallenge, OkResponse, ErrResponse)):
                raise RemoteProtocolError(f"unexpected event during AUTH: {event!r}")
            try:
                answer = exchange.receive(event)
            except SASLError:
                # The server says we are in, but it did not prove who it is.
                self.close()
                raise
            if answer is not None:
                self._send(answer)
        if isinstance(exchange.reply, ErrResponse):
            raise error_for(exchange.reply, command)

    def utf8(self) -> None:
        """Enter UTF-8 mode (RFC 6856); only before login."""
        self._reply(Utf8())

    def lang(self, tag: str | None = None) -> list[tuple[str, str]] | str:
        """List the languages (no argument), or select one and return its tag."""
        if tag is None:
            return parse_lang_listing(self._multiline(Lang()))
        ok = self._reply(Lang(tag))
        return ok.text.split(b" ", 1)[0].decode("ascii", "replace")

    # ----------------------------------------------------------- transaction

    def stat(self) -> MaildropStat:
        """Message count and total octets (messages marked deleted excluded)."""
        return parse_stat(self._reply(Stat()).text)

    @overload
    def list(self) -> dict[int, int]: ...
    @overload
    def list(self, which: int) -> int: ...

    def list(self, which: int | None = None) -> dict[int, int] | int:
        """``{number: size}`` for every message, or the size of message `which`."""
        if which is not None:
            return parse_list_line(self._reply(List(which)).text).size
        return parse_list(self._multiline(List()))

    @overload
    def uidl(self) -> dict[int, str]: ...
    @overload
    def uidl(self, which: int) -> str: ...

    def uidl(self, which: int | None = None) -> dict[int, str] | str:
        """``{number: unique id}`` for every message, or the unique id of `which`."""
        if which is not None:
            return parse_uidl_line(self._reply(Uidl(which)).text).uid
        return parse_uidl(self._multiline(Uidl()))

    @overload
    def retr(self, which: int) -> bytes: ...
    @overload
    def retr(self, which: int, file: BinaryIO) -> int: ...

    def retr(self, which: int, file: BinaryIO | None = None) -> bytes | int:
        """Message `which`: its bytes, or written to `file` (then the octet count).

        Writing to a file keeps memory bounded whatever the message size.
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
        self._reply(command)
        if file is None:
            return b"".join(self._body())
        octets = 0
        for chunk in self._body():
            file.write(chunk)
            octets += len(chunk)
        return octets

    def iter_retr(self, which: int) -> Iterator[bytes]:
        """Message `which` as chunks, as they arrive.

        If the loop stops early, the rest of the message is read and discarded
        when the iterator is closed, so the session stays usable.
        """
        return self._iterate(Retr(which))

    def iter_top(self, which: int, lines: int) -> Iterator[bytes]:
        return self._iterate(Top(which, lines))

    def _iterate(self, command: Command) -> Iterator[bytes]:
        self._reply(command)
        body = self._body()
        try:
            # Not "yield from": closing us must not close `body`, which we drain.
            for chunk in body:  # noqa: UP028
                yield chunk
        finally:
            if not self._closed:
                for _ in body:  # drain what the caller did not want
                    pass

    def dele(self, which: int) -> None:
        """Mark message `which` deleted; it is removed when the session ends with QUIT."""
        self._reply(Dele(which))

    def rset(self) -> None:
        """Unmark every message marked deleted in this session."""
        self._reply(Rset())

    def noop(self) -> None:
        self._reply(Noop())

    # ----------------------------------------------------------- bulk

    def _pipelining(self) -> bool:
        capabilities = self.capabilities
        return capabilities is not None and capabilities.pipelining

    def _pipeline(
        self, commands: Iterable[Command]
    ) -> Generator[tuple[Command, Event], None, None]:
        """Send `commands`, up to a window at a time when the server pipelines.

        Yields each reply event with its command, in order. A window of small
        commands always fits in the socket buffers, and each finished reply lets
        one more command go, so neither side can block the other.
        """
        window = self.pipeline_window if self._pipelining() else 1
        todo = iter(commands)
        outstanding: deque[Command] = deque()

        def fill() -> None:
            batch: list[Command] = []
            while len(outstanding) + len(batch) < window:
                command = next(todo, None)
                if command is None:
                    break
                batch.append(command)
            if batch:
                self._send(*batch)
                outstanding.extend(batch)

        fill()
        try:
            while outstanding:
                command = outstanding[0]
                event = self._next_event()
                finished = _ends_reply(command, event)
                if finished:
                    outstanding.popleft()  # before yielding: the caller may stop here
                yield command, event
                if finished:
                    fill()
        finally:
            # Stopped early: read the replies already asked for, and send nothing more.
            while outstanding and not self._closed:
                if _ends_reply(outstanding[0], self._next_event()):
                    outstanding.popleft()

    def retr_many(self, numbers: Iterable[int]) -> Iterator[tuple[int, bytes]]:
        """Yield ``(number, message)`` for each of `numbers`, pipelined when possible.

        A message the server refuses raises its `ResponseError` (after the
        replies already asked for are read).
        """
        # Closing the pipeline (also when our caller stops early) reads the
        # replies already asked for, so the session stays in step.
        with contextlib.closing(self._pipeline(Retr(n) for n in numbers)) as replies:
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
                    raise error_for(event, command)

    def retr_many_to(self, numbers: Iterable[int], open_file: Callable[[int], BinaryIO]) -> None:
        """Stream each of `numbers` into ``open_file(number)`` (closed when written).

        Memory stays bounded by a receive, whatever the message sizes.
        """
        file: BinaryIO | None = None
        replies = self._pipeline(Retr(n) for n in numbers)
        try:
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
                    raise error_for(event, command)
        finally:
            replies.close()  # reads the replies already asked for
            if file is not None:
                file.close()

    def dele_many(self, numbers: Iterable[int]) -> None:
        """Mark each of `numbers` deleted, pipelined when possible."""
        with contextlib.closing(self._pipeline(Dele(n) for n in numbers)) as replies:
            for command, event in replies:
                if isinstance(event, ErrResponse):
                    raise error_for(event, command)

    # ----------------------------------------------------------- ending

    def quit(self) -> None:
        """End the session with QUIT: deletions are committed. Then close."""
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
