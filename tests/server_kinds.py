"""Both servers behind one synchronous handle, so a test can run against each of them.

``SERVER_KINDS``: "threads" is `pop3_blocking.Server`; "asyncio" and "trio"
are `pop3_anyio.Server` on that backend, run in an event loop of its own
thread (an anyio blocking portal). Tests drive them with blocking clients
and sockets either way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import anyio.from_thread

import pop3_anyio
import pop3_blocking

SERVER_KINDS = ["threads", "asyncio", "trio"]


class RunningServer:
    """A started server of `kind`; `shutdown` stops it (also on `close`)."""

    def __init__(self, kind: str, store: Any, authenticator: Any, **kwargs: Any) -> None:
        self.kind = kind
        self.logger_name = "pop3_blocking.server" if kind == "threads" else "pop3_anyio.server"
        self._portal_cm: contextlib.AbstractContextManager[anyio.from_thread.BlockingPortal]
        self._stopped = False
        if kind == "threads":
            self.server: Any = pop3_blocking.Server(store, authenticator, **kwargs).start()
            return
        self._portal_cm = anyio.from_thread.start_blocking_portal(kind)
        self.portal = self._portal_cm.__enter__()
        try:
            self.server = pop3_anyio.Server(store, authenticator, **kwargs)
            self._serving, _ = self.portal.start_task(self.server.serve)
        except BaseException:
            self._portal_cm.__exit__(None, None, None)
            raise

    @property
    def port(self) -> int | None:
        port: int | None = self.server.port
        return port

    @property
    def tls_port(self) -> int | None:
        port: int | None = self.server.tls_port
        return port

    def shutdown(self, timeout: float = 10.0, grace: float = 0.0) -> None:
        """Stop: sessions may finish for `grace` seconds, then are closed; commits
        under way get `timeout` seconds (the threaded server cuts them then)."""
        if self._stopped:
            return
        self._stopped = True
        if self.kind == "threads":
            self.server.shutdown(timeout, grace)
            return
        try:
            self.portal.call(self.server.shutdown, grace, timeout)
            self._serving.result(timeout=30)
        finally:
            self._portal_cm.__exit__(None, None, None)

    def run(self, function: Any, *args: Any) -> Any:
        """Call `function` in the server's event loop (the async server only)."""
        return self.portal.call(function, *args)


@contextlib.contextmanager
def running_server(kind: str, store: Any, authenticator: Any, **kwargs: Any) -> Iterator[Any]:
    server = RunningServer(kind, store, authenticator, **kwargs)
    try:
        yield server
    finally:
        server.shutdown()
