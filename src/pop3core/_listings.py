"""LIST and UIDL results kept compact, parsed as the body arrives.

A million-entry listing as a ``dict`` costs some 100 MB of int and str objects,
and building it from the joined body holds the body and its split as well.
`ListParser` and `UidlParser` take the body in the pieces the engine delivers
(any split) and keep only machine integers in arrays and, for UIDL, the unique
ids as one bytes blob; `MessageSizes` and `UniqueIds` are read-only mappings
over them that compare equal to the equivalent ``dict`` and iterate in the
server's order. The work is per piece and per entry in C (a regex check, a
split, ``int``), never a Python step per line, except on the rare line that is
not in the canonical ``<number> <token>`` form.
"""

from __future__ import annotations

import abc
import re
from array import array
from bisect import bisect_left
from collections.abc import Callable, ItemsView, Iterator, Mapping, Sequence, ValuesView
from itertools import accumulate, islice
from operator import eq, lt
from typing import TypeAlias, TypeVar

from ._parsers import parse_list_line, parse_uidl_line
from ._protocol_errors import RemoteProtocolError

__all__ = ["ListParser", "MessageSizes", "UidlParser", "UniqueIds", "parse_list", "parse_uidl"]

V = TypeVar("V")

# Machine integers as narrow as they fit: 4 octets, then 8, then (beyond 2**64,
# which only a hostile server sends) a list of Python ints.
_Column: TypeAlias = "array[int] | list[int]"

# What every server sends, exactly; anything else takes the line-by-line path.
_CANONICAL_LIST = re.compile(rb"(?:[0-9]{1,20} [0-9]{1,20}\r\n)*").fullmatch
_CANONICAL_UIDL = re.compile(rb"(?:[0-9]{1,20} [!-~]+\r\n)*").fullmatch


def _fixed_uidl(width: int) -> Callable[[bytes], re.Match[bytes] | None]:
    """`_CANONICAL_UIDL` with every unique id `width` octets long (re caches it)."""
    return re.compile(rb"(?:[0-9]{1,20} [!-~]{%d}\r\n)*" % width).fullmatch


# 0, 1, 2, ...: a listing of numbers first..first+N-1 is recognised by one slice
# and one compare instead of building that range again (8 % of the parse).
# Grown on demand, never past _RANGE_CAP entries (256 KiB); larger listings
# build their range (14 ms for a million numbers).
_RANGE_CAP = 1 << 16
_range: array[int] = array("I")


def _range_of(typecode: str, first: int, count: int) -> array[int]:
    """``array(typecode, range(first, first + count))``, from the cache when it fits."""
    global _range  # noqa: PLW0603 - replaced whole, never changed in place
    end = first + count
    if typecode != "I" or end > _RANGE_CAP:
        return array(typecode, range(first, end))
    cached = _range
    if end > len(cached):
        cached = _range = array("I", range(min(_RANGE_CAP, max(end, 2 * len(cached)))))
    return cached[first:end]


def _extended(column: _Column, tokens: Sequence[bytes] | Sequence[int]) -> _Column:
    """`column` with the integers of `tokens` appended; a wider column if they need one."""
    if type(column) is list:
        column.extend(map(int, tokens))
        return column
    assert isinstance(column, array)
    size = len(column)
    try:
        column.extend(map(int, tokens))
    except OverflowError:
        del column[size:]  # what went in before the value that did not fit
        wider: _Column = array("Q", column) if column.typecode == "I" else list(column)
        return _extended(wider, tokens)
    return column


def _lines(block: bytes) -> Iterator[bytes]:
    """Each non-blank line of `block`, without its line end."""
    for line in block.split(b"\n"):
        if line.strip():
            yield line[:-1] if line[-1:] == b"\r" else line


def _is_range(numbers: _Column) -> bool:
    """Whether `numbers` are first, first + 1, ..., in order (1..N: no message deleted)."""
    first = numbers[0]
    if numbers[-1] - first != len(numbers) - 1:
        return False
    if isinstance(numbers, list):
        return numbers == list(range(first, first + len(numbers)))
    return numbers == _range_of(numbers.typecode, first, len(numbers))  # C-level compare


def _index(numbers: _Column) -> tuple[_Column, _Column | None, bool]:
    """The numbers in ascending order; each one's position in `numbers` (None: the
    same order); whether they are a range, so that a position is ``number - first``.

    Raises `RemoteProtocolError` on a number 0 or a number listed twice.
    """
    if not numbers:
        return numbers, None, False
    if _is_range(numbers) or all(map(lt, numbers, islice(numbers, 1, None))):
        keys, positions = numbers, None
    else:
        # Out of order: rare enough that a Python-level sort is fine.
        order = sorted(range(len(numbers)), key=numbers.__getitem__)
        keys = _extended(array("I"), [numbers[i] for i in order])
        if any(map(eq, keys, islice(keys, 1, None))):
            raise RemoteProtocolError("the listing names a message number twice")
        positions = _extended(array("I"), order)
    if keys[0] == 0:
        raise RemoteProtocolError("message number 0 in listing")
    return keys, positions, positions is None and keys[-1] - keys[0] == len(keys) - 1


class _Listing(Mapping[int, V]):
    """``{message number: value}`` over arrays; the values are found by position."""

    __slots__ = ("_first", "_keys", "_numbers", "_positions")

    def __init__(self, numbers: _Column) -> None:
        self._numbers = numbers  # in the server's order
        self._keys, self._positions, is_range = _index(numbers)
        self._first: int | None = numbers[0] if is_range else None  # then no search

    def _position(self, number: object) -> int:
        if not isinstance(number, int):
            raise KeyError(number)
        first = self._first
        if first is not None:
            index = number - first
            if 0 <= index < len(self._numbers):
                return index
            raise KeyError(number)
        keys = self._keys
        index = bisect_left(keys, number)
        if index == len(keys) or keys[index] != number:
            raise KeyError(number)
        positions = self._positions
        return index if positions is None else positions[index]

    @abc.abstractmethod
    def _value(self, position: int) -> V: ...

    @abc.abstractmethod
    def _values(self) -> Iterator[V]:
        """The values in the server's order."""

    def __getitem__(self, number: int) -> V:
        return self._value(self._position(number))

    def __contains__(self, number: object) -> bool:
        try:
            self._position(number)
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[int]:
        return iter(self._numbers)

    def __len__(self) -> int:
        return len(self._numbers)

    def items(self) -> ItemsView[int, V]:
        return _Items(self)

    def values(self) -> ValuesView[V]:
        return _Values(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict(self.items())!r})"


class _Items(ItemsView[int, V]):
    # The inherited view looks every value up by its key; this walks the arrays.
    _mapping: _Listing[V]

    def __iter__(self) -> Iterator[tuple[int, V]]:
        return zip(self._mapping._numbers, self._mapping._values(), strict=True)


class _Values(ValuesView[V]):
    _mapping: _Listing[V]

    def __iter__(self) -> Iterator[V]:
        return self._mapping._values()


class MessageSizes(_Listing[int]):
    """The reply to ``LIST``: ``{message number: size in octets}``, read-only.

    Compares equal to the equivalent ``dict`` and iterates in the server's
    order; a lookup is an index (numbers 1..N) or a binary search. About 8
    octets an entry. Built by `ListParser` (or `pop3core.parse_list`).
    """

    __slots__ = ("_sizes",)

    def __init__(self, numbers: _Column, sizes: _Column) -> None:
        super().__init__(numbers)
        self._sizes = sizes

    def _value(self, position: int) -> int:
        return self._sizes[position]

    def _values(self) -> Iterator[int]:
        return iter(self._sizes)


class UniqueIds(_Listing[str]):
    """The reply to ``UIDL``: ``{message number: unique id}``, read-only.

    Compares equal to the equivalent ``dict`` and iterates in the server's
    order. The ids are kept as one bytes blob and decoded on access as
    `pop3core.parse_uidl_line` decodes them (octets outside ASCII as lone
    surrogates). Built by `UidlParser` (or `pop3core.parse_uidl`).
    """

    __slots__ = ("_blob", "_ends", "_width")

    def __init__(
        self, numbers: _Column, blob: bytes | bytearray, ends: _Column | None, width: int
    ) -> None:
        super().__init__(numbers)
        self._blob = blob
        # Where each id ends in the blob, in the server's order; None when every
        # id is `width` octets long (as a server's ids usually are).
        self._ends = ends
        self._width = width

    def _value(self, position: int) -> str:
        ends = self._ends
        if ends is None:
            start = position * self._width
            end = start + self._width
        else:
            start = ends[position - 1] if position else 0
            end = ends[position]
        return self._blob[start:end].decode("ascii", "surrogateescape")

    def _values(self) -> Iterator[str]:
        blob = self._blob
        ends = self._ends
        if ends is None:
            width = self._width
            for start in range(0, len(blob), width):
                yield blob[start : start + width].decode("ascii", "surrogateescape")
            return
        start = 0
        for end in ends:
            yield blob[start:end].decode("ascii", "surrogateescape")
            start = end


class _BodyParser(abc.ABC):
    """Cuts a body fed in pieces into blocks of whole lines, for `_block`."""

    __slots__ = ("_numbers", "_partial")

    def __init__(self) -> None:
        self._numbers: _Column = array("I")
        self._partial: list[bytes] = []  # a line not ended yet, in pieces

    def feed(self, data: bytes) -> None:
        """Take the next piece of the body (unstuffed, as in `Data` events)."""
        end = data.rfind(b"\n") + 1
        if not end:
            if data:
                self._partial.append(data)
            return
        if self._partial:
            first = data.find(b"\n") + 1
            self._partial.append(data[:first])
            self._block(b"".join(self._partial))
            self._partial = []
            if first < end:
                self._block(data[first:end])
        else:
            self._block(data if end == len(data) else data[:end])
        if end < len(data):
            self._partial.append(data[end:])

    def _flush(self) -> None:
        if self._partial:
            self._block(b"".join(self._partial))  # a last line without its line end
            self._partial = []

    @abc.abstractmethod
    def _block(self, block: bytes) -> None: ...


class ListParser(_BodyParser):
    """Parses a ``LIST`` body fed in pieces; `finish` gives the `MessageSizes`.

    The rules of `pop3core.parse_list_line` apply to every non-blank line (free
    text after the size is ignored); a number 0 or a number listed twice raises
    `RemoteProtocolError`, at the latest from `finish`.
    """

    __slots__ = ("_sizes",)

    def __init__(self) -> None:
        super().__init__()
        self._sizes: _Column = array("I")

    def _block(self, block: bytes) -> None:
        if _CANONICAL_LIST(block):
            tokens = block.split()
            self._numbers = _extended(self._numbers, tokens[0::2])
            self._sizes = _extended(self._sizes, tokens[1::2])
            return
        entries = [parse_list_line(line) for line in _lines(block)]
        numbers = [entry.number for entry in entries]
        sizes = [entry.size for entry in entries]
        self._numbers = _extended(self._numbers, numbers)
        self._sizes = _extended(self._sizes, sizes)

    def finish(self) -> MessageSizes:
        """The listing, once the whole body was fed."""
        self._flush()
        return MessageSizes(self._numbers, self._sizes)


class UidlParser(_BodyParser):
    """Parses a ``UIDL`` body fed in pieces; `finish` gives the `UniqueIds`.

    The rules of `pop3core.parse_uidl_line` apply to every non-blank line; a
    number 0 or a number listed twice raises `RemoteProtocolError`, at the
    latest from `finish`. The same unique id on two messages is accepted.
    """

    __slots__ = ("_blob", "_ends", "_width")

    def __init__(self) -> None:
        super().__init__()
        self._blob = bytearray()
        # While every id so far is `_width` octets long, no ends are kept.
        self._width: int | None = None  # not known yet
        self._ends: _Column | None = None

    def _block(self, block: bytes) -> None:
        width = self._width
        if width is None:
            first = block[: block.find(b"\n") + 1].split()
            width = self._width = len(first[1]) if len(first) > 1 else 0
            if not width:
                self._vary()
        uids: list[bytes]
        if width and _fixed_uidl(width)(block):
            tokens = block.split()
            self._numbers = _extended(self._numbers, tokens[0::2])
            uids = tokens[1::2]
        else:
            if _CANONICAL_UIDL(block):
                tokens = block.split()
                self._numbers = _extended(self._numbers, tokens[0::2])
                uids = tokens[1::2]
            else:
                entries = [parse_uidl_line(line) for line in _lines(block)]
                numbers = [entry.number for entry in entries]
                uids = [entry.uid.encode("ascii", "surrogateescape") for entry in entries]
                self._numbers = _extended(self._numbers, numbers)
            if self._width and any(len(uid) != width for uid in uids):
                self._vary()
        if self._ends is not None:
            ends = accumulate(map(len, uids), initial=len(self._blob))
            self._ends = _extended(self._ends, list(islice(ends, 1, None)))
        self._blob += b"".join(uids)

    def _vary(self) -> None:
        """Ids of more than one length: keep where each ends from now on."""
        width = self._width
        self._ends = _extended(
            array("I"), range(width, len(self._blob) + 1, width) if width else ()
        )
        self._width = 0

    def finish(self) -> UniqueIds:
        """The listing, once the whole body was fed."""
        self._flush()
        if self._ends is None and not self._width:
            self._vary()  # no id at all
        return UniqueIds(self._numbers, self._blob, self._ends, self._width or 0)


def parse_list(body: bytes) -> MessageSizes:
    """Parse the body of ``LIST`` into ``{message number: size}``, in server order.

    The result is a compact read-only mapping that compares equal to the
    ``dict``; `ListParser` does the same for a body that arrives in pieces.
    """
    parser = ListParser()
    parser.feed(body)
    return parser.finish()


def parse_uidl(body: bytes) -> UniqueIds:
    """Parse the body of ``UIDL`` into ``{message number: unique id}``, in server order.

    The result is a compact read-only mapping that compares equal to the
    ``dict``; `UidlParser` does the same for a body that arrives in pieces.
    """
    parser = UidlParser()
    parser.feed(body)
    return parser.finish()
