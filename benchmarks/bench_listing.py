"""LIST and UIDL replies with many entries, decoded into typed results.

Groups ``list-<entries>`` and ``uidl-<entries>``. pop3core: a client `Connection`
that sent LIST (or UIDL) gets the reply in 64 KiB chunks, and its Data events
are fed as they come to a `ListParser` (or `UidlParser`), which builds the
compact mapping `Client.list()` returns. The baseline is
stdlib poplib's readline loop (``_getlongresp``) followed by what a poplib caller
writes: split each line and convert the fields.
"""

from __future__ import annotations

import poplib
from collections.abc import Callable, Mapping

import pytest

from _harness import Listing, Measure, SetupResult
from _sessions import client_awaiting, poplib_longresp, poplib_reading
from pop3core import NEED_DATA, Command, Connection, Data, List, ListParser, Uidl, UidlParser

Parsed = Mapping[int, int] | Mapping[int, str]


def client_listing(
    chunks: list[bytes], client: Connection, parser: ListParser | UidlParser
) -> Parsed:
    for chunk in chunks:
        client.receive_data(chunk)
        while (event := client.next_event()) is not NEED_DATA:
            if type(event) is Data:
                parser.feed(event.data)
    return parser.finish()


def poplib_list(pop: poplib.POP3) -> dict[int, int]:
    _, lines, _ = poplib_longresp(pop)
    return {int(number): int(size) for number, size in (line.split() for line in lines)}


def poplib_uidl(pop: poplib.POP3) -> dict[int, str]:
    _, lines, _ = poplib_longresp(pop)
    return {int(number): uid.decode("ascii") for number, uid in (line.split() for line in lines)}


def _case(kind: str, listing: Listing) -> tuple[bytes, list[bytes], Parsed]:
    if kind == "list":
        return listing.list_wire, listing.list_chunks, listing.sizes
    return listing.uidl_wire, listing.uidl_chunks, listing.uids


@pytest.mark.parametrize("kind", ["list", "uidl"])
def test_listing_pop3core(kind: str, listing: Listing, measure: Measure) -> None:
    wire, chunks, expected = _case(kind, listing)
    command: Command = List() if kind == "list" else Uidl()
    parser = ListParser if kind == "list" else UidlParser
    assert client_listing(chunks, client_awaiting(command), parser()) == expected

    def setup() -> SetupResult:
        return (client_awaiting(command), parser()), {}

    def run(client: Connection, fresh: ListParser | UidlParser) -> Parsed:
        return client_listing(chunks, client, fresh)

    group = f"{kind}-{listing.entries}"
    result = measure(group, "pop3core", len(wire), run, setup=setup, items=listing.entries)
    assert len(result) == listing.entries


@pytest.mark.parametrize("kind", ["list", "uidl"])
def test_listing_poplib_lines(kind: str, listing: Listing, measure: Measure) -> None:
    wire, _, expected = _case(kind, listing)
    parse: Callable[[poplib.POP3], Parsed] = poplib_list if kind == "list" else poplib_uidl
    assert parse(poplib_reading(wire)) == expected

    def setup() -> SetupResult:
        return (poplib_reading(wire),), {}

    group = f"{kind}-{listing.entries}"
    result = measure(group, "poplib-lines", len(wire), parse, setup=setup, items=listing.entries)
    assert len(result) == listing.entries
