"""Many idle connections held by the async server: its memory, and a newcomer's wait.

The server is ``python -m pop3_anyio serve`` (a Maildir, a passwd-file) in a
process of its own, on asyncio and on trio. The benchmark opens N idle
connections to it (each reads its greeting, then says nothing: sessions not
logged in, as a flood or a crowd of slow clients leaves them), then measures:

* the server's resident memory (``VmRSS``) before the crowd and with it, and
  so the memory per idle connection; the goal is a total well under 1 GiB
  for 10,000 (recorded as a limit: < 1 GiB);
* the time a new client needs to connect, log in (USER/PASS), RETR a 64 KiB
  message and QUIT, with the crowd in place, beside the same on the same
  server without it (measured first, in the same run): the ratio says what
  the crowd costs a real user. It must also simply work (the server keeps
  serving).

N is 10,000 (quick: 10,000 too; the run takes seconds, not minutes).
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import pop3core as p
from _harness import MiB, Settings, add_note, record_limit

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
IDLE = 10_000
FETCHES = 30
MESSAGE_LINES = 900  # about 64 KiB
PASSWORD = "newcomer-pw"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


@dataclass
class ServerProcess:
    backend: str
    port: int
    process: subprocess.Popen[str]


def _seed(home: Path) -> tuple[str, Path]:
    maildir = home / "alice" / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    lines = b"".join(b"%04d " % i + b"y" * 66 + b"\n" for i in range(MESSAGE_LINES))
    (maildir / "new" / "1700000000.M1P1.bench").write_bytes(b"Subject: newcomer\n\n" + lines)
    users = home / "users"
    entry = p.PasswdEntry("alice", p.Credential.from_password(PASSWORD))
    users.write_text(p.format_passwd_line(entry) + "\n")
    return str(home / "{user}" / "Maildir"), users


@pytest.fixture(params=["asyncio", "trio"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    template, users = _seed(tmp_path)
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "pop3_anyio", "serve", "--maildir", template, "--users",
         str(users), "--listen", f"{HOST}:{port}", "--backend", request.param,
         "--max-connections", str(IDLE + 100), "--max-connections-per-address",
         str(IDLE + 100), "--auth-failure-delay", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT / "src")),
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("listening on"), line + (process.stderr.read() or "")
        yield ServerProcess(request.param, port, process)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def _read_line(sock: socket.socket, buffer: bytearray) -> bytes:
    while b"\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        buffer += data
    line, _, rest = bytes(buffer).partition(b"\r\n")
    buffer[:] = rest
    return line


def _fetch(port: int) -> float:
    """A newcomer's whole session; the seconds it took. Checks the message."""
    started = time.perf_counter()
    with socket.create_connection((HOST, port), timeout=30) as sock:
        buffer = bytearray()
        assert _read_line(sock, buffer).startswith(b"+OK")
        sock.sendall(b"USER alice\r\nPASS " + PASSWORD.encode() + b"\r\nRETR 1\r\n")
        assert _read_line(sock, buffer).startswith(b"+OK")
        assert _read_line(sock, buffer).startswith(b"+OK"), "login failed"
        assert _read_line(sock, buffer).startswith(b"+OK")
        octets = 0
        while (line := _read_line(sock, buffer)) != b".":
            octets += len(line) + 2
        sock.sendall(b"QUIT\r\n")
        assert _read_line(sock, buffer).startswith(b"+OK")
    took = time.perf_counter() - started
    assert octets > 64_000
    return took


def _crowd(port: int, count: int) -> list[socket.socket]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = count + 256
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    sockets = []
    for _ in range(count):
        sock = socket.create_connection((HOST, port), timeout=30)
        sockets.append(sock)
    for sock in sockets:  # every one greeted: the server holds a session for it
        assert sock.recv(512).startswith(b"+OK")
    return sockets


def test_idle_connections(server: ServerProcess, settings: Settings) -> None:
    pid = server.process.pid
    for _ in range(3):  # warm up (imports, the first TLS-free session, the thread pool)
        _fetch(server.port)
    alone = [_fetch(server.port) for _ in range(FETCHES)]
    before = _rss(pid)
    started = time.perf_counter()
    crowd = _crowd(server.port, IDLE)
    opened = time.perf_counter() - started
    try:
        time.sleep(0.5)  # let the server settle
        during = _rss(pid)
        crowded = [_fetch(server.port) for _ in range(FETCHES)]
        still = sum(1 for sock in crowd[:100] if _alive(sock))
    finally:
        for sock in crowd:
            sock.close()
    growth = during - before
    per = growth / IDLE
    name = f"idle-{IDLE}-{server.backend}"
    record_limit(
        f"{name}: server RSS with {IDLE} idle connections",
        during / MiB,
        1024,
        "MiB",
        f"{before / MiB:.0f} MiB before, {per / 1024:.1f} KiB per connection; "
        f"opened in {opened:.1f} s",
    )
    median_alone, median_crowded = statistics.median(alone), statistics.median(crowded)
    add_note(
        f"{name}: a newcomer's session (connect, USER/PASS, RETR 64 KiB, QUIT): "
        f"{median_alone * 1e3:.1f} ms alone, {median_crowded * 1e3:.1f} ms beside {IDLE} idle "
        f"connections (median of {FETCHES}; best {min(alone) * 1e3:.1f} / "
        f"{min(crowded) * 1e3:.1f} ms; ratio {median_alone / median_crowded:.2f}x)"
    )
    assert still == 100, "idle sessions were closed (none should be: the limit is above N)"
    assert during < 1024 * MiB


def _alive(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
