"""ReceiveBuffer: unparsed input, adopted without copies, compacted as it is consumed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pop3core._receivebuffer import ReceiveBuffer


def test_an_empty_buffer_adopts_bytes_without_a_copy() -> None:
    buffer = ReceiveBuffer()
    data = b"+OK hello\r\n"
    buffer.append(data)
    assert buffer.raw[0] is data
    assert buffer.take_all() is data  # the whole object back, still no copy
    assert not buffer
    assert len(buffer) == 0


def test_other_bytes_like_objects_are_copied_once() -> None:
    buffer = ReceiveBuffer()
    source = bytearray(b"abc\r\n")
    buffer.append(memoryview(source))
    source[0:1] = b"X"  # the caller may reuse its buffer
    assert buffer.take_all() == b"abc\r\n"


def test_lines_are_found_and_taken_in_order() -> None:
    buffer = ReceiveBuffer()
    buffer.append(b"one\r\ntwo\nthree")
    assert buffer.take(buffer.line_end()) == b"one\r\n"
    assert buffer.take(buffer.line_end()) == b"two\n"
    assert buffer.line_end() == -1
    assert buffer.pending_length() == 5
    buffer.append(b"\r\n")
    assert buffer.take(buffer.line_end()) == b"three\r\n"
    assert not buffer


def test_appending_to_a_partly_consumed_bytes_object_keeps_only_the_rest() -> None:
    buffer = ReceiveBuffer()
    buffer.append(b"done\r\npartial")
    buffer.take(buffer.line_end())
    buffer.append(b" line\r\n")
    data, pos = buffer.raw
    assert type(data) is bytearray
    assert (bytes(data), pos) == (b"partial line\r\n", 0)  # the consumed prefix is gone


def test_a_partly_consumed_bytearray_is_compacted_on_the_next_append() -> None:
    buffer = ReceiveBuffer()
    buffer.append(b"a\r\nb")
    buffer.append(b"c\r\nd")  # now a bytearray holding "a\r\nbc\r\nd"
    assert buffer.take(buffer.line_end()) == b"a\r\n"
    data, pos = buffer.raw
    assert type(data) is bytearray
    assert pos == 3
    buffer.append(b"e\r\n")  # compaction: the consumed "a\r\n" is deleted first
    data, pos = buffer.raw
    assert (bytes(data), pos) == (b"bc\r\nde\r\n", 0)
    assert buffer.take(buffer.line_end()) == b"bc\r\n"
    assert buffer.take(buffer.line_end()) == b"de\r\n"


def test_a_line_search_does_not_rescan_what_it_has_seen() -> None:
    buffer = ReceiveBuffer()
    for byte in b"a long line without its end":
        buffer.append(bytes([byte]))
        assert buffer.line_end() == -1
    # The cursor stands at the end: the search resumes there.
    assert buffer._scan == len(buffer.raw[0])
    buffer.append(b"\n")
    assert buffer.line_end() == len(buffer.raw[0])


def test_consume_to_skips_bytes_a_decoder_has_used() -> None:
    buffer = ReceiveBuffer()
    buffer.append(b"body bytes\r\n.\r\nnext")
    _, pos = buffer.raw
    buffer.consume_to(pos + 15)
    assert buffer.take_all() == b"next"


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"") + b"\r\n"), max_size=8),
    st.lists(st.integers(1, 9), min_size=1, max_size=20),
)
def test_any_split_gives_the_same_lines(lines: list[bytes], sizes: list[int]) -> None:
    wire = b"".join(lines)
    buffer = ReceiveBuffer()
    taken: list[bytes] = []
    start = 0
    step = 0
    while start < len(wire):
        size = sizes[step % len(sizes)]
        piece = wire[start : start + size]
        # Alternate the types the transport may hand over.
        buffer.append(piece if step % 3 else bytearray(piece))
        start += size
        step += 1
        while (end := buffer.line_end()) >= 0:
            taken.append(buffer.take(end))
    assert taken == lines
    assert not buffer
