"""APOP (RFC 1939 section 7): the greeting's timestamp, and the digest over it."""

from __future__ import annotations

import hashlib

__all__ = ["apop_digest", "find_apop_timestamp"]


def find_apop_timestamp(line: bytes) -> bytes | None:
    """Return the first ``<...@...>`` in a greeting line, brackets included.

    This is the choice curl and Thunderbird make. It runs in linear time whatever
    the input (poplib's first regex did not: CVE-2018-1060): each ``<`` and ``>``
    is looked at a bounded number of times.
    """
    start = line.find(b"<")
    while start >= 0:
        end = line.find(b">", start + 1)
        if end < 0:
            return None
        # The nearest "<" before this ">" opens the only candidate ending here.
        start = line.rfind(b"<", start, end)
        if line.find(b"@", start + 1, end) >= 0:
            return line[start : end + 1]
        start = line.find(b"<", end + 1)
    return None


def apop_digest(timestamp: bytes, secret: str | bytes) -> str:
    """The APOP digest: MD5 of the timestamp followed by the shared secret, in hex.

    ``timestamp`` includes its angle brackets; a ``str`` secret is encoded as UTF-8.
    """
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    return hashlib.md5(timestamp + secret, usedforsecurity=False).hexdigest()
