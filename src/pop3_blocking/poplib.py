"""A drop-in replacement for the standard library's `poplib`.

``import pop3_blocking.poplib as poplib`` (or putting this module into
``sys.modules["poplib"]``) keeps code written for `poplib` working unchanged:
the same names, signatures, return values (bytes; ``(resp, lines, octets)`` for
multi-line replies), exceptions, attributes, private methods, audit events,
debug output and TLS defaults (unverified, as poplib's; pass a context to
verify). CPython's own test_poplib passes against it
(tests/test_poplib_dropin.py runs it).

What differs, on purpose:

- Multi-line replies are read in large blocks and unstuffed by pop3core's
  lenient `BodyDecoder` instead of line by line, which makes `POP3.retr` about three
  times faster on large messages. The lines, octet counts and errors are poplib's, including
  ``error_proto("line too long")`` for a body line longer than `_MAXLINE`
  (read at call time). Subclasses that override `_getline`, and debug level 2,
  get poplib's line-by-line reading.
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
import poplib as _stdlib_poplib
import re
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

# Bytes a multi-line reply is read in (the socket file's buffer size).
_BLOCK = 1024 * 1024

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
        self.file = self.sock.makefile("rb", buffering=_BLOCK)
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
        if b"\r" in line or b"\n" in line:
            raise ValueError("a POP3 command must not contain CR or LF")
        sys.audit("poplib.putline", self, line)
        self.sock.sendall(line + CRLF)

    def _putcmd(self, line: str) -> None:
        if self._debugging:
            print("*cmd*", repr(line))
        self._putline(line.encode(self.encoding))

    def _getline(self) -> tuple[bytes, int]:
        """One line without its end, and the octets it took on the wire."""
        line: bytes = self.file.readline(_MAXLINE + 1)
        if len(line) > _MAXLINE:
            raise error_proto("line too long")
        if self._debugging > 1:
            print("*get*", repr(line))
        if not line:
            raise error_proto("-ERR EOF")
        octets = len(line)
        # readline ends at LF: the line ends in CRLF or LF, or is CR ... LF.
        if line[-2:] == CRLF:
            return line[:-2], octets
        if line[:1] == CR:
            return line[1:-1], octets
        return line[:-1], octets

    def _getresp(self) -> bytes:
        resp, _ = self._getline()
        if self._debugging > 1:
            print("*resp*", repr(resp))
        if not resp.startswith(b"+"):
            raise error_proto(resp)
        return resp

    def _getlongresp(self) -> LongResponse:
        resp = self._getresp()
        if (
            self._debugging > 1
            or type(self)._getline is not POP3._getline
            or not hasattr(self.file, "peek")
        ):
            return (resp, *self._read_lines_one_by_one())
        return (resp, *self._read_body())

    def _read_lines_one_by_one(self) -> tuple[Lines, int]:
        lines: list[bytes] = []
        octets = 0
        line, size = self._getline()
        while line != b".":
            if line.startswith(b".."):
                size -= 1
                line = line[1:]
            octets += size
            lines.append(line)
            line, size = self._getline()
        return lines, octets

    def _read_body(self) -> tuple[Lines, int]:
        """Read a multi-line body in blocks: poplib's lines and octets, far fewer calls.

        Only the bytes up to the terminator are consumed from `file` (peeked,
        then read), so whatever the server sent after it stays buffered for the
        next reply, as with poplib's line reading.
        """
        decoder = pop3core.BodyDecoder(strict=False)
        file = self.file
        lines = _LineCollector(_MAXLINE)
        carry = b""  # the start of a line the decoder could not judge yet
        sink = memoryview(bytearray(_BLOCK))
        while True:
            block = file.peek(_BLOCK)
            if not block:
                raise error_proto("-ERR EOF")
            data = carry + block if carry else block
            body, end, finished = decoder.feed(data, 0)
            lines.add(body)
            # Consume what was decoded; into a reused buffer, which is cheaper
            # than a new bytes object for what is already in hand.
            if finished:
                file.readinto(sink[: end - len(carry)])
                break
            carry = data[end:]
            file.readinto(sink[: len(block)])
        return lines.result()

    def _shortcmd(self, line: str) -> bytes:
        self._putcmd(line)
        return self._getresp()

    def _longcmd(self, line: str) -> LongResponse:
        self._putcmd(line)
        return self._getlongresp()

    # -- the commands --------------------------------------------------------

    def getwelcome(self) -> bytes:
        return self.welcome

    def set_debuglevel(self, level: int) -> None:
        self._debugging = level

    def user(self, user: str) -> bytes:
        return self._shortcmd(f"USER {user}")

    def pass_(self, pswd: str) -> bytes:
        return self._shortcmd(f"PASS {pswd}")

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
            return self._shortcmd(f"LIST {which}")
        return self._longcmd("LIST")

    def retr(self, which: Any) -> LongResponse:
        return self._longcmd(f"RETR {which}")

    def dele(self, which: Any) -> bytes:
        return self._shortcmd(f"DELE {which}")

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
        return self._shortcmd(f"RPOP {user}")

    def apop(self, user: str, password: str) -> bytes:
        """Log in with APOP, using the timestamp of `welcome`."""
        match = self.timestamp.match(self.welcome)
        if not match:
            raise error_proto("-ERR APOP not supported by server")
        digest = pop3core.apop_digest(match.group(1), password.encode(self.encoding))
        return self._shortcmd(f"APOP {user} {digest}")

    def top(self, which: Any, howmuch: Any) -> LongResponse:
        return self._longcmd(f"TOP {which} {howmuch}")

    def uidl(self, which: Any = None) -> Any:
        """The unique-id listing: ``(resp, lines, octets)``, or the one reply line with `which`."""
        if which is not None:
            return self._shortcmd(f"UIDL {which}")
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
            context = ssl._create_unverified_context()
        resp = self._shortcmd("STLS")
        self.sock = context.wrap_socket(self.sock, server_hostname=self.host)
        self.file = self.sock.makefile("rb", buffering=_BLOCK)
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
                    context = ssl._create_unverified_context()
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
                    context = ssl._create_unverified_context(certfile=certfile, keyfile=keyfile)
                self.context = context
                POP3.__init__(self, host, port, timeout)

        def _create_socket(self, timeout: Any) -> socket.socket:
            sock = POP3._create_socket(self, timeout)
            try:
                return self.context.wrap_socket(sock, server_hostname=self.host)
            except BaseException:
                sock.close()
                raise

        def stls(self, context: ssl.SSLContext | None = None) -> bytes:
            raise error_proto("-ERR TLS session already established")


class _LineCollector:
    """poplib's lines of an unstuffed body, split piece by piece as it is decoded.

    Splitting each piece while it is in the CPU cache, and then dropping it,
    touches far less memory than joining the body first. This covers bodies
    whose lines all end in CRLF, which is what servers send; at the first bare
    LF it keeps the rest whole and `result` hands everything to `_poplib_lines`.
    """

    __slots__ = ("_long", "_maxline", "_octets", "_partial", "_partial_len", "_raw", "lines")

    def __init__(self, maxline: int) -> None:
        self.lines: Lines = []
        self._maxline = maxline
        self._partial: list[bytes] = []  # the line in progress, in parts (never re-copied)
        self._partial_len = 0
        self._raw: list[bytes] | None = None  # the body so far, once a bare LF was seen
        self._octets = 0
        self._long = False  # some line may be longer than poplib allows

    def add(self, piece: bytes) -> None:
        if not piece:
            return
        self._octets += len(piece)
        if self._raw is not None:
            self._raw.append(piece)
            return
        newlines = piece.count(LF)
        width = self._maxline - 3  # content + CRLF + a possible stuffing dot
        if self._partial and self._partial[-1][-1:] == CR and piece[:1] == LF:
            # A CRLF split between two pieces ends the line in hand.
            self._partial[-1] = self._partial[-1][:-1]
            self.lines.append(b"".join(self._partial))
            self._partial = []
            self._partial_len = 0
            piece = piece[1:]
            newlines -= 1
            if not piece:
                return
        parts = piece.split(CRLF)
        if len(parts) - 1 != newlines:
            self._keep_whole(piece)
            return
        if len(parts) == 1:
            self._partial.append(piece)
            self._partial_len += len(piece)
            self._long = self._long or self._partial_len > width
            return
        if self._partial:
            self._long = self._long or self._partial_len + len(parts[0]) > width
            self._partial.append(parts[0])
            parts[0] = b"".join(self._partial)
        tail = parts.pop()
        self._partial = [tail] if tail else []
        self._partial_len = len(tail)
        self._long = self._long or _may_have_long_lines(piece, width)
        self.lines += parts

    def _keep_whole(self, piece: bytes) -> None:
        """Rebuild the body so far (exactly: every line so far ended in CRLF), add `piece`."""
        head = CRLF.join(self.lines) + CRLF if self.lines else b""
        self._raw = [head, *self._partial, piece]
        self.lines = []
        self._partial = []

    def result(self) -> tuple[Lines, int]:
        if self._raw is None and self._partial:  # no line end at the end: not from a server
            self._keep_whole(b"")
        if self._raw is not None:
            return _poplib_lines(b"".join(self._raw), self._maxline)
        if self._long:
            _check_lengths(self.lines, 2, self._maxline)
        return self.lines, self._octets


def _poplib_lines(body: bytes, maxline: int) -> tuple[Lines, int]:
    """Split an unstuffed body (each line with its end) as poplib's `_getline` would.

    Returns the lines without their ends and the octet count poplib reports
    (the wire octets of the lines, less one per removed stuffing dot), which is
    the length of the unstuffed body. Raises ``error_proto("line too long")``
    where poplib would.
    """
    if not body:
        return [], 0
    lines = body.split(CRLF)
    newlines = body.count(LF)
    if len(lines) - 1 == newlines:
        eol = 2
    # poplib drops the first octet of a line that starts with CR and does not
    # end with CRLF; that case, and mixed line ends, go line by line.
    elif len(lines) == 1 and body[:1] != CR and b"\n\r" not in body:
        lines = body.split(LF)
        eol = 1
    else:
        return _poplib_lines_slowly(body, maxline)
    lines.pop()  # the body ends with a line end: nothing follows the last one
    # On the wire a line was its content, its end and perhaps a stuffing dot;
    # poplib refuses one longer than maxline. Only lines close to the bound
    # need the precise look.
    if _may_have_long_lines(body, maxline - eol - 1):
        _check_lengths(lines, eol, maxline)
    return lines, len(body)


def _may_have_long_lines(body: bytes, width: int) -> bool:
    """Whether a line of `body` may have `width` octets or more before its LF.

    Jumps from line start to the last LF within `width` octets: one C-level
    search per `width` octets, far cheaper than measuring every line.
    """
    if width <= 0:
        return True
    pos = 0
    end = len(body)
    rfind = body.rfind
    while end - pos > width:
        found = rfind(LF, pos, pos + width)
        if found < 0:
            return True
        pos = found + 1
    return False


def _check_lengths(lines: Lines, eol: int, maxline: int) -> None:
    for line in lines:
        if len(line) + eol + _stuffed(line) > maxline:
            raise error_proto("line too long")


def _stuffed(line: bytes) -> int:
    # After lenient unstuffing a line that starts with a dot was stuffed on the
    # wire; RFC 1939 servers stuff every such line, so that is assumed.
    return 1 if line[:1] == b"." else 0


def _poplib_lines_slowly(body: bytes, maxline: int) -> tuple[Lines, int]:
    """`_poplib_lines` for mixed line ends and lines that start with CR, line by line."""
    lines: list[bytes] = []
    octets = 0
    for raw in body.split(LF)[:-1]:
        size = len(raw) + 1 + _stuffed(raw)
        if size > maxline:
            raise error_proto("line too long")
        if raw[-1:] == CR:
            line = raw[:-1]
        elif raw[:1] == CR:
            line = raw[1:]
            # The decoder saw the CR first and left the stuffing alone.
            if line.startswith(b".."):
                line = line[1:]
                size -= 1
        else:
            line = raw
        octets += size - _stuffed(raw)
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
