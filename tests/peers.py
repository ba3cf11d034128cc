"""Real peers for interop tests: find them, or skip (locally) / fail (in CI).

CI sets ``POP3_REQUIRE_PEERS=1`` after installing every peer, so a peer that is
missing there is a failure, never a silent skip.
"""

from __future__ import annotations

import os
import shutil
import socket
from typing import NoReturn

import pytest

REQUIRE_PEERS = os.environ.get("POP3_REQUIRE_PEERS") == "1"


def unavailable(reason: str) -> NoReturn:
    """Skip the test, or fail it when peers are required."""
    if REQUIRE_PEERS:
        pytest.fail(f"{reason} (POP3_REQUIRE_PEERS=1: every peer must be present)")
    pytest.skip(reason)


def peer(program: str) -> str:
    """The path of `program` (also looked for in /usr/sbin), or skip / fail."""
    path = shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")
    if path is None:
        unavailable(f"{program} is not installed")
    return path


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        unavailable(f"{what} needs root")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
