"""POP3 servers side by side in one run: Dovecot, our blocking server, our anyio server.

Every server serves the same LF-stored Maildirs (delivered into ``new/`` as mail
delivery writes them) and the same passwd-file (`_servers.Workspace`), each as a
process of its own on 127.0.0.1, started by this module and stopped by PID at
its end (`SERVERS` is the table of them). The figures (issue 13):

* ``srv-retr-<corpus>-<plain|tls>``: ``RETR 1`` of the `_harness` corpus (64 MiB;
  quick 8 MiB), text (1 % dot-led lines) or base64, on the plain port or the
  implicit TLS one, read by a client that costs nothing (`RawSession`: one
  ``recv_into`` buffer until the terminator). USER/PASS happen in each round's
  untimed setup; only the RETR is timed.
* ``srv-poll-<N>``: the leave-on-server poll of an N-message Maildir (100,000;
  quick 10,000): connect, USER, PASS, UIDL to the end, QUIT, all timed; and
  ``srv-poll-<N>-uidl``, the UIDL reply alone within those same sessions.
* ``srv-sessions-c50``: full sessions (connect, USER, PASS, STAT, QUIT, the
  server's close) per second, 50 concurrent clients each its own user, driven by
  `LoadGenerator` worker processes; Dovecot default, tuned (``service pop3-login
  { service_count = 0 }``) and with its pop3 processes reused too, and the
  generator's own ceiling against a server that does no work. In the summary
  table its "ms" column is the time per 1,000 sessions (the ratios: rate ratios).
* memory (not timed): the RSS (and PSS) growth of the server's processes, summed,
  per idle logged-in session and per active RETR (a client that stopped reading).

A server that cannot start fails the run (Dovecot only skips when peers are
optional, outside CI). Goals: `add_goal` (the summary says met or MISSED; a missed
goal fails nothing).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import pytest

from _harness import (
    _RECORDS,
    Corpus,
    Measure,
    MiB,
    Record,
    Settings,
    SetupResult,
    add_goal,
    add_note,
    corpus,
)
from _servers import (
    LoadGenerator,
    LoadResult,
    MaildirWriter,
    Memory,
    RawSession,
    Running,
    Unavailable,
    Workspace,
    login_retrying,
    make_workspace,
    naming,
    settled_memory,
    small_pool,
    start_dovecot,
    start_ours,
    tls_description,
    trivial_server,
    write_passwd,
)

RAW_BUFFER = 256 * 1024  # the raw reader's recv_into buffer
CORPORA = ("text", "attachment")
POLL_USER = "poll"
SESSION_CLIENTS = 50
SESSION_USERS = tuple(f"s{n:02d}" for n in range(1, SESSION_CLIENTS + 1))
SESSION_MESSAGES = 10  # in each session user's Maildir (STAT lists them)
WORKERS_ENV = "POP3_BENCH_LOADGEN_WORKERS"
REQUIRE_PEERS = os.environ.get("POP3_REQUIRE_PEERS") == "1"

DOVECOT = "dovecot"
DOVECOT_TUNED = "dovecot-tuned"  # login processes reused (the "tuned")
DOVECOT_REUSE = "dovecot-reuse"  # login and pop3 processes reused
CEILING = "loadgen-ceiling"


@dataclass(frozen=True)
class ServerEntry:
    """One server of the table: how to start it, and which figures it is measured in."""

    name: str
    kind: str  # "dovecot" or "ours"
    module: str = ""  # ours: python -m <module> serve
    extra: tuple[str, ...] = ()  # ours: options after the common ones
    tuning: str = ""  # dovecot: configuration added to the common one
    figures: frozenset[str] = frozenset({"retr", "poll", "sessions", "memory"})


LOGIN_REUSED = "service pop3-login {\n  service_count = 0\n}\n"
# pop3 processes reused too; auth's client_limit as Dovecot asks for it then.
POP3_REUSED = "service pop3 {\n  service_count = 0\n}\nservice auth {\n  client_limit = 1200\n}\n"
SERVERS: tuple[ServerEntry, ...] = (
    ServerEntry(DOVECOT, "dovecot"),
    ServerEntry(DOVECOT_TUNED, "dovecot", tuning=LOGIN_REUSED, figures=frozenset({"sessions"})),
    ServerEntry(
        DOVECOT_REUSE,
        "dovecot",
        tuning=LOGIN_REUSED + POP3_REUSED,
        figures=frozenset({"sessions"}),
    ),
    ServerEntry("blocking", "ours", module="pop3_blocking"),
    ServerEntry("anyio-asyncio", "ours", module="pop3_anyio", extra=("--backend", "asyncio")),
    ServerEntry("anyio-trio", "ours", module="pop3_anyio", extra=("--backend", "trio")),
)
OURS = tuple(s.name for s in SERVERS if s.kind == "ours")


def serving(figure: str) -> list[str]:
    return [s.name for s in SERVERS if figure in s.figures]


# ------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Sizes:
    poll_messages: int
    session_rounds: int
    session_seconds: float
    idle_sessions: int
    active_retrs: int


def sizes_for(settings: Settings) -> Sizes:
    if settings.quick:
        return Sizes(10_000, session_rounds=3, session_seconds=2.0, idle_sessions=50,
                     active_retrs=4)  # fmt: skip
    return Sizes(100_000, session_rounds=5, session_seconds=5.0, idle_sessions=50, active_retrs=8)


def loadgen_workers() -> int:
    return int(os.environ.get(WORKERS_ENV, "0")) or max(2, os.cpu_count() or 2)


# ------------------------------------------------------------ the figures

# figure -> server -> (best, median), for the side-by-side table in the summary.
Cell = tuple[float, float]
FIGURES: dict[str, dict[str, Cell]] = {}
MEMORY: dict[str, dict[str, tuple[float, float]]] = {}  # figure -> server -> (RSS, PSS) octets
FIGURE_UNITS: dict[str, tuple[str, bool]] = {}  # figure -> (unit, higher is better)
SESSION_DETAILS: dict[str, str] = {}


def record_figure(figure: str, unit: str, higher_better: bool, server: str, cell: Cell) -> None:
    FIGURE_UNITS[figure] = (unit, higher_better)
    FIGURES.setdefault(figure, {})[server] = cell


def last_stats(measure: Measure) -> Cell | None:
    metadata = getattr(measure.benchmark, "stats", None)
    if not metadata:  # --benchmark-disable
        return None
    return metadata.stats.min, metadata.stats.median


# ------------------------------------------------------------- the fleet


@dataclass
class Fleet:
    """The workspace and every server of `SERVERS` that could be started."""

    workspace: Workspace
    sizes: Sizes
    running: dict[str, Running] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # name -> why not running

    def server(self, name: str) -> Running:
        """The running server, or skip (Dovecot, when peers are optional) / fail."""
        if name in self.running:
            return self.running[name]
        entry = next(s for s in SERVERS if s.name == name)
        why = self.missing.get(name, "not started")
        if entry.kind == "dovecot" and not REQUIRE_PEERS:
            pytest.skip(f"{name}: {why}")
        pytest.fail(f"{name} is required but did not start: {why}")


def fill_maildirs(workspace: Workspace, sizes: Sizes, message_size: int) -> None:
    """The users and their Maildirs, LF-stored, delivered into new/."""
    mail = workspace.mail_user
    writer = MaildirWriter(mail.pw_uid, mail.pw_gid)
    memory_users = [f"m{n:02d}" for n in range(1, sizes.active_retrs + 1)]
    users = [*CORPORA, POLL_USER, *SESSION_USERS, *memory_users]
    write_passwd(workspace, users)
    for name in CORPORA:
        maildir = writer.maildir(workspace.maildir(name))
        path = writer.deliver(maildir, corpus(name, message_size).body)
        if name == "text":
            for user in memory_users:  # the same file, for concurrent RETRs
                writer.link(writer.maildir(workspace.maildir(user)), path)
    pool = small_pool()
    poll = writer.maildir(workspace.maildir(POLL_USER))
    for n in range(sizes.poll_messages):
        writer.deliver(poll, pool[n % len(pool)])
    for i, user in enumerate(SESSION_USERS):
        maildir = writer.maildir(workspace.maildir(user))
        for n in range(SESSION_MESSAGES):
            writer.deliver(maildir, pool[(i * SESSION_MESSAGES + n) % len(pool)])


def start_entry(entry: ServerEntry, workspace: Workspace, instance: str = "") -> Running:
    """Start `entry`; `instance` names a second instance of it (its own state directory)."""
    name = entry.name + instance
    if entry.kind == "dovecot":
        return start_dovecot(workspace, name, tuning=entry.tuning)
    return start_ours(workspace, name, entry.module, entry.extra)


def start_into(fleet: Fleet, entry: ServerEntry) -> None:
    """Start `entry`, or note why it is not running (Dovecot unavailable); else raise."""
    try:
        fleet.running[entry.name] = start_entry(entry, fleet.workspace)
    except Unavailable as exc:
        fleet.missing[entry.name] = str(exc)


@pytest.fixture(scope="module")
def fleet(settings: Settings) -> Iterator[Fleet]:
    sizes = sizes_for(settings)
    try:
        workspace = make_workspace()
    except Unavailable as exc:
        if REQUIRE_PEERS:
            pytest.fail(f"server benchmarks: {exc}")
        pytest.skip(f"server benchmarks: {exc}")
    fleet = Fleet(workspace, sizes)
    try:
        began = time.monotonic()
        fill_maildirs(workspace, sizes, settings.message_size)
        filled = time.monotonic() - began
        for entry in SERVERS:
            start_into(fleet, entry)
        describe(fleet, filled)
        yield fleet
    finally:
        try:
            for running in fleet.running.values():
                running.stop()
            report_logs(fleet)
        finally:
            workspace.close()
        write_side_by_side(fleet)


def describe(fleet: Fleet, filled: float) -> None:
    sizes = fleet.sizes
    add_note(
        f"servers (bench_servers): Maildirs LF-stored in new/, names as {naming()} delivers "
        f"them; poll Maildir "
        f"{sizes.poll_messages:,} messages of 1-4 KB; {SESSION_CLIENTS} session users with "
        f"{SESSION_MESSAGES} each; written in {filled:.1f} s; one passwd-file ({{PLAIN}})"
    )
    context = fleet.workspace.client_context()
    for name, running in fleet.running.items():
        cipher = tls_description(running.tls_port, context)
        add_note(f"  {name:<14} {running.detail}; implicit TLS: {cipher}")
    for entry in SERVERS:
        if entry.name in fleet.missing:
            add_note(f"  {entry.name:<14} NOT RUNNING: {fleet.missing[entry.name]}")


def report_logs(fleet: Fleet) -> None:
    """Warnings and errors the servers logged: worth a look (none expected)."""
    for name, running in fleet.running.items():
        lines = [
            line
            for line in running.log().splitlines()
            if any(word in line for word in ("Warning", "Error", "Fatal", "WARNING", "ERROR"))
            and "Killed with signal 15" not in line  # our own stop
        ]
        if lines:
            add_note(f"  {name} logged {len(lines)} warnings/errors, the first: {lines[0][:160]}")


# ------------------------------------------------------------ sessions


class Sessions:
    """A fresh logged-in session per round (in the untimed setup); the last one closed."""

    def __init__(self, opener: Callable[[], RawSession]) -> None:
        self.opener = opener
        self.current: RawSession | None = None

    def open(self) -> RawSession:
        self.close()
        self.current = self.opener()
        return self.current

    def setup(self) -> SetupResult:
        return (self.open(),), {}

    def close(self) -> None:
        current, self.current = self.current, None
        if current is not None:
            current.quit()

    def __enter__(self) -> Sessions:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def after_status(wire: bytes | bytearray) -> bytes:
    return bytes(wire[wire.index(b"\r\n") + 2 :])


# ------------------------------------------------------------------ RETR

RETR_CASES = [
    (name, tls, server) for name in CORPORA for tls in (False, True) for server in serving("retr")
]


@pytest.mark.parametrize(
    "case", RETR_CASES, ids=[f"{n}-{'tls' if t else 'plain'}-{s}" for n, t, s in RETR_CASES]
)
def test_retr(
    case: tuple[str, bool, str], fleet: Fleet, corpora: Callable[[str], Corpus], measure: Measure
) -> None:
    name, tls, server = case
    running = fleet.server(server)
    corpus_ = corpora(name)
    mode = "tls" if tls else "plain"
    group = f"srv-retr-{name}-{mode}"
    for ours in OURS:
        add_goal(group, ours, DOVECOT, 1.5)
    context = fleet.workspace.client_context() if tls else None
    port = running.tls_port if tls else running.port
    buffer = bytearray(RAW_BUFFER)

    def retr(raw: RawSession) -> int:
        return raw.multiline(b"RETR 1", buffer)

    with Sessions(lambda: login_retrying(port, name, context=context)) as sessions:
        raw = sessions.open()
        listed = raw.command(b"LIST 1").split()
        assert int(listed[2]) == len(corpus_.body), f"{server} lists {listed!r}"
        wire = bytearray()
        raw.multiline(b"RETR 1", buffer, keep=wire)
        assert wire.startswith(b"+OK")
        assert after_status(wire) == after_status(corpus_.wire), f"{server} served other octets"
        del wire
        measure(group, server, len(corpus_.wire), retr, setup=sessions.setup)
    stats = last_stats(measure)
    if stats is not None:
        size = len(corpus_.wire)
        label = f"RETR {name} {len(corpus_.body) / MiB:.0f} MiB, {mode}"
        record_figure(label, "MB/s", True, server, (size / stats[0] / 1e6, size / stats[1] / 1e6))


# ------------------------------------------------------------------ poll


@dataclass
class Poll:
    """One leave-on-server poll: the whole session, and the UIDL reply within it."""

    port: int
    buffer: bytearray = field(default_factory=lambda: bytearray(RAW_BUFFER))
    uidl_times: list[float] = field(default_factory=list)
    uidl_octets: int = 0
    last: RawSession | None = None

    def setup(self) -> SetupResult:
        self.finish()
        return (), {}

    def finish(self) -> None:
        """Wait for the last session's close (untimed): its maildrop is released then."""
        last, self.last = self.last, None
        if last is not None:
            try:
                last.wait_closed()
            finally:
                last.close()

    def session(self, keep: bytearray | None = None) -> int:
        raw = RawSession(self.port)
        self.last = raw
        raw.login(POLL_USER)
        started = time.perf_counter()
        octets = raw.multiline(b"UIDL", self.buffer, keep)
        self.uidl_times.append(time.perf_counter() - started)
        raw.command(b"QUIT")
        self.uidl_octets = octets
        return octets


@pytest.mark.parametrize("server", serving("poll"))
def test_poll(server: str, fleet: Fleet, settings: Settings, measure: Measure) -> None:
    running = fleet.server(server)
    count = fleet.sizes.poll_messages
    group = f"srv-poll-{count}"
    for ours in OURS:
        add_goal(group, ours, DOVECOT, 2.0)
    poll = Poll(running.port)
    try:
        # The first poll moves new/ to cur/ (whoever comes first) and builds the
        # server's index or caches: untimed, but shown.
        began = time.perf_counter()
        reply = bytearray()
        poll.session(keep=reply)
        first = time.perf_counter() - began
        poll.finish()
        lines = after_status(reply).split(b"\r\n")
        assert lines[-2:] == [b".", b""], f"{server}: the UIDL reply does not end with ."
        uids = [line.split()[1] for line in lines[:-2]]
        assert len(uids) == count, f"{server} lists {len(uids)} of {count} messages"
        assert len(set(uids)) == count, f"{server} repeats UIDLs"
        del reply, lines, uids
        poll.uidl_times.clear()
        measure(group, server, poll.uidl_octets, poll.session, setup=poll.setup, items=count)
    finally:
        poll.finish()
    stats = last_stats(measure)
    if stats is None:
        return
    timed = poll.uidl_times[settings.warmup_rounds :]
    uidl = (min(timed), statistics.median(timed))
    _RECORDS.append(Record(f"{group}-uidl", server, poll.uidl_octets, *uidl, len(timed), count))
    record_figure(f"poll {count:,}: whole session", "s", False, server, stats)
    record_figure(f"poll {count:,}: UIDL reply alone", "ms", False, server,
                  (uidl[0] * 1e3, uidl[1] * 1e3))  # fmt: skip
    SESSION_DETAILS[f"poll-{server}"] = (
        f"{server}: first poll {first:.2f} s (untimed), UIDL reply {poll.uidl_octets:,} octets"
    )


# -------------------------------------------------------------- sessions


@pytest.fixture(scope="module")
def loadgen(fleet: Fleet) -> Iterator[LoadGenerator]:
    generator = LoadGenerator(SESSION_USERS, loadgen_workers())
    try:
        yield generator
    finally:
        generator.close()


SESSION_GROUP = f"srv-sessions-c{SESSION_CLIENTS}"
SESSIONS_FIGURE = f"sessions/s, {SESSION_CLIENTS} clients"


def run_sessions(generator: LoadGenerator, port: int, sizes: Sizes) -> list[LoadResult]:
    generator.run(port, min(1.0, sizes.session_seconds))  # warm-up, not counted
    results = []
    for _ in range(sizes.session_rounds):
        time.sleep(0.2)
        results.append(generator.run(port, sizes.session_seconds))
    return results


def record_sessions(name: str, results: list[LoadResult]) -> None:
    rates = [r.rate for r in results]
    best, median = max(rates), statistics.median(rates)
    # The summary table's "ms" is the time per 1,000 sessions, so its ratios are rate ratios.
    _RECORDS.append(Record(SESSION_GROUP, name, 0, 1000 / best, 1000 / median, len(results)))
    record_figure(SESSIONS_FIGURE, "/s", True, name, (best, median))
    errors = sum(r.errors for r in results)
    p50 = statistics.median(r.p50 for r in results if r.p50 is not None)
    detail = f"{name}: session latency p50 {p50 * 1e3:.1f} ms"
    if errors:
        firsts = [e for r in results for e in r.first_errors][:2]
        detail += f"; {errors} FAILED sessions, e.g. {firsts}"
    SESSION_DETAILS[name] = detail


@pytest.mark.parametrize("server", [CEILING, *serving("sessions")])
def test_sessions(server: str, fleet: Fleet, loadgen: LoadGenerator) -> None:
    for ours in OURS:
        add_goal(SESSION_GROUP, ours, DOVECOT_TUNED, 1.5)
        add_goal(SESSION_GROUP, ours, DOVECOT_REUSE, 1.5)
    if server == CEILING:
        with trivial_server(processes=2) as port:
            results = run_sessions(loadgen, port, fleet.sizes)
    else:
        results = run_sessions(loadgen, fleet.server(server).port, fleet.sizes)
    assert all(r.sessions > 0 for r in results), f"{server}: no session completed"
    record_sessions(server, results)


# ---------------------------------------------------------------- memory


def open_sessions(port: int, users: list[str], **kwargs: Any) -> list[RawSession]:
    opened: list[RawSession] = []
    try:
        opened.extend(login_retrying(port, user, **kwargs) for user in users)
    except BaseException:
        for raw in opened:
            raw.close()
        raise
    return opened


@pytest.mark.parametrize("server", serving("memory"))
def test_memory(server: str, fleet: Fleet, corpora: Callable[[str], Corpus]) -> None:
    fleet.server(server)  # skips or fails as the other figures do when it is not running
    entry = next(s for s in SERVERS if s.name == server)
    # A fresh instance: in a Python server that served thousands of sessions, new
    # sessions fit in memory freed by the old ones, and would seem to cost nothing.
    running = start_entry(entry, fleet.workspace, "-memory")
    try:
        measure_memory(server, running, fleet.sizes, len(corpora("text").body))
    finally:
        running.stop()


def measure_memory(server: str, running: Running, sizes: Sizes, size: int) -> None:
    idle_users = list(SESSION_USERS[: sizes.idle_sessions])
    at_rest = settled_memory(running.pid)
    # Warm every code path with two sessions, not all: the measured ones would
    # otherwise fit in the memory those freed.
    for raw in open_sessions(running.port, idle_users[:2]):
        raw.quit()
    base = settled_memory(running.pid)
    sessions = open_sessions(running.port, idle_users)
    try:
        idle = settled_memory(running.pid)
    finally:
        for raw in sessions:
            raw.quit()
    per_idle = per_session(idle, base, len(idle_users))

    # Active RETRs: each client reads the first MiB, then stops reading; its small
    # receive buffer keeps the server mid-message (the kernel holds the rest).
    active_users = [f"m{n:02d}" for n in range(1, sizes.active_retrs + 1)]
    sessions = open_sessions(running.port, active_users, rcvbuf=64 * 1024)
    try:
        base = settled_memory(running.pid)
        for raw in sessions:
            raw.sock.sendall(b"RETR 1\r\n")
        for raw in sessions:
            got = 0
            while got < min(MiB, size // 4):
                got += len(raw.sock.recv(65536))
        active = settled_memory(running.pid)
    finally:
        for raw in sessions:
            raw.close()
    per_retr = per_session(active, base, len(active_users))
    MEMORY.setdefault(f"memory per idle session ({len(idle_users)})", {})[server] = per_idle
    MEMORY.setdefault(f"memory per active RETR ({len(active_users)})", {})[server] = per_retr
    SESSION_DETAILS[f"memory-{server}"] = (
        f"{server}: at rest (fresh instance) {at_rest.processes} processes, "
        f"{at_rest.rss / MiB:.1f} MiB RSS, {at_rest.pss / MiB:.1f} MiB PSS"
    )


def per_session(after: Memory, before: Memory, count: int) -> tuple[float, float]:
    return (after.rss - before.rss) / count, (after.pss - before.pss) / count


# ------------------------------------------------------------ the summary


def _ratio(ours: Cell, base: Cell, higher_better: bool) -> str:
    if higher_better:
        return f"{ours[0] / base[0]:.2f}x ({ours[1] / base[1]:.2f}x)"
    return f"{base[0] / ours[0]:.2f}x ({base[1] / ours[1]:.2f}x)"


def _cell(value: Cell, unit: str) -> str:
    digits = 0 if unit in ("MB/s", "/s") else 1 if unit == "ms" else 2
    return f"{value[0]:.{digits}f} ({value[1]:.{digits}f})"


def _kib(octets: float) -> str:
    kib = octets / 1024
    return f"{kib:.0f}" if abs(kib) >= 10 else f"{kib:.1f}"


def write_side_by_side(fleet: Fleet) -> None:
    """The issue's table, as summary notes: every server's best (median), and the ratios."""
    if not FIGURES and not MEMORY:
        return
    shown = [s.name for s in SERVERS if s.name in fleet.running]
    ours = [name for name in OURS if name in shown]
    width, first = 15, 40
    add_note("")
    add_note(
        "servers side by side, best (median); ratio = ours vs Dovecot (sessions/s: vs "
        f"{DOVECOT_TUNED}), above 1 = ours better; memory: growth per session, KiB RSS / PSS"
    )
    header = f"  {'figure':<{first}}" + "".join(f"{n:>{width}}" for n in shown)
    add_note(header + "".join(f"{'ratio ' + n:>{width + 6}}" for n in ours))
    for figure, cells in FIGURES.items():
        unit, higher_better = FIGURE_UNITS[figure]
        row = f"  {figure + ' (' + unit + ')':<{first}}"
        row += "".join(
            f"{_cell(cells[name], unit) if name in cells else '-':>{width}}" for name in shown
        )
        base = cells.get(DOVECOT_TUNED if unit == "/s" else DOVECOT)
        for name in ours:
            mine = cells.get(name)
            row += f"{_ratio(mine, base, higher_better) if mine and base else '-':>{width + 6}}"
        add_note(row)
    for figure, memories in MEMORY.items():
        row = f"  {figure:<{first}}"
        for name in shown:
            value = memories.get(name)
            text = f"{_kib(value[0])} / {_kib(value[1])}" if value else "-"
            row += f"{text:>{width}}"
        add_note(row)
    ceiling = FIGURES.get(SESSIONS_FIGURE, {}).get(CEILING)
    if ceiling is not None:
        add_note(
            f"  load generator ceiling: {_cell(ceiling, '/s')} sessions/s against a server that "
            f"does no work (2 processes); generator: {loadgen_workers()} processes "
            "(selectors, non-blocking sockets)"
        )
    for detail in SESSION_DETAILS.values():
        add_note(f"  {detail}")
