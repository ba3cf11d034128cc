"""RETR bodies: client-side decoding and server-side encoding, against baselines.

Groups ``decode-<corpus>`` and ``encode-<corpus>``, for a text message (1 % dot
lines) and an attachment-heavy one (base64, next to no dot lines). Each group
times pop3core and its baselines on the same bytes:

* ``find-pass``: one ``bytes.find(b"\\r\\n.\\r\\n")`` over the whole input, the ceiling;
* ``poplib-lines`` (decode): stdlib poplib's own readline loop over a ``BytesIO``;
* ``per-line-stuffing`` (encode): split into lines, prefix those starting with a
  dot, join.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from _harness import Corpus, Measure, SetupResult
from _sessions import (
    TERMINATOR,
    client_awaiting,
    poplib_longresp,
    poplib_reading,
    server_in_reply,
)
from pop3core import (
    NEED_DATA,
    Connection,
    Data,
    EndOfMultiline,
    Event,
    OkResponse,
    Retr,
)

CORPORA = ("text", "attachment")
Buffer = bytes | bytearray | memoryview


# -------------------------------------------------------------- client side


def client_retr(chunks: list[bytes], client: Connection) -> tuple[int, bool]:
    """Feed the RETR reply chunk by chunk; count the body octets, as a consumer would."""
    received = 0
    ended = False
    for chunk in chunks:
        client.receive_data(chunk)
        while True:
            event = client.next_event()
            if type(event) is Data:
                received += len(event.data)
            elif event is NEED_DATA:
                break
            elif type(event) is EndOfMultiline:
                ended = True
    return received, ended


def client_retr_events(chunks: list[bytes], client: Connection) -> list[Event]:
    events: list[Event] = []
    for chunk in chunks:
        client.receive_data(chunk)
        while (event := client.next_event()) is not NEED_DATA:
            assert isinstance(event, (OkResponse, Data, EndOfMultiline)), event
            events.append(event)
    return events


def client_setup() -> SetupResult:
    return (client_awaiting(Retr(1)),), {}


@pytest.mark.parametrize("name", CORPORA)
def test_decode_pop3core(name: str, corpora: Callable[[str], Corpus], measure: Measure) -> None:
    corpus = corpora(name)
    chunks = corpus.wire_chunks
    events = client_retr_events(chunks, client_awaiting(Retr(1)))
    assert type(events[0]) is OkResponse
    assert type(events[-1]) is EndOfMultiline
    assert b"".join(e.data for e in events[1:-1] if isinstance(e, Data)) == corpus.body

    def run(client: Connection) -> tuple[int, bool]:
        return client_retr(chunks, client)

    result = measure(f"decode-{name}", "pop3core", len(corpus.wire), run, setup=client_setup)
    assert result == (len(corpus.body), True)


@pytest.mark.parametrize("name", CORPORA)
def test_decode_poplib_lines(
    name: str, corpora: Callable[[str], Corpus], measure: Measure
) -> None:
    corpus = corpora(name)
    wire = corpus.wire
    _, lines, _ = poplib_longresp(poplib_reading(wire))
    assert b"\r\n".join(lines) + b"\r\n" == corpus.body

    def setup() -> SetupResult:
        return (poplib_reading(wire),), {}

    result = measure(f"decode-{name}", "poplib-lines", len(wire), poplib_longresp, setup=setup)
    assert len(result[1]) == corpus.lines


@pytest.mark.parametrize("name", CORPORA)
def test_decode_find_pass(name: str, corpora: Callable[[str], Corpus], measure: Measure) -> None:
    corpus = corpora(name)
    wire = corpus.wire
    end = len(wire) - len(TERMINATOR)
    assert wire.find(TERMINATOR) == end
    result = measure(f"decode-{name}", "find-pass", len(wire), wire.find, args=(TERMINATOR,))
    assert result == end


# -------------------------------------------------------------- server side


def server_setup_for(corpus: Corpus) -> Callable[[], SetupResult]:
    status = OkResponse(b"%d octets" % len(corpus.body))

    def setup() -> SetupResult:
        return (server_in_reply(b"RETR 1\r\n", status),), {}

    return setup


def server_send_passthrough(chunks: list[bytes], server: Connection) -> list[Buffer]:
    """Send the body as Data events; collect every piece (to check the output)."""
    out: list[Buffer] = []
    send = server.send_with_data_passthrough
    for chunk in chunks:
        out += send(Data(chunk))
    out += send(EndOfMultiline())
    return out


def server_send_pieces(chunks: list[bytes], server: Connection) -> int:
    """What a writer does: hand each event's pieces to the socket and drop them.

    Returns how many pieces there were.
    """
    pieces = 0
    send = server.send_with_data_passthrough
    for chunk in chunks:
        pieces += len(send(Data(chunk)))
    return pieces + len(send(EndOfMultiline()))


def server_send_joined(chunks: list[bytes], server: Connection) -> int:
    """The same through `Connection.send` (one bytes object per event); returns octets."""
    octets = 0
    send = server.send
    for chunk in chunks:
        octets += len(send(Data(chunk)))
    return octets + len(send(EndOfMultiline()))


def stuff_per_line(body: bytes) -> bytes:
    """The classic server loop: a dot line gets a second dot; then the terminator."""
    lines = [b"." + line if line.startswith(b".") else line for line in body.split(b"\r\n")]
    return b"\r\n".join(lines) + b".\r\n"


def expected_wire(corpus: Corpus) -> bytes:
    return corpus.wire[corpus.wire.index(b"\r\n") + 2 :]


@pytest.mark.parametrize("name", CORPORA)
def test_encode_pop3core(name: str, corpora: Callable[[str], Corpus], measure: Measure) -> None:
    corpus = corpora(name)
    chunks = corpus.body_chunks
    setup = server_setup_for(corpus)
    pieces = server_send_passthrough(chunks, *setup()[0])
    assert b"".join(pieces) == expected_wire(corpus)

    def run(server: Connection) -> int:
        return server_send_pieces(chunks, server)

    result = measure(f"encode-{name}", "pop3core", len(corpus.body), run, setup=setup)
    assert result == len(pieces)


@pytest.mark.parametrize("name", CORPORA)
def test_encode_pop3core_send(
    name: str, corpora: Callable[[str], Corpus], measure: Measure
) -> None:
    corpus = corpora(name)
    chunks = corpus.body_chunks
    setup = server_setup_for(corpus)
    server = setup()[0][0]
    sent = [server.send(Data(chunk)) for chunk in chunks] + [server.send(EndOfMultiline())]
    assert b"".join(sent) == expected_wire(corpus)

    def run(server: Connection) -> int:
        return server_send_joined(chunks, server)

    result = measure(f"encode-{name}", "pop3core-send", len(corpus.body), run, setup=setup)
    assert result == len(expected_wire(corpus))


@pytest.mark.parametrize("name", CORPORA)
def test_encode_per_line_stuffing(
    name: str, corpora: Callable[[str], Corpus], measure: Measure
) -> None:
    corpus = corpora(name)
    body = corpus.body
    assert stuff_per_line(body) == expected_wire(corpus)
    result = measure(
        f"encode-{name}", "per-line-stuffing", len(body), stuff_per_line, args=(body,)
    )
    assert len(result) == len(expected_wire(corpus))


@pytest.mark.parametrize("name", CORPORA)
def test_encode_find_pass(name: str, corpora: Callable[[str], Corpus], measure: Measure) -> None:
    corpus = corpora(name)
    body = corpus.body
    assert body.find(TERMINATOR) == -1
    result = measure(f"encode-{name}", "find-pass", len(body), body.find, args=(TERMINATOR,))
    assert result == -1
