"""Test messages that exercise every corner of POP3's transparency, and a Maildir seeder.

Each message carries an ``X-Test-Id`` line (a header where the message has
headers), so a retrieved copy can be recognised even after a client prepended
headers of its own. `expected_wire(message)` is what a correct server sends
for it and a correct client delivers: the stored bytes with every bare LF made
CRLF and a CRLF added at the end if missing.
"""

from __future__ import annotations

import os
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pop3core as p


@dataclass(frozen=True)
class CorpusMessage:
    hid: str
    stored: bytes  # as stored on disk / in the store

    @property
    def wire(self) -> bytes:
        return p.normalize_newlines(self.stored)


def _headers(hid: str, subject: str, extra: bytes = b"") -> bytes:
    return (
        b"From: Sender <sender@pop3-tests.invalid>\n"
        b"To: alice@pop3-tests.invalid\n"
        b"Subject: " + subject.encode() + b"\n"
        b"Message-ID: <" + hid.encode() + b"@pop3-tests.invalid>\n"
        b"X-Test-Id: " + hid.encode() + b"\n" + extra
    )


def special_messages() -> list[CorpusMessage]:
    return [
        CorpusMessage(
            "special-dots",
            _headers("special-dots", "dot lines")
            + b"\n.\n..\n...\n.foo\n..foo\n. \n .\ntrailing spaces   \nend\n",
        ),
        CorpusMessage(
            "special-dot-last-line",
            _headers("special-dot-last-line", "last line is a dot") + b"\nbody\n.\n",
        ),
        CorpusMessage(
            "special-dot-first-line",
            b".leading-dot line, no header before it\nX-Test-Id: special-dot-first-line\n\nbody\n",
        ),
        CorpusMessage(
            "special-line-998",
            _headers("special-line-998", "long lines")
            + b"\n"
            + b"a" * 998
            + b"\n."
            + b"b" * 997
            + b"\n",
        ),
        CorpusMessage(
            "special-8bit-utf8",
            _headers("special-8bit-utf8", "utf8", "X-Raw-UTF8: Grüße, 世界\n".encode())
            + b"Content-Transfer-Encoding: 8bit\n\n"
            + "Ünïcödé body — ✓\n".encode(),
        ),
        CorpusMessage(
            "special-8bit-latin1",
            _headers("special-8bit-latin1", "latin1")
            + b"Content-Transfer-Encoding: 8bit\n\n"
            + bytes(range(0xA0, 0x100))
            + b"\n\xff\xfe invalid utf-8 \xc3\x28\n",
        ),
        CorpusMessage(
            "special-crlf-stored",
            _headers("special-crlf-stored", "crlf").replace(b"\n", b"\r\n")
            + b"\r\nstored with CRLF\r\n.dot\r\n",
        ),
        CorpusMessage(
            "special-bare-lf",
            _headers("special-bare-lf", "bare lf").replace(b"\n", b"\r\n")
            + b"\r\nCRLF line\r\nbare LF line\nanother CRLF\r\n",
        ),
        CorpusMessage(
            "special-bare-cr",
            _headers("special-bare-cr", "bare cr") + b"\nbefore a bare CR\rafter the bare CR\n",
        ),
        CorpusMessage(
            "special-no-final-newline",
            _headers("special-no-final-newline", "no newline") + b"\nthe last line ends here",
        ),
        CorpusMessage("special-empty-body", _headers("special-empty-body", "empty body") + b"\n"),
        CorpusMessage(
            "special-from-lines",
            _headers("special-from-lines", "from lines")
            + b"\nFrom the start\n>From quoted\nFrom: not a header\n",
        ),
    ]


def small_messages(count: int, seed: int = 110) -> list[CorpusMessage]:
    rng = random.Random(seed)
    result = []
    for n in range(count):
        hid = f"small-{n:05d}"
        lines = [
            f"line {i} of {hid} {rng.random():.6f}".encode() for i in range(rng.randrange(1, 40))
        ]
        if rng.random() < 0.2:
            lines.insert(rng.randrange(len(lines)), b".starts with a dot")
        result.append(
            CorpusMessage(hid, _headers(hid, f"small {n}") + b"\n" + b"\n".join(lines) + b"\n")
        )
    return result


_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def large_message(size: int, seed: int = 995) -> CorpusMessage:
    """About `size` octets of 76-column base64-alphabet text, with dot lines in it.

    Every 97th line starts with ".", every 193rd with "..", every 1009th is only
    ".": dot handling across every kind of buffer boundary.
    """
    hid = f"large-{size}"
    rng = random.Random(seed)
    row = bytes(rng.choice(_B64) for _ in range(76 * 64))
    lines = []
    total = 0
    n = 0
    while total < size:
        n += 1
        start = (n * 37) % (len(row) - 76)
        line = row[start : start + 76]
        if n % 1009 == 0:
            line = b"."
        elif n % 193 == 0:
            line = b".." + line[2:]
        elif n % 97 == 0:
            line = b"." + line[1:]
        lines.append(line)
        total += len(line) + 1
    return CorpusMessage(hid, _headers(hid, "large") + b"\n" + b"\n".join(lines) + b"\n")


def find_id(data: bytes) -> str | None:
    """The X-Test-Id a retrieved message carries, if any."""
    match = re.search(rb"X-Test-Id: ([\w-]+)", data)
    return match.group(1).decode() if match else None


def seed_maildir(
    maildir: Path, messages: list[CorpusMessage], *, owner: tuple[int, int] | None = None
) -> None:
    """Deliver `messages` into `maildir`/new in order, as an MDA would (files in tmp, then new)."""
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    base = int(time.time()) - len(messages)
    for i, message in enumerate(messages):
        name = f"{base + i}.M{i:06d}P{os.getpid()}.pop3-tests"
        tmp = maildir / "tmp" / name
        tmp.write_bytes(message.stored)
        final = maildir / "new" / name
        os.rename(tmp, final)
        if owner is not None:
            os.chown(final, *owner)
    if owner is not None:
        for path in [maildir, *maildir.iterdir()]:
            os.chown(path, *owner)
