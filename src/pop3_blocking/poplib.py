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
import warnings
from binascii import b2a_base64
from collections.abc import Callable
from types import TracebackType
from typing import Any

import pop3core

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

# Up to this many octets of a body are peeked at once in the kernel's receive
# queue, past the socket file's small buffer (see POP3._read_body).
_KERNEL_PEEK = 1024 * 1024
_poll = getattr(select, "poll", None)  # not on Windows: there the file's buffer is used

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

    def __init__(self, host: str, port: int = POP3_PORT, timeout: Any = _DEFAULT_TIMEOUT) -> None:
        self.host = host
        self.port = port
        self._tls_established = False
        sys.audit("poplib.connect", self, host, port)
        self.sock = self._create_socket(timeout)
        self.file = self.sock.makefile("rb")
        self._debugging = 0
        try:
            self.welcome = self._getresp()
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
        sys.audit("poplib.putline", self, line)
        self.sock.sendall(line + CRLF)

    def _putcmd(self, line: str) -> None:
        if self._debugging:
            print("*cmd*", repr(line))
        self._putline(bytes(line, self.encoding))

    def _getline(self) -> tuple[bytes, int]:
        """One line without its end, and the octets it took on the wire."""
        line: bytes = self.file.readline(_MAXLINE + 1)
        if len(line) > _MAXLINE:
            raise error_proto("line too long")
        if self._debugging > 1:
            print("*get*", repr(line))
        if not line:
            raise error_proto("-ERR EOF")
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
        # The block reader replaces poplib's _getline loop over a plain
        # BufferedReader: code that hooks into that loop gets the loop.
        if (
            self._debugging > 1
            or getattr(self._getline, "__func__", None) is not _POP3_GETLINE
            or type(self.file) is not io.BufferedReader
        ):
            return (resp, *self._read_lines_one_by_one())
        return (resp, *self._read_body())

    def _read_lines_one_by_one(self) -> tuple[Lines, int]:
        lines: list[bytes] = []
        octets = 0
        line, size = self._getline()
        while line != b".":
            line, size = _unstuff(line, size)
            octets += size
            lines.append(line)
            line, size = self._getline()
        return lines, octets

    def _read_body(self) -> tuple[Lines, int]:
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
        """
        maxline = _MAXLINE  # >= 2, or poplib's status line was refused
        file = self.file
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
                if _strip(b"".join(carry)) == b".":
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
                if finished:
                    _consume(readinto, sink, end - carried)
                    return lines, octets
            if long_at >= 0:
                if long_at < carried:  # the carried line is the long one
                    line, size = self._getline_rest(b"".join(carry), maxline)
                else:
                    _consume(readinto, sink, long_at - carried)
                    line, size = self._getline_rest(b"", maxline)
                if line == b".":
                    return lines, octets
                line, size = _unstuff(line, size)
                lines.append(line)
                octets += size
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

    def _getline_rest(self, start: bytes, maxline: int) -> tuple[bytes, int]:
        """poplib's `_getline` for a line whose first octets, `start`, were consumed.

        The line is never empty: its first octets were peeked.
        """
        line = start + self.file.readline(maxline + 1 - len(start))
        if len(line) > maxline:
            raise error_proto("line too long")
        return _strip(line), len(line)

    def _shortcmd(self, line: str) -> bytes:
        self._putcmd(line)
        return self._getresp()

    def _longcmd(self, line: str) -> LongResponse:
        self._putcmd(line)
        return self._getlongresp()

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
            words = line.decode("ascii").split()
            return words[0], words[1:]

        try:
            _, lines, _ = self._longcmd("CAPA")
        except error_proto:
            raise error_proto("-ERR CAPA not supported by server") from None
        return dict(split(line) for line in lines)

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


def _kernel_poller(sock: Any, file: Any) -> Any:
    """A poll object for the plain socket `file` reads (its queue can be peeked), or None."""
    raw = file.raw
    if (
        _poll is None
        or type(sock) is not socket.socket
        or type(raw) is not socket.SocketIO
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
