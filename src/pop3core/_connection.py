"""`Connection`: one side of a POP3 session, as a Sans-I/O state machine.

Bytes go in through `Connection.receive_data` and come out of
`Connection.next_event` as events, one per call; events go in through
`Connection.send` and come out as bytes. The connection never does I/O and
never blocks; the caller moves bytes between it and the network.

This module orchestrates: framing (lines and their limits, the receive
buffer), the pipelining queue, and the STLS hand-off. What a line means is
read by `_readers`, how an event is written by `_writers`, and where each step
leads by the tables of `_state`.
"""

from __future__ import annotations

from collections import deque
from typing import Literal

from ._capabilities import Capabilities
from ._dotstuff import BodyDecoder, BodyEncoder, Buffer
from ._events import (
    Auth,
    AuthCancel,
    AuthChallenge,
    AuthResponse,
    BadCommand,
    Capa,
    Command,
    ConnectionClosed,
    Data,
    EndOfMultiline,
    ErrResponse,
    Event,
    Greeting,
    OkResponse,
    Retr,
)
from ._limits import (
    MAX_BAD_COMMANDS,
    MAX_CAPA_REPLY,
    MAX_COMMAND_LINE,
    MAX_SASL_LINE,
    MAX_STATUS_LINE,
)
from ._protocol_errors import LocalProtocolError, RemoteProtocolError
from ._readers import READERS
from ._receivebuffer import ReceiveBuffer
from ._reply_guard import body_limit, size_hint
from ._sentinels import NEED_DATA, PAUSED, Sentinel
from ._state import (
    BARRIER_COMMANDS,
    STATE_CHANGING,
    Exchange,
    Outcome,
    Role,
    SessionState,
    Signal,
    State,
    Step,
    next_exchange,
    trigger,
)
from ._writers import WRITERS, write_command

__all__ = ["CLIENT", "SERVER", "Connection"]

CLIENT = Role.CLIENT
SERVER = Role.SERVER

EventOrSentinel = Event | Literal[Sentinel.NEED_DATA, Sentinel.PAUSED]


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
        max_sasl_line_length: int = MAX_SASL_LINE,
        max_command_length: int | None = MAX_COMMAND_LINE,
        max_bad_commands: int = MAX_BAD_COMMANDS,
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
        # server: the command being answered (None for a bad line), and whether
        # the client cancelled the SASL exchange
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
        """Parse and return the next event, `NEED_DATA` or `PAUSED`.

        Any exception leaves the connection in ERROR (as in h11): after one,
        where the session stands is not known.
        """
        if self._error is not None:
            raise RemoteProtocolError("the connection is in the ERROR state")
        try:
            if self._decoder is not None:
                return self._read_body()  # the hot path: inside a multi-line body
            if self.our_role is CLIENT:
                return self._next_client_event()
            return self._next_server_event()
        except BaseException:
            self._error = self.their_role
            raise

    def _step(self, step: Step) -> None:
        self._exchange = next_exchange(self._exchange, step)

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
        event = READERS[SERVER, exchange](line, session, self._current, self.strict)
        self._step(Step.SASL_RESPONSE if sasl else Step.COMMAND)
        kind = type(event)
        if kind is BadCommand:
            self._answering_bad = True
            self.bad_commands += 1
            if self.bad_commands > self.max_bad_commands:
                raise RemoteProtocolError(
                    "too many bad commands", event_hint=ErrResponse(b"too many bad commands")
                )
        elif kind is AuthCancel:
            self._cancelled = True
        elif isinstance(event, Command):
            self._current = event
            session.apply(trigger(event, Outcome.SENT))
        return event

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
        event = READERS[CLIENT, Exchange.RESPONSE](line, session, head, self.strict)
        kind = type(event)
        if kind is AuthChallenge:
            self._step(Step.CHALLENGE)
            return event
        if session.state is State.GREETING:
            signal = Signal.GREETED if kind is Greeting else Signal.REFUSED
            session.apply(signal)
            self._predicted.apply(signal)
            self._step(Step.GREETING)
            self._start_next_command()
            return event
        assert head is not None
        if kind is OkResponse and head.expects_multiline:
            self._step(Step.OK_BODY)
            self._decoder = BodyDecoder(strict=self.strict)
            if type(head) is Capa:
                self._capa_body = []
                self._capa_size = 0
            elif type(head) is Retr:
                assert isinstance(event, OkResponse)
                announced = size_hint(event.text)
                if announced is not None:
                    self._body_budget = body_limit(announced)
            return event
        ok = kind is OkResponse
        self._finish_client_exchange(head, Step.OK if ok else Step.ERR, ok)
        return event

    def _read_body(self) -> EventOrSentinel:
        if self._end_pending:
            self._end_pending = False
            command = self._queue[0]
            if self._capa_body is not None:
                self.capabilities = Capabilities.parse(b"".join(self._capa_body))
                self._capa_body = None
            self._finish_client_exchange(command, Step.END, True)
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

    def _finish_client_exchange(self, command: Command, step: Step, ok: bool) -> None:
        self._queue.popleft()
        self._session.apply(trigger(command, Outcome.OK if ok else Outcome.ERR))
        if not ok and type(command) in STATE_CHANGING:
            # Our prediction assumed success; replay the rest of the queue.
            predicted = self._session.copy()
            for queued in self._queue:
                predicted.apply(trigger(queued, Outcome.SENT))
                predicted.apply(trigger(queued, Outcome.OK))
            self._predicted = predicted
        self._step(step)
        self._start_next_command()

    def _start_next_command(self) -> None:
        if self._queue and self._session.state not in (State.CLOSED, State.STARTING_TLS):
            self._session.apply(trigger(self._queue[0], Outcome.SENT))
            self._step(Step.COMMAND)

    # ------------------------------------------------------------- output

    def send(self, event: Event) -> bytes:
        """Serialise `event`, update the state, and return the bytes to write."""
        return b"".join(self.send_with_data_passthrough(event))

    def send_with_data_passthrough(self, event: Event) -> list[Buffer]:
        """Like `send`, but return a list of bytes-like pieces to write in order.

        A `Data` chunk that needs no stuffing comes back as the same object, so
        large bodies can go to the socket without a copy. A send that raises
        `LocalProtocolError` changes nothing: the event can be corrected and sent.
        Any other exception leaves our side in ERROR.
        """
        if self._error is self.our_role:
            raise LocalProtocolError("cannot send: our side is in the ERROR state")
        try:
            if self.our_role is CLIENT:
                return self._send_client(event)
            return self._send_server(event)
        except (LocalProtocolError, RemoteProtocolError):
            raise
        except BaseException:
            self._error = self.our_role
            raise

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
        self._session.apply(Signal.TLS_ESTABLISHED)
        self._predicted = self._session.copy()
        self.capabilities = None
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
            self._step(Step.SASL_RESPONSE)
            return [WRITERS[CLIENT, kind](event)]
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
        line = write_command(event)
        limit = self.max_command_length
        if limit is not None and len(line) > limit:
            raise LocalProtocolError(
                f"command line of {len(line)} octets exceeds the {limit}-octet limit"
            )
        predicted.apply(trigger(event, Outcome.SENT))
        predicted.apply(trigger(event, Outcome.OK))
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
                return [WRITERS[SERVER, kind](event)]
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
                self._finish_server_exchange(Step.END, True)
                return [end]
            raise LocalProtocolError(f"cannot send {kind.__name__} in a multi-line reply")
        if exchange is not Exchange.RESPONSE:
            raise LocalProtocolError(f"cannot send {kind.__name__}: no reply is owed")
        if session.state is State.GREETING:
            if kind is not Greeting and kind is not ErrResponse:
                raise LocalProtocolError(
                    f"the first thing a server sends is a Greeting, not {kind}"
                )
            session.apply(Signal.GREETED if kind is Greeting else Signal.REFUSED)
            self._step(Step.GREETING)
            return [WRITERS[SERVER, kind](event)]
        current = self._current
        if kind is ErrResponse:
            self._finish_server_exchange(Step.ERR, False)
            return [WRITERS[SERVER, kind](event)]
        if self._answering_bad:
            raise LocalProtocolError("a bad command must be answered with ErrResponse")
        if self._cancelled:
            raise LocalProtocolError("a cancelled SASL exchange must end with ErrResponse")
        assert current is not None
        if kind is OkResponse:
            if current.expects_multiline:
                self._step(Step.OK_BODY)
                self._encoder = BodyEncoder()
            else:
                self._finish_server_exchange(Step.OK, True)
            return [WRITERS[SERVER, kind](event)]
        if kind is AuthChallenge:
            if type(current) is not Auth or current.mechanism is None:
                raise LocalProtocolError("a SASL challenge answers only AUTH <mechanism>")
            self._step(Step.CHALLENGE)
            return [WRITERS[SERVER, kind](event)]
        raise LocalProtocolError(f"a server cannot send {kind.__name__} now")

    def _finish_server_exchange(self, step: Step, ok: bool) -> None:
        self._session.apply(trigger(self._current, Outcome.OK if ok else Outcome.ERR))
        self._current = None
        self._answering_bad = False
        self._cancelled = False
        self._step(step)
