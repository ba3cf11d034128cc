"""The benchmark harness: sizes, seeded corpora, measuring, and the ratio table.

Ratios are throughput ratios, ``baseline_time / our_time``: above 1 we are faster.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import os
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

MiB = 1024 * 1024
CHUNK = 64 * 1024  # what one receive() or one send() moves

T = TypeVar("T")
SetupResult = tuple[tuple[Any, ...], dict[str, Any]]

# Implementation names: ours, and the baselines each group compares it with.
FIND_PASS = "find-pass"
POPLIB_LINES = "poplib-lines"
LINE_STUFFING = "per-line-stuffing"
# bench_blocking's (over loopback): stdlib poplib itself (its listing parsed into
# the same dict as ours, or not), and a raw socket read of the same reply.
POPLIB = "poplib"
POPLIB_UNPARSED = "poplib-unparsed"
RAW_SOCKET = "raw-socket"
BASELINES = (FIND_PASS, POPLIB_LINES, LINE_STUFFING, POPLIB, POPLIB_UNPARSED, RAW_SOCKET)

# The targets from the issue: (group, ours, baseline, minimum throughput ratio).
GOALS: tuple[tuple[str, str, str, float], ...] = (
    ("decode-text", "pop3core", FIND_PASS, 0.55),
    ("decode-text", "pop3core", POPLIB_LINES, 14.0),
    ("encode-text", "pop3core", FIND_PASS, 0.5),
    ("decode-attachment", "pop3core", FIND_PASS, 2.0),
    ("encode-attachment", "pop3core", FIND_PASS, 2.0),
)
# Goals whose group names depend on the mode's sizes, added by the benchmarks.
_EXTRA_GOALS: list[tuple[str, str, str, float]] = []


def add_goal(group: str, ours: str, baseline: str, target: float) -> None:
    """Show `ours` against `baseline` in `group` among the goals (once)."""
    goal = (group, ours, baseline, target)
    if goal not in GOALS and goal not in _EXTRA_GOALS:
        _EXTRA_GOALS.append(goal)


@dataclass(frozen=True)
class Limit:
    """A figure that must stay below a bound (e.g. a peak memory growth), not a ratio."""

    name: str
    measured: float
    limit: float
    unit: str
    detail: str = ""


_LIMITS: list[Limit] = []
_NOTES: list[str] = []  # extra lines for the summary's header (e.g. how a server ran)


def record_limit(name: str, measured: float, limit: float, unit: str, detail: str = "") -> None:
    _LIMITS.append(Limit(name, measured, limit, unit, detail))


def add_note(line: str) -> None:
    if line not in _NOTES:
        _NOTES.append(line)


# ------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    quick: bool
    message_size: int  # octets of each RFC 5322 message (before stuffing)
    listing_entries: int  # lines of the LIST and UIDL replies
    rounds: int
    warmup_rounds: int


def settings_from(config: pytest.Config) -> Settings:
    """Full sizes by default; ``--quick`` or ``POP3_BENCH_QUICK=1`` for CI."""
    quick = config.getoption("--quick") or os.environ.get("POP3_BENCH_QUICK", "0") != "0"
    if quick:
        # Small inputs, but enough rounds: on a shared VM the same code runs at two
        # speeds that alternate every second or so, and a best of three can miss
        # the fast one (seen: 11 ms and 6 ms for one 8 MiB decode).
        settings = Settings(True, 8 * MiB, 20_000, rounds=9, warmup_rounds=1)
    else:
        settings = Settings(False, 64 * MiB, 100_000, rounds=7, warmup_rounds=1)
    rounds = config.getoption("--bench-rounds")
    if rounds:
        settings = dataclasses.replace(settings, rounds=int(rounds))
    return settings


# --------------------------------------------------------------------- corpora

_WORD_TEXT = (
    "the of and to in is that it for was on are as with be by this at from or have an they "
    "which one you were all we when there can been has more if will would about what some "
    "their into out other time could these two may then first any like now my such over "
    "than only its also after new most where made through before back much should well "
    "because each just those people how too little state good very make world still own "
    "see men work long here get both between life being under never day same another know "
    "while last might great old year off come since against go came right used take three "
    "message server mailbox account please attached report meeting quarter budget review "
    "thanks regards schedule draft version update invoice delivery customer project"
)
_WORDS = _WORD_TEXT.split()

_DOT_STARTS = (
    b".NET",
    b"...",
    b".htaccess",
    b".5",
    b".com",
    b". . .",
    b"..",
    b".profile",
    b".tar.gz",
    b".gitignore",
    b".\t",
    b".-",
)


def _prose_line(rng: random.Random, width: int = 72) -> bytes:
    """One line of word-wrapped prose, at most `width` columns (the CRLF excluded)."""
    words: list[str] = []
    length = -1
    while True:
        word = rng.choice(_WORDS)
        if rng.random() < 0.08:
            word += rng.choice(",.;:")
        if length + 1 + len(word) > width:
            break
        words.append(word)
        length += 1 + len(word)
    line = " ".join(words)
    return (line[0].upper() + line[1:]).encode("ascii")


def _prose(rng: random.Random, size: int, dot_ratio: float) -> list[bytes]:
    """Lines (without CRLF) of prose totalling at least `size` octets with CRLFs.

    About ``dot_ratio`` of the lines start with a dot, one line in nine is a blank
    paragraph break, and no line is a lone dot (that would end the body).
    """
    pool = [_prose_line(rng) for _ in range(4096)]
    count = size // 60 + 16
    lines = rng.choices(pool, k=count)
    for i in range(count):
        r = rng.random()
        if r < dot_ratio:
            tail = lines[i][: rng.randrange(10, 60)]
            lines[i] = (rng.choice(_DOT_STARTS) + b" " + tail.lower()).rstrip()
        elif r < dot_ratio + 0.11:
            lines[i] = b""
    return lines


def _headers(rng: random.Random, content_type: bytes) -> list[bytes]:
    """A realistic header block: a Received chain, DKIM, ARC, and the usual fields."""
    msgid = f"{rng.getrandbits(64):016x}.{rng.getrandbits(32):08x}@mail.example.org"
    sig = base64.b64encode(rng.randbytes(256)).decode("ascii")
    bh = base64.b64encode(rng.randbytes(32)).decode("ascii")
    hops = [
        ("mx1.example.org", "192.0.2.10", "mail.example.com"),
        ("smtp-out.example.net", "198.51.100.7", "mx1.example.org"),
        ("localhost", "127.0.0.1", "smtp-out.example.net"),
    ]
    text = ["Return-Path: <alice@example.org>", "Delivered-To: bob@example.com"]
    for n, (host, ip, by) in enumerate(hops):
        text += [
            f"Received: from {host} ({host} [{ip}])",
            f"\tby {by} (Postfix) with ESMTPS id {rng.getrandbits(40):010X}",
            f"\tfor <bob@example.com>; Tue, 14 May 2024 09:2{n}:07 +0200 (CEST)",
        ]
    text += [
        "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org;",
        "\ts=selector1; t=1715671267; h=from:to:subject:date:message-id:mime-version;",
        f"\tbh={bh};",
    ]
    text += [f"\tb={sig[i : i + 64]}" for i in range(0, len(sig), 64)]
    text += [
        "ARC-Authentication-Results: i=1; mx1.example.org; dkim=pass header.d=example.org;",
        "\tspf=pass smtp.mailfrom=alice@example.org; dmarc=pass header.from=example.org",
        'From: "Alice Example" <alice@example.org>',
        'To: "Bob Example" <bob@example.com>',
        "Cc: team@example.com",
        "Subject: Re: Quarterly report, draft 3 (please review before Friday)",
        "Date: Tue, 14 May 2024 09:21:05 +0200",
        f"Message-ID: <{msgid}>",
        f"In-Reply-To: <{rng.getrandbits(64):016x}@mail.example.com>",
        "MIME-Version: 1.0",
    ]
    return [line.encode("ascii") for line in text] + [content_type]


def _finish(lines: Sequence[bytes], size: int) -> bytes:
    """Join lines with CRLF and cut at the last line end within `size` octets."""
    message = b"\r\n".join(lines) + b"\r\n"
    if len(message) > size:
        message = message[: message.rindex(b"\r\n", 0, size - 1) + 2]
    return message


def make_text_message(size: int, seed: int = 1939) -> bytes:
    """An RFC 5322 text message: headers, then ~70-octet prose lines, 1 % dot lines."""
    rng = random.Random(seed)
    head = _headers(rng, b'Content-Type: text/plain; charset="us-ascii"')
    head += [b"Content-Transfer-Encoding: 7bit", b""]
    return _finish(head + _prose(rng, size, dot_ratio=0.01), size)


def make_attachment_message(size: int, seed: int = 2045) -> bytes:
    """An RFC 5322 message with a short text part and a big base64 attachment."""
    rng = random.Random(seed)
    boundary = b"=_part_" + f"{rng.getrandbits(48):012x}".encode()
    lines = _headers(rng, b'Content-Type: multipart/mixed; boundary="' + boundary + b'"')
    lines += [b"", b"This is a multi-part message in MIME format.", b"", b"--" + boundary]
    lines += [b'Content-Type: text/plain; charset="us-ascii"', b""]
    lines += _prose(rng, 1500, dot_ratio=0.02)[:25]
    lines += [
        b"--" + boundary,
        b'Content-Type: application/pdf; name="report-q2.pdf"',
        b"Content-Transfer-Encoding: base64",
        b'Content-Disposition: attachment; filename="report-q2.pdf"',
        b"",
    ]
    room = size - sum(len(line) + 2 for line in lines) - len(boundary) - 8
    payload = base64.encodebytes(rng.randbytes(room // 78 * 57))  # 76-character lines
    lines += payload.rstrip(b"\n").split(b"\n")
    lines += [b"--" + boundary + b"--"]
    return _finish(lines, size)


def stuff_reference(body: bytes) -> bytes:
    """Dot-stuff a CRLF body the obvious way (independent of pop3core)."""
    return (b"\r\n" + body).replace(b"\r\n.", b"\r\n..")[2:]


def split_chunks(data: bytes, size: int = CHUNK) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@dataclass(frozen=True)
class Corpus:
    """One message, ready for both directions."""

    name: str
    body: bytes  # the message as stored (CRLF line ends, not stuffed)
    wire: bytes  # the RETR reply on the wire: status line, stuffed body, terminator
    body_chunks: list[bytes] = field(repr=False)
    wire_chunks: list[bytes] = field(repr=False)
    lines: int
    dot_lines: int

    @classmethod
    def build(cls, name: str, body: bytes) -> Corpus:
        assert body.endswith(b"\r\n")
        assert b"\r\n.\r\n" not in body  # a lone dot line would end the body
        assert not body.startswith(b".\r\n")
        bare = body.replace(b"\r\n", b"")
        assert b"\n" not in bare
        assert b"\r" not in bare
        wire = b"+OK %d octets\r\n" % len(body) + stuff_reference(body) + b".\r\n"
        return cls(
            name=name,
            body=body,
            wire=wire,
            body_chunks=split_chunks(body),
            wire_chunks=split_chunks(wire),
            lines=body.count(b"\r\n"),
            dot_lines=len(re.findall(rb"(?m)^\.", body)),
        )


_MAKERS: dict[str, Callable[[int], bytes]] = {
    "text": make_text_message,
    "attachment": make_attachment_message,
}
_CORPORA: dict[str, Corpus] = {}  # built so far, for the summary


@functools.cache
def corpus(name: str, size: int) -> Corpus:
    """The named corpus of about `size` octets, built once per session."""
    built = Corpus.build(name, _MAKERS[name](size))
    _CORPORA[name] = built
    return built


@dataclass(frozen=True)
class Listing:
    """A LIST and a UIDL reply with the same message numbers, and what they mean."""

    entries: int
    sizes: dict[int, int]
    uids: dict[int, str]
    list_wire: bytes
    uidl_wire: bytes
    list_chunks: list[bytes] = field(repr=False)
    uidl_chunks: list[bytes] = field(repr=False)


_UID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


@functools.cache
def make_listing(entries: int, seed: int = 2449) -> Listing:
    rng = random.Random(seed)
    sizes = {n: int(rng.lognormvariate(9.5, 1.6)) + 300 for n in range(1, entries + 1)}
    uids = {n: "".join(rng.choices(_UID_ALPHABET, k=24)) for n in range(1, entries + 1)}
    list_body = "".join(f"{n} {s}\r\n" for n, s in sizes.items()).encode("ascii")
    uidl_body = "".join(f"{n} {u}\r\n" for n, u in uids.items()).encode("ascii")
    total = sum(sizes.values())
    list_wire = b"+OK %d messages (%d octets)\r\n" % (entries, total) + list_body + b".\r\n"
    uidl_wire = b"+OK\r\n" + uidl_body + b".\r\n"
    return Listing(
        entries,
        sizes,
        uids,
        list_wire,
        uidl_wire,
        split_chunks(list_wire),
        split_chunks(uidl_wire),
    )


# ------------------------------------------------------------------ measuring


@dataclass
class Record:
    group: str
    impl: str
    nbytes: int
    best: float  # seconds
    median: float
    rounds: int
    items: int | None = None  # entries of a listing, reported as entries per second


_RECORDS: list[Record] = []


class Measure:
    """Run one implementation under pytest-benchmark and remember its figures."""

    def __init__(self, benchmark: BenchmarkFixture, settings: Settings) -> None:
        self.benchmark = benchmark
        self.settings = settings

    def __call__(
        self,
        group: str,
        impl: str,
        nbytes: int,
        target: Callable[..., T],
        *,
        setup: Callable[[], SetupResult] | None = None,
        args: tuple[Any, ...] = (),
        items: int | None = None,
    ) -> T:
        """Time ``target(*args)`` (or ``target(*setup()[0])``); return its last output.

        `nbytes` is the input size for MB/s; `items`, if given, is reported per second.
        """
        benchmark = self.benchmark
        benchmark.group = group
        benchmark.name = impl
        benchmark.extra_info["bytes"] = nbytes
        # Each round's output is kept (so its deallocation is not timed) and dropped
        # in the next round's setup, so no round runs with the last one's output alive.
        outputs: list[T] = []

        def timed(*args: Any) -> None:
            outputs.append(target(*args))

        def untimed_setup() -> SetupResult:
            outputs.clear()
            return setup() if setup is not None else (args, {})

        benchmark.pedantic(  # type: ignore[no-untyped-call]
            timed,
            setup=untimed_setup,
            rounds=self.settings.rounds,
            warmup_rounds=self.settings.warmup_rounds,
        )
        metadata = getattr(benchmark, "stats", None)
        if metadata:  # None when run with --benchmark-disable
            stats = metadata.stats
            _RECORDS.append(
                Record(group, impl, nbytes, stats.min, stats.median, stats.rounds, items)
            )
        return outputs[-1]


# -------------------------------------------------------------------- summary


def _ratio(baseline: float, ours: float) -> str:
    return f"{baseline / ours:.2f}x"


def _verdict(best: float, median: float, target: float) -> str:
    if best >= target and median >= target:
        return "met"
    if best >= target:
        return "met on best only"
    if median >= target:
        return "met on median only"
    return "MISSED"


def write_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The table of throughputs and ratios, then the issue's goals."""
    if not _RECORDS and not _LIMITS:
        return
    write = terminalreporter.write_line
    settings = settings_from(config)
    terminalreporter.section("pop3core throughput and ratios")
    write(
        f"mode: {'quick' if settings.quick else 'full'}; input in {CHUNK // 1024} KiB chunks; "
        "MB = 10^6 octets; every figure is the best round, then (in parentheses) the median"
    )
    for corpus in _CORPORA.values():
        write(
            f"corpus {corpus.name}: body {len(corpus.body) / MiB:.2f} MiB, wire "
            f"{len(corpus.wire) / MiB:.2f} MiB, {corpus.lines} lines, "
            f"{corpus.dot_lines} starting with a dot "
            f"({100 * corpus.dot_lines / corpus.lines:.2f} %)"
        )
    for note in _NOTES:
        write(note)
    write("")
    if not _RECORDS:  # only limits (e.g. -k memory)
        write("goals from the issue:")
        _write_limits(write)
        return
    groups: dict[str, list[Record]] = {}
    for record in _RECORDS:
        groups.setdefault(record.group, []).append(record)
    header = (
        f"{'group':<18} {'implementation':<18} {'MiB':>6} {'rounds':>6} "
        f"{'ms best (median)':>18} {'MB/s best (median)':>20}  "
        "throughput ratio vs each baseline: best (median)"
    )
    write(header)
    write("-" * len(header))
    for records in groups.values():
        baselines = [r for r in records if r.impl in BASELINES]
        for r in records:
            notes = [
                f"vs {base.impl} {_ratio(base.best, r.best)} ({_ratio(base.median, r.median)})"
                for base in baselines
                if r.impl not in BASELINES
            ]
            if r.items:
                notes.insert(0, f"{r.items / r.best / 1e6:.2f}M entries/s")
            times = f"{r.best * 1e3:.1f} ({r.median * 1e3:.1f})"
            rates = f"{r.nbytes / r.best / 1e6:.0f} ({r.nbytes / r.median / 1e6:.0f})"
            write(
                f"{r.group:<18} {r.impl:<18} {r.nbytes / MiB:>6.2f} {r.rounds:>6} "
                f"{times:>18} {rates:>20}  {'; '.join(notes)}"
            )
    write("")
    write("goals from the issue (throughput ratio: best (median)):")
    index = {(r.group, r.impl): r for r in _RECORDS}
    for group, ours, base, target in GOALS + tuple(_EXTRA_GOALS):
        mine, theirs = index.get((group, ours)), index.get((group, base))
        if mine is None or theirs is None:
            continue
        best, median = theirs.best / mine.best, theirs.median / mine.median
        # What a client that costs nothing would score: the raw read of the same reply.
        raw = index.get((group, RAW_SOCKET))
        ceiling = (
            f"  (ceiling: the raw read alone is {theirs.best / raw.best:.2f}x)"
            if raw is not None and base != RAW_SOCKET
            else ""
        )
        write(
            f"  {group:<18} {ours} vs {base:<13} goal >= {target:>5.2f}x  "
            f"measured {best:5.2f}x ({median:5.2f}x)  {_verdict(best, median, target)}{ceiling}"
        )
    _write_limits(write)


def _write_limits(write: Callable[[str], None]) -> None:
    for limit in _LIMITS:
        verdict = "met" if limit.measured < limit.limit else "MISSED"
        write(
            f"  {limit.name:<40} goal < {limit.limit:g} {limit.unit}  "
            f"measured {limit.measured:.1f} {limit.unit}  {verdict}"
            + (f"  ({limit.detail})" if limit.detail else "")
        )
