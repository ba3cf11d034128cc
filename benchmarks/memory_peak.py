"""Peak memory of our server and our client streaming one huge message, each in a process.

The server (``memory_peak.py server SIZE``) serves one message generated as it is
read from a repeated 256 KiB block of the text corpus (so the store itself holds
256 KiB), with our threaded `Server`. The client (``memory_peak.py client PORT
SIZE``) logs in, streams ``RETR 1`` with ``Client.retr(1, file)`` into a
discarding writer, and checks the octet count and the last octets. Each process
reports its peak RSS (``VmHWM``) before and after the transfer; the growth is the
difference. `bench_blocking.test_memory_peak` runs this and puts the growths in the
summary (goal: < 64 MiB each).

Standalone::

    .venv/bin/python benchmarks/memory_peak.py [MiB]     # default 1024
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from _harness import MiB, make_text_message
from _loopback import HOST, PASSWORD, TIMEOUT, _read_line, repeated, start_server, stop

BLOCK_SIZE = 256 * 1024
USER = "big"


def peak_rss() -> int:
    """This process's peak resident set size so far, in octets."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def block() -> bytes:
    """A 256 KiB stretch of the text corpus, whole lines (1 % of them start with a dot)."""
    text = make_text_message(BLOCK_SIZE + 4096)
    body = text[text.index(b"\r\n\r\n") + 4 :]
    return body[: body.rindex(b"\r\n", 0, BLOCK_SIZE) + 2]


def message_size(size: int) -> tuple[bytes, int, int]:
    """The block, how many times it repeats, and the message's exact size (<= `size`)."""
    data = block()
    count = max(1, size // len(data))
    return data, count, len(data) * count


# ------------------------------------------------------------------ the two sides


def serve(size: int) -> None:
    """The server process: report the port and the peak, then a peak per ``report``."""
    data, count, _ = message_size(size)
    server = start_server({USER: repeated(data, count)})
    try:
        print(json.dumps({"port": server.port, "peak": peak_rss()}), flush=True)
        for line in sys.stdin:
            if line.strip() == "report":
                print(json.dumps({"peak": peak_rss()}), flush=True)
    finally:
        server.shutdown()


class TailSink:
    """A discarding writer that counts octets and keeps the last few."""

    def __init__(self) -> None:
        self.octets = 0
        self.tail = b""

    def write(self, data: bytes | bytearray | memoryview) -> int:
        n = len(data)
        self.octets += n
        self.tail = (self.tail + bytes(data[-64:]))[-64:]
        return n


def fetch(port: int, size: int) -> None:
    """The client process: log in, stream the message, report peaks and octets."""
    from pop3_blocking._client import Client

    data, _, expected = message_size(size)
    before = peak_rss()
    sink = TailSink()
    with Client(HOST, port, tls="none", connect_timeout=TIMEOUT, timeout=TIMEOUT) as client:
        client.login(USER, PASSWORD, method="USER", allow_cleartext=True)
        started = time.perf_counter()
        octets = client.retr(1, cast(BinaryIO, sink))
        seconds = time.perf_counter() - started
    report = {
        "before": before,
        "after": peak_rss(),
        "octets": octets,
        "written": sink.octets,
        "expected": expected,
        "tail_ok": sink.tail == data[-64:],
        "seconds": seconds,
    }
    print(json.dumps(report), flush=True)


# ------------------------------------------------------------------ orchestration


@dataclass(frozen=True)
class Report:
    size: int  # the message's octets
    octets: int  # what the client received
    seconds: float  # the client's RETR
    client_before: int
    client_after: int
    server_before: int
    server_after: int

    @property
    def client_growth(self) -> int:
        return self.client_after - self.client_before

    @property
    def server_growth(self) -> int:
        return self.server_after - self.server_before


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(Path(__file__)), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent,
    )


def measure(size: int, timeout: float = 300.0) -> Report:
    """Run a server process and a client process; return what they report."""
    server = _spawn("server", str(size))
    try:
        ready = json.loads(_read_line(server, 60))
        client = _spawn("client", str(ready["port"]), str(size))
        try:
            result: dict[str, Any] = json.loads(_read_line(client, timeout))
        finally:
            stop(client)
        if client.returncode:
            raise RuntimeError(f"the client process failed (exit {client.returncode})")
        assert server.stdin is not None
        server.stdin.write("report\n")
        server.stdin.flush()
        after = json.loads(_read_line(server, 30))
    finally:
        stop(server)
    if not result["tail_ok"] or not result["octets"] == result["written"] == result["expected"]:
        raise AssertionError(f"the client did not get the message intact: {result}")
    return Report(
        size=result["expected"],
        octets=result["octets"],
        seconds=result["seconds"],
        client_before=result["before"],
        client_after=result["after"],
        server_before=ready["peak"],
        server_after=after["peak"],
    )


def main(argv: list[str]) -> None:
    if argv and argv[0] == "server":
        serve(int(argv[1]))
    elif argv and argv[0] == "client":
        fetch(int(argv[1]), int(argv[2]))
    else:
        size = int(argv[0]) * MiB if argv else 1024 * MiB
        report = measure(size)
        print(
            f"{report.size / MiB:.0f} MiB streamed in {report.seconds:.2f} s "
            f"({report.size / report.seconds / 1e6:.0f} MB/s)"
        )
        for side, before, after in (
            ("client", report.client_before, report.client_after),
            ("server", report.server_before, report.server_after),
        ):
            print(
                f"{side}: peak RSS {before / MiB:.1f} MiB before, {after / MiB:.1f} MiB after: "
                f"growth {(after - before) / MiB:.1f} MiB (goal < 64 MiB)"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
