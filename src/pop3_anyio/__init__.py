"""POP3 on anyio: an async client and server that run on asyncio and on trio.

* `Client`: the modern client, async (verified TLS, the strongest login,
  typed results, streaming and pipelined bulk fetches). ``async with
  Client(host) as client:`` connects; leaving the block normally sends QUIT.
* `Server`: the server, a task per connection (many thousands of idle
  sessions in one process), with the threaded server's limits and policy.
* The stores (`pop3_stores`) are shared with the blocking server; a blocking
  store's calls run in worker threads, an `AsyncMailStore` is awaited.

All protocol logic lives in `pop3core`; this package only moves bytes. Needs
the ``anyio`` extra (``pip install pop3[anyio]``).
"""

try:
    import anyio as _anyio  # noqa: F401 - only to say what is missing, clearly
except ImportError as _missing:  # pragma: no cover - the test extras install it
    raise ImportError(
        "pop3_anyio needs anyio: pip install 'pop3[anyio]' ('pop3[devserver]' for the demo server)"
    ) from _missing

from ._client import (
    MAX_LISTING_SIZE,
    MAX_MESSAGE_SIZE,
    MAX_PIPELINE_OCTETS,
    Client,
    SizeLimitExceeded,
    TLSMode,
)
from ._server import MINIMUM_AUTOLOGOUT, Server

__all__ = [
    "MAX_LISTING_SIZE",
    "MAX_MESSAGE_SIZE",
    "MAX_PIPELINE_OCTETS",
    "MINIMUM_AUTOLOGOUT",
    "Client",
    "Server",
    "SizeLimitExceeded",
    "TLSMode",
]
