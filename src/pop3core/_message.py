"""Helpers for the message bytes a server sends: CRLF normalisation and TOP's cut.

RFC 1939 section 11: a message's size is its octet count as transmitted, a stored
bare LF counting as the two octets of CRLF. A server also ends every body with a
CRLF before the terminating dot. `wire_size` gives that size for the bytes as
stored, and `NewlineNormalizer` produces those bytes, chunk by chunk.
"""

from __future__ import annotations

__all__ = [
    "HeaderScreen",
    "NewlineNormalizer",
    "TopCutter",
    "WireSizer",
    "normalize_newlines",
    "wire_size",
]

_CR = 0x0D
_LF = 0x0A


def wire_size(message: bytes | bytearray) -> int:
    """The octets `message` takes on the wire once normalised (stuffing excluded).

    Equal to ``len(normalize_newlines(message))``, computed without building it.
    """
    sizer = WireSizer()
    sizer.feed(message)
    return sizer.size


class WireSizer:
    """`wire_size` of a message that arrives in chunks of any size (a file read in parts)."""

    __slots__ = ("_bare_lf", "_last", "_total")

    def __init__(self) -> None:
        self._total = 0
        self._bare_lf = 0
        self._last = -1  # the last octet seen, or -1 before the first

    def feed(self, chunk: bytes | bytearray) -> None:
        if not chunk:
            return
        self._total += len(chunk)
        self._bare_lf += chunk.count(b"\n") - chunk.count(b"\r\n")
        if self._last == _CR and chunk[0] == _LF:
            self._bare_lf -= 1  # a CRLF split across two chunks
        self._last = chunk[-1]

    @property
    def size(self) -> int:
        """The wire size of what was fed: each bare LF as CRLF, plus the CRLF added
        at the end of a message that does not end with one."""
        if not self._total:
            return 0
        size = self._total + self._bare_lf
        if self._last != _LF:
            size += 2  # the CRLF added before the terminator
        return size


def normalize_newlines(message: bytes | bytearray) -> bytes:
    """Turn every bare LF into CRLF and end the message with a CRLF.

    A bare CR is content and is kept. An empty message stays empty.
    """
    normalizer = NewlineNormalizer()
    return normalizer.feed(message) + normalizer.end()


class NewlineNormalizer:
    """`normalize_newlines` for a message that arrives in chunks of any size."""

    __slots__ = ("_empty", "_last")

    def __init__(self) -> None:
        self._last = -1  # the last octet seen, or -1 before the first
        self._empty = True

    def feed(self, chunk: bytes | bytearray) -> bytes:
        if not chunk:
            return b""
        chunk = bytes(chunk)
        prefix = b""
        if self._last == _CR and chunk[0] == _LF:
            # This LF completes a CRLF split across chunks: it needs no CR.
            prefix, chunk = b"\n", chunk[1:]
        self._last = chunk[-1] if chunk else _LF
        self._empty = False
        if chunk.count(b"\n") != chunk.count(b"\r\n"):
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        return prefix + chunk if prefix else chunk

    def end(self) -> bytes:
        """What must follow the last chunk: a CRLF if the message did not end in one."""
        if self._empty or self._last == _LF:
            return b""
        return b"\r\n"


class TopCutter:
    """Cuts a CRLF-normalised message for ``TOP msg n``, chunk by chunk.

    Passes the headers, the blank line that ends them, and the first `lines`
    lines of the body. A message without a blank line is all headers and passes
    whole; so does a body shorter than `lines`.
    """

    __slots__ = ("_done", "_in_headers", "_partial", "_remaining")

    def __init__(self, lines: int) -> None:
        if lines < 0:
            raise ValueError("TOP's line count must not be negative")
        self._remaining = lines
        self._in_headers = True
        # The start of the current header line when it spans chunks, kept only
        # while it could still be the blank line ("" or "\r"); None otherwise.
        self._partial: bytes | None = b""
        self._done = False

    @property
    def done(self) -> bool:
        """True once the cut is complete: no more of the message is needed."""
        return self._done

    def feed(self, chunk: bytes | bytearray) -> bytes | bytearray:
        """Return the part of `chunk` that belongs in the reply."""
        if self._done or not chunk:
            return b""
        start = 0
        if self._in_headers:
            start = self._skip_headers(chunk)
            if start < 0:
                return chunk
            if self._remaining == 0:
                self._done = True
                return chunk[:start]
        stop = self._count_body_lines(chunk, start)
        if stop < 0:
            return chunk
        self._done = True
        return chunk[:stop]

    def _skip_headers(self, chunk: bytes | bytearray) -> int:
        """Where the body starts in `chunk`, or -1 if the headers go on past it."""
        pos = 0
        end = len(chunk)
        while pos < end:
            lf = chunk.find(b"\n", pos)
            piece = bytes(chunk[pos : end if lf < 0 else lf])
            line = None if self._partial is None or len(piece) > 1 else self._partial + piece
            if lf < 0:
                self._partial = line if line in (b"", b"\r") else None
                return -1
            if line in (b"", b"\r"):
                self._in_headers = False
                return lf + 1
            self._partial = b""
            pos = lf + 1
        return -1

    def _count_body_lines(self, chunk: bytes | bytearray, start: int) -> int:
        """Index just past the last wanted body line, or -1 if it is not in `chunk`."""
        remaining = self._remaining
        found = chunk.count(b"\n", start)
        if found < remaining:
            self._remaining = remaining - found
            return -1
        pos = start
        for _ in range(remaining):
            pos = chunk.find(b"\n", pos) + 1
        self._remaining = 0
        return pos


class HeaderScreen:
    """Holds the start of a CRLF-normalised message until its header section is known.

    RFC 6856: outside UTF8 mode a server must not send a message whose header
    fields carry raw UTF-8 (or any octet above 0x7F). The header section ends at
    the first empty line; `feed` answers once it has seen that line, or
    `limit` octets without it (then those octets are judged as the header
    section: a longer one is not real mail). The chunks are kept as given, not
    copied, for the caller to send once the verdict is True; the header bytes
    themselves are copied once, into a buffer of at most about `limit` octets.
    """

    __slots__ = ("_header", "_limit", "held")

    def __init__(self, limit: int = 256 * 1024) -> None:
        self._limit = limit
        self._header = bytearray(b"\r\n")  # as if after a line end: a leading CRLF ends it
        self.held: list[bytes | bytearray | memoryview] = []

    def feed(self, chunk: bytes | bytearray | memoryview) -> bool | None:
        """Hold `chunk`; True if the header section is ASCII, False if not, None: feed more."""
        self.held.append(chunk)
        header = self._header
        start = max(len(header) - 3, 0)  # a blank line may straddle two chunks
        header += chunk
        end = header.find(b"\r\n\r\n", start)
        if end >= 0:
            return header[: end + 2].isascii()
        if len(header) - 2 >= self._limit:
            return header.isascii()
        return None

    def finish(self) -> bool:
        """The verdict when the message ended first: it was all header section."""
        return self._header.isascii()
