"""Both servers' graceful shutdown: a grace period in which sessions finish, then no UPDATE.

Run against the threaded server and the async one on asyncio and trio
(`tests.server_kinds`); the async server's own cases (a commit under way, a
stuck commit, cancelling `serve`) are in tests/anyio/test_server.py.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

import pop3core as p
from pop3_blocking import Client, MemoryAuthenticator
from tests.server_doubles import DictStore
from tests.server_kinds import SERVER_KINDS, RunningServer

MAIL = {"alice": [b"Subject: one\n\n1\n", b"Subject: two\n\n" + b"2" * 200_000 + b"\n"]}
USERS = {"alice": "alice-pw"}


@pytest.fixture(params=SERVER_KINDS)
def served(request: pytest.FixtureRequest) -> Iterator[tuple[RunningServer, DictStore]]:
    store = DictStore(MAIL)
    server = RunningServer(
        request.param, store, MemoryAuthenticator(USERS), port=0, auth_failure_delay=0
    )
    try:
        yield server, store
    finally:
        server.shutdown()


def in_background(server: RunningServer, **kwargs: float) -> tuple[threading.Thread, list[float]]:
    took: list[float] = []

    def run() -> None:
        started = time.monotonic()
        server.shutdown(**kwargs)
        took.append(time.monotonic() - started)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, took


def test_a_session_finishes_in_the_grace_period_and_its_quit_commits(
    served: tuple[RunningServer, DictStore],
) -> None:
    server, store = served
    port = server.port
    with Client("127.0.0.1", port, tls="none", timeout=10) as client:
        client.login("alice", "alice-pw")
        client.dele(1)
        thread, took = in_background(server, grace=5.0)
        time.sleep(0.2)
        with pytest.raises(OSError):  # no new connections meanwhile
            socket.create_connection(("127.0.0.1", port or 0), timeout=2).close()
        assert len(client.retr(2)) > 200_000  # this session goes on
    thread.join(10)
    assert store.commits == [("alice", ["alice-0"])]
    assert took[0] < 3, "shutdown waited out the grace period after the last session ended"


def test_after_the_grace_period_the_rest_close_without_update(
    served: tuple[RunningServer, DictStore],
) -> None:
    server, store = served
    with Client("127.0.0.1", server.port, tls="none", timeout=10) as client:
        client.login("alice", "alice-pw")
        client.dele(1)
        thread, took = in_background(server, grace=0.4)
        thread.join(10)
        assert 0.3 < took[0] < 5
        with pytest.raises((p.RemoteProtocolError, OSError)):
            client.stat()
    assert store.commits == []
    assert not store.locked
