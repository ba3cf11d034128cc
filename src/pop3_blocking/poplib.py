"""A drop-in replacement for the standard library's `poplib`.

``import pop3_blocking.poplib as poplib`` (or putting this module into
``sys.modules["poplib"]``) keeps code written for `poplib` working unchanged:
the same names, signatures, return values (bytes; ``(resp, lines, octets)`` for
multi-line replies), exceptions, attributes, private methods, audit events,
debug output and TLS defaults (unverified, as poplib's; pass a context to
verify). CPython's own test_poplib passes against it
(tests/test_poplib_dropin.py runs it).

What differs, on purpose:

- Multi-line replies are read in blocks (peeked from the socket file's buffer,
  and from the kernel's receive queue on a plain socket) and unstuffed by
  pop3core's lenient `BodyDecoder` instead of line by line, which makes
  `POP3.retr` about three times faster on large messages. The lines, octet
  counts, errors and the bytes left unread after one are poplib's: a line
  that may be longer than `_MAXLINE` (read at call time) is read with
  poplib's own ``readline(_MAXLINE + 1)``. A `_getline` overridden or patched
  (on the class or the instance), a `file` that is not exactly an
  `io.BufferedReader`, and debug level 2 get poplib's line-by-line reading.
- A command containing CR or LF is refused with `ValueError` instead of being
  sent (poplib lets it through: CPython issue 94019).
- `stat` rejects a malformed reply with `error_proto` (as newer CPython does).
- A body line that is exactly CR "." LF is content, not the end of the body
  (poplib's line reading turns it into "."); a failed greeting or TLS
  handshake closes the socket.
- A hostile or broken server cannot hold the caller, fill its memory or put
  it out of step (poplib lets it do all three):

  - On a socket with a timeout, a reply that has begun to arrive must bring
    `_LOW_SPEED_LIMIT` octets per `_LOW_SPEED_TIME` seconds (default 1 KiB a
    minute), or `pop3core.ReplyTimeout`, a `TimeoutError`, is raised: the
    timeout alone is per read, and a server sending an octet just inside it
    would never be cut off.
  - A multi-line reply that would take more than `_MAXRESPONSE` octets of
    memory as poplib returns it (default 256 MiB: the octets, plus 48 per
    line for its bytes object), or a RETR body of more than
    `pop3core.body_limit` of the size its ``+OK`` announces, raises
    ``error_proto("-ERR response too long")`` and closes the connection.
  - Before each command (SASL responses included) and before the STLS
    handshake, bytes the server sent while no reply was owed (a stray line,
    the rest of a body whose lone "." line the server did not stuff) close
    the connection and raise ``error_proto("-ERR unexpected data from server:
    ...")``; a connection the server closed raises ``error_proto("-ERR EOF")``
    the same way, without sending the command. poplib takes them for the
    next reply (or drops them, at STLS). A "line too long" error, which
    leaves the rest of its reply unread, turns the check off for the session:
    that rest is read as the next replies, as in poplib (test_poplib relies
    on it).
  - A message (RETR, TOP) cut off by EOF raises ``error_proto("-ERR EOF")``,
    also where poplib's stripping of the last, unterminated line makes it "."
    (``..``, ``.x``, "." CR or CR ".." at EOF) and returns the message as
    whole. Listings keep poplib's reading: their lines never start with ".",
    so such a line can only be a terminator that lost its line end.
  - `capa` raises its ``error_proto("-ERR CAPA not supported by server")``
    for a capability line that is blank or not ASCII (poplib lets
    `IndexError` or `UnicodeDecodeError` out).

  These hold where `file` reads `sock` through the raw reader of
  ``sock.makefile("rb")`` (the constructor's, `stls`'s, or one an
  application made itself, from its first command on); for that, that
  reader's class becomes a `socket.SocketIO` subclass, and `file` stays the
  `io.BufferedReader` poplib code expects. The check for unowed bytes also
  needs `file` to be that reader itself. Files and sockets that tests fake
  get poplib's behaviour, but for the size bound.
- Additions only: `POP3.auth` (SASL, with smtplib's and CPython PR 142613's
  calling conventions) and the context-manager protocol, which sends QUIT (and
  so commits deletions) only when the block finishes without an exception.

`error_proto` is a subclass of the standard library's, so
``except poplib.error_proto`` catches it whichever module was imported.
"""

from __future__ import annotations

import errno
import inspect
import io
import poplib as _stdlib_poplib
import re
import select
import socket
import sys
import time
import warnings
from binascii import b2a_base64
from collections.abc import Callable
from types import TracebackType
from typing import Any

import pop3core

from ._streams import read_if_ready

try:
    import ssl

    HAVE_SSL = True
except ImportError:  # pragma: no cover - CPython without OpenSSL
    HAVE_SSL = False

__all__ = ["POP3", "error_proto"]
if HAVE_SSL:
    __all__.append("POP3_SSL")


class error_proto(_stdlib_poplib.error_proto):
    """poplib's only exception.

    ``args[0]`` is the server's line (bytes), or a local message (str).
    """


POP3_PORT = 110
POP3_SSL_PORT = 995
CR = b"\r"
LF = b"\n"
CRLF = CR + LF

# Read by POP3._getline at every call: applications assign to it (getmail6,
# Odoo, Frappe) and expect the new bound to apply.
_MAXLINE = 2048

# The low-speed guard, read at every command (as curl's --speed-limit and
# --speed-time): once a reply has begun to arrive on a socket that has a
# timeout, fewer than _LOW_SPEED_LIMIT octets in the last _LOW_SPEED_TIME
# seconds fail it with a TimeoutError. A per-read timeout alone lets a server
# that sends an octet just inside it hold the caller forever. The default,
# pop3core's, is slower than any real link and tolerates the stalls the usual
# read timeouts tolerate. 0 in either turns the guard off.
_LOW_SPEED_LIMIT: int = pop3core.DEFAULT_LOW_SPEED[0]
_LOW_SPEED_TIME: float = pop3core.DEFAULT_LOW_SPEED[1]

# The most memory a multi-line reply may take when its size was not announced,
# counted as its octets (as poplib counts them) plus _LINE_COST per line (a
# bytes object and its list slot): a reply is returned in memory, and a server
# that never sends the terminator, or sends endless short lines, would fill
# it. Read at every reply. A RETR whose +OK announces "<n> octets" is bounded
# by pop3core.body_limit(n) octets instead. 256 MiB holds a UIDL listing of a
# million messages with 70-character ids (about 130 MiB counted so) and the
# messages most mail systems accept; a bigger message from a server that does
# not announce sizes needs it raised.
_MAXRESPONSE: int = 256 * 1024 * 1024
_LINE_COST = 48

# Up to this many octets of a body are peeked at once in the kernel's receive
# queue, past the socket file's small buffer (see POP3._read_body).
_KERNEL_PEEK = 1024 * 1024
_poll = getattr(select, "poll", None)  # not on Windows: there the file's buffer is used

# The commands whose multi-line reply is a message, where lines may start with ".".
_MESSAGE_COMMANDS = (b"RETR", b"TOP")

_DEFAULT_TIMEOUT: Any = socket._GLOBAL_DEFAULT_TIMEOUT  # type: ignore[attr-defined]

AuthObject = Callable[..., "bytes | str | None"]
# Module-level names: inside the class, "list" is the LIST method.
Lines = list[bytes]
Words = list[str]
LongResponse = tuple[bytes, Lines, int]


class POP3:
    """A POP3 client session, with poplib's API (see the module docstring).

    Connects in the constructor and reads the greeting into `welcome`. Replies
    are bytes without their line ends; a reply that does not start with ``+``
    raises `error_proto` with the line.
    """

    encoding = "UTF-8"
    file: Any  # a buffered binary reader of `sock`, as poplib's (applications replace it)
    # poplib's own (linear since CVE-2018-1060): the APOP timestamp is from the
    # first "<" after "+OK" and one more character to the last ">".
    timestamp = re.compile(rb"\+OK.[^<]*(<.*>)")

    # Class defaults, so that instances made without __init__ (as tests and
    # subclasses do) read as poplib's.
    _out_of_step = False  # a reply was abandoned part-read: what follows is its rest
    _command = b""  # the keyword of the last command sent, upper case
    _line_ended = True  # the last line the default _getline read ended with LF

    def __init__(self, host: str, port: int = POP3_PORT, timeout: Any = _DEFAULT_TIMEOUT) -> None:
        self.host = host
        self.port = port
        self._tls_established = False
        sys.audit("poplib.connect", self, host, port)
        self.sock = self._create_socket(timeout)
        self.file = self.sock.makefile("rb")
        self._debugging = 0
        try:
            self._start_reply()
            self.welcome = self._getresp()
            self._end_reply()
        except BaseException:
            self.close()  # poplib leaves the socket to the garbage collector
            raise

    def _create_socket(self, timeout: Any) -> socket.socket:
        if timeout is not None and not timeout:
            raise ValueError("Non-blocking socket (timeout=0) is not supported")
        return socket.create_connection((self.host, self.port), timeout)

    # -- lines ---------------------------------------------------------------

    def _putline(self, line: bytes) -> None:
        if self._debugging > 1:
            print("*put*", repr(line))
        # Only bytes can be checked; anything else fails below as in poplib
        # (after the audit event, with poplib's TypeError).
        if isinstance(line, (bytes, bytearray)) and (b"\r" in line or b"\n" in line):
            raise ValueError("a POP3 command must not contain CR or LF")
        self._refuse_unowed_data()
        sys.audit("poplib.putline", self, line)
        self.sock.sendall(line + CRLF)
        self._command = line.split(b" ", 1)[0].upper()
        self._start_reply()

    def _putcmd(self, line: str) -> None:
        if self._debugging:
            print("*cmd*", repr(line))
        self._putline(bytes(line, self.encoding))

    def _getline(self) -> tuple[bytes, int]:
        """One line without its end, and the octets it took on the wire."""
        line: bytes = self.file.readline(_MAXLINE + 1)
        if len(line) > _MAXLINE:
            self._out_of_step = True
            raise error_proto("line too long")
        if self._debugging > 1:
            print("*get*", repr(line))
        if not line:
            raise error_proto("-ERR EOF")
        self._line_ended = line[-1:] == LF
        return _strip(line), len(line)

    def _getresp(self) -> bytes:
        resp, _ = self._getline()
        if self._debugging > 1:
            print("*resp*", repr(resp))
        if not resp.startswith(b"+"):
            raise error_proto(resp)
        return resp

    def _getlongresp(self) -> LongResponse:
        resp = self._getresp()
        limit, line_cost = self._reply_limit(resp)
        # The block reader replaces poplib's _getline loop over a plain
        # BufferedReader: code that hooks into that loop gets the loop.
        if (
            self._debugging > 1
            or getattr(self._getline, "__func__", None) is not _POP3_GETLINE
            or type(self.file) is not io.BufferedReader
        ):
            lines, octets = self._read_lines_one_by_one(limit, line_cost)
        else:
            lines, octets = self._read_body(limit, line_cost)
        self._end_reply()
        return resp, lines, octets

    def _reply_limit(self, resp: bytes) -> tuple[int, int]:
        """The bound of the multi-line reply that `resp` opens: (limit, cost per line).

        A reply may bring octets plus cost times its lines up to the limit.
        """
        if self._command == b"RETR":
            text = resp[3:] if resp[:3].upper() == b"+OK" else resp[1:]
            announced = pop3core.size_hint(text.lstrip(b" "))
            if announced is not None:
                return pop3core.body_limit(announced), 0
        return _MAXRESPONSE, _LINE_COST

    def _strict_eof(self) -> bool:
        """Whether a message body cut off by EOF must fail where poplib sees a terminator.

        Only message lines may start with "." (stuffed): in a listing, a last
        line that poplib's stripping turns into "." can only be a terminator
        that lost its line end, so nothing is lost there and poplib's reading
        is kept. Fakes keep it too.
        """
        return self._command in _MESSAGE_COMMANDS and _guarded(self.file) is not None

    def _read_lines_one_by_one(self, limit: int, line_cost: int) -> tuple[Lines, int]:
        # Only the default _getline says whether a line ended with LF: a
        # replacement that does not call it keeps poplib's EOF handling.
        strict = self._strict_eof()
        lines: list[bytes] = []
        octets = 0
        self._line_ended = True
        line, size = self._getline()
        while line != b".":
            line, size = _unstuff(line, size)
            octets += size
            if octets + line_cost * len(lines) > limit:
                self._refuse_long_reply()
            lines.append(line)
            line, size = self._getline()
        if strict and not self._line_ended:
            # ".\r", ".." or ".x" cut off by EOF, which poplib's stripping turns into "."
            raise error_proto("-ERR EOF")
        return lines, octets

    def _refuse_long_reply(self) -> None:
        """Give up a reply past its bound: its rest cannot be skipped, so the session ends."""
        if _guarded(self.file) is not None:
            self.close()
        raise error_proto("-ERR response too long")

    def _read_body(self, limit: int, line_cost: int) -> tuple[Lines, int]:
        """poplib's `_getline` loop over a multi-line body, a buffer at a time.

        Each buffer of `file` is peeked, its whole lines are decoded, and only
        what was decoded is consumed, so what follows the terminator stays
        buffered for the next reply. The start of an unfinished line is
        consumed too (a buffer refills only once empty) and kept. A line that
        may be longer than `_MAXLINE` is read as poplib reads it, with
        ``readline(_MAXLINE + 1)`` from its start: same error, same bytes left.

        `file`'s buffer is poplib's (8 KiB). Once it is empty, on a plain
        socket, what the kernel already holds is peeked instead (up to
        `_KERNEL_PEEK` octets, with ``MSG_PEEK``) and consumed through
        ``file.raw``: far fewer calls. Waiting for data is left to `file`.

        More than `limit` (octets, plus `line_cost` per line) raises
        `error_proto`. With `_strict_eof`, a
        body cut off by EOF raises "-ERR EOF" even where poplib's stripping
        would see a terminator.
        """
        maxline = _MAXLINE  # >= 2, or poplib's status line was refused
        file = self.file
        strict = self._strict_eof()
        # No `sock` is fine: poplib reads bodies from `file` alone.
        poller = _kernel_poller(getattr(self, "sock", None), file)
        decoder = pop3core.BodyDecoder(strict=False)
        lines: list[bytes] = []
        octets = 0
        carry: list[bytes] = []  # the unfinished line: consumed, no LF, < maxline octets
        carried = 0
        sink: memoryview | None = None  # scratch to consume peeked bytes into
        buffered = True  # file's buffer may hold data
        while True:
            # poll(0) never blocks: waiting is file's, with SocketIO's timeout rules.
            if not buffered and poller is not None and poller.poll(0):
                block: bytes = self.sock.recv(_KERNEL_PEEK, socket.MSG_PEEK)
                readinto = file.raw.readinto
            else:
                block = file.peek()
                readinto = file.readinto
            if not block:
                # EOF: poplib's last readline gets the unfinished line, which
                # its stripping may turn into the terminator (".\r", "..").
                if not strict and _strip(b"".join(carry)) == b".":
                    return lines, octets
                raise error_proto("-ERR EOF")
            if sink is None or len(sink) < len(block):
                sink = memoryview(bytearray(len(block)))
            last_lf = block.rfind(LF)
            if last_lf < 0:
                data = b""
                long_at = 0 if carried + len(block) >= maxline else -1
            else:
                if carry:  # one copy: the block's whole lines are joined from a view
                    with memoryview(block) as view:
                        data = b"".join([*carry, view[: last_lf + 1]])
                else:
                    data = block if last_lf + 1 == len(block) else block[: last_lf + 1]
                long_at = _long_line_start(data, maxline)
                if long_at < 0 and len(block) - last_lf - 1 >= maxline:
                    long_at = len(data)  # the unfinished line is already too long
            cut = len(data) if long_at < 0 else long_at
            if cut:
                piece, end, finished = decoder.feed(data if cut == len(data) else data[:cut], 0)
                more, size = _poplib_lines(piece)
                lines += more
                octets += size
                if octets + line_cost * len(lines) > limit:
                    self._refuse_long_reply()
                if finished:
                    _consume(readinto, sink, end - carried)
                    return lines, octets
            if long_at >= 0:
                if long_at < carried:  # the carried line is the long one
                    line, size = self._getline_rest(b"".join(carry), maxline, strict)
                else:
                    _consume(readinto, sink, long_at - carried)
                    line, size = self._getline_rest(b"", maxline, strict)
                if line == b".":
                    return lines, octets
                line, size = _unstuff(line, size)
                lines.append(line)
                octets += size
                if octets + line_cost * len(lines) > limit:
                    self._refuse_long_reply()
                carry = []
                carried = 0
                buffered = True  # readline may have buffered what follows
                continue
            if last_lf < 0:
                carry.append(block)
                carried += len(block)
            else:
                carry = [block[last_lf + 1 :]] if last_lf + 1 < len(block) else []
                carried = len(block) - last_lf - 1
            _consume(readinto, sink, len(block))
            buffered = False  # file.peek returned all it held, and that is consumed

    def _getline_rest(self, start: bytes, maxline: int, strict: bool) -> tuple[bytes, int]:
        """poplib's `_getline` for a line whose first octets, `start`, were consumed.

        The line is never empty: its first octets were peeked. With `strict`, a
        line cut off by EOF raises "-ERR EOF" (poplib would return it stripped).
        """
        line = start + self.file.readline(maxline + 1 - len(start))
        if len(line) > maxline:
            self._out_of_step = True
            raise error_proto("line too long")
        if strict and line[-1:] != LF:
            raise error_proto("-ERR EOF")
        return _strip(line), len(line)

    def _shortcmd(self, line: str) -> bytes:
        self._putcmd(line)
        try:
            return self._getresp()
        finally:
            self._end_reply()

    def _longcmd(self, line: str) -> LongResponse:
        self._putcmd(line)
        return self._getlongresp()

    # -- the session's pace and step -------------------------------------------

    def _guard(self) -> _GuardedSocketIO | None:
        """The raw reader of `file` as a `_GuardedSocketIO`, if it is ``sock.makefile("rb")``'s.

        None for anything else (fakes, wrapped files), which keep poplib's ways.
        """
        file = getattr(self, "file", None)  # poplib code may build instances bit by bit
        raw = getattr(file, "raw", None)
        if type(raw) is _GuardedSocketIO:
            return raw
        # A file that an application or subclass made with sock.makefile("rb")
        # (getmail6 does) is guarded from its first command on.
        if (
            type(file) is io.BufferedReader
            and type(raw) is socket.SocketIO
            and getattr(raw, "_sock", None) is getattr(self, "sock", None)
        ):
            raw.__class__ = _GuardedSocketIO
            return raw  # type: ignore[return-value]
        return None

    def _start_reply(self) -> None:
        """A reply is owed from now: time it with the low-speed guard of the moment."""
        raw = self._guard()
        if raw is None:
            return
        low_speed = (_LOW_SPEED_LIMIT, _LOW_SPEED_TIME)
        if low_speed[0] <= 0 or low_speed[1] <= 0:
            raw.timer = None
            return
        timer = raw.timer
        if timer is None or timer.low_speed != low_speed:
            timer = raw.timer = pop3core.ReplyTimer(low_speed)
        timer.start(time.monotonic())

    def _end_reply(self) -> None:
        """The reply was read: whatever is read next is timed from its own first octet."""
        raw = _guarded(getattr(self, "file", None))
        if raw is not None and raw.timer is not None:
            raw.timer.stop()

    def _refuse_unowed_data(self) -> None:
        """Before a command: bytes the server sent while no reply was owed end the session.

        They would be read as the reply to the command about to be sent (a
        stray ``+OK``, the rest of a body whose lone "." was not stuffed), so
        the connection is closed and `error_proto` raised; EOF there raises
        "-ERR EOF" the same way. Only on a guarded socket read through the
        standard file, and never once a reply was abandoned part-read ("line
        too long"): poplib reads its rest as the next replies.
        """
        file = getattr(self, "file", None)
        if self._out_of_step or type(file) is not io.BufferedReader:
            return
        raw = self._guard()
        if raw is None:
            return
        raw.probing = True
        try:
            stray: bytes | None = file.peek()  # what the file holds, without reading
        finally:
            raw.probing = False
        if not stray:
            # The file's buffer is empty, so these bytes come next in order.
            stray = read_if_ready(raw._sock, 256)
            if stray is None:
                return
        self.close()
        if not stray:
            raise error_proto("-ERR EOF")
        raise error_proto(f"-ERR unexpected data from server: {stray[:64]!r}")

    # -- the commands --------------------------------------------------------
    # Formatted with "%", as poplib's: "DELE %s" % (1,) sends "DELE 1", and an
    # argument's __str__ is used, not its __format__.

    def getwelcome(self) -> bytes:
        return self.welcome

    def set_debuglevel(self, level: int) -> None:
        self._debugging = level

    def user(self, user: str) -> bytes:
        return self._shortcmd("USER %s" % user)  # noqa: UP031

    def pass_(self, pswd: str) -> bytes:
        return self._shortcmd("PASS %s" % pswd)  # noqa: UP031

    def stat(self) -> tuple[int, int]:
        """(message count, maildrop size in octets)."""
        retval = self._shortcmd("STAT")
        rets = retval.split()
        if self._debugging:
            print("*stat*", repr(rets))
        if len(rets) < 3:
            raise error_proto("Invalid STAT response format")
        try:
            return int(rets[1]), int(rets[2])
        except ValueError:
            raise error_proto("Invalid STAT response data: non-numeric values") from None

    def list(self, which: Any = None) -> Any:
        """The scan listing: ``(resp, lines, octets)``, or the one reply line with `which`."""
        if which is not None:
            return self._shortcmd("LIST %s" % which)  # noqa: UP031
        return self._longcmd("LIST")

    def retr(self, which: Any) -> LongResponse:
        return self._longcmd("RETR %s" % which)  # noqa: UP031

    def dele(self, which: Any) -> bytes:
        return self._shortcmd("DELE %s" % which)  # noqa: UP031

    def noop(self) -> bytes:
        return self._shortcmd("NOOP")

    def rset(self) -> bytes:
        return self._shortcmd("RSET")

    def quit(self) -> bytes:
        """Send QUIT (the server deletes what was marked) and close if it succeeded."""
        resp = self._shortcmd("QUIT")
        self.close()
        return resp

    def close(self) -> None:
        """Close the connection without QUIT. Safe to call more than once."""
        try:
            file = self.file
            self.file = None
            if file is not None:
                file.close()
        finally:
            sock = self.sock
            self.sock = None  # type: ignore[assignment]
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError as exc:
                    # The peer may have closed first (ENOTCONN; WSAEINVAL on Windows).
                    if exc.errno != errno.ENOTCONN and getattr(exc, "winerror", 0) != 10022:
                        raise
                finally:
                    sock.close()

    def rpop(self, user: str) -> bytes:
        return self._shortcmd("RPOP %s" % user)  # noqa: UP031

    def apop(self, user: str, password: str) -> bytes:
        """Log in with APOP, using the timestamp of `welcome`."""
        secret = bytes(password, self.encoding)
        match = self.timestamp.match(self.welcome)
        if not match:
            raise error_proto("-ERR APOP not supported by server")
        digest = pop3core.apop_digest(match.group(1), secret)
        return self._shortcmd("APOP %s %s" % (user, digest))  # noqa: UP031

    def top(self, which: Any, howmuch: Any) -> LongResponse:
        return self._longcmd("TOP %s %s" % (which, howmuch))  # noqa: UP031

    def uidl(self, which: Any = None) -> Any:
        """The unique-id listing: ``(resp, lines, octets)``, or the one reply line with `which`."""
        if which is not None:
            return self._shortcmd("UIDL %s" % which)  # noqa: UP031
        return self._longcmd("UIDL")

    def utf8(self) -> bytes:
        return self._shortcmd("UTF8")

    def capa(self) -> dict[str, Words]:
        """The capabilities, ``{tag: [arguments]}`` with the server's spelling of each tag."""

        def split(line: bytes) -> tuple[str, Words]:
            # poplib lets UnicodeDecodeError and IndexError out: server bytes
            # must only ever cause error_proto.
            try:
                words = line.decode("ascii").split()
            except UnicodeDecodeError:
                words = []
            if not words:
                raise error_proto("-ERR malformed CAPA line")
            return words[0], words[1:]

        try:
            _, lines, _ = self._longcmd("CAPA")
            return dict(split(line) for line in lines)
        except error_proto:
            raise error_proto("-ERR CAPA not supported by server") from None

    def stls(self, context: ssl.SSLContext | None = None) -> bytes:
        """Start TLS on this connection. The default context does not verify, as poplib's."""
        if not HAVE_SSL:  # pragma: no cover - CPython without OpenSSL
            raise error_proto("-ERR TLS support missing")
        if self._tls_established:
            raise error_proto("-ERR TLS session already established")
        if "STLS" not in self.capa():
            raise error_proto("-ERR STLS not supported by server")
        if context is None:
            # Looked up at call time, as poplib does: applications patch it.
            context = ssl._create_stdlib_context()  # type: ignore[attr-defined]
        resp = self._shortcmd("STLS")
        # Bytes between the STLS reply and the handshake would be dropped with
        # the plain file (poplib), or be read as the first replies under TLS
        # (response injection): the same rule as before a command.
        self._refuse_unowed_data()
        self.sock = context.wrap_socket(self.sock, server_hostname=self.host)
        self.file = self.sock.makefile("rb")
        self._tls_established = True
        return resp

    # -- additions -----------------------------------------------------------

    def auth(
        self,
        mechanism: str,
        authobject: AuthObject | None = None,
        *,
        initial_response: bytes | str | None = None,
        initial_response_ok: bool = True,
    ) -> bytes:
        """Authenticate with SASL (RFC 5034); the server's final ``+OK`` line.

        `authobject` is called with each server challenge, base64-decoded to
        bytes, and returns the response (bytes or str; None or ``b"*"``
        cancels). Following `smtplib.SMTP.auth`, when it can be called without
        arguments and `initial_response_ok` is true, ``authobject()`` gives the
        initial response; `initial_response` gives it directly (as in CPython
        PR 142613). An empty initial response is sent as ``=``. A failure
        raises `error_proto` with the server's line.
        """
        if (
            initial_response is None
            and authobject is not None
            and initial_response_ok
            and _callable_without_arguments(authobject)
        ):
            initial_response = authobject()
        if initial_response is not None:
            self._putcmd(f"AUTH {mechanism} {_b64(initial_response) or '='}")
        else:
            self._putcmd(f"AUTH {mechanism}")
        while True:
            line, _ = self._getline()
            if self._debugging > 1:
                print("*resp*", repr(line))
            challenge = pop3core.parse_sasl_continuation(line)
            if challenge is None:
                self._end_reply()
                if not line.startswith(b"+"):
                    raise error_proto(line)
                return line
            response: bytes | str | None = b"*"
            if challenge.valid and authobject is not None:
                response = authobject(challenge.data)
            if response is None or response in (b"*", "*"):
                self._putline(b"*")
            else:
                self._putcmd(_b64(response))

    def __enter__(self) -> POP3:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # QUIT makes the server delete the marked messages: only a block that
        # finished normally may commit; otherwise the deletions are abandoned.
        if exc_type is None and self.sock is not None:
            try:
                self.quit()
            finally:
                self.close()
        else:
            self.close()


# The block reader stands in for this function only: a bound `_getline` that is
# anything else (a subclass's, a patch on the class or the instance) is called.
_POP3_GETLINE = POP3._getline

if HAVE_SSL:

    class POP3_SSL(POP3):
        """POP3 over implicit TLS (port 995). Without `context`, certificates are not verified."""

        if sys.version_info >= (3, 12):

            def __init__(
                self,
                host: str,
                port: int = POP3_SSL_PORT,
                *,
                timeout: Any = _DEFAULT_TIMEOUT,
                context: ssl.SSLContext | None = None,
            ) -> None:
                if context is None:
                    context = ssl._create_stdlib_context()  # type: ignore[attr-defined]
                self.context = context
                POP3.__init__(self, host, port, timeout)

        else:  # the signature of the running Python's poplib, deprecated arguments included

            def __init__(  # noqa: PLR0917 - that poplib's signature
                self,
                host: str,
                port: int = POP3_SSL_PORT,
                keyfile: str | None = None,
                certfile: str | None = None,
                timeout: Any = _DEFAULT_TIMEOUT,
                context: ssl.SSLContext | None = None,
            ) -> None:
                if context is not None and keyfile is not None:
                    raise ValueError("context and keyfile arguments are mutually exclusive")
                if context is not None and certfile is not None:
                    raise ValueError("context and certfile arguments are mutually exclusive")
                if keyfile is not None or certfile is not None:
                    warnings.warn(
                        "keyfile and certfile are deprecated, use a custom context instead",
                        DeprecationWarning,
                        2,
                    )
                self.keyfile = keyfile
                self.certfile = certfile
                if context is None:
                    context = ssl._create_stdlib_context(  # type: ignore[attr-defined]
                        certfile=certfile, keyfile=keyfile
                    )
                self.context = context
                POP3.__init__(self, host, port, timeout)

        def _create_socket(self, timeout: Any) -> socket.socket:
            sock = POP3._create_socket(self, timeout)
            try:
                return self.context.wrap_socket(sock, server_hostname=self.host)
            except BaseException:
                sock.close()
                raise

        if sys.version_info >= (3, 12):

            def stls(self, context: ssl.SSLContext | None = None) -> bytes:
                raise error_proto("-ERR TLS session already established")

        else:  # that poplib's signature, deprecated arguments included

            def stls(  # type: ignore[override]
                self,
                keyfile: str | None = None,
                certfile: str | None = None,
                context: ssl.SSLContext | None = None,
            ) -> bytes:
                raise error_proto("-ERR TLS session already established")


class _GuardedSocketIO(socket.SocketIO):
    """`socket.SocketIO` whose reads keep the low-speed guard of the reply being read.

    Made only by swapping the class of the raw reader of a ``makefile("rb")``
    file, which stays the `io.BufferedReader` poplib code expects. While
    `timer` is set and the socket has a timeout, each read waits at most what
    the guard allows and raises `pop3core.ReplyTimeout` (a `TimeoutError`) when
    the reply is too slow; the socket's own timeout still applies per read.
    While `probing`, reads return None (no data yet) without touching the
    socket, so that ``peek`` shows only what the file holds.
    """

    _sock: socket.socket
    _timeout_occurred: bool
    timer: pop3core.ReplyTimer | None = None
    probing = False

    def readinto(self, b: Any) -> int | None:
        if self.probing:
            return None
        timer = self.timer
        sock = self._sock
        timeout = sock.gettimeout()
        if timer is None or timeout is None:
            return super().readinto(b)
        while True:
            try:
                limit = timer.wait_limit(time.monotonic())
            except pop3core.ReplyTimeout:
                # As after a socket timeout: the rest of the reply is lost.
                self._timeout_occurred = True
                raise
            if limit is None or limit >= timeout:
                got = super().readinto(b)
                break
            sock.settimeout(max(limit, 0.001))  # 0 would make the socket non-blocking
            try:
                got = super().readinto(b)
                break
            except TimeoutError:
                # The guard's wait ran out, not the caller's: wait_limit decides.
                self._timeout_occurred = False
            finally:
                sock.settimeout(timeout)
        if got:
            timer.received(got, time.monotonic())
        return got


def _guarded(file: Any) -> _GuardedSocketIO | None:
    """The guarded raw reader under `file`, or None."""
    raw = getattr(file, "raw", None)
    return raw if type(raw) is _GuardedSocketIO else None


def _kernel_poller(sock: Any, file: Any) -> Any:
    """A poll object for the plain socket `file` reads (its queue can be peeked), or None."""
    raw = file.raw
    if (
        _poll is None
        or type(sock) is not socket.socket
        or (type(raw) is not socket.SocketIO and type(raw) is not _GuardedSocketIO)
        or raw.fileno() != sock.fileno()
    ):
        return None
    poller = _poll()
    poller.register(sock, select.POLLIN)
    return poller


def _consume(readinto: Callable[[memoryview], int | None], sink: memoryview, size: int) -> None:
    """Consume `size` octets already peeked, into scratch: cheaper than new bytes."""
    done = 0
    while done < size:  # a socket may hand peeked octets over in parts
        got = readinto(sink[done:size])
        if not got:  # they cannot vanish; but never spin
            raise error_proto("-ERR EOF")
        done += got


def _strip(line: bytes) -> bytes:
    """A line read by poplib's `_getline`, as it returns it.

    Without CRLF; without the first and last octets if it starts with CR;
    otherwise without the last octet (LF, or anything at EOF).
    """
    if line[-2:] == CRLF:
        return line[:-2]
    if line[:1] == CR:
        return line[1:-1]
    return line[:-1]


def _unstuff(line: bytes, size: int) -> tuple[bytes, int]:
    """poplib's retr loop on one `_getline` result: ``..`` loses a dot, and an octet."""
    if line.startswith(b".."):
        return line[1:], size - 1
    return line, size


def _long_line_start(data: bytes, maxline: int) -> int:
    """Where the first line of `data` (whole lines) too long for poplib starts, or -1.

    poplib refuses a line of `maxline` octets or more before its LF. Jumping
    from a line start to the last LF within `maxline` octets costs one
    C-level search per `maxline` octets, far less than measuring every line.
    """
    pos = 0
    end = len(data)
    rfind = data.rfind
    while end - pos >= maxline:
        found = rfind(LF, pos, pos + maxline)
        if found < 0:
            return pos
        pos = found + 1
    return -1


def _poplib_lines(body: bytes) -> tuple[Lines, int]:
    """Split an unstuffed body of whole lines as poplib's `_getline` would.

    Returns the lines without their ends and the octet count poplib reports
    (the wire octets of the lines, less one per removed stuffing dot), which is
    the length of the unstuffed body.
    """
    if not body:
        return [], 0
    lines = body.split(CRLF)
    if len(lines) - 1 != body.count(LF):
        # poplib drops the first octet of a line that starts with CR and does
        # not end with CRLF; that case, and mixed line ends, go line by line.
        if len(lines) > 1 or body[:1] == CR or b"\n\r" in body:
            return _poplib_lines_slowly(body)
        lines = body.split(LF)
    lines.pop()  # the body ends with a line end: nothing follows the last one
    return lines, len(body)


def _poplib_lines_slowly(body: bytes) -> tuple[Lines, int]:
    """`_poplib_lines` for mixed line ends and lines that start with CR, line by line."""
    lines: list[bytes] = []
    octets = 0
    for raw in body.split(LF)[:-1]:
        size = len(raw) + 1
        if raw[-1:] == CR:
            line = raw[:-1]
        elif raw[:1] == CR:
            # The decoder saw the CR first and left the stuffing alone.
            line, size = _unstuff(raw[1:], size)
        else:
            line = raw
        octets += size
        lines.append(line)
    return lines, octets


def _b64(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return b2a_base64(data, newline=False).decode("ascii")


def _callable_without_arguments(function: Callable[..., object]) -> bool:
    try:
        inspect.signature(function).bind()
    except TypeError:
        return False
    except ValueError:  # no signature (some builtins): do not guess
        return False
    return True
