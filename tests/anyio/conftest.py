"""Fixtures for the tests of pop3_anyio's client: every test runs on asyncio and on trio.

`serve` starts the threaded `pop3_blocking.Server` (its own threads, port 0,
an in-memory store, no failed-login delay); `connect` makes clients for it (or
for any loopback port) that trust the test CA, and closes them afterwards.
"""

from __future__ import annotations

import functools
import inspect
import ssl
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Iterator
from typing import Any, cast

import anyio
import anyio.to_thread
import pytest

import pop3core as p
from pop3_anyio import Client, TLSMode
from pop3_blocking import Server
from tests.server_doubles import Certificates, DictAuthenticator, DictStore

MESSAGES = [
    b"Subject: one\n\n.leading dot line\nbody\n",
    b".first octet is a dot\nno headers\n",
    b"Subject: three\r\n\r\n" + b"x" * 998 + b"\r\n..two dots\r\n",
]
TLS_MODES: tuple[TLSMode, ...] = ("none", "starttls", "implicit")


def expected(index: int, messages: list[bytes] = MESSAGES) -> bytes:
    """Message `index` (from 0) as the server sends it: CRLF-normalised."""
    return p.normalize_newlines(messages[index])


# A test of the client that runs longer than this has hung: it fails instead.
TEST_LIMIT = 30.0
BOUNDED_MODULES = ("test_client", "test_client_cancellation", "test_client_vs_hostile_servers")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return cast(str, request.param)


def bounded(
    test: Callable[..., Coroutine[Any, Any, None]],
) -> Callable[..., Coroutine[Any, Any, None]]:
    """`test` within `TEST_LIMIT` seconds (`anyio.fail_after`)."""

    @functools.wraps(test)
    async def run(*args: Any, **kwargs: Any) -> None:
        with anyio.fail_after(TEST_LIMIT):
            await test(*args, **kwargs)

    return run


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, object, object]:
    """Bound every async test of the client's modules in time (anyio's plugin runs it)."""
    module = pyfuncitem.module.__name__.rpartition(".")[2] if pyfuncitem.module else ""
    if module in BOUNDED_MODULES and inspect.iscoroutinefunction(pyfuncitem.obj):
        pyfuncitem.obj = bounded(pyfuncitem.obj)
    return (yield)


class Served:
    """A running threaded server and the in-memory store behind it."""

    def __init__(self, server: Server, store: DictStore) -> None:
        self.server = server
        self.store = store

    def port(self, mode: TLSMode = "none") -> int:
        port = self.server.tls_port if mode == "implicit" else self.server.port
        assert port is not None
        return port

    def wait_unlocked(self, user: str = "alice", timeout: float = 5.0) -> None:
        """Wait until no session holds `user`'s maildrop (a session the client
        closed ends when the server notices)."""
        deadline = time.monotonic() + timeout
        while user in self.store.locked:
            assert time.monotonic() < deadline, f"{user}'s maildrop is still locked"
            time.sleep(0.005)


Serve = Callable[..., Served]


# Making a context loads the default trust store (some 20 ms): one of each for the session.
@pytest.fixture(scope="session")
def server_context(certs: Certificates) -> ssl.SSLContext:
    return certs.server_context()


@pytest.fixture(scope="session")
def client_context(certs: Certificates) -> ssl.SSLContext:
    return certs.client_context()


@pytest.fixture
def serve(server_context: ssl.SSLContext) -> Iterator[Serve]:
    """``serve(mail=None, users=None, *, tls=True, **server_options)`` starts a server."""
    servers: list[Server] = []

    def make(
        mail: dict[str, list[bytes]] | None = None,
        users: dict[str, str] | None = None,
        *,
        tls: bool = True,
        **kwargs: Any,
    ) -> Served:
        store = DictStore({"alice": list(MESSAGES)} if mail is None else mail)
        authenticator = kwargs.pop("authenticator", None) or DictAuthenticator(
            {"alice": "secret"} if users is None else users, tokens={"alice": "tok-en"}
        )
        server = Server(
            store,
            authenticator,
            port=0,
            tls_port=0 if tls else None,
            ssl_context=server_context if tls else None,
            auth_failure_delay=kwargs.pop("auth_failure_delay", 0),
            **kwargs,
        )
        servers.append(server)
        server.start()
        return Served(server, store)

    yield make
    for server in servers:
        server.shutdown()


Connect = Callable[..., Client]


@pytest.fixture
async def connect(client_context: ssl.SSLContext) -> AsyncIterator[Connect]:
    """``connect(target, mode="none", **client_options)``: a `Client` (not opened yet)
    for a `Served` or a port on 127.0.0.1; every client is closed afterwards."""
    clients: list[Client] = []

    def make(target: Served | int, mode: TLSMode = "none", **options: Any) -> Client:
        port = target.port(mode) if isinstance(target, Served) else target
        options.setdefault("timeout", 10.0)
        options.setdefault("connect_timeout", 10.0)
        options.setdefault("ssl_context", client_context)
        options.setdefault("server_hostname", "localhost")
        client = Client(options.pop("host", "127.0.0.1"), port, tls=mode, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def login(client: Client, user: str = "alice", password: str = "secret") -> None:
    """The quickest login (USER/PASS; the server allows it from loopback)."""
    await client.login(user, password, method="USER", allow_cleartext=True)


async def assert_closed(client: Client) -> None:
    """The client is closed: a command raises before anything is sent."""
    with pytest.raises(p.LocalProtocolError, match="the connection is closed"):
        await client.noop()


async def wait_for(event: Any, timeout: float = 10.0) -> bool:
    """Wait for a `threading.Event` without blocking the event loop."""
    return bool(await anyio.to_thread.run_sync(event.wait, timeout))
