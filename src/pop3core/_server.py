"""`ServerSession`: a whole POP3 server session, minus the I/O and the storage.

It wraps a server `Connection` and answers everything the protocol defines on its
own: CAPA, STAT, LIST, UIDL, DELE, RSET, NOOP, LANG, UTF8, refusals of bad or
misplaced commands, message numbering and deleted marks. It asks the
application (through the events below) only for what it cannot know: whether
credentials are right, the maildrop listing, message bytes, and the commit.

Deletions reach the application only in an `UpdateRequest`, which is emitted
only for QUIT in TRANSACTION: never on EOF, a protocol error or a timeout.
"""

from __future__ import annotations

import hmac
import itertools
import operator
import secrets
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from ._apop import apop_digest
from ._codes import AUTH, SYS_TEMP, UTF8, ResponseCode
from ._connection import SERVER, Connection
from ._dotstuff import Buffer
from ._events import (
    Apop,
    Auth,
    AuthCancel,
    AuthChallenge,
    AuthResponse,
    BadCommand,
    Capa,
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
    Retr,
    Rset,
    Stat,
    Stls,
    Top,
    Uidl,
    User,
    Utf8,
)
from ._limits import (
    AUTH_FAILURE_DELAY,
    LOGIN_TIMEOUT,
    MAX_BAD_COMMANDS,
    MAX_COMMAND_LINE,
    MAX_LOGIN_FAILURES,
    MAX_SASL_LINE,
    MINIMUM_AUTOLOGOUT,
    OUTPUT_HIGH_WATER,
)
from ._message import HeaderScreen, TopCutter
from ._protocol_errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from ._sasl._base import (
    AuthenticationFailed,
    Challenge,
    ExternalCheck,
    Identity,
    PasswordCheck,
    ScramKeysRequest,
    SecretRequest,
    ServerMechanism,
    ServerStep,
    TokenCheck,
)
from ._sentinels import NEED_DATA, PAUSED, Sentinel
from ._state import State

__all__ = [
    "MINIMUM_AUTOLOGOUT",
    "OUTPUT_HIGH_WATER",
    "LoginFailed",
    "MaildropRequest",
    "MessageInfo",
    "MessageRequest",
    "ServerOptions",
    "ServerSession",
    "SessionEnded",
    "StartTLS",
    "UpdateRequest",
    "is_valid_uid",
    "login_failure_message",
    "make_apop_timestamp",
]


class MessageInfo(NamedTuple):
    """One message of a maildrop, as the application describes it at login.

    ``size`` is the exact number of octets RETR will send before stuffing (see
    `wire_size`); ``uid`` is the unique id (1-70 characters, 0x21-0x7E).
    ``needs_utf8`` marks a message with raw UTF-8 headers: without UTF8 mode,
    RETR, TOP and LIST of it get ``-ERR [UTF8]`` (RFC 6856 section 2).
    """

    size: int
    uid: str
    needs_utf8: bool = False


_SIZE = operator.attrgetter("size")
_UID = operator.attrgetter("uid")


def is_valid_uid(uid: object) -> bool:
    """Whether `uid` can be a unique id: 1-70 characters in 0x21-0x7E (RFC 1939 section 7)."""
    return (
        isinstance(uid, str)
        and 1 <= len(uid) <= 70
        and uid.isascii()
        and uid.isprintable()
        and " " not in uid
    )


def _listing_is_valid(entries: list[MessageInfo]) -> bool:
    """Whether every size is an int >= 0 and every uid valid, in C-level passes.

    The rule of `is_valid_uid`, applied to all uids at once: a maildrop of
    100,000 messages is checked in a few milliseconds.
    """
    if not entries:
        return True
    sizes = list(map(_SIZE, entries))
    if set(map(type, sizes)) != {int} or min(sizes) < 0:
        return False
    uids = list(map(_UID, entries))
    if set(map(type, uids)) != {str}:
        return False
    lengths = list(map(len, uids))
    if min(lengths) < 1 or max(lengths) > 70:
        return False
    joined = "".join(uids)
    return joined.isascii() and joined.isprintable() and " " not in joined


def _render_listing(listing: Sequence[MessageInfo], deleted: set[int], kind: str) -> bytes:
    """The body of ``LIST`` or ``UIDL``: one line per message not marked deleted.

    One ``%`` format over the whole listing, a single C-level pass: 100,000
    entries take ~24 ms, against ~35 ms for a format call per entry. The uids
    were checked to be printable ASCII at login (`_listing_is_valid`).
    """
    pairs: Iterable[tuple[int, object]] = zip(
        range(1, len(listing) + 1), map(_SIZE if kind == "LIST" else _UID, listing), strict=True
    )
    if deleted:
        pairs = itertools.compress(pairs, [i not in deleted for i in range(len(listing))])
    flat = tuple(itertools.chain.from_iterable(pairs))
    line = "%d %d\r\n" if kind == "LIST" else "%d %s\r\n"
    return (line * (len(flat) // 2) % flat).encode("ascii")


@dataclass(frozen=True)
class ServerOptions:
    """What a server offers. The defaults are the safe ones.

    * ``tls_available``: the adapter can start TLS (offer STLS).
    * ``allow_cleartext``: accept USER/PASS and cleartext SASL mechanisms without
      TLS (RFC 2595 section 2.4 requires that this can be refused; use it only on
      loopback or trusted networks).
    * ``apop``: put a timestamp in the greeting and accept APOP.
    * ``mechanisms``: the SASL mechanisms, server side, in the order offered.
    * ``utf8``: offer UTF8 (RFC 6856). Then a client that does not send it gets
      ``-ERR [UTF8]`` for any message whose header fields are not ASCII (the
      session checks them as the message goes out): the RFC allows no other
      answer short of downgrading the message. Off by default, as in Dovecot, so
      that clients without UTF8 get every message as stored: mpop, for one,
      abandons its whole download at the first refused message.
    * ``authorize``: who may act as whom. A client may name an identity to act
      as besides the one it proves (PLAIN's authzid, SCRAM's and OAUTHBEARER's
      ``a=``, XOAUTH2's ``user=`` against the token's owner, EXTERNAL's request
      against the certificate). When the two differ, ``authorize(authcid,
      authzid)`` must return True (Dovecot's master users are such a rule);
      without it, the default, the login is refused with ``-ERR [AUTH]``.
    * ``auth_failure_delay``: seconds a failed login's ``-ERR`` is held back
      (`LoginFailed`), counted from when the client's last line arrived, so
      that guessing is slow and a wrong password takes as long as an unknown
      user. After ``max_login_failures`` the session ends.
    * ``login_timeout``: seconds from the connection to a successful login;
      ``autologout``: seconds of silence after login (RFC 1939: at least 600).
      See `ServerSession.read_timeout`.
    """

    greeting: str = "POP3 server ready"
    hostname: str = "localhost"
    tls_available: bool = False
    allow_cleartext: bool = False
    apop: bool = False
    mechanisms: Sequence[ServerMechanism] = ()
    implementation: str | None = None
    login_delay: int | None = None
    expire: int | Literal["NEVER"] | None = None
    utf8: bool = False
    languages: Sequence[tuple[str, str]] = (("en", "English"),)
    max_bad_commands: int = MAX_BAD_COMMANDS
    max_login_failures: int = MAX_LOGIN_FAILURES
    max_line_length: int = MAX_COMMAND_LINE
    max_sasl_line_length: int = MAX_SASL_LINE
    authorize: Callable[[str, str], bool] | None = None
    auth_failure_delay: float = AUTH_FAILURE_DELAY
    login_timeout: float = LOGIN_TIMEOUT
    autologout: float = MINIMUM_AUTOLOGOUT

    def __post_init__(self) -> None:
        names = [mechanism.name for mechanism in self.mechanisms]
        if len(set(names)) != len(names):
            raise ValueError(f"a SASL mechanism is listed twice: {names}")
        if self.autologout < MINIMUM_AUTOLOGOUT:
            raise ValueError("RFC 1939: the autologout timer must be at least 10 minutes")
        if not self.login_timeout > 0:
            raise ValueError("login_timeout must be positive")
        if not self.auth_failure_delay >= 0:
            raise ValueError("auth_failure_delay must not be negative")


# ------------------------------------------------------------ application events


@dataclass(frozen=True, slots=True)
class MaildropRequest:
    """The user is authenticated: open and lock the maildrop of `username`.

    Answer with `ServerSession.maildrop_opened` (the listing) or
    `ServerSession.maildrop_failed` (for example ``IN_USE`` when it is locked).
    ``authcid`` is whose credentials were proved: `username` itself, unless
    `ServerOptions.authorize` let it act as `username`.
    """

    username: str
    mechanism: str
    authcid: str = ""

    def __post_init__(self) -> None:
        if not self.authcid:
            object.__setattr__(self, "authcid", self.username)


@dataclass(frozen=True, slots=True)
class LoginFailed:
    """A login failed: log it, wait `delay` seconds, then call
    `ServerSession.failure_delay_elapsed`; the ``-ERR`` goes out only then.

    `username` is the identity the client claimed (``""`` if none could be
    read), ``authzid`` the one it asked to act as; both are the client's
    words: escape them before logging. `reason` is the reply's text. Count
    `delay` from when the client's last line arrived, so that the time to the
    reply does not depend on how long the check took.
    """

    username: str
    mechanism: str
    reason: str
    delay: float
    authzid: str = ""


@dataclass(frozen=True, slots=True)
class MessageRequest:
    """Send message `number` (1-based; `index` is 0-based into the listing).

    Feed its bytes, CRLF-normalised, to `ServerSession.send_message` in chunks
    and finish with `ServerSession.end_message`; or refuse with
    `ServerSession.message_failed` before the first chunk. ``top_lines`` is None
    for RETR and TOP's line count otherwise (the session makes the cut).
    """

    number: int
    index: int
    uid: str
    size: int
    top_lines: int | None


@dataclass(frozen=True, slots=True)
class UpdateRequest:
    """QUIT in TRANSACTION: remove the messages at these 0-based `indexes`.

    Answer with `ServerSession.update_done`. This is the only way deletions reach
    the application; ``indexes`` may be empty (the session ended cleanly).
    """

    indexes: tuple[int, ...]
    uids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StartTLS:
    """``+OK`` to STLS is queued: after writing it, start TLS as the server and call
    `ServerSession.tls_established`."""


@dataclass(frozen=True, slots=True)
class SessionEnded:
    """The session is over: write what is queued, then close the connection.

    ``error`` is set when the client broke the protocol (a line too long, too
    many bad commands, STARTTLS injection, ...).
    """

    reason: str
    error: ProtocolError | None = field(default=None, compare=False)


AuthRequest = PasswordCheck | SecretRequest | ScramKeysRequest | TokenCheck | ExternalCheck
SessionEvent = (
    AuthRequest
    | LoginFailed
    | MaildropRequest
    | MessageRequest
    | UpdateRequest
    | StartTLS
    | SessionEnded
)


_LOGGED_NAME_LIMIT = 128  # characters of a client-supplied name kept in a log line


def _log_quote(text: str) -> str:
    """`text` in double quotes, safe for a one-line log: ``\\``, ``\"`` and every
    unprintable character (CR, LF, escapes, Unicode line separators) escaped."""
    if len(text) > _LOGGED_NAME_LIMIT:
        text = text[:_LOGGED_NAME_LIMIT] + "..."
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char.isprintable():
            out.append(char)
        else:
            code = ord(char)
            if code < 0x100:
                out.append(f"\\x{code:02x}")
            elif code < 0x10000:
                out.append(f"\\u{code:04x}")
            else:
                out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def login_failure_message(event: LoginFailed, address: str, port: int | None = None) -> str:
    """The log line for a failed login, in a stable format made for fail2ban.

    ``login failed: address=<ip> port=<n> user="<name>" [authzid="<name>"]
    mechanism=<mechanism> reason="<text>"``. The address comes first, so no
    name a client sends can be mistaken for it; names are quoted and escaped
    (`_log_quote`), and cut to 128 characters. No secret is ever part of it.
    docs/fail2ban/ has the matching filter.
    """
    parts = [f"login failed: address={address}"]
    if port is not None:
        parts.append(f"port={int(port)}")
    parts.append(f"user={_log_quote(event.username)}")
    if event.authzid:
        parts.append(f"authzid={_log_quote(event.authzid)}")
    parts.append(f"mechanism={event.mechanism}")
    parts.append(f"reason={_log_quote(event.reason)}")
    return " ".join(parts)


def make_apop_timestamp(hostname: str = "localhost") -> bytes:
    """A fresh RFC 1939 timestamp, ``<random.time@hostname>``, different every call."""
    return b"<%s.%d@%s>" % (
        secrets.token_hex(8).encode("ascii"),
        time.time_ns() // 1000,
        hostname.encode("idna"),
    )


# ------------------------------------------------------------ built-in logins


class _UserPass(ServerMechanism):
    name = "USER"
    cleartext = True

    def __init__(self, username: str, password: str) -> None:
        self._username = username
        self._password = password

    def exchange(self, initial_response: bytes | None) -> Generator[ServerStep, Any, str]:
        ok = yield PasswordCheck(self._username, self._password, "USER")
        if not ok:
            raise AuthenticationFailed("invalid user name or password")
        return self._username


class _Apop(ServerMechanism):
    name = "APOP"

    def __init__(self, username: str, digest: str, timestamp: bytes) -> None:
        self._username = username
        self._digest = digest
        self._timestamp = timestamp

    def exchange(self, initial_response: bytes | None) -> Generator[ServerStep, Any, str]:
        secret = yield SecretRequest(self._username, "APOP")
        if secret is None:
            raise AuthenticationFailed("invalid user name or digest")
        expected = apop_digest(self._timestamp, secret)
        if not hmac.compare_digest(expected.encode(), self._digest.encode()):
            raise AuthenticationFailed("invalid user name or digest")
        return self._username


# ------------------------------------------------------------ the session


class ServerSession:
    """One POP3 server session over one connection.

    Feed received bytes to `receive_data`, call `next_event` until it returns
    `NEED_DATA` (read more) or `PAUSED`, and after every call write out
    `data_to_send`. `PAUSED` means the session goes on only once the application
    acts: it answers the last event, or, if none is waiting, writes out
    `data_to_send` (replies to pipelined commands are held to about
    `OUTPUT_HIGH_WATER` octets, so a client that sends commands without reading
    the replies cannot make the server buffer without bound). Events are the
    requests listed in this module and the SASL requests; each has exactly one
    answering method.
    """

    def __init__(
        self,
        options: ServerOptions | None = None,
        *,
        tls_active: bool = False,
        timestamp: bytes | None = None,
    ) -> None:
        self.options = options = options or ServerOptions()
        self.conn = Connection(
            SERVER,
            tls_active=tls_active,
            max_line_length=options.max_line_length,
            max_sasl_line_length=options.max_sasl_line_length,
            max_bad_commands=options.max_bad_commands,
        )
        self.username: str | None = None
        self.login_failures = 0
        self.timestamp = (
            (timestamp or make_apop_timestamp(options.hostname)) if options.apop else None
        )
        self.language = options.languages[0][0] if options.languages else None
        self._out: list[Buffer] = []
        self._out_size = 0  # octets in _out
        self._listing: list[MessageInfo] = []
        self._deleted: set[int] = set()
        self._listing_cache: dict[str, bytes] = {}  # LIST/UIDL bodies until the next DELE/RSET
        self._count = 0  # messages not marked deleted
        self._octets = 0  # and their octets
        self._pending_user: str | None = None  # from USER, for PASS
        self._claimed = ""  # the identity the current login claims, for `LoginFailed`
        self._claimed_authzid = ""
        self._held: ErrResponse | None = None  # a failed login's reply, until the delay is over
        self._mechanism: ServerMechanism | None = None
        self._exchange: Generator[ServerStep, Any, str | Identity] | None = None
        self._waiting: object | None = None  # the request the application must answer
        self._report: SessionEvent | None = None  # an event next_event has yet to return
        self._message: MessageRequest | None = None
        self._message_started = False
        self._cutter: TopCutter | None = None
        self._screen: HeaderScreen | None = None  # RFC 6856, until the headers are seen
        self._refused = False  # the requested message got -ERR [UTF8]
        self._ended: SessionEnded | None = None
        self._ended_reported = False
        self._stopped = False  # the server is shutting down (`stop`)

        text = options.greeting.encode("utf-8")
        if self.timestamp is not None:
            text += b" " + self.timestamp
        self._send(Greeting(text))

    # ----------------------------------------------------------- plumbing

    @property
    def state(self) -> State:
        return self.conn.state

    @property
    def listing(self) -> Sequence[MessageInfo]:
        """The maildrop as opened at login (deleted marks not applied)."""
        return self._listing

    def stop(self) -> bool:
        """The server is shutting down: take no more commands, and never begin an UPDATE.

        A request already waiting for its answer is still answered (an
        `UpdateRequest`, above all: a commit that has begun finishes and its
        reply goes out); then, or at once, `next_event` returns `SessionEnded`
        without reading another command. Returns whether a commit is under way
        (let the session finish it before closing the connection).
        """
        self._stopped = True
        return type(self._waiting) is UpdateRequest

    @property
    def committing(self) -> bool:
        """Whether an `UpdateRequest` was made and not yet answered."""
        return type(self._waiting) is UpdateRequest

    @property
    def logged_in(self) -> bool:
        """Whether a login succeeded and the maildrop is open (TRANSACTION or later)."""
        return self.username is not None

    def read_timeout(self, elapsed: float) -> float:
        """How long to wait for the client's next bytes, in seconds.

        `elapsed` is the time since the connection was accepted. Before login
        it is what is left of `ServerOptions.login_timeout` (at most the
        autologout); after login, `ServerOptions.autologout`, counted afresh at
        every wait. At zero or below, or when a wait runs out, close the
        connection without a reply: the session ends without UPDATE.
        """
        options = self.options
        if self.username is not None:
            return options.autologout
        return min(options.autologout, options.login_timeout - elapsed)

    @property
    def deleted(self) -> frozenset[int]:
        """The 0-based indexes of the messages marked deleted in this session."""
        return frozenset(self._deleted)

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Bytes from the client; ``b""`` means it closed its side."""
        self.conn.receive_data(data)

    def data_to_send(self) -> list[Buffer]:
        """Take the pieces queued for the client (bytes-like; write them in order)."""
        out, self._out = self._out, []
        self._out_size = 0
        return out

    def bytes_to_send(self) -> bytes:
        """`data_to_send`, joined."""
        return b"".join(self.data_to_send())

    def _send(self, event: Event) -> None:
        pieces = self.conn.send_with_data_passthrough(event)
        self._out.extend(pieces)
        for piece in pieces:
            self._out_size += piece.nbytes if type(piece) is memoryview else len(piece)

    def _ok(self, text: str | bytes = b"") -> None:
        self._send(OkResponse(text))

    def _err(self, text: str | bytes, code: ResponseCode | None = None) -> None:
        self._send(ErrResponse(text, code))

    def _end(self, reason: str, error: ProtocolError | None = None) -> SessionEnded:
        self._ended = SessionEnded(reason, error)
        return self._ended

    # ----------------------------------------------------------- events

    def next_event(self) -> SessionEvent | Literal[Sentinel.NEED_DATA, Sentinel.PAUSED]:
        """Run the protocol until the application must act; return what it must do."""
        if self._ended is not None:
            if self._ended_reported:
                return PAUSED
            self._ended_reported = True
            return self._ended
        if self._report is not None:
            report, self._report = self._report, None
            return report
        if self._waiting is not None:
            return PAUSED
        if self._stopped:
            self._ended_reported = True
            return self._end("the server is shutting down")
        while True:
            if self._out_size >= OUTPUT_HIGH_WATER:
                return PAUSED  # until the replies so far are written out
            try:
                event = self.conn.next_event()
            except ProtocolError as exc:
                if exc.event_hint is not None:
                    self._send(exc.event_hint)
                self._ended_reported = True
                return self._end(str(exc), exc)
            if event is NEED_DATA or event is PAUSED:
                return event
            result = self._dispatch(event)
            if result is not None:
                if type(result) is SessionEnded:
                    self._ended_reported = True
                else:
                    self._waiting = result
                return result

    def _dispatch(self, event: Event) -> SessionEvent | None:
        kind = type(event)
        if kind is BadCommand:
            assert isinstance(event, BadCommand)
            self._send(event.hint)
            if event.keyword == "AUTH" and self._exchange is not None:
                self._exchange.close()  # an invalid SASL line ends the exchange
                self._exchange = None
            return None
        if kind is ConnectionClosed:
            return self._end("connection closed by the client")
        if kind is AuthResponse:
            assert isinstance(event, AuthResponse)
            return self._advance_login(event.data)
        if kind is AuthCancel:
            if self._exchange is not None:
                self._exchange.close()
                self._exchange = None
            self._err("authentication cancelled")
            return None
        handler: Callable[[ServerSession, Event], SessionEvent | None] = _HANDLERS[kind]
        return handler(self, event)

    # ----------------------------------------------------------- AUTHORIZATION

    def _cleartext_ok(self) -> bool:
        return self.options.allow_cleartext or self.conn.tls_active

    def _on_capa(self, event: Event) -> None:
        lines = self.capabilities()
        self._ok("capability list follows")
        self._send(Data("".join(line + "\r\n" for line in lines).encode("ascii")))
        self._send(EndOfMultiline())

    def capabilities(self) -> list[str]:
        """The CAPA lines for the current state (RFC 2449, 2595, 3206, 5034, 6856)."""
        options = self.options
        state = self.conn.state
        lines = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if self._cleartext_ok():
            lines.append("USER")
        mechanisms = self._offered_mechanisms()
        if mechanisms:
            lines.append("SASL " + " ".join(mechanisms))
        if (
            state is State.AUTHORIZATION
            and options.tls_available
            and not self.conn.tls_active
            and not self.conn.utf8_active
        ):
            lines.append("STLS")
        if options.login_delay is not None:
            lines.append(f"LOGIN-DELAY {options.login_delay}")
        if options.expire is not None:
            lines.append(f"EXPIRE {options.expire}")
        if options.utf8:
            lines.append("UTF8 USER")
        if options.languages:
            lines.append("LANG")
        if state is State.TRANSACTION and options.implementation:
            lines.append(f"IMPLEMENTATION {options.implementation}")
        return lines

    def _offered_mechanisms(self) -> list[str]:
        cleartext_ok = self._cleartext_ok()
        return [m.name for m in self.options.mechanisms if cleartext_ok or not m.cleartext]

    def _on_stls(self, event: Event) -> SessionEvent | None:
        if not self.options.tls_available:
            self._err("STLS is not available")
            return None
        if self.conn.trailing_data[0]:
            # Commands pipelined after STLS would run as if they came over TLS.
            self._err("nothing may follow STLS before the TLS handshake")
            return self._end(
                "data after STLS (STARTTLS injection)",
                RemoteProtocolError("data arrived after STLS, before TLS (STARTTLS injection)"),
            )
        self._ok("begin TLS negotiation")
        return StartTLS()

    def tls_established(self) -> None:
        """The TLS handshake after STLS succeeded; the session starts afresh."""
        if self._waiting is None or type(self._waiting) is not StartTLS:
            raise LocalProtocolError("no STLS is in progress")
        self._waiting = None
        try:
            self.conn.tls_established()
        except RemoteProtocolError as exc:
            self._end(str(exc), exc)
        self._pending_user = None

    def _on_user(self, event: Event) -> None:
        assert isinstance(event, User)
        if not self._cleartext_ok():
            self._err("cleartext logins need TLS (use STLS)", AUTH)
            return
        self._pending_user = event.name
        self._ok("send PASS")

    def _on_pass(self, event: Event) -> SessionEvent | None:
        assert isinstance(event, Pass)
        username, self._pending_user = self._pending_user, None
        assert username is not None  # the state machine allows PASS only after USER
        return self._start_login(_UserPass(username, event.password), None)

    def _on_apop(self, event: Event) -> SessionEvent | None:
        assert isinstance(event, Apop)
        if self.timestamp is None:
            self._err("APOP is not available")
            return None
        return self._start_login(_Apop(event.name, event.digest, self.timestamp), None)

    def _on_auth(self, event: Event) -> SessionEvent | None:
        assert isinstance(event, Auth)
        offered = self._offered_mechanisms()
        if event.mechanism is None:
            self._ok("SASL mechanisms follow")
            self._send(Data("".join(name + "\r\n" for name in offered).encode("ascii")))
            self._send(EndOfMultiline())
            return None
        for mechanism in self.options.mechanisms:
            if mechanism.name == event.mechanism and mechanism.name in offered:
                return self._start_login(mechanism, event.initial_response)
        if any(m.name == event.mechanism for m in self.options.mechanisms):
            self._err("this mechanism needs TLS (use STLS)", AUTH)
        else:
            self._err("unsupported authentication mechanism")
        return None

    def _start_login(
        self, mechanism: ServerMechanism, initial_response: bytes | None
    ) -> SessionEvent | None:
        self._mechanism = mechanism
        self._claimed = self._claimed_authzid = ""
        self._exchange = mechanism.exchange(initial_response)
        return self._advance_login(None)

    def _advance_login(self, value: object) -> SessionEvent | None:
        exchange = self._exchange
        assert exchange is not None
        assert self._mechanism is not None
        try:
            step = exchange.send(value)
        except StopIteration as stop:
            self._exchange = None
            return self._authorize(stop.value)
        except AuthenticationFailed as failure:
            self._exchange = None
            return self._login_failed(failure.text, failure.code)
        except Exception:
            # A broken mechanism, or an application answer it cannot use: end the
            # exchange so the session does not owe a reply forever, then re-raise.
            self._exchange = None
            self._err("temporary authentication failure", SYS_TEMP)
            raise
        if isinstance(step, Challenge):
            self._send(AuthChallenge(step.data))
            return None
        if not isinstance(step, ExternalCheck):
            self._claimed = step.username
        return step

    def _authorize(self, result: object) -> SessionEvent | None:
        """The one rule on identities: act as someone else only if `authorize` says so."""
        assert self._mechanism is not None
        if isinstance(result, Identity):
            authcid, authzid = result.authcid, result.authzid
        elif isinstance(result, str):
            authcid, authzid = result, ""
        else:
            raise LocalProtocolError(f"a mechanism must return an Identity, not {result!r}")
        if not isinstance(authcid, str) or not authcid or not isinstance(authzid, str):
            raise LocalProtocolError(f"a mechanism returned an invalid identity: {result!r}")
        self._claimed, self._claimed_authzid = authcid, authzid
        if authzid and authzid != authcid:
            hook = self.options.authorize
            try:
                granted = hook is not None and hook(authcid, authzid) is True
            except Exception:
                self._err("temporary authentication failure", SYS_TEMP)
                raise
            if not granted:
                return self._login_failed(f"not authorized to act as {authzid}", AUTH)
            return MaildropRequest(authzid, self._mechanism.name, authcid)
        return MaildropRequest(authcid, self._mechanism.name)

    def _login_failed(self, text: str, code: ResponseCode | None) -> SessionEvent | None:
        if code != AUTH:
            self._err(text, code)
            return None
        # A credential failure: the -ERR waits for the delay (`failure_delay_elapsed`).
        self.login_failures += 1
        assert self._mechanism is not None
        self._held = ErrResponse(text, code)
        return LoginFailed(
            self._claimed,
            self._mechanism.name,
            text,
            self.options.auth_failure_delay,
            self._claimed_authzid,
        )

    def failure_delay_elapsed(self) -> None:
        """Answer a `LoginFailed` once its delay is over: the ``-ERR`` is queued now.

        After `ServerOptions.max_login_failures` failures the session then ends.
        """
        if type(self._waiting) is not LoginFailed:
            raise LocalProtocolError("no LoginFailed is waiting for an answer")
        self._waiting = None
        held, self._held = self._held, None
        assert held is not None
        self._send(held)
        if self.login_failures >= self.options.max_login_failures:
            self._end("too many failed logins")

    def _answer(self, kinds: tuple[type, ...], value: object) -> None:
        waiting = self._waiting
        if waiting is None or type(waiting) not in kinds:
            names = " or ".join(kind.__name__ for kind in kinds)
            raise LocalProtocolError(f"no {names} is waiting for an answer")
        self._waiting = None
        result = self._advance_login(value)
        if result is not None and type(result) is not SessionEnded:
            self._waiting = self._report = result

    def password_checked(self, ok: bool) -> None:
        """Answer a `PasswordCheck`."""
        self._answer((PasswordCheck,), bool(ok))

    def secret_provided(self, secret: str | bytes | None) -> None:
        """Answer a `SecretRequest` with the user's secret, or None if there is none."""
        self._answer((SecretRequest,), secret)

    def scram_keys_provided(self, keys: object | None) -> None:
        """Answer a `ScramKeysRequest` with the user's stored keys, or None."""
        self._answer((ScramKeysRequest,), keys)

    def token_checked(self, result: str | bool | dict[str, Any]) -> None:
        """Answer a `TokenCheck`: the token's owner (a user name), True (the owner is the
        user the client named), or a refusal: False or a JSON error object."""
        self._answer((TokenCheck,), result)

    def external_checked(self, username: str | None) -> None:
        """Answer an `ExternalCheck`: whom the client certificate names, or None to refuse."""
        self._answer((ExternalCheck,), username)

    def backend_failed(self, text: str = "temporary authentication failure") -> None:
        """Answer any authentication request with ``-ERR [SYS/TEMP]`` (a backend fault)."""
        waiting = self._waiting
        if not isinstance(
            waiting, (PasswordCheck, SecretRequest, ScramKeysRequest, TokenCheck, ExternalCheck)
        ):
            raise LocalProtocolError("no authentication request is waiting for an answer")
        self._waiting = None
        if self._exchange is not None:
            self._exchange.close()
            self._exchange = None
        self._err(text, SYS_TEMP)

    def maildrop_opened(self, listing: Iterable[MessageInfo]) -> None:
        """Answer a `MaildropRequest`: the session enters TRANSACTION."""
        waiting = self._waiting
        if type(waiting) is not MaildropRequest:
            raise LocalProtocolError("no MaildropRequest is waiting for an answer")
        entries = list(listing)
        if set(map(type, entries)) - {MessageInfo}:
            entries = [MessageInfo(*entry) for entry in entries]
        if not _listing_is_valid(entries):
            # Find the culprit for the message: only when something is wrong.
            for entry in entries:
                if type(entry.size) is not int or entry.size < 0:
                    raise LocalProtocolError(f"invalid message size in listing: {entry}")
                if not is_valid_uid(entry.uid):
                    raise LocalProtocolError(f"invalid unique id in listing: {entry.uid!r}")
        self._waiting = None
        self.username = waiting.username
        self._listing = entries
        self._deleted = set()
        self._listing_cache = {}
        self._count = len(entries)
        self._octets = sum(map(_SIZE, entries))
        self._ok(f"{waiting.username} has {self._count} messages ({self._octets} octets)")

    def maildrop_failed(
        self, text: str = "cannot open the maildrop", code: ResponseCode | None = SYS_TEMP
    ) -> None:
        """Answer a `MaildropRequest` with ``-ERR`` (e.g. ``code=IN_USE`` when locked)."""
        if type(self._waiting) is not MaildropRequest:
            raise LocalProtocolError("no MaildropRequest is waiting for an answer")
        self._waiting = None
        self._err(text, code)

    def _on_utf8(self, event: Event) -> None:
        if not self.options.utf8:
            self._err("UTF8 is not supported")
            return
        self._ok("UTF8 enabled")

    def _on_lang(self, event: Event) -> None:
        assert isinstance(event, Lang)
        languages = self.options.languages
        if not languages:
            self._err("LANG is not supported")
            return
        if event.tag is None:
            self._ok("language listing follows")
            body = "".join(f"{tag} {description}\r\n" for tag, description in languages)
            self._send(Data(body.encode("utf-8")))
            self._send(EndOfMultiline())
            return
        tag = _match_language(event.tag, languages)
        if tag is None:
            self._err("language not available")
            return
        self.language = tag
        self._ok(f"{tag} language selected")

    def _on_quit(self, event: Event) -> SessionEvent | None:
        if self.conn.state is State.UPDATE:
            indexes = tuple(sorted(self._deleted))
            return UpdateRequest(indexes, tuple(self._listing[i].uid for i in indexes))
        self._ok("bye")
        return self._end("QUIT")

    def update_done(self, removed: bool = True, text: str | None = None) -> None:
        """Answer an `UpdateRequest`: were all the marked messages removed?"""
        if type(self._waiting) is not UpdateRequest:
            raise LocalProtocolError("no UpdateRequest is waiting for an answer")
        self._waiting = None
        if removed:
            self._ok(text or "bye")
        else:
            self._err(text or "some deleted messages were not removed", SYS_TEMP)
        self._ended = SessionEnded("QUIT")

    # ----------------------------------------------------------- TRANSACTION

    def _message_index(self, number: int) -> int | None:
        """The 0-based index of message `number`, or None after answering -ERR."""
        index = number - 1
        if index >= len(self._listing):
            self._err(f"no message {number}")
            return None
        if index in self._deleted:
            self._err(f"message {number} is deleted")
            return None
        return index

    def _needs_utf8(self, index: int) -> bool:
        if self._listing[index].needs_utf8 and not self.conn.utf8_active:
            self._err("this message needs UTF8 mode", UTF8)
            return True
        return False

    def _on_stat(self, event: Event) -> None:
        self._ok(f"{self._count} {self._octets}")

    def _on_list(self, event: Event) -> None:
        assert isinstance(event, List)
        if event.which is not None:
            index = self._message_index(event.which)
            if index is not None and not self._needs_utf8(index):
                self._ok(f"{event.which} {self._listing[index].size}")
            return
        self._ok(f"{self._count} messages ({self._octets} octets)")
        self._send_listing("LIST")

    def _on_uidl(self, event: Event) -> None:
        assert isinstance(event, Uidl)
        if event.which is not None:
            index = self._message_index(event.which)
            if index is not None:
                self._ok(f"{event.which} {self._listing[index].uid}")
            return
        self._ok("unique-id listing follows")
        self._send_listing("UIDL")

    def _send_listing(self, kind: str) -> None:
        # Kept until the next DELE or RSET: a repeated LIST costs nothing.
        cached = self._listing_cache.get(kind)
        if cached is None:
            cached = self._listing_cache[kind] = _render_listing(
                self._listing, self._deleted, kind
            )
        if cached:
            self._send(Data(cached))
        self._send(EndOfMultiline())

    def _on_dele(self, event: Event) -> None:
        assert isinstance(event, Dele)
        index = self._message_index(event.which)
        if index is None:
            return
        self._deleted.add(index)
        self._listing_cache.clear()
        self._count -= 1
        self._octets -= self._listing[index].size
        self._ok(f"message {event.which} deleted")

    def _on_rset(self, event: Event) -> None:
        if self._deleted:
            self._deleted.clear()
            self._listing_cache.clear()
        self._count = len(self._listing)
        self._octets = sum(entry.size for entry in self._listing)
        self._ok(f"maildrop has {self._count} messages ({self._octets} octets)")

    def _on_noop(self, event: Event) -> None:
        self._ok()

    def _on_retr(self, event: Event) -> SessionEvent | None:
        assert isinstance(event, (Retr, Top))
        index = self._message_index(event.which)
        if index is None or self._needs_utf8(index):
            return None
        info = self._listing[index]
        top = event.lines if isinstance(event, Top) else None
        self._message = MessageRequest(event.which, index, info.uid, info.size, top)
        self._message_started = False
        self._cutter = None if top is None else TopCutter(top)
        # Having offered UTF8, the server must not send raw UTF-8 header fields to
        # a client that did not enable it (RFC 6856 section 2); stores need not
        # know which messages have them: the headers are checked on the way out.
        self._screen = HeaderScreen() if self.options.utf8 and not self.conn.utf8_active else None
        return self._message

    def send_message(self, chunk: bytes | bytearray | memoryview) -> bool:
        """Send the next chunk of the requested message (CRLF-normalised bytes).

        Returns False once no more is needed (TOP's cut is complete, or the
        message was refused with ``-ERR [UTF8]`` because its header fields are
        not ASCII and the client did not send UTF8); the rest of the message may
        then be skipped. Call `end_message` in any case. Until the end of the
        header section is seen, chunks are held (not copied), so the reply may
        start only with a later call.
        """
        if type(self._waiting) is not MessageRequest:
            raise LocalProtocolError("no MessageRequest is being answered")
        if self._refused:
            return False
        screen = self._screen
        if screen is not None:
            verdict = screen.feed(chunk)
            return True if verdict is None else self._release(screen, verdict)
        if not self._message_started:
            self._start_message()
        return self._pass(chunk)

    @property
    def message_started(self) -> bool:
        """Whether the reply to the requested message has begun (`message_failed` is too late)."""
        return self._message_started

    def _release(self, screen: HeaderScreen, ascii_headers: bool) -> bool:
        """Start the reply with the held chunks, or refuse the message."""
        self._screen = None
        if not ascii_headers:
            self._refused = True
            self._err("the message has UTF-8 header fields: send UTF8 first", UTF8)
            return False
        self._start_message()
        more = True
        for held in screen.held:
            more = self._pass(held)
            if not more:
                break
        return more

    def _pass(self, chunk: bytes | bytearray | memoryview) -> bool:
        cutter = self._cutter
        if cutter is None:
            if chunk:
                self._send(Data(chunk))
            return True
        if cutter.done:
            return False
        part = cutter.feed(bytes(chunk) if type(chunk) is memoryview else chunk)
        if part:
            self._send(Data(part))
        return not cutter.done

    def _start_message(self) -> None:
        message = self._message
        assert message is not None
        self._message_started = True
        if message.top_lines is None:
            self._ok(f"{message.size} octets")
        else:
            self._ok("top of message follows")

    def end_message(self) -> None:
        """Finish the message started with `send_message` (or an empty one)."""
        if type(self._waiting) is not MessageRequest:
            raise LocalProtocolError("no MessageRequest is being answered")
        screen = self._screen
        if screen is not None:  # the message ended within its header section
            self._release(screen, screen.finish())
        if not self._refused:
            if not self._message_started:
                self._start_message()
            self._send(EndOfMultiline())
        self._clear_message()

    def message_failed(
        self, text: str = "cannot read the message", code: ResponseCode | None = SYS_TEMP
    ) -> None:
        """Refuse the requested message with ``-ERR``; only before the reply has started.

        Once a message has started there is no way to signal an error in-band:
        close the connection instead (the session then ends without UPDATE).
        After a refusal by `send_message` the reply is already given; this only
        ends the request.
        """
        if type(self._waiting) is not MessageRequest:
            raise LocalProtocolError("no MessageRequest is being answered")
        if self._message_started:
            raise LocalProtocolError("the message has started; close the connection instead")
        if not self._refused:
            self._err(text, code)
        self._clear_message()

    def _clear_message(self) -> None:
        self._waiting = self._message = self._cutter = self._screen = None
        self._refused = False


def _match_language(wanted: str, languages: Sequence[tuple[str, str]]) -> str | None:
    """Basic filtering (RFC 4647 section 3.3.1) of `wanted` against the offered tags."""
    if wanted == "*":
        return languages[0][0]
    wanted = wanted.lower()
    for tag, _ in languages:
        low = tag.lower()
        if low == wanted or low.startswith(wanted + "-") or wanted.startswith(low + "-"):
            return tag
    return None


_HANDLERS: dict[type, Any] = {
    Capa: ServerSession._on_capa,
    Stls: ServerSession._on_stls,
    User: ServerSession._on_user,
    Pass: ServerSession._on_pass,
    Apop: ServerSession._on_apop,
    Auth: ServerSession._on_auth,
    Utf8: ServerSession._on_utf8,
    Lang: ServerSession._on_lang,
    Quit: ServerSession._on_quit,
    Stat: ServerSession._on_stat,
    List: ServerSession._on_list,
    Uidl: ServerSession._on_uidl,
    Dele: ServerSession._on_dele,
    Rset: ServerSession._on_rset,
    Noop: ServerSession._on_noop,
    Retr: ServerSession._on_retr,
    Top: ServerSession._on_retr,
}
