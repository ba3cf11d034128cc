"""The receive buffer: bytes waiting to be parsed, with a line-search cursor."""

from __future__ import annotations

__all__ = ["ReceiveBuffer"]


class ReceiveBuffer:
    """Unparsed input.

    When it is empty and a ``bytes`` object arrives, the buffer adopts that object
    instead of copying it, so a body decoder that consumes whole receives never
    copies them. Consumption only moves ``pos``; the consumed prefix is dropped
    when more data is appended, which keeps every operation amortised linear.
    The line search remembers how far it has looked, so data trickling in byte by
    byte is not rescanned from the start of the line each time.
    """

    __slots__ = ("_data", "_pos", "_scan")

    def __init__(self) -> None:
        self._data: bytes | bytearray = b""
        self._pos = 0  # start of the unconsumed bytes
        self._scan = 0  # no LF in data[pos:scan]

    def __len__(self) -> int:
        return len(self._data) - self._pos

    def __bool__(self) -> bool:
        return len(self._data) > self._pos

    def append(self, data: bytes | bytearray | memoryview) -> None:
        if self._pos >= len(self._data):
            self._data = data if type(data) is bytes else bytes(data)
            self._pos = self._scan = 0
            return
        if type(self._data) is bytes:
            with memoryview(self._data) as view:
                self._data = bytearray(view[self._pos :])
            self._scan -= self._pos
            self._pos = 0
        elif self._pos and isinstance(self._data, bytearray):
            del self._data[: self._pos]
            self._scan -= self._pos
            self._pos = 0
        self._data += data

    def line_end(self) -> int:
        """Index just past the next LF, or -1 if no complete line is buffered."""
        data = self._data
        found = data.find(b"\n", self._scan)
        if found < 0:
            self._scan = len(data)
            return -1
        return found + 1

    def pending_length(self) -> int:
        """How many unconsumed bytes there are (the partial line, if no LF was found)."""
        return len(self._data) - self._pos

    def take(self, end: int) -> bytes:
        """Consume and return the bytes up to `end` (an index from `line_end`)."""
        data = self._data
        start = self._pos
        if type(data) is bytes:
            chunk = data if start == 0 and end == len(data) else data[start:end]
        else:
            with memoryview(data) as view:
                chunk = view[start:end].tobytes()
        self._pos = end
        self._scan = end
        return chunk

    @property
    def raw(self) -> tuple[bytes | bytearray, int]:
        """The underlying data and the position of the first unconsumed byte."""
        return self._data, self._pos

    def consume_to(self, pos: int) -> None:
        """Mark everything before index `pos` of `raw` as consumed."""
        self._pos = pos
        self._scan = max(self._scan, pos)

    def take_all(self) -> bytes:
        return self.take(len(self._data))
