"""Where the time of body decoding and encoding goes: the engine next to its primitives.

Not a pytest file. Run ``.venv/bin/python benchmarks/breakdown.py [MiB]`` (default
64). For the text corpus it times, best of 9: the one-pass ceiling, the search the
engine repeats per dot line (``bytes.find(b"\\r\\n.")`` from hit to hit), the same
search with a compiled regex, the per-chunk copy, then pop3core itself; and prints
a cProfile of one decode.
"""

from __future__ import annotations

import cProfile
import pstats
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _harness import MiB, corpus
from _sessions import TERMINATOR, client_awaiting, server_in_reply
from bench_body import client_retr, server_send_passthrough
from pop3core import OkResponse, Retr

DOT_LINE = b"\r\n."


def best_ms(fn: Callable[[], object], rounds: int = 9) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def find_every(data: bytes, needle: bytes) -> int:
    count = 0
    hit = data.find(needle)
    while hit >= 0:
        count += 1
        hit = data.find(needle, hit + 1)
    return count


def regex_every(data: bytes) -> int:
    return sum(1 for _ in re.finditer(rb"\r\n\.", data))


def copy_chunks(chunks: list[bytes]) -> int:
    total = 0
    for chunk in chunks:
        with memoryview(chunk) as view:
            total += len(b"".join([view[:100], view[100:]]))
    return total


def main(size: int) -> None:
    text = corpus("text", size)
    wire, body = text.wire, text.body
    status = OkResponse(b"%d octets" % len(body))
    rows: list[tuple[str, float]] = [
        ("find-pass: wire.find(b'\\r\\n.\\r\\n')", best_ms(lambda: wire.find(TERMINATOR))),
        ("wire.find(b'\\r\\n.') hit to hit", best_ms(lambda: find_every(wire, DOT_LINE))),
        ("re.finditer(rb'\\r\\n\\.') over the wire", best_ms(lambda: regex_every(wire))),
        ("copy every 64 KiB chunk once (join)", best_ms(lambda: copy_chunks(text.wire_chunks))),
        (
            "pop3core decode (Connection)",
            best_ms(lambda: client_retr(text.wire_chunks, client_awaiting(Retr(1)))),
        ),
        ("find-pass on the body", best_ms(lambda: body.find(TERMINATOR))),
        ("body.find(b'\\r\\n.') hit to hit", best_ms(lambda: find_every(body, DOT_LINE))),
        (
            "pop3core encode (passthrough)",
            best_ms(
                lambda: server_send_passthrough(
                    text.body_chunks, server_in_reply(b"RETR 1\r\n", status)
                )
            ),
        ),
    ]
    print(f"text corpus: {len(wire) / MiB:.1f} MiB on the wire, {text.dot_lines} dot lines")
    for label, ms in rows:
        print(f"  {label:<42} {ms:8.1f} ms  {len(wire) / ms / 1e3:8.0f} MB/s")
    profile = cProfile.Profile()
    profile.runcall(client_retr, text.wire_chunks, client_awaiting(Retr(1)))
    pstats.Stats(profile).sort_stats("tottime").print_stats(8)


if __name__ == "__main__":
    main(int(sys.argv[1]) * MiB if len(sys.argv) > 1 else 64 * MiB)
