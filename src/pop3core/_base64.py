"""Strict base64 (RFC 4648), as SASL demands it (RFC 5034 section 4)."""

from __future__ import annotations

import binascii
import re

__all__ = ["strict_b64decode"]

# Only the base64 alphabet, "=" only as final padding, whole quanta (RFC 4648).
_BASE64 = re.compile(rb"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?\Z")


def strict_b64decode(data: bytes) -> bytes | None:
    """Decode base64 the way RFC 5034 demands, or return None if it is not valid."""
    if not _BASE64.match(data):
        return None
    return binascii.a2b_base64(data)
