"""Where the time of bench_blocking's figures goes: a plain script, not a benchmark.

    .venv/bin/python benchmarks/loopback_breakdown.py [--quick] [--server thread]

1. The server's side of LIST and UIDL, in memory: a `ServerSession` logged in to
   the listing maildrop answers the command; the time to its bytes to send (what
   the raw-socket rows of ``lo-list-N`` / ``lo-uidl-N`` wait for).
2. One round trip per small message: serial ``RETR`` of small messages straight to
   the server (no proxy), by poplib and by ``Client.retr``; then
   ``Client.retr_many``. Anything well above a few hundred microseconds per message
   is a stall (e.g. Nagle's algorithm against delayed ACKs), not work.
3. cProfile of the client side of ``Client.list()``, ``Client.uidl()``,
   ``Client.retr(1, file)`` of the text corpus, and the drop-in's ``retr``,
   each over loopback against the benchmark server (in a subprocess by default).
"""

from __future__ import annotations

import argparse
import cProfile
import poplib
import pstats
import time
from collections.abc import Callable
from typing import Any, BinaryIO, cast

import pop3core as p
from _harness import MiB, make_listing
from _loopback import (
    HOST,
    LISTING_USER,
    PASSWORD,
    SMALL_USER,
    TIMEOUT,
    Loopback,
    Sink,
    Spec,
    listed_only,
)
from pop3_blocking._client import Client


def server_listing(entries: int) -> None:
    listing = make_listing(entries)
    mailbox = listed_only(listing.sizes, listing.uids)

    def logged_in() -> tuple[p.ServerSession, float]:
        session = p.ServerSession(p.ServerOptions(allow_cleartext=True))
        session.receive_data(b"USER listing\r\nPASS secret\r\n")
        session.next_event()
        session.password_checked(True)
        session.next_event()  # the MaildropRequest
        started = time.perf_counter()
        session.maildrop_opened(mailbox.listing)
        opened = time.perf_counter() - started
        session.data_to_send()
        return session, opened

    print(f"1. server side of LIST/UIDL, {entries} entries (best of 5, in memory)")
    for command in (b"LIST", b"UIDL"):
        best = opened = float("inf")
        octets = 0
        for _ in range(5):
            session, opening = logged_in()
            opened = min(opened, opening)
            started = time.perf_counter()
            session.receive_data(command + b"\r\n")
            session.next_event()
            octets = len(b"".join(session.data_to_send()))
            best = min(best, time.perf_counter() - started)
        print(
            f"   {command.decode()}: {best * 1e3:.1f} ms to the bytes to send ({octets} octets); "
            f"maildrop_opened at login: {opened * 1e3:.1f} ms"
        )


def round_trips(loopback: Loopback, count: int) -> None:
    print(f"2. {count} small messages straight to the server, time per message")
    pop = poplib.POP3(HOST, loopback.port, timeout=TIMEOUT)
    pop.user(SMALL_USER)
    pop.pass_(PASSWORD)
    started = time.perf_counter()
    for n in range(1, count + 1):
        pop.retr(n)
    print(f"   poplib retr one at a time:  {(time.perf_counter() - started) / count * 1e3:.2f} ms")
    pop.quit()
    with client(loopback.port, SMALL_USER) as session:
        started = time.perf_counter()
        for n in range(1, count + 1):
            session.retr(n)
        serial = (time.perf_counter() - started) / count
        print(f"   Client.retr one at a time:  {serial * 1e3:.2f} ms")
        started = time.perf_counter()
        for _ in session.retr_many(range(1, count + 1)):
            pass
        pipelined = (time.perf_counter() - started) / count
        print(f"   Client.retr_many:           {pipelined * 1e3:.2f} ms")


def client(port: int, user: str) -> Client:
    session = Client(HOST, port, tls="none", connect_timeout=TIMEOUT, timeout=TIMEOUT)
    session.login(user, PASSWORD, method="USER", allow_cleartext=True)
    return session


def profile(label: str, call: Callable[[], Any]) -> None:
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    call()
    profiler.disable()
    print(f"--- {label}: {(time.perf_counter() - started) * 1e3:.1f} ms under cProfile")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(8)


def client_profiles(loopback: Loopback) -> None:
    print("3. client side, over loopback")
    with client(loopback.port, LISTING_USER) as session:
        session.list()  # warm up
        profile("Client.list()", session.list)
        profile("Client.uidl()", session.uidl)
    with client(loopback.port, "text") as session:
        profile("Client.retr(1, file), text", lambda: session.retr(1, cast(BinaryIO, Sink())))
    try:
        from pop3_blocking.poplib import POP3
    except ImportError:
        print("--- pop3_blocking.poplib is not importable")
        return
    dropin = POP3(HOST, loopback.port, timeout=TIMEOUT)
    dropin.user("text")
    dropin.pass_(PASSWORD)
    profile("pop3_blocking.poplib.POP3.retr(1), text", lambda: dropin.retr(1))
    dropin.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 MiB and 20,000 entries")
    parser.add_argument("--server", choices=["process", "thread"], default="process")
    args = parser.parse_args()
    size, entries = (8 * MiB, 20_000) if args.quick else (64 * MiB, 100_000)
    server_listing(entries)
    with Loopback(Spec(size, entries, 200, 0.005), mode=args.server) as loopback:
        round_trips(loopback, 50)
        client_profiles(loopback)


if __name__ == "__main__":
    main()
