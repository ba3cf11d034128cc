"""`Connection`: one side of a POP3 session, as a Sans-I/O state machine.

Bytes go in through `Connection.receive_data` and come out of
`Connection.next_event` as events, one per call; events go in through
`Connection.send` and come out as bytes. The connection never does I/O and
never blocks; the caller moves bytes between it and the network.
"""

from __future__ import annotations

import binascii
import re
from collections import deque
from collections.abc import Callable
from typing import Literal

from ._capabilities import Capabilities
from ._codes import split_response_code
from ._dotstuff import BodyDecoder, BodyEncoder, Buffer
from ._events import (
    LANG_RANGE,
    MAX_COMMAND_LINE,
    MAX_STATUS_LINE,
    Apop,
    Auth,
    AuthCancel,
    AuthChallenge,
    AuthResponse,
    BadCommand,
    BadCommandReason,
    Capa,
    Command,
    ConnectionClosed,
    Data,
    Dele,
    EndOfMultiline,
    ErrResponse,
    Event,
    Greeting,
    Lang,
    List,
    Noop,
    OkResponse,
    Pass,
    Quit,
    RawCommand,
    Retr,
    Rset,
    Stat,
    Stls,
    Top,
    Uidl,
    User,
    Utf8,
    parse_sasl_continuation,
    strict_b64decode,
)
from ._receivebuffer import ReceiveBuffer
from ._reply_guard import body_limit, size_hint
from ._state import BARRIER_COMMANDS, Exchange, Role, SessionState, State
from ._util import NEED_DATA, PAUSED, LocalProtocolError, RemoteProtocolError, Sentinel

__all__ = ["CLIENT", "SERVER", "Connection"]

CLIENT = Role.CLIENT
SERVER = Role.SERVER

DEFAULT_MAX_SASL_LINE = 64 * 1024
DEFAULT_MAX_BAD_COMMANDS = 10
# A CAPA reply is collected whole to build `Connection.capabilities`; real ones
# are a few hundred octets.
MAX_CAPA_REPLY = 64 * 1024

_CRLF = b"\r\n"
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")

EventOrSentinel = Event | Literal[Sentinel.NEED_DATA, Sentinel.PAUSED]


def _strip_eol(line: bytes) -> bytes:
    # A line ends in CRLF, or (tolerated, as real servers and clients send it) a bare LF.
    return line[:-2] if line[-2:] == _CRLF else line[:-1]


class Connection:
    """One end of a POP3 session: `our_role` is `CLIENT` or `SERVER`.

    Contract:

    * `receive_data` takes whatever the transport delivered (``bytes``,
      ``bytearray`` or ``memoryview``, split anywhere); ``b""`` means EOF.
    * `next_event` returns one event, `NEED_DATA` (feed more bytes) or `PAUSED`
      (the server owes a response, the client owes a SASL response, or TLS must
      start first). It parses lazily: nothing is parsed before it is asked for.
    * `send` returns the bytes for an event; `send_with_data_passthrough` returns
      a list of bytes-like pieces instead, in which a `Data` chunk that needs no
      stuffing appears as the very object that was passed in.

    A client may pipeline commands: it may send several before reading, and
    matches replies to them in order. It may not send anything after STLS, AUTH
    or QUIT until that exchange is over. A server parses one command at a time
    and returns `PAUSED` until it has sent the whole reply.

    ``strict=False`` (clients only) accepts what poplib accepts: any line
    starting with ``+`` is a positive reply, any other line a negative one; ``.``
    LF ends a body; an unstuffed ``.x`` line keeps its dot; and commands are sent
    whatever the session state.

    Limits: ``max_line_length`` is the longest line accepted, CRLF included (255
    for a server's command lines, 512 for a client's status lines, by default);
    ``max_sasl_line_length`` bounds SASL lines (challenges and responses, which
    RFC 5034 lets grow beyond the other limits); ``max_command_length`` bounds
    the command lines a client sends (255, RFC 2449; None for no limit); a server
    that has seen ``max_bad_commands`` bad commands treats the next as fatal.
    Body lines of multi-line replies have no limit: they are streamed.
    """

    def __init__(
        self,
        our_role: Role,
        *,
        strict: bool = True,
        tls_active: bool = False,
        max_line_length: int | None = None,
        max_sasl_line_length: int = DEFAULT_MAX_SASL_LINE,
        max_command_length: int | None = MAX_COMMAND_LINE,
        max_bad_commands: int = DEFAULT_MAX_BAD_COMMANDS,
    ) -> None:
        if our_role not in (CLIENT, SERVER):
            raise ValueError(f"expected CLIENT or SERVER, not {our_role!r}")
        if not strict and our_role is SERVER:
            raise ValueError("lenient parsing is a client feature")
        self.our_role = our_role
        self.their_role = SERVER if our_role is CLIENT else CLIENT
        self.strict = strict
        if max_line_length is None:
            max_line_length = MAX_STATUS_LINE if our_role is CLIENT else MAX_COMMAND_LINE
        self.max_line_length = max_line_length
        self.max_sasl_line_length = max_sasl_line_length
        self.max_command_length = max_command_length
        self.max_bad_commands = max_bad_commands
        self.bad_commands = 0
        self.capabilities: Capabilities | None = None
        """The client's view of the last CAPA reply; None before one, and after STLS."""

        self._session = SessionState(tls_active=tls_active)
        self._exchange = Exchange.RESPONSE  # the greeting is owed first
        self._buffer = ReceiveBuffer()
        self._eof = False
        self._error: Role | None = None
        self._decoder: BodyDecoder | None = None
        self._encoder: BodyEncoder | None = None
        self._end_pending = False  # a body ended; EndOfMultiline is the next event
        # client: commands sent and not yet answered, head first
        self._queue: deque[Command] = deque()
        self._predicted = SessionState(tls_active=tls_active)
        self._capa_body: list[bytes] | None = None
        self._capa_size = 0
        self._body_budget: int | None = None  # octets the RETR body may still bring
        # server: the command being answered (or the bad line), and whether the
        # client cancelled the SASL exchange
        self._current: Command | None = None
        self._answering_bad = False
        self._cancelled = False

    # ------------------------------------------------------------- state

    @property
    def state(self) -> State:
        """The session state (ERROR once either side broke the protocol)."""
        return State.ERROR if self._error is not None else self._session.state

    @property
    def exchange(self) -> Exchange:
        """Who is to speak next within the current exchange."""
        return self._exchange

    @property
    def tls_active(self) -> bool:
        return self._session.tls_active

    @property
    def utf8_active(self) -> bool:
        return self._session.utf8_active

    @property
    def authenticated(self) -> bool:
        return self._session.authenticated

    @property
    def user_accepted(self) -> bool:
        """USER was just accepted, so PASS may follow."""
        return self._session.user_accepted

    @property
    def pending_commands(self) -> tuple[Command, ...]:
        """Client: the commands sent whose replies have not fully arrived, oldest first."""
        return tuple(self._queue)

    @property
    def current_command(self) -> Command | None:
        """The command whose reply is in progress (the oldest pending one, for a client)."""
        if self.our_role is SERVER:
            return self._current
        return self._queue[0] if self._queue else None

    @property
    def trailing_data(self) -> tuple[bytes, bool]:
        """The bytes received and not parsed, and whether EOF was received."""
        data, pos = self._buffer.raw
        return bytes(data[pos:]), self._eof

    # ------------------------------------------------------------- input

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes from the peer; ``b""`` means the peer closed its side."""
        if data:
            if self._eof:
                raise RuntimeError("received data after EOF")
            self._buffer.append(data)
        else:
            self._eof = True

    def next_event(self) -> EventOrSentinel:
        """Parse and return the next event, `NEED_DATA` or `PAUSED`."""
        if self._error is not None:
            raise RemoteProtocolError("the connection is in the ERROR state")
        try:
            if self._decoder is not None:
                return self._read_body()  # the hot path: inside a multi-line body
            if self.our_role is CLIENT:
                return self._next_client_event()
            return self._next_server_event()
        except RemoteProtocolError:
            self._error = self.their_role
            raise

    def _line(self, limit: int) -> bytes | None:
        """The next line with its line ending, or None if it has not all arrived."""
        buffer = self._buffer
        end = buffer.line_end()
        if end < 0:
            if buffer.pending_length() >= limit:
                raise RemoteProtocolError(
                    f"line longer than {limit} octets",
                    event_hint=ErrResponse(b"line too long"),
                )
            return None
        _, pos = buffer.raw
        if end - pos > limit:
            raise RemoteProtocolError(
                f"line longer than {limit} octets", event_hint=ErrResponse(b"line too long")
            )
        return buffer.take(end)

    def _check_unowed(self) -> None:
        if self._buffer:
            data, pos = self._buffer.raw
            raise RemoteProtocolError(
                f"the server sent data when no reply was owed: {bytes(data[pos : pos + 40])!r}"
            )

    def _check_injection(self) -> None:
        if self._buffer:
            raise RemoteProtocolError(
                "data arrived after the STLS exchange, before TLS (STARTTLS injection)"
            )

    # ----------------------------------------------------------- server in

    def _next_server_event(self) -> EventOrSentinel:
        session = self._session
        if session.state is State.CLOSED:
            return ConnectionClosed()
        if session.state is State.STARTING_TLS:
            self._check_injection()
            return PAUSED
        exchange = self._exchange
        if exchange is Exchange.RESPONSE or exchange is Exchange.DATA:
            return PAUSED
        sasl = exchange is Exchange.SASL
        if not sasl:
            data, pos = self._buffer.raw
            if pos < len(data) and data[pos] == 0x16:
                # A TLS ClientHello may never contain a LF: reject it at its first byte.
                raise RemoteProtocolError(
                    "TLS handshake on a connection without TLS",
                    event_hint=ErrResponse(b"TLS is not active on this port"),
                )
        line = self._line(self.max_sasl_line_length if sasl else self.max_line_length)
        if line is None:
            if self._eof:
                session.state = State.CLOSED
                return ConnectionClosed()
            return NEED_DATA
        self._exchange = Exchange.RESPONSE
        event = self._parse_sasl_line(line) if sasl else self._parse_command(line)
        if type(event) is BadCommand:
            self._answering_bad = True
            self.bad_commands += 1
            if self.bad_commands > self.max_bad_commands:
                raise RemoteProtocolError(
                    "too many bad commands", event_hint=ErrResponse(b"too many bad commands")
                )
        elif isinstance(event, Command):
            self._current = event
            session.command_started(event)
        return event

    def _parse_sasl_line(self, line: bytes) -> Event:
        payload = _strip_eol(line)
        if payload == b"*":
            self._cancelled = True
            return AuthCancel()
        decoded = strict_b64decode(payload)
        if decoded is None:
            return BadCommand(
                line,
                "AUTH",
                BadCommandReason.BAD_ARGUMENTS,
                ErrResponse(b"invalid base64 in SASL response"),
            )
        return AuthResponse(decoded, _parsed=True)

    def _parse_command(self, line: bytes) -> Event:
        body = _strip_eol(line)
        if b"\x00" in body:
            raise RemoteProtocolError(
                "NUL in command line", event_hint=ErrResponse(b"invalid command line")
            )
        keyword_bytes, _, rest = body.partition(b" ")
        keyword = keyword_bytes.decode("ascii", "replace").upper()

        def bad(reason: BadCommandReason, text: str) -> BadCommand:
            return BadCommand(line, keyword or None, reason, ErrResponse(text.encode()))

        if _CONTROL.search(body):
            # A bare CR, an escape sequence...: never let them into an argument.
            return bad(BadCommandReason.BAD_ARGUMENTS, "control characters in command line")

        parser = _COMMAND_PARSERS.get(keyword)
        if parser is None:
            if keyword in ("LAST", "RPOP"):
                return bad(BadCommandReason.NOT_SUPPORTED, f"{keyword} is not supported")
            return bad(BadCommandReason.UNKNOWN, "unknown command")
        try:
            command = parser(rest)
        except _BadArguments as exc:
            # A command in the wrong state is refused as such, whatever its arguments.
            probe = _STATE_PROBES[keyword]
            refusal = self._session.refusal(probe)
            if refusal is not None:
                return bad(BadCommandReason.WRONG_STATE, refusal)
            return bad(BadCommandReason.BAD_ARGUMENTS, str(exc))
        refusal = self._session.refusal(command)
        if refusal is not None:
            return bad(BadCommandReason.WRONG_STATE, refusal)
        return command

    # ----------------------------------------------------------- client in

    def _next_client_event(self) -> EventOrSentinel:
        session = self._session
        if session.state is State.CLOSED:
            return ConnectionClosed()
        if session.state is State.STARTING_TLS:
            self._check_injection()
            return PAUSED
        exchange = self._exchange
        if exchange is Exchange.DATA:
            return self._read_body()
        if exchange is Exchange.SASL:
            # The server waits for our response: a line now would be taken as
            # its answer to it (a stray "+OK" would log us in).
            self._check_unowed()
            return PAUSED
        if exchange is Exchange.IDLE:
            # A line nobody asked for would be taken as the reply to the next
            # command: an extra "+OK", or the rest of a body the server ended early.
            self._check_unowed()
            if self._eof:
                session.state = State.CLOSED
                return ConnectionClosed()
            return NEED_DATA
        head = self._queue[0] if self._queue else None
        # A SASL challenge may be far longer than a status line (RFC 5034 section 4).
        in_sasl = type(head) is Auth and head.mechanism is not None
        limit = self.max_line_length
        if in_sasl:
            limit = max(limit, self.max_sasl_line_length)
        line = self._line(limit)
        if line is None:
            if self._eof:
                raise RemoteProtocolError("the server closed the connection before replying")
            return NEED_DATA
        # Only a challenge ("+" then SP or the line end) may exceed the status-line limit.
        if len(line) > self.max_line_length and not (
            line[:1] == b"+" and line[1:2] in (b" ", b"\r", b"\n")
        ):
            raise RemoteProtocolError(f"line longer than {self.max_line_length} octets")
        return self._parse_status(_strip_eol(line))

    def _parse_status(self, line: bytes) -> Event:
        session = self._session
        command = self._queue[0] if self._queue else None
        head = line[:4].upper()
        ok: bool
        if head[:3] == b"+OK" and (len(line) == 3 or line[3] == 0x20):
            ok = True
            code, text = split_response_code(line[4:])
        elif head == b"-ERR" and (len(line) == 4 or line[4] == 0x20):
            ok = False
            code, text = split_response_code(line[5:])
        elif (
            type(command) is Auth
            and command.mechanism is not None
            and (challenge := parse_sasl_continuation(line)) is not None
        ):
            self._exchange = Exchange.SASL
            return challenge
        elif not self.strict:
            ok = line[:1] == b"+"
            code, text = None, line[1:].lstrip(b" ") if ok else line
        else:
            raise RemoteProtocolError(f"malformed status line: {line[:80]!r}")

        if session.state is State.GREETING:
            session.greeted(ok)
            self._predicted.greeted(ok)
            self._exchange = Exchange.IDLE
            self._start_next_command()
            if ok:
                return Greeting(text, code, _line=line)
            return ErrResponse(text, code, _line=line)

        assert command is not None
        event: Event
        if ok:
            event = OkResponse(text, code, _line=line)
            if command.expects_multiline:
                self._exchange = Exchange.DATA
                self._decoder = BodyDecoder(strict=self.strict)
                if type(command) is Capa:
                    self._capa_body = []
                    self._capa_size = 0
                elif type(command) is Retr and (announced := size_hint(text)) is not None:
                    self._body_budget = body_limit(announced)
                return event
        else:
            event = ErrResponse(text, code, _line=line)
        self._finish_client_exchange(command, ok)
        return event

    def _read_body(self) -> EventOrSentinel:
        if self._end_pending:
            self._end_pending = False
            command = self._queue[0]
            if self._capa_body is not None:
                self.capabilities = Capabilities.parse(b"".join(self._capa_body))
                self._capa_body = None
            self._finish_client_exchange(command, True)
            return EndOfMultiline()
        decoder = self._decoder
        assert decoder is not None
        buffer = self._buffer
        if not buffer:
            # Every receive ends with this poll: keep it cheap.
            if self._eof:
                raise RemoteProtocolError("the server closed the connection in a multi-line reply")
            return NEED_DATA
        data, pos = buffer.raw
        body, new_pos, finished = decoder.feed(data, pos)
        buffer.consume_to(new_pos)
        if self._body_budget is not None:
            self._body_budget -= len(body)
            if self._body_budget < 0:
                raise RemoteProtocolError(
                    "the message runs far past the size the server announced"
                )
            if finished:
                self._body_budget = None
        if finished:
            self._end_pending = True
            self._decoder = None
        if self._capa_body is not None and body:
            self._capa_size += len(body)
            if self._capa_size > MAX_CAPA_REPLY:
                raise RemoteProtocolError("CAPA reply too long")
            self._capa_body.append(body)
        if body:
            return Data(body, _parsed=True)
        if finished:
            return self._read_body()
        if self._eof:
            raise RemoteProtocolError("the server closed the connection in a multi-line reply")
        return NEED_DATA

    def _finish_client_exchange(self, command: Command, ok: bool) -> None:
        self._queue.popleft()
        self._session.command_finished(command, ok)
        if not ok and type(command) in _STATE_CHANGING:
            # Our prediction assumed success; replay the rest of the queue.
            predicted = self._session.copy()
            for queued in self._queue:
                predicted.command_started(queued)
                predicted.command_finished(queued, True)
            self._predicted = predicted
        self._exchange = Exchange.IDLE
        self._start_next_command()

    def _start_next_command(self) -> None:
        if self._queue and self._session.state not in (State.CLOSED, State.STARTING_TLS):
            self._session.command_started(self._queue[0])
            self._exchange = Exchange.RESPONSE

    # ------------------------------------------------------------- output

    def send(self, event: Event) -> bytes:
        """Serialise `event`, update the state, and return the bytes to write."""
        return b"".join(self.send_with_data_passthrough(event))

    def send_with_data_passthrough(self, event: Event) -> list[Buffer]:
        """Like `send`, but return a list of bytes-like pieces to write in order.

        A `Data` chunk that needs no stuffing comes back as the same object, so
        large bodies can go to the socket without a copy. A send that raises
        `LocalProtocolError` changes nothing: the event can be corrected and sent.
        """
        if self._error is self.our_role:
            raise LocalProtocolError("cannot send: our side is in the ERROR state")
        if self.our_role is CLIENT:
            return self._send_client(event)
        return self._send_server(event)

    def send_failed(self) -> None:
        """Tell the connection the last bytes never reached the peer (it is now ERROR)."""
        self._error = self.our_role

    def tls_established(self) -> None:
        """The adapter finished the TLS handshake after STLS; start AUTHORIZATION afresh.

        Raises `RemoteProtocolError` if bytes arrived between the STLS exchange and
        the handshake (STARTTLS injection).
        """
        if self._session.state is not State.STARTING_TLS:
            raise LocalProtocolError("tls_established() is only valid after +OK to STLS")
        try:
            self._check_injection()
        except RemoteProtocolError:
            self._error = self.their_role
            raise
        self._session.tls_started()
        self._predicted = self._session.copy()
        self.capabilities = None
        self._exchange = Exchange.IDLE
        self._start_next_command()

    def _send_client(self, event: Event) -> list[Buffer]:
        session = self._session
        kind = type(event)
        if kind is ConnectionClosed:
            session.state = State.CLOSED
            return []
        if session.state is State.CLOSED:
            raise LocalProtocolError("the session is closed")
        if kind is AuthResponse or kind is AuthCancel:
            if self._exchange is not Exchange.SASL:
                raise LocalProtocolError("no SASL challenge is waiting for a response")
            if self._buffer:
                # Already here, these bytes would be read as the answer to our response.
                self._error = self.their_role
                self._check_unowed()
            self._exchange = Exchange.RESPONSE
            if kind is AuthCancel:
                return [b"*\r\n"]
            assert isinstance(event, AuthResponse)
            return [binascii.b2a_base64(event.data, newline=False) + _CRLF]
        if not isinstance(event, Command):
            raise LocalProtocolError(f"a client cannot send {kind.__name__}")
        if self._queue and type(self._queue[-1]) in BARRIER_COMMANDS:
            raise LocalProtocolError(
                f"cannot send {event.keyword or 'a command'} before the "
                f"{self._queue[-1].keyword} exchange is over"
            )
        predicted = self._predicted
        if session.state is State.STARTING_TLS:
            raise LocalProtocolError("call tls_established() before sending more commands")
        if self.strict:
            refusal = predicted.refusal(event)
            if refusal is not None:
                raise LocalProtocolError(f"cannot send {event.keyword} now: {refusal}")
        if kind is RawCommand:
            assert isinstance(event, RawCommand)
            line = event.line.encode("utf-8", "surrogateescape") + _CRLF
        else:
            args = event._wire_args()
            keyword = event.keyword.encode("ascii")
            line = keyword + b" " + args + _CRLF if args else keyword + _CRLF
        limit = self.max_command_length
        if limit is not None and len(line) > limit:
            raise LocalProtocolError(
                f"command line of {len(line)} octets exceeds the {limit}-octet limit"
            )
        predicted.command_started(event)
        predicted.command_finished(event, True)
        self._queue.append(event)
        if len(self._queue) == 1 and self._exchange is Exchange.IDLE:
            self._start_next_command()
        return [line]

    def _send_server(self, event: Event) -> list[Buffer]:
        session = self._session
        kind = type(event)
        if kind is ConnectionClosed:
            session.state = State.CLOSED
            return []
        if self._error is not None:
            # The client broke the protocol: a last -ERR may still go out.
            if kind is ErrResponse:
                assert isinstance(event, ErrResponse)
                return [event.line + _CRLF]
            raise LocalProtocolError("only an ErrResponse may be sent after a protocol error")
        exchange = self._exchange
        if exchange is Exchange.DATA:
            if kind is Data:
                assert isinstance(event, Data)
                assert self._encoder is not None
                return self._encoder.encode(event.data)
            if kind is EndOfMultiline:
                assert self._encoder is not None
                end = self._encoder.end()
                self._encoder = None
                assert self._current is not None
                self._finish_server_exchange(True)
                return [end]
            raise LocalProtocolError(f"cannot send {kind.__name__} in a multi-line reply")
        if exchange is not Exchange.RESPONSE:
            raise LocalProtocolError(f"cannot send {kind.__name__}: no reply is owed")
        if session.state is State.GREETING:
            if kind is Greeting:
                assert isinstance(event, Greeting)
                session.greeted(True)
                self._exchange = Exchange.IDLE
                return [event.line + _CRLF]
            if kind is ErrResponse:
                assert isinstance(event, ErrResponse)
                session.greeted(False)
                self._exchange = Exchange.IDLE
                return [event.line + _CRLF]
            raise LocalProtocolError(f"the first thing a server sends is a Greeting, not {kind}")
        current = self._current
        if kind is ErrResponse:
            assert isinstance(event, ErrResponse)
            self._finish_server_exchange(False)
            return [event.line + _CRLF]
        if self._answering_bad:
            raise LocalProtocolError("a bad command must be answered with ErrResponse")
        if self._cancelled:
            raise LocalProtocolError("a cancelled SASL exchange must end with ErrResponse")
        assert current is not None
        if kind is OkResponse:
            assert isinstance(event, OkResponse)
            if current.expects_multiline:
                self._exchange = Exchange.DATA
                self._encoder = BodyEncoder()
            else:
                self._finish_server_exchange(True)
            return [event.line + _CRLF]
        if kind is AuthChallenge:
            assert isinstance(event, AuthChallenge)
            if type(current) is not Auth or current.mechanism is None:
                raise LocalProtocolError("a SASL challenge answers only AUTH <mechanism>")
            self._exchange = Exchange.SASL
            return [b"+ " + binascii.b2a_base64(event.data, newline=False) + _CRLF]
        raise LocalProtocolError(f"a server cannot send {kind.__name__} now")

    def _finish_server_exchange(self, ok: bool) -> None:
        current = self._current
        if current is not None:
            self._session.command_finished(current, ok)
        else:
            self._session.user_accepted = False
        self._current = None
        self._answering_bad = False
        self._cancelled = False
        self._exchange = Exchange.IDLE


# ------------------------------------------------------------ command parsing


class _BadArguments(Exception):
    pass


_Parser = Callable[[bytes], Command]


def _no_args(command: Command) -> _Parser:
    def parse(rest: bytes) -> Command:
        if rest.strip(b" "):
            raise _BadArguments(f"{command.keyword} takes no arguments")
        return command

    return parse


def _number(token: bytes, what: str, *, minimum: int = 1, max_digits: int | None = 10) -> int:
    if not token.isdigit() or (max_digits is not None and len(token) > max_digits):
        raise _BadArguments(f"invalid {what}")
    value = int(token)
    if value < minimum:
        raise _BadArguments(f"invalid {what}")
    return value


def _args(rest: bytes) -> list[bytes]:
    # One SP separates arguments (RFC 1939); extra spaces are tolerated.
    return rest.split()


def _text_arg(rest: bytes) -> str:
    return rest.decode("utf-8", "surrogateescape")


def _parse_user(rest: bytes) -> Command:
    name = rest.strip(b" ")
    if not name:
        raise _BadArguments("USER needs a user name")
    return User(_text_arg(name), _parsed=True)


def _parse_pass(rest: bytes) -> Command:
    # The password is the rest of the line, spaces included (RFC 1939 section 7).
    if not rest:
        raise _BadArguments("PASS needs a password")
    return Pass(_text_arg(rest), _parsed=True)


def _parse_apop(rest: bytes) -> Command:
    name, _, digest = rest.strip(b" ").rpartition(b" ")
    name = name.rstrip(b" ")
    if not name or len(digest) != 32 or not all(c in b"0123456789abcdefABCDEF" for c in digest):
        raise _BadArguments("APOP needs a name and a 32-digit hex digest")
    return Apop(_text_arg(name), digest.decode("ascii").lower(), _parsed=True)


def _parse_optional_number(cls: type[List] | type[Uidl]) -> _Parser:
    def parse(rest: bytes) -> Command:
        args = _args(rest)
        if not args:
            return cls(None, _parsed=True)
        if len(args) > 1:
            raise _BadArguments(f"{cls.keyword} takes at most one argument")
        return cls(_number(args[0], "message number"), _parsed=True)

    return parse


def _parse_one_number(cls: type[Retr] | type[Dele]) -> _Parser:
    def parse(rest: bytes) -> Command:
        args = _args(rest)
        if len(args) != 1:
            raise _BadArguments(f"{cls.keyword} needs a message number")
        return cls(_number(args[0], "message number"), _parsed=True)

    return parse


def _parse_top(rest: bytes) -> Command:
    args = _args(rest)
    if len(args) != 2:
        raise _BadArguments("TOP needs a message number and a line count")
    return Top(
        _number(args[0], "message number"),
        # RFC 1939: a count beyond the body sends it all; any count of digits
        # is valid (the line limit bounds its length).
        _number(args[1], "line count", minimum=0, max_digits=None),
        _parsed=True,
    )


def _parse_auth(rest: bytes) -> Command:
    args = _args(rest)
    if not args:
        return Auth(None, _parsed=True)
    if len(args) > 2:
        raise _BadArguments("AUTH takes a mechanism and an optional initial response")
    mechanism = args[0].decode("ascii", "replace").upper()
    if not mechanism.replace("-", "").replace("_", "").isalnum() or len(mechanism) > 20:
        raise _BadArguments("invalid SASL mechanism name")
    initial: bytes | None = None
    if len(args) == 2:
        if args[1] == b"=":
            initial = b""
        else:
            initial = strict_b64decode(args[1])
            if initial is None:
                raise _BadArguments("invalid base64 in initial response")
    return Auth(mechanism, initial, _parsed=True)


def _parse_lang(rest: bytes) -> Command:
    args = _args(rest)
    if not args:
        return Lang(None, _parsed=True)
    tag = args[0].decode("ascii", "replace")
    if len(args) > 1 or not LANG_RANGE.match(tag):
        raise _BadArguments("invalid language range")
    return Lang(tag, _parsed=True)


_COMMAND_PARSERS: dict[str, _Parser] = {
    "USER": _parse_user,
    "PASS": _parse_pass,
    "APOP": _parse_apop,
    "QUIT": _no_args(Quit()),
    "STAT": _no_args(Stat()),
    "NOOP": _no_args(Noop()),
    "RSET": _no_args(Rset()),
    "CAPA": _no_args(Capa()),
    "STLS": _no_args(Stls()),
    "UTF8": _no_args(Utf8()),
    "LIST": _parse_optional_number(List),
    "UIDL": _parse_optional_number(Uidl),
    "RETR": _parse_one_number(Retr),
    "DELE": _parse_one_number(Dele),
    "TOP": _parse_top,
    "AUTH": _parse_auth,
    "LANG": _parse_lang,
}

# A representative of each command, to ask the state machine about a command
# whose arguments did not parse.
_STATE_PROBES: dict[str, Command] = {
    "USER": User("x"),
    "PASS": Pass("x"),
    "APOP": Apop("x", "0" * 32),
    "QUIT": Quit(),
    "STAT": Stat(),
    "NOOP": Noop(),
    "RSET": Rset(),
    "CAPA": Capa(),
    "STLS": Stls(),
    "UTF8": Utf8(),
    "LIST": List(),
    "UIDL": Uidl(),
    "RETR": Retr(1),
    "DELE": Dele(1),
    "TOP": Top(1, 0),
    "AUTH": Auth(),
    "LANG": Lang(),
}

_STATE_CHANGING: frozenset[type[Command]] = frozenset({User, Pass, Apop, Auth, Stls, Utf8})
