#!/usr/bin/env python3
"""Generate the blocking twins of the async sources (httpcore's unasync approach).

The async client and session driver in ``src/pop3_anyio`` are the source of
truth; this script writes their blocking twins into ``src/pop3_blocking`` by
rewriting tokens (``async def`` -> ``def``, ``await x`` -> ``x``,
``__aenter__`` -> ``__enter__``, ...). Both packages have a ``_streams``
module with the same names, so the imports stay as they are. Two line
directives let the twins differ where their APIs must:

* a line ending in ``# unasync: remove`` is left out of the blocking twin;
* a comment line ``# unasync: add <code>`` becomes ``<code>`` in it.

``python scripts/unasync.py`` writes the twins; ``--check`` only compares and
exits 1 if any is stale (CI runs it). Standard library only.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "src" / "pop3_anyio"
TARGET = ROOT / "src" / "pop3_blocking"
FILES = ["_cli.py", "_client.py", "_session.py"]

HEADER = (
    "# GENERATED FILE: do not edit. scripts/unasync.py makes it from src/pop3_anyio/{name};\n"
    "# change that file and run `python scripts/unasync.py` (CI checks it is current).\n"
)

# (pattern, replacement), applied in order to every line outside the directives.
RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(pattern), replacement)
    for pattern, replacement in [
        # Phrases of the docstrings first, before their words are rewritten.
        (r"\(async; `pop3_blocking.Client` is its blocking twin\)", "(blocking)"),
        (
            r"Constructing it does not connect: ``async with`` \(or `open`\) does\.",
            "Constructing it connects (`open` does it).",
        ),
        (r"\bThe modern async\b", "The modern blocking"),
        (r"\ban async iterator\b", "an iterator"),
        # Then the language.
        (r"\basync def\b", "def"),
        (r"\basync with\b", "with"),
        (r"\basync for\b", "for"),
        (r"\bawait\s+", ""),
        (r"\b__aenter__\b", "__enter__"),
        (r"\b__aexit__\b", "__exit__"),
        (r"\b__aiter__\b", "__iter__"),
        (r"\b__anext__\b", "__next__"),
        (r"\baclosing\b", "closing"),
        (r"\baclose\b", "close"),
        (r"\bAsyncIterator\b", "Iterator"),
        (r"\bAsyncIterable\b", "Iterable"),
        (r"\bAsyncGenerator\[(.+), None\]", r"Generator[\1, None, None]"),
        (r"\bAsyncGenerator\b", "Generator"),
        (r"\bStopAsyncIteration\b", "StopIteration"),
        (r"\bAsyncMailStore\b", "MailStore"),
        (r"\bAsyncMaildrop\b", "Maildrop"),
        (r"\bpop3_anyio\b", "pop3_blocking"),
    ]
]

_REMOVE = re.compile(r"#\s*unasync:\s*remove\s*$")
_ADD = re.compile(r"^(\s*)#\s*unasync:\s*add (.*)$")


def unasync(text: str, name: str) -> str:
    """The blocking twin of the async source `text` (of file `name`)."""
    out: list[str] = []
    for line in text.splitlines():
        if _REMOVE.search(line):
            continue
        added = _ADD.match(line)
        if added:
            out.append(added.group(1) + added.group(2))
            continue
        rewritten = line
        for pattern, replacement in RULES:
            rewritten = pattern.sub(replacement, rewritten)
        out.append(rewritten)
    body = "\n".join(out) + "\n"
    return HEADER.format(name=name) + body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 if stale")
    args = parser.parse_args()
    stale = 0
    for name in FILES:
        source = SOURCE / name
        if not source.exists():
            continue
        target = TARGET / name
        generated = unasync(source.read_text(encoding="utf-8"), name)
        current = target.read_text(encoding="utf-8") if target.exists() else ""
        if generated == current:
            continue
        if args.check:
            stale += 1
            diff = difflib.unified_diff(
                current.splitlines(keepends=True),
                generated.splitlines(keepends=True),
                str(target.relative_to(ROOT)),
                "generated",
                n=1,
            )
            sys.stdout.writelines(list(diff)[:60])
            print(f"{target.relative_to(ROOT)} is stale: run python scripts/unasync.py")
        else:
            target.write_text(generated, encoding="utf-8")
            print(f"wrote {target.relative_to(ROOT)}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
