"""Interop: pop3_anyio's client fetches a seeded Maildir from a real Dovecot, on asyncio and trio.

Every message byte-exact, in plain, STLS and implicit TLS, with USER/PASS,
APOP, PLAIN, CRAM-MD5 and SCRAM-SHA-256; a 16 MiB message streamed to an
async sink and through the chunk iterator in each TLS mode.
"""

from __future__ import annotations

import hashlib
import pwd
from collections.abc import Iterator

import pytest

import pop3core as p
from pop3_anyio import Client
from tests.interop.dovecot import Dovecot, start_dovecot
from tests.interop.mailcorpus import (
    CorpusMessage,
    find_id,
    large_message,
    seed_maildir,
    small_messages,
    special_messages,
)

pytestmark = pytest.mark.anyio

LARGE = large_message(16 * 1024 * 1024)
MESSAGES = [*special_messages(), *small_messages(20), LARGE]
MODES = ["none", "starttls", "implicit"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def expected(message: CorpusMessage) -> bytes:
    if message.hid == "special-dot-first-line":
        # Dovecot does not stuff a dot that is the very first octet of a message
        # (pop3-commands.c, fetch_callback), so an RFC 1939 client strips it.
        return message.wire[1:]
    return message.wire


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    for server in start_dovecot(
        {"alice": "{PLAIN}secret"}, mechanisms="plain login cram-md5 scram-sha-256 apop"
    ):
        nobody = pwd.getpwnam("nobody")
        seed_maildir(server.maildir("alice"), MESSAGES, owner=(nobody.pw_uid, nobody.pw_gid))
        yield server


def connect(dovecot: Dovecot, mode: str) -> Client:
    return Client(
        "127.0.0.1",
        dovecot.tls_port if mode == "implicit" else dovecot.port,
        tls=mode,  # type: ignore[arg-type]
        ssl_context=dovecot.client_context(),
        server_hostname="localhost",
        timeout=30,
    )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("method", ["USER", "APOP", "PLAIN", "CRAM-MD5", "SCRAM-SHA-256"])
async def test_every_small_message_is_byte_exact(dovecot: Dovecot, mode: str, method: str) -> None:
    async with connect(dovecot, mode) as client:
        await client.login("alice", "secret", method=method, allow_cleartext=True)
        assert client.tls_active is (mode != "none")
        sizes = await client.list()
        uids = await client.uidl()
        assert len(sizes) == len(uids) == len(MESSAGES)
        wanted = [n for n in sizes if n != len(MESSAGES)]  # all but the large one
        by_id = {m.hid: m for m in MESSAGES}
        seen = set()
        async for _number, data in client.retr_many(wanted):
            hid = find_id(data)
            assert hid is not None, data[:200]
            assert data == expected(by_id[hid]), hid
            seen.add(hid)
        assert seen == {m.hid for m in MESSAGES} - {LARGE.hid}
        assert (await client.top(1, 0)).endswith(b"\r\n\r\n")
    async with connect(dovecot, mode) as client:  # nothing was deleted
        await client.login("alice", "secret", allow_cleartext=True)
        assert (await client.stat()).messages == len(MESSAGES)


class DigestSink:
    """An async sink that hashes what it is given."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.octets = 0

    async def write(self, data: bytes | bytearray | memoryview) -> int:
        self.digest.update(data)
        self.octets += len(data)
        return len(data)


@pytest.mark.parametrize("mode", MODES)
async def test_the_large_message_streams_byte_exact(dovecot: Dovecot, mode: str) -> None:
    wanted = hashlib.sha256(LARGE.wire).hexdigest()
    async with connect(dovecot, mode) as client:
        await client.login("alice", "secret")  # SCRAM-SHA-256: the strongest both offer
        sink = DigestSink()
        assert await client.retr(len(MESSAGES), sink) == len(LARGE.wire)
        assert sink.digest.hexdigest() == wanted
        digest = hashlib.sha256()
        async for chunk in client.iter_retr(len(MESSAGES)):
            digest.update(chunk)
        assert digest.hexdigest() == wanted


async def test_a_wrong_password_is_typed(dovecot: Dovecot) -> None:
    client = Client(
        "127.0.0.1", dovecot.port, tls="none", timeout=30, source_address=("127.0.0.9", 0)
    )
    async with client:
        with pytest.raises(p.AuthenticationError):
            await client.login("alice", "wrong", method="SCRAM-SHA-256")
