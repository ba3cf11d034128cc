"""Dot-stuffing, unstuffing, CRLF normalisation and TOP's cut, under any split."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import pop3core as p

# Bodies are built from pieces that exercise every boundary case: dot lines,
# lines that are only a dot, bare CR, bare LF, CRLF split across chunks, long lines.
ATOMS = [b".", b"..", b"\r\n", b"\r", b"\n", b"a", b" ", b".\r\n", b"\r\n.", b"x" * 998]
bodies = st.lists(st.sampled_from(ATOMS), max_size=40).map(b"".join)
normalized_bodies = bodies.map(p.normalize_newlines)


def cuts_for(data: bytes, draw: st.DrawFn) -> list[int]:
    return sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))


def split_at(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def stuff(body: bytes, cuts: Sequence[int] = ()) -> bytes:
    encoder = p.BodyEncoder()
    out = b"".join(
        bytes(piece) for chunk in split_at(body, cuts) for piece in encoder.encode(chunk)
    )
    return out + encoder.end()


def unstuff(wire: bytes, cuts: Sequence[int] = (), *, strict: bool = True) -> tuple[bytes, bytes]:
    """Decode like a Connection does: unconsumed bytes are offered again with more."""
    decoder = p.BodyDecoder(strict=strict)
    pending = b""
    out: list[bytes] = []
    chunks = split_at(wire, cuts)
    for n, chunk in enumerate(chunks):
        data = pending + chunk
        body, pos, finished = decoder.feed(data, 0)
        out.append(body)
        if finished:
            return b"".join(out), data[pos:] + b"".join(chunks[n + 1 :])
        assert len(data) - pos <= 2  # at most ".", ".\r" held back: memory stays bounded
        pending = data[pos:]
    raise AssertionError("the terminator was never found")


def expected_body(body: bytes) -> bytes:
    # A server always ends the body with CRLF before the terminator.
    return body if not body or body.endswith(b"\r\n") else body + b"\r\n"


@settings(max_examples=600)
@given(data=st.data(), body=bodies)
@example(data=None, body=b".")
@example(data=None, body=b".\r\n")
@example(data=None, body=b"\r\n.\r\n")
@example(data=None, body=b"a\r")
def test_stuff_then_unstuff_strict(data: st.DataObject | None, body: bytes) -> None:
    encode_cuts = [] if data is None else cuts_for(body, data.draw)
    wire = stuff(body, encode_cuts)
    assert wire.endswith(b"\r\n.\r\n") or wire == b".\r\n"
    decode_cuts = [] if data is None else cuts_for(wire + b"NEXT", data.draw)
    decoded, rest = unstuff(wire + b"NEXT", decode_cuts)
    assert decoded == expected_body(body)
    assert rest == b"NEXT"


@settings(max_examples=300)
@given(data=st.data(), body=normalized_bodies)
def test_lenient_mode_round_trips_crlf_bodies(data: st.DataObject, body: bytes) -> None:
    wire = stuff(body, cuts_for(body, data.draw))
    decoded, rest = unstuff(wire + b"+OK", cuts_for(wire, data.draw), strict=False)
    assert decoded == body
    assert rest == b"+OK"


@settings(max_examples=200)
@given(body=bodies)
def test_every_byte_split_gives_the_same_output(body: bytes) -> None:
    wire = stuff(body) + b"TAIL"
    whole = unstuff(wire)
    assert unstuff(wire, list(range(1, len(wire)))) == whole


@settings(max_examples=200)
@given(body=bodies)
def test_encoder_output_independent_of_input_split(body: bytes) -> None:
    whole = stuff(body)
    assert stuff(body, list(range(1, len(body)))) == whole


def test_the_first_octet_dot_is_stuffed() -> None:
    # Dovecot sends ".leading" unstuffed; we must not (SPEC 1.11 item 6).
    assert stuff(b".leading\r\n") == b"..leading\r\n.\r\n"
    assert stuff(b".") == b"..\r\n.\r\n"


def test_chunk_boundary_dot() -> None:
    assert stuff(b"a\r\n.b\r\n", [3]) == b"a\r\n..b\r\n.\r\n"
    assert stuff(b"a\r\n.b\r\n", [2]) == b"a\r\n..b\r\n.\r\n"
    assert stuff(b"a\r\n.b\r\n", [1, 2, 3, 4]) == b"a\r\n..b\r\n.\r\n"


def test_bare_lf_dot_is_content() -> None:
    # RFC 1939 lines end in CRLF: a dot after a bare LF is not a dot line.
    assert stuff(b"a\n.\r\n") == b"a\n.\r\n.\r\n"
    assert unstuff(b"a\n.\r\n.\r\n") == (b"a\n.\r\n", b"")


def test_passthrough_returns_the_same_object() -> None:
    chunk = b"no dot in here\r\n" * 100
    encoder = p.BodyEncoder()
    assert encoder.encode(chunk)[0] is chunk
    dotted = b"a.b\r\nc\r\n"
    assert p.BodyEncoder().encode(dotted) == [dotted]  # a dot, but no dot line
    array = bytearray(b"xyz\r\n")
    assert p.BodyEncoder().encode(array)[0] is array
    assert p.BodyEncoder().encode(b"") == []
    decoder = p.BodyDecoder()
    body, pos, finished = decoder.feed(chunk, 0)
    assert body is chunk
    assert (pos, finished) == (len(chunk), False)


def test_memoryview_input_is_accepted() -> None:
    encoder = p.BodyEncoder()
    pieces = encoder.encode(memoryview(b".x\r\n"))
    assert b"".join(bytes(x) for x in pieces) + encoder.end() == b"..x\r\n.\r\n"


@pytest.mark.parametrize(
    ("wire", "strict_body", "lenient_body"),
    [
        (b".x\r\n.\r\n", b"x\r\n", b".x\r\n"),  # an unstuffed dot line
        (b"..\r\n.\r\n", b".\r\n", b".\r\n"),
        (b"a\r\n.\rb\r\n.\r\n", b"a\r\n\rb\r\n", b"a\r\n.\rb\r\n"),
        (b"a\r\n.\n", None, b"a\r\n"),  # ".LF" ends the body only when lenient
        (b"a\n.\r\n", None, b"a\n"),
        (b"a\n..b\n.\n", None, b"a\n.b\n"),
    ],
)
def test_strict_and_lenient_rules(
    wire: bytes, strict_body: bytes | None, lenient_body: bytes
) -> None:
    for cuts in ([], list(range(1, len(wire)))):
        assert unstuff(wire, cuts, strict=False) == (lenient_body, b"")
        if strict_body is not None:
            assert unstuff(wire, cuts) == (strict_body, b"")
        else:
            with pytest.raises(AssertionError, match="never found"):
                unstuff(wire, cuts)


def test_decoder_works_on_a_bytearray_with_an_offset() -> None:
    decoder = p.BodyDecoder()
    data = bytearray(b"XXXX..a\r\n.\r\nnext")
    body, pos, finished = decoder.feed(data, 4)
    assert (body, data[pos:], finished) == (b".a\r\n", b"next", True)
    assert type(body) is bytes


# ------------------------------------------------------------ normalisation


@settings(max_examples=400)
@given(data=st.data(), message=bodies)
def test_normalizer_matches_reference_under_any_split(data: st.DataObject, message: bytes) -> None:
    reference = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if reference and not reference.endswith(b"\r\n"):
        reference += b"\r\n"
    assert p.normalize_newlines(message) == reference
    assert p.wire_size(message) == len(reference)
    normalizer = p.NewlineNormalizer()
    chunks = split_at(message, cuts_for(message, data.draw))
    assert b"".join(normalizer.feed(c) for c in chunks) + normalizer.end() == reference
    # and the normalised form survives stuffing exactly, in both modes
    wire = stuff(reference)
    assert unstuff(wire) == (reference, b"")
    assert unstuff(wire, strict=False) == (reference, b"")


def test_normalizer_keeps_crlf_input_untouched() -> None:
    message = b"Subject: x\r\n\r\nbody\r\n"
    assert p.NewlineNormalizer().feed(message) is message
    assert p.wire_size(message) == len(message)
    assert p.normalize_newlines(b"") == b""
    assert p.wire_size(b"") == 0


# ------------------------------------------------------------ TOP


def reference_top(message: bytes, lines: int) -> bytes:
    if message.startswith(b"\r\n"):
        head, body = b"\r\n", message[2:]
    elif b"\r\n\r\n" in message:
        before, body = message.split(b"\r\n\r\n", 1)
        head = before + b"\r\n\r\n"
    else:
        return message
    end = 0
    for _ in range(lines):
        lf = body.find(b"\n", end)
        if lf < 0:
            return head + body
        end = lf + 1
    return head + body[:end]


top_atoms = [b"H: v\r\n", b"\r\n", b"x", b"\r", b"line\r\n", b".dot\r\n"]


@settings(max_examples=500)
@given(
    data=st.data(),
    message=st.lists(st.sampled_from(top_atoms), max_size=14).map(b"".join),
    lines=st.integers(0, 6),
)
def test_top_cut_matches_reference(data: st.DataObject, message: bytes, lines: int) -> None:
    cutter = p.TopCutter(lines)
    out = b""
    for chunk in split_at(message, cuts_for(message, data.draw)):
        out += bytes(cutter.feed(chunk))
    assert out == reference_top(message, lines)


def test_top_cutter_reports_done_and_ignores_the_rest() -> None:
    cutter = p.TopCutter(1)
    assert cutter.feed(b"A: b\r\n\r\nfirst\r\nsecond\r\n") == b"A: b\r\n\r\nfirst\r\n"
    assert cutter.done
    assert cutter.feed(b"more") == b""
    with pytest.raises(ValueError, match="negative"):
        p.TopCutter(-1)
