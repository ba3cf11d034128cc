"""POP3 on anyio: an async client and server that run on asyncio and on trio.

* `Client`: the modern client, async (verified TLS, the strongest login,
  typed results, streaming and pipelined bulk fetches). ``async with
  Client(host) as client:`` connects; leaving the block normally sends QUIT.
* The stores (`pop3_stores`) are shared with the blocking server.

All protocol logic lives in `pop3core`; this package only moves bytes. Needs
the ``anyio`` extra (``pip install pop3[anyio]``).
"""

from ._client import (
    MAX_LISTING_SIZE,
    MAX_MESSAGE_SIZE,
    MAX_PIPELINE_OCTETS,
    Client,
    SizeLimitExceeded,
    TLSMode,
)

__all__ = [
    "MAX_LISTING_SIZE",
    "MAX_MESSAGE_SIZE",
    "MAX_PIPELINE_OCTETS",
    "Client",
    "SizeLimitExceeded",
    "TLSMode",
]
