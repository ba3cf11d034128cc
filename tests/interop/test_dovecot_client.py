"""Interop: pop3_blocking's modern client fetches a seeded Maildir from a real Dovecot.

Every message must arrive byte-exact, in plain, STLS and implicit TLS, with
USER/PASS, APOP, PLAIN, CRAM-MD5 and SCRAM-SHA-256; a 64 MiB message is
streamed to a file in each TLS mode.
"""

from __future__ import annotations

import hashlib
import os
import poplib as stdlib_poplib
import pwd
from collections.abc import Iterator
from typing import Any

import pytest

import pop3_blocking.poplib as dropin
import pop3core as p
from pop3_blocking._client import Client
from tests.interop.dovecot import Dovecot, start_dovecot
from tests.interop.mailcorpus import (
    CorpusMessage,
    find_id,
    large_message,
    seed_maildir,
    small_messages,
    special_messages,
)

LARGE = large_message(64 * 1024 * 1024)
MESSAGES = [*special_messages(), *small_messages(20), LARGE]


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


@pytest.mark.parametrize("mode", ["none", "starttls", "implicit"])
@pytest.mark.parametrize("method", ["USER", "APOP", "PLAIN", "CRAM-MD5", "SCRAM-SHA-256"])
def test_every_small_message_is_byte_exact(dovecot: Dovecot, mode: str, method: str) -> None:
    with connect(dovecot, mode) as client:
        client.login("alice", "secret", method=method, allow_cleartext=True)
        sizes = client.list()
        uids = client.uidl()
        assert len(sizes) == len(uids) == len(MESSAGES)
        wanted = [n for n in sizes if n != len(MESSAGES)]  # all but the large one
        by_id = {m.hid: m for m in MESSAGES}
        seen = set()
        for _number, data in client.retr_many(wanted):
            hid = find_id(data)
            assert hid is not None, data[:200]
            assert data == expected(by_id[hid]), hid
            seen.add(hid)
        assert seen == {m.hid for m in MESSAGES} - {LARGE.hid}
        assert client.top(1, 0).endswith(b"\r\n\r\n")
    # KEEP: nothing was deleted
    with connect(dovecot, mode) as client:
        client.login("alice", "secret", allow_cleartext=True)
        assert client.stat().messages == len(MESSAGES)


@pytest.mark.parametrize("mode", ["none", "starttls", "implicit"])
def test_large_message_streams_byte_exact(
    dovecot: Dovecot, mode: str, tmp_path: os.PathLike[str]
) -> None:
    with connect(dovecot, mode) as client:
        client.login("alice", "secret")  # SCRAM-SHA-256: the strongest both offer
        target = os.path.join(tmp_path, "large.eml")
        with open(target, "wb") as out:
            octets = client.retr(len(MESSAGES), out)
    assert octets == len(LARGE.wire)
    digest = hashlib.sha256()
    with open(target, "rb") as stored:
        while chunk := stored.read(1 << 20):
            digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(LARGE.wire).hexdigest()


def test_wrong_password_is_typed(dovecot: Dovecot) -> None:
    client = Client(
        "127.0.0.1", dovecot.port, tls="none", timeout=30, source_address=("127.0.0.9", 0)
    )
    with pytest.raises(p.AuthenticationError):
        client.login("alice", "wrong", method="SCRAM-SHA-256")
    client.close()


# -- the poplib drop-in against the same Dovecot, beside the standard library's poplib


def poplib_view(message: CorpusMessage) -> tuple[list[bytes], int]:
    """What poplib's retr() gives for a message Dovecot sends: its lines and octets.

    poplib keeps a line that starts with one dot and was not stuffed, so the
    dot-first message, which Dovecot does not stuff, comes through whole.
    """
    return message.wire.split(b"\r\n")[:-1], len(message.wire)


def dropin_connect(dovecot: Dovecot, mode: str, module: Any) -> Any:
    if mode == "implicit":
        pop = module.POP3_SSL("localhost", dovecot.tls_port, context=dovecot.client_context())
    else:
        pop = module.POP3("localhost", dovecot.port, timeout=30)
    if mode == "starttls":
        pop.stls(dovecot.client_context())
    return pop


@pytest.mark.parametrize("mode", ["none", "starttls", "implicit"])
@pytest.mark.parametrize("method", ["USER", "APOP"])
def test_the_poplib_dropin_reads_every_message_as_poplib(
    dovecot: Dovecot, mode: str, method: str
) -> None:
    results = []
    for module in (stdlib_poplib, dropin):
        pop = dropin_connect(dovecot, mode, module)
        try:
            if method == "APOP":
                pop.apop("alice", "secret")
            else:
                pop.user("alice")
                pop.pass_("secret")
            count, _ = pop.stat()
            assert count == len(MESSAGES)
            _, uids, _ = pop.uidl()
            _, sizes, _ = pop.list()
            fetched = {}
            for number in range(1, count):  # all but the large one
                resp, lines, octets = pop.retr(number)
                hid = find_id(b"\r\n".join(lines))
                assert hid is not None
                fetched[hid] = (resp.split()[0], lines, octets)
            results.append((uids, sizes, fetched, pop.top(1, 0)))
            assert pop.quit().startswith(b"+OK")
        finally:
            pop.close()
    assert results[1] == results[0]
    by_id = {m.hid: m for m in MESSAGES}
    for hid, (_, lines, octets) in results[1][2].items():
        assert (lines, octets) == poplib_view(by_id[hid]), hid


def test_the_poplib_dropin_retrieves_the_large_message(dovecot: Dovecot) -> None:
    pop = dropin.POP3_SSL("localhost", dovecot.tls_port, context=dovecot.client_context())
    try:
        pop.user("alice")
        pop.pass_("secret")
        _, lines, octets = pop.retr(len(MESSAGES))
        assert (lines, octets) == poplib_view(LARGE)
        pop.quit()
    finally:
        pop.close()
