"""The shared stores: MemoryStore, MaildirStore and the two authenticators."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import itertools
import logging
import os
import random
import select
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

import pop3core as p
from pop3_blocking._client import Client
from pop3_blocking._server import Server
from pop3_stores import (
    Authenticator,
    MaildirStore,
    Maildrop,
    MaildropError,
    MaildropLocked,
    MailStore,
    MemoryAuthenticator,
    MemoryStore,
    PasswdFileAuthenticator,
    _maildir,
)

# Every line-ending shape a stored message can have.
SHAPES = {
    "lf": b"Subject: a\n\nbody\n",
    "crlf": b"Subject: a\r\n\r\nbody\r\n",
    "mixed": b"Subject: a\r\n\nline\nother\r\n",
    "no-final-newline": b"Subject: a\n\nno newline at the end",
    "bare-cr": b"Subject: a\n\ncarriage\rreturn\n",
    "dot-first": b".starts with a dot\n..two\n.\n",
    "eight-bit": "Subject: caf\u00e9\n\n\u00fcber\n".encode() + bytes(range(128, 256)),
    "empty": b"",
    "lone-newline": b"\n",
}


def read_all(maildrop: Maildrop, index: int, chunk_size: int = 256 * 1024) -> bytes:
    return b"".join(maildrop.read(index, chunk_size))


# ================================================================ MemoryStore


def test_memory_store_implements_the_protocols() -> None:
    store = MemoryStore({"alice": [b"x\n"]})
    assert isinstance(store, MailStore)
    with store.open("alice") as maildrop:
        assert isinstance(maildrop, Maildrop)
    assert isinstance(MemoryAuthenticator({}), Authenticator)


def test_memory_store_sizes_and_bytes_are_crlf_normalised() -> None:
    store = MemoryStore({"alice": list(SHAPES.values())})
    with store.open("alice") as maildrop:
        listing = maildrop.listing()
        assert len(listing) == len(SHAPES)
        for index, stored in enumerate(SHAPES.values()):
            expected = p.normalize_newlines(stored)
            assert listing[index].size == len(expected) == p.wire_size(stored)
            assert read_all(maildrop, index) == expected
            assert read_all(maildrop, index, chunk_size=3) == expected


def test_memory_store_reads_in_chunks() -> None:
    store = MemoryStore({"alice": [b"x" * 1000 + b"\r\n"]})
    with store.open("alice") as maildrop:
        chunks = maildrop.read(0, chunk_size=100)
        assert isinstance(chunks, types.GeneratorType)
        sizes = [len(chunk) for chunk in chunks]
        assert sizes == [100] * 10 + [2]
        with pytest.raises(ValueError, match="chunk_size"):
            maildrop.read(0, chunk_size=0)
        with pytest.raises(IndexError):
            maildrop.read(1)
        with pytest.raises(IndexError):
            maildrop.read(-1)


def test_memory_store_ids_are_unique_and_stable() -> None:
    mail = {"alice": [b"same\n", b"same\r\n", b"other\n"]}
    store = MemoryStore(mail)
    with store.open("alice") as maildrop:
        first = [info.uid for info in maildrop.listing()]
    with store.open("alice") as maildrop:
        assert [info.uid for info in maildrop.listing()] == first
    assert len(set(first)) == 3  # identical messages get different ids
    for uid in first:
        assert 1 <= len(uid) <= 70
        assert all(0x21 <= ord(c) <= 0x7E for c in uid)
    # A restarted program with the same mail gives the same ids.
    with MemoryStore(mail).open("alice") as maildrop:
        assert [info.uid for info in maildrop.listing()] == first
    # Deleting the first copy does not rename the second; a new copy gets a new id.
    with store.open("alice") as maildrop:
        assert maildrop.commit([0])
    new_uid = store.deliver("alice", b"same\n")
    with store.open("alice") as maildrop:
        assert [info.uid for info in maildrop.listing()] == [*first[1:], new_uid]
    assert new_uid not in first


def test_memory_store_locks_per_user() -> None:
    store = MemoryStore({"alice": [b"a\n"], "bob": [b"b\n"]})
    maildrop = store.open("alice")
    with pytest.raises(MaildropLocked):
        store.open("alice")
    store.open("bob").close()  # another user is not affected
    maildrop.close()
    maildrop.close()  # idempotent
    store.open("alice").close()  # released


def test_memory_store_unknown_user_has_an_empty_maildrop() -> None:
    store = MemoryStore()
    with store.open("nobody") as maildrop:
        assert maildrop.listing() == []
        assert maildrop.commit([])
    store.deliver("nobody", b"hello")
    assert store.messages("nobody") == [b"hello\r\n"]


def test_memory_store_commit_removes_exactly_the_listed_messages() -> None:
    store = MemoryStore({"alice": [b"1\n", b"2\n", b"3\n"]})
    maildrop = store.open("alice")
    listing = maildrop.listing()
    store.deliver("alice", b"late\n")  # arrives during the session: not in its listing
    assert [info.uid for info in maildrop.listing()] == [info.uid for info in listing]
    assert maildrop.commit([0, 2])
    maildrop.close()
    assert store.messages("alice") == [b"2\r\n", b"late\r\n"]


def test_memory_store_refuses_bad_indexes_and_closed_sessions() -> None:
    store = MemoryStore({"alice": [b"1\n", b"2\n"]})
    maildrop = store.open("alice")
    with pytest.raises(IndexError):
        maildrop.commit([0, -1])  # -1 must not mean "the last one"
    with pytest.raises(IndexError):
        maildrop.commit([2])
    assert len(store.messages("alice")) == 2  # nothing removed by the refused calls
    maildrop.close()
    with pytest.raises(MaildropError):
        maildrop.commit([0])
    with pytest.raises(MaildropError):
        maildrop.read(0)
    assert len(store.messages("alice")) == 2


def test_memory_store_refuses_non_messages() -> None:
    with pytest.raises(TypeError):
        MemoryStore({"alice": b"not a list"})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        MemoryStore().deliver("alice", "text")  # type: ignore[arg-type]


def test_memory_store_is_thread_safe() -> None:
    store = MemoryStore()
    threads = 8
    per_thread = 50
    barrier = threading.Barrier(threads)
    holders: list[int] = []
    overlaps: list[int] = []
    guard = threading.Lock()
    errors: list[BaseException] = []

    def work(number: int) -> None:
        try:
            barrier.wait(timeout=10)
            for i in range(per_thread):
                store.deliver("alice", f"{number}-{i}\n".encode())
                try:
                    maildrop = store.open("shared")
                except MaildropLocked:
                    continue
                with guard:
                    holders.append(number)
                    if len(holders) > 1:
                        overlaps.append(number)
                with guard:
                    holders.remove(number)
                maildrop.close()
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert not errors
    assert not overlaps  # never two sessions on one maildrop
    with store.open("alice") as maildrop:
        listing = maildrop.listing()
        assert len(listing) == threads * per_thread
        assert len({info.uid for info in listing}) == threads * per_thread
    store.open("shared").close()  # every session released its lock


# ================================================================ MaildirStore


class Maildir:
    """A Maildir in a temporary directory, and ways to put mail into it."""

    def __init__(self, root: Path, user: str = "alice") -> None:
        self.template = str(root / "{user}" / "Maildir")
        self.path = root / user / "Maildir"
        for sub in ("cur", "new", "tmp"):
            (self.path / sub).mkdir(parents=True)
        self.clock = 1_700_000_000

    def name(self) -> str:
        self.clock += 1
        return f"{self.clock}.M{self.clock % 1000:06d}P4242.host.example"

    def deliver(self, data: bytes, name: str | None = None, where: str = "new") -> Path:
        name = name or self.name()
        tmp = self.path / "tmp" / name
        tmp.write_bytes(data)
        final = self.path / where / name
        os.rename(tmp, final)
        return final

    def files(self, where: str = "cur") -> list[str]:
        return sorted(os.listdir(self.path / where))


@pytest.fixture
def maildir(tmp_path: Path) -> Maildir:
    return Maildir(tmp_path / "mail")


@pytest.fixture
def store(maildir: Maildir) -> MaildirStore:
    return MaildirStore(maildir.template)


def test_maildir_store_implements_the_protocol(store: MaildirStore) -> None:
    assert isinstance(store, MailStore)
    with store.open("alice") as maildrop:
        assert isinstance(maildrop, Maildrop)
        assert maildrop.listing() == []


@pytest.mark.parametrize(
    "username", ["", ".", "..", ".hidden", "a/b", "../alice", "a\0b", "a..b", "line\nbreak"]
)
def test_maildir_store_refuses_names_that_escape(tmp_path: Path, username: str) -> None:
    store = MaildirStore(tmp_path / "{user}", create=True)
    with pytest.raises(MaildropError, match="refusing"):
        store.open(username)
    assert list(tmp_path.iterdir()) == []  # nothing was created


def test_maildir_store_needs_user_in_the_template(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="user"):
        MaildirStore(tmp_path / "Maildir")


def test_maildir_store_missing_maildir(tmp_path: Path) -> None:
    template = tmp_path / "{user}" / "Maildir"
    with pytest.raises(MaildropError, match="no Maildir"):
        MaildirStore(template).open("alice")
    assert not (tmp_path / "alice").exists()
    with MaildirStore(template, create=True).open("alice") as maildrop:
        assert maildrop.listing() == []
    for sub in ("cur", "new", "tmp"):
        assert (tmp_path / "alice" / "Maildir" / sub).is_dir()


def test_maildir_sizes_and_bytes_for_every_shape(maildir: Maildir, store: MaildirStore) -> None:
    for data in SHAPES.values():
        maildir.deliver(data)
    with store.open("alice") as maildrop:
        listing = maildrop.listing()
        assert len(listing) == len(SHAPES)
        for index, (shape, data) in enumerate(SHAPES.items()):
            expected = p.normalize_newlines(data)
            assert listing[index].size == len(expected), shape
            assert read_all(maildrop, index) == expected, shape
            for chunk_size in (1, 2, 3, 7):
                assert read_all(maildrop, index, chunk_size) == expected, (shape, chunk_size)


def test_maildir_new_moves_to_cur(maildir: Maildir, store: MaildirStore) -> None:
    plain = maildir.deliver(b"one\n").name
    flagged = maildir.deliver(b"two\n", name="1700000100.M1P1.host:2,S").name
    (maildir.path / "new" / ".dotfile").write_bytes(b"not mail\n")
    (maildir.path / "new" / "subdir").mkdir()
    with store.open("alice") as maildrop:
        assert len(maildrop.listing()) == 2
    assert maildir.files("cur") == sorted([plain + ":2,", flagged])
    assert maildir.files("new") == [".dotfile", "subdir"]


def test_maildir_ids_are_stable_across_sessions_and_the_move(
    maildir: Maildir, store: MaildirStore
) -> None:
    names = [maildir.deliver(b"first\n").name, maildir.deliver(b"second\n").name]
    with store.open("alice") as maildrop:
        first = [info.uid for info in maildrop.listing()]
    assert first == names  # the unique name, the same in new/ and cur/
    assert maildir.files("new") == []
    with store.open("alice") as maildrop:
        assert [info.uid for info in maildrop.listing()] == first
    # A flag change by another program keeps the id.
    os.rename(
        maildir.path / "cur" / (names[0] + ":2,"), maildir.path / "cur" / (names[0] + ":2,S")
    )
    with store.open("alice") as maildrop:
        assert [info.uid for info in maildrop.listing()] == first


def test_maildir_ids_drop_size_fields_and_hash_unfit_names(
    maildir: Maildir, store: MaildirStore
) -> None:
    long_name = "1700000001." + "x" * 80
    odd_name = "1700000002.caf\u00e9"
    sized = "1700000003.M1P1.host,S=4,W=5"
    maildir.deliver(b"a\n", name=long_name)
    maildir.deliver(b"b\n", name=odd_name)
    maildir.deliver(b"abc\n", name=sized)
    with store.open("alice") as maildrop:
        uids = [info.uid for info in maildrop.listing()]
    assert uids[0] == hashlib.sha256(long_name.encode()).hexdigest()
    assert uids[1] == hashlib.sha256(odd_name.encode()).hexdigest()
    assert uids[2] == "1700000003.M1P1.host"
    for uid in uids:
        assert 1 <= len(uid) <= 70
        assert all(0x21 <= ord(c) <= 0x7E for c in uid)


def test_maildir_duplicate_unique_names_get_distinct_ids(
    maildir: Maildir, store: MaildirStore, caplog: pytest.LogCaptureFixture
) -> None:
    maildir.deliver(b"a\n", name="1700000001.M1P1.host:2,", where="cur")
    maildir.deliver(b"b\n", name="1700000001.M1P1.host:2,S", where="cur")
    with store.open("alice") as maildrop:
        uids = [info.uid for info in maildrop.listing()]
        assert read_all(maildrop, 0) + read_all(maildrop, 1) == b"a\r\nb\r\n"
    assert uids[0] == "1700000001.M1P1.host"
    assert uids[1] == hashlib.sha256(b"1700000001.M1P1.host:2,S").hexdigest()
    assert "duplicate" in caplog.text


def test_maildir_order_is_delivery_order(maildir: Maildir, store: MaildirStore) -> None:
    # Lexical order would put "10..." before "9..." and "M40" before "M5".
    names = [
        "9.M5P1.host",
        "10.M5P1.host",
        "10.M40P1.host",
        "10.M40P2.host",
        "11.1234_1.host",
    ]
    for name in reversed(names):
        maildir.deliver(name.encode() + b"\n", name=name)
    undated = maildir.deliver(b"undated\n", name="no-timestamp")
    os.utime(undated, ns=(0, 12 * 10**9))  # placed by its mtime: after 11
    with store.open("alice") as maildrop:
        order = [info.uid for info in maildrop.listing()]
    assert order == [*names, "no-timestamp"]


def test_maildir_honours_w_but_not_s(maildir: Maildir, store: MaildirStore) -> None:
    data = b"Subject: x\n\nbody\n"
    right = len(p.normalize_newlines(data))
    maildir.deliver(data, name=f"1700000001.M1P1.host,S={len(data)},W={right}")
    # S= is the size on disk, not on the wire: never used as the size.
    maildir.deliver(data, name=f"1700000002.M1P1.host,S={len(data)}")
    # Dovecot's W= leaves out the CRLF a server adds after a last line without one.
    unterminated = b"Subject: y\n\nno newline"
    dovecot_w = len(unterminated) + unterminated.count(b"\n")
    maildir.deliver(unterminated, name=f"1700000003.M1P1.host,W={dovecot_w}")
    with store.open("alice") as maildrop:
        sizes = [info.size for info in maildrop.listing()]
        assert sizes == [right, right, len(p.normalize_newlines(unterminated))]
        for index in range(3):
            assert sum(map(len, maildrop.read(index))) == sizes[index]


def count_scans(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the files whose size MaildirStore counts by reading them."""
    calls: list[str] = []
    original = _maildir._scan_wire_size

    def scan(file: BinaryIO, chunk_size: int = 1024 * 1024) -> int:
        calls.append(str(file.name))
        return original(file, chunk_size)

    monkeypatch.setattr(_maildir, "_scan_wire_size", scan)
    return calls


def test_maildir_w_is_trusted_without_reading_the_file(
    maildir: Maildir, store: MaildirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    maildir.deliver(b"body\n", name="1700000001.M1P1.host,W=6")
    calls = count_scans(monkeypatch)
    with store.open("alice") as maildrop:
        assert maildrop.listing()[0].size == 6
    assert calls == []


@pytest.mark.parametrize("claimed", [18, 30])  # the truth is 20; 17 to 34 are possible
def test_maildir_lying_w_fails_on_read(
    maildir: Maildir, store: MaildirStore, claimed: int
) -> None:
    maildir.deliver(b"Subject: x\n\nbody\n", name=f"1700000001.M1P1.host,W={claimed}")
    with store.open("alice") as maildrop:
        assert maildrop.listing()[0].size == claimed  # a W= the file's size allows is believed
        chunks = maildrop.read(0)
        with pytest.raises(MaildropError, match="listed"):
            next(chunks)  # a one-chunk message fails before any octet is served


def test_maildir_lying_w_fails_mid_stream_for_big_messages(
    maildir: Maildir, store: MaildirStore
) -> None:
    data = b"line\n" * 1000  # W is 6000; 5000 to 10000 are possible
    maildir.deliver(data, name="1700000001.M1P1.host,W=5500")
    with store.open("alice") as maildrop:
        served: list[int] = []

        chunks = maildrop.read(0, chunk_size=500)
        with pytest.raises(MaildropError, match="longer"):
            served.extend(len(chunk) for chunk in chunks)
        assert sum(served) <= 5500  # never more than the listed size


def dovecot_w(data: bytes) -> int:
    """Dovecot's ``,W=``: every bare LF counted as CRLF, no CRLF added at the end."""
    return len(data) + data.count(b"\n") - data.count(b"\r\n")


def test_w_fits_is_exactly_the_sizes_files_can_have() -> None:
    # Every file of up to 6 octets from the octets that matter (LF, CR, other).
    possible: dict[tuple[int, int], set[int]] = {}
    for length in range(7):
        for data in map(bytes, itertools.product(b"\n\ra", repeat=length)):
            last = data[-1] if data else -1
            possible.setdefault((length, last), set()).add(dovecot_w(data))
    for (length, last), sizes in possible.items():
        fitting = {w for w in range(3 * length + 3) if _maildir._w_fits(w, length, last)}
        assert fitting == sizes, (length, last)


@pytest.mark.parametrize(
    ("data", "claimed"),
    [
        (b"Subject: small\n\nhello\n", 10),  # below the size on disk
        (b"Subject: small\n\nhello\n", 45),  # above twice the size on disk
        (b"\n", 1),  # a lone LF is a bare LF
        (b"\n\nX", 6),  # the last octet is no LF, so at most 2 bare LFs
        (b"", 2),
    ],
)
def test_maildir_impossible_w_is_ignored(
    maildir: Maildir,
    store: MaildirStore,
    caplog: pytest.LogCaptureFixture,
    data: bytes,
    claimed: int,
) -> None:
    maildir.deliver(data, name=f"1700000001.M1P1.host,S={len(data)},W={claimed}")
    expected = p.normalize_newlines(data)
    with store.open("alice") as maildrop:
        assert maildrop.listing()[0].size == len(expected)  # counted instead
        assert read_all(maildrop, 0) == expected
    assert "ignoring ,W=" in caplog.text


@pytest.mark.parametrize(
    ("data", "limits"),
    [
        (b"", (0, 0)),
        (b"\n", (2, 2)),
        (b"\r\n", (2, 4)),
        (b"x\n\n", (3, 6)),
        (b"a\r", (2, 3)),
        (b"\n\nX", (3, 5)),
    ],
)
def test_maildir_w_at_the_limits_is_trusted(
    maildir: Maildir,
    store: MaildirStore,
    monkeypatch: pytest.MonkeyPatch,
    data: bytes,
    limits: tuple[int, int],
) -> None:
    # The smallest and the largest W a file of this size and last octet can have.
    least, most = limits
    maildir.deliver(data, name=f"1700000001.M1P1.host,W={least}")
    maildir.deliver(data, name=f"1700000002.M1P1.host,W={most}")
    calls = count_scans(monkeypatch)
    added = 2 if data and data[-1:] != b"\n" else 0
    with store.open("alice") as maildrop:
        assert [info.size for info in maildrop.listing()] == [least + added, most + added]
    assert calls == []


def test_maildir_file_vanishing_before_read(maildir: Maildir, store: MaildirStore) -> None:
    maildir.deliver(b"gone\n")
    with store.open("alice") as maildrop:
        for name in maildir.files("cur"):
            os.unlink(maildir.path / "cur" / name)
        with pytest.raises(MaildropError):
            read_all(maildrop, 0)


def test_maildir_flag_change_during_the_session(maildir: Maildir, store: MaildirStore) -> None:
    name = maildir.deliver(b"keep\n").name
    maildir.deliver(b"other\n")
    with store.open("alice") as maildrop:
        os.rename(maildir.path / "cur" / (name + ":2,"), maildir.path / "cur" / (name + ":2,RS"))
        assert read_all(maildrop, 0) == b"keep\r\n"
        os.rename(maildir.path / "cur" / (name + ":2,RS"), maildir.path / "cur" / (name + ":2,T"))
        assert maildrop.commit([0])
    assert len(maildir.files("cur")) == 1
    assert not maildir.files("cur")[0].startswith(name)


def test_maildir_commit_removes_only_the_listed(maildir: Maildir, store: MaildirStore) -> None:
    for i in range(4):
        maildir.deliver(b"message %d\n" % i)
    with store.open("alice") as maildrop:
        listed = maildir.files("cur")
        late = maildir.deliver(b"late\n")  # not in this session's listing
        with pytest.raises(IndexError):
            maildrop.commit([1, -1])  # refused as a whole: nothing removed
        assert maildir.files("cur") == listed
        assert maildrop.commit([1, 3])
    assert maildir.files("cur") == [listed[0], listed[2]]
    assert maildir.files("new") == [late.name]


def test_maildir_commit_with_a_vanished_file(maildir: Maildir, store: MaildirStore) -> None:
    for i in range(3):
        maildir.deliver(b"message %d\n" % i)
    with store.open("alice") as maildrop:
        listed = maildir.files("cur")
        os.unlink(maildir.path / "cur" / listed[1])
        assert maildrop.commit([0, 1, 2]) is False
    assert maildir.files("cur") == []


def test_maildir_vanished_file_never_finds_another_message_by_its_unique_name(
    maildir: Maildir, store: MaildirStore
) -> None:
    # One unique name, two listed messages (the one in new/ stays there, its name
    # being taken in cur/): when one file vanishes, the other file is not it.
    unique = "1700000001.M1P1.host"
    maildir.deliver(b"keep me\n", name=unique + ":2,", where="cur")
    doomed = maildir.deliver(b"drop me\n", name=unique)  # the same size: RETR cannot tell
    with store.open("alice") as maildrop:
        contents = [read_all(maildrop, i) for i in range(2)]
        index = contents.index(b"drop me\r\n")
        doomed.unlink()  # expunged by another program before QUIT
        with pytest.raises(MaildropError):
            read_all(maildrop, index)  # not the other message's bytes
        assert maildrop.commit([index]) is False  # nothing of it left to remove
    assert maildir.files("cur") == [unique + ":2,"]
    assert maildir.files("new") == []


def test_maildir_lock_in_process(maildir: Maildir, store: MaildirStore) -> None:
    maildrop = store.open("alice")
    with pytest.raises(MaildropLocked):
        store.open("alice")
    with pytest.raises(MaildropLocked):
        MaildirStore(maildir.template).open("alice")  # another store object, same Maildir
    maildrop.close()
    maildrop.close()  # idempotent
    with store.open("alice"):
        pass
    assert (maildir.path / "pop3.lock").exists()


def test_maildir_flock_alone_excludes_a_second_descriptor(
    maildir: Maildir, store: MaildirStore
) -> None:
    # A flock taken through another descriptor in this process (not through the
    # registry) is seen: flock locks belong to open file descriptions.
    fd = os.open(maildir.path / "pop3.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(MaildropLocked, match="another process"):
            store.open("alice")
    finally:
        os.close(fd)
    store.open("alice").close()


def test_maildir_in_process_registry_without_flock(
    maildir: Maildir, store: MaildirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Where flock is emulated with per-process fcntl locks, the registry still
    # keeps two sessions of this process apart.
    monkeypatch.setattr(fcntl, "flock", lambda fd, operation: None)
    maildrop = store.open("alice")
    with pytest.raises(MaildropLocked, match="this process"):
        store.open("alice")
    maildrop.close()
    store.open("alice").close()


HOLDER = """
import sys
from pop3_stores import MaildirStore
maildrop = MaildirStore(sys.argv[1]).open("alice")
print("locked", flush=True)
sys.stdin.read()
"""


def test_maildir_lock_across_processes(maildir: Maildir, store: MaildirStore) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, maildir.template],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    ) as holder:
        try:
            assert holder.stdout is not None
            ready, _, _ = select.select([holder.stdout], [], [], 30)
            assert ready, "the lock holder did not start"
            assert holder.stdout.readline() == b"locked\n"
            with pytest.raises(MaildropLocked):
                store.open("alice")
        finally:
            holder.kill()
            holder.wait(timeout=10)
    store.open("alice").close()  # the dead process's lock is gone


def test_maildir_skips_symlinks(maildir: Maildir, store: MaildirStore, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"root:x:0:0\n")
    os.symlink(secret, maildir.path / "cur" / "1700000001.M1P1.host:2,")
    os.symlink(secret, maildir.path / "new" / "1700000002.M1P1.host")
    maildir.deliver(b"real\n")
    with store.open("alice") as maildrop:
        assert len(maildrop.listing()) == 1
        assert read_all(maildrop, 0) == b"real\r\n"


def without_blocking_on(fifo: Path, call: Callable[[], object]) -> object:
    """What `call()` returns or raises; fails the test if it blocks opening `fifo`."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(timeout=5)
    if worker.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # a writer: the open returns
        worker.join(timeout=5)
        pytest.fail(f"blocked opening the FIFO {fifo}")
    return outcome[0]


def test_maildir_fifo_at_a_message_path_is_refused_without_blocking(
    maildir: Maildir, store: MaildirStore
) -> None:
    # A user who can write their Maildir swaps a message for a FIFO: waiting
    # for a writer would hang the session with the maildrop locked.
    maildir.deliver(b"x\n")
    with store.open("alice") as maildrop:
        path = maildir.path / "cur" / maildir.files("cur")[0]
        path.unlink()
        os.mkfifo(path)
        outcome = without_blocking_on(path, lambda: read_all(maildrop, 0))
        assert isinstance(outcome, MaildropError)
        assert "not a regular file" in str(outcome)


def test_maildir_fifo_swapped_in_at_login_is_skipped(
    maildir: Maildir, store: MaildirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = maildir.deliver(b"swapped\n").name + ":2,"
    maildir.deliver(b"kept\n")
    real_open = _maildir._open_regular

    def swap_then_open(path: str) -> BinaryIO:
        if os.path.basename(path) == victim and os.path.isfile(path):
            os.unlink(path)  # between the stat and the open
            os.mkfifo(path)
        return real_open(path)

    monkeypatch.setattr(_maildir, "_open_regular", swap_then_open)
    fifo = maildir.path / "cur" / victim
    maildrop = without_blocking_on(fifo, lambda: store.open("alice"))
    assert isinstance(maildrop, _maildir.MaildirMaildrop)
    with maildrop:
        assert [read_all(maildrop, i) for i in range(len(maildrop.listing()))] == [b"kept\r\n"]


def test_maildir_file_that_cannot_be_read_at_login_is_skipped(
    maildir: Maildir, store: MaildirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One unreadable file (EIO, EACCES) does not lock the user out of the rest."""
    victim = maildir.deliver(b"unreadable\n").name + ":2,"
    maildir.deliver(b"kept\n")
    real_open = _maildir._open_regular

    def failing_open(path: str) -> BinaryIO:
        if os.path.basename(path) == victim:
            raise OSError(errno.EIO, "Input/output error", path)
        return real_open(path)

    monkeypatch.setattr(_maildir, "_open_regular", failing_open)
    with store.open("alice") as maildrop:
        assert [read_all(maildrop, i) for i in range(len(maildrop.listing()))] == [b"kept\r\n"]
    assert victim in maildir.files("cur")  # left alone


def test_maildir_name_taken_in_cur_stays_in_new(maildir: Maildir, store: MaildirStore) -> None:
    maildir.deliver(b"old\n", name="1700000001.M1P1.host:2,", where="cur")
    maildir.deliver(b"new\n", name="1700000001.M1P1.host")
    with store.open("alice") as maildrop:
        assert len(maildrop.listing()) == 2
        assert {read_all(maildrop, 0), read_all(maildrop, 1)} == {b"old\r\n", b"new\r\n"}
    assert maildir.files("new") == ["1700000001.M1P1.host"]  # not overwritten


def test_maildir_name_too_long_for_cur_stays_in_new(
    maildir: Maildir, store: MaildirStore, caplog: pytest.LogCaptureFixture
) -> None:
    maildir.deliver(b"old\n", where="cur")
    # As long as a name can be: with ":2," appended it cannot (ENAMETOOLONG).
    longest = os.pathconf(maildir.path / "new", "PC_NAME_MAX")
    long_name = (maildir.name() + "." + "h" * longest)[:longest]
    maildir.deliver(b"new\n", name=long_name)
    with store.open("alice") as maildrop:
        assert [read_all(maildrop, i) for i in range(2)] == [b"old\r\n", b"new\r\n"]
        assert maildrop.listing()[1].uid == hashlib.sha256(long_name.encode()).hexdigest()
        assert maildrop.commit([1])
    assert maildir.files("new") == []
    assert len(maildir.files("cur")) == 1
    assert "cannot move" in caplog.text


@pytest.mark.parametrize(
    "error", [PermissionError(errno.EACCES, "denied"), OSError(errno.EXDEV, "cross-device")]
)
def test_maildir_file_that_cannot_be_moved_is_served_from_new(
    maildir: Maildir, store: MaildirStore, monkeypatch: pytest.MonkeyPatch, error: OSError
) -> None:
    stuck = maildir.deliver(b"stuck\n").name
    maildir.deliver(b"moved\n")
    real_rename = os.rename

    def rename(source: str, destination: str) -> None:
        if os.path.basename(source) == stuck:
            raise error
        real_rename(source, destination)

    monkeypatch.setattr(os, "rename", rename)
    with store.open("alice") as maildrop:
        assert [read_all(maildrop, i) for i in range(2)] == [b"stuck\r\n", b"moved\r\n"]
    assert maildir.files("new") == [stuck]


def test_maildir_tolerates_files_vanishing_during_the_move(
    maildir: Maildir, store: MaildirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = maildir.deliver(b"taken\n").name
    maildir.deliver(b"stays\n")
    real_rename = os.rename

    def rename(source: str, destination: str) -> None:
        if os.path.basename(source) == victim:
            os.unlink(source)  # another reader took it first
            raise FileNotFoundError(source)
        real_rename(source, destination)

    monkeypatch.setattr(os, "rename", rename)
    with store.open("alice") as maildrop:
        assert [read_all(maildrop, i) for i in range(len(maildrop.listing()))] == [b"stays\r\n"]


def test_maildir_sizes_are_cached(
    maildir: Maildir, store: MaildirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    maildir.deliver(b"one\n")
    maildir.deliver(b"two\n")
    calls = count_scans(monkeypatch)
    with store.open("alice") as maildrop:
        first = maildrop.listing()
    assert len(calls) == 2
    with store.open("alice") as maildrop:
        assert maildrop.listing() == first
    assert len(calls) == 2  # nothing re-read
    path = maildir.path / "cur" / maildir.files("cur")[0]
    path.write_bytes(b"changed and longer\n")  # (never done to real mail; the key notices)
    with store.open("alice") as maildrop:
        assert maildrop.listing()[0].size == len(b"changed and longer\r\n")
    assert len(calls) == 3


def test_maildir_big_message_streams_in_bounded_chunks(
    maildir: Maildir, store: MaildirStore
) -> None:
    line = b"The quick brown fox jumps over the lazy dog. \xe2\x9c\x93\n"
    data = line * (4 * 1024 * 1024 // len(line))  # about 4 MiB, LF line ends
    maildir.deliver(data)
    expected = p.normalize_newlines(data)
    chunk_size = 64 * 1024
    with store.open("alice") as maildrop:
        assert maildrop.listing()[0].size == len(expected)
        chunks = maildrop.read(0, chunk_size)
        assert isinstance(chunks, types.GeneratorType)
        digest = hashlib.sha256()
        total = count = 0
        for chunk in chunks:
            assert 0 < len(chunk) <= 2 * chunk_size + 2
            digest.update(chunk)
            total += len(chunk)
            count += 1
    assert total == len(expected)
    assert count >= len(data) // chunk_size
    assert digest.digest() == hashlib.sha256(expected).digest()


def test_maildir_read_can_stop_early(maildir: Maildir, store: MaildirStore) -> None:
    maildir.deliver(b"Subject: x\n\n" + b"body\n" * 10000)
    with store.open("alice") as maildrop:
        chunks = maildrop.read(0, chunk_size=1024)
        assert next(chunks).startswith(b"Subject: x\r\n\r\n")
        chunks.close()  # as TOP does; the file is closed (no ResourceWarning)
        maildrop.commit([0])
    assert maildir.files("cur") == []


def test_maildir_closed_maildrop_refuses(maildir: Maildir, store: MaildirStore) -> None:
    maildir.deliver(b"x\n")
    maildrop = store.open("alice")
    maildrop.close()
    with pytest.raises(MaildropError):
        maildrop.read(0)
    with pytest.raises(MaildropError):
        maildrop.commit([0])
    assert len(maildir.files("cur")) == 1


@pytest.mark.parametrize("seed", range(5))
def test_scan_wire_size_matches_wire_size(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    data = bytes(rng.choice(b"\r\nab.") for _ in range(rng.randrange(0, 400)))
    path = tmp_path / "message"
    path.write_bytes(data)
    for chunk_size in (1, 2, 3, 5, 64, 1024):
        with open(path, "rb") as file:
            assert _maildir._scan_wire_size(file, chunk_size) == p.wire_size(data), chunk_size


# ================================================================ authenticators


def test_memory_authenticator() -> None:
    stored = p.Credential.parse(p.hash_password("hashed", rounds=4096))
    auth = MemoryAuthenticator(
        {"alice": "secret", "bob": stored}, tokens={"alice": "t\u00f6ken", "bob": "abc"}
    )
    alice = auth.credential("alice")
    assert alice is not None
    assert alice.verify_password("secret")
    assert not alice.verify_password("wrong")
    assert auth.credential("bob") is stored
    assert auth.credential("carol") is None
    # bob's SCRAM-SHA-256 keys serve neither CRAM-MD5 nor SCRAM-SHA-1
    assert auth.mechanisms() == ["SCRAM-SHA-256", "PLAIN", "LOGIN"]
    assert MemoryAuthenticator({"alice": "secret"}).mechanisms() == [
        "SCRAM-SHA-256",
        "SCRAM-SHA-1",
        "CRAM-MD5",
        "PLAIN",
        "LOGIN",
    ]
    # The answer is the token's owner; the session compares it with whom the client named.
    assert auth.check_token("alice", "t\u00f6ken", "XOAUTH2") == "alice"
    assert auth.check_token("alice", "abc", "OAUTHBEARER") == "bob"
    assert auth.check_token("carol", "unknown", "XOAUTH2") is False
    assert MemoryAuthenticator({"alice": "x"}).check_token("alice", "", "XOAUTH2") is False
    with pytest.raises(ValueError, match="same token"):
        MemoryAuthenticator({}, tokens={"a": "t", "b": "t"})


def passwd_line(user: str, password: str, scheme: str = "SCRAM-SHA-256") -> str:
    credential = p.Credential.parse(p.hash_password(password, scheme))
    return p.format_passwd_line(p.PasswdEntry(user, credential))


def test_passwd_file_authenticator(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text(
        "# comment\n\n"
        + passwd_line("alice", "secret")
        + "\n"
        + passwd_line("bob", "pencil", "SSHA512")
        + "\n"
        + passwd_line("alice", "second line loses")
        + "\n"
    )
    auth = PasswdFileAuthenticator(users)
    assert isinstance(auth, Authenticator)
    alice = auth.credential("alice")
    assert alice is not None
    assert alice.verify_password("secret")
    assert not alice.verify_password("second line loses")
    bob = auth.credential("bob")
    assert bob is not None
    assert bob.verify_password("pencil")
    assert auth.credential("carol") is None
    assert auth.credential("Alice") is None  # exact match
    assert auth.mechanisms() == ["PLAIN", "LOGIN"]  # bob's SSHA512 serves no SCRAM
    assert auth.check_token("alice", "anything", "XOAUTH2") is False


def test_passwd_file_is_reloaded_when_it_changes(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text(passwd_line("alice", "old", "PLAIN") + "\n")
    auth = PasswdFileAuthenticator(users)
    first = auth.credential("alice")
    assert first is not None
    assert first.verify_password("old")
    assert auth.credential("alice") is first  # unchanged file: not re-read
    # Replaced atomically, as an editor or `passwd` would (a new inode).
    replacement = tmp_path / "users.new"
    replacement.write_text(passwd_line("alice", "new", "PLAIN") + "\n")
    os.replace(replacement, users)
    second = auth.credential("alice")
    assert second is not None
    assert second.verify_password("new")
    assert auth.mechanisms() == ["SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN"]
    # Rewritten in place with the same size: the mtime tells.
    users.write_text(passwd_line("alice", "neu", "PLAIN") + "\n")
    os.utime(users, ns=(0, 10**9))
    third = auth.credential("alice")
    assert third is not None
    assert third.verify_password("neu")


def test_passwd_file_missing_then_created(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    users = tmp_path / "users"
    with caplog.at_level(logging.WARNING, logger="pop3_stores"):
        auth = PasswdFileAuthenticator(users)
        assert auth.credential("alice") is None
        assert auth.credential("alice") is None
    warnings = [r for r in caplog.records if r.name == "pop3_stores"]
    assert len(warnings) == 1  # once, not on every call
    assert "no users" in warnings[0].getMessage()
    users.write_text(passwd_line("alice", "secret") + "\n")
    alice = auth.credential("alice")
    assert alice is not None
    assert alice.verify_password("secret")
    users.unlink()
    assert auth.credential("alice") is None


def test_passwd_file_unreadable(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    users = tmp_path / "users"
    users.mkdir()  # opening it fails, as for a file without read permission
    with caplog.at_level(logging.WARNING, logger="pop3_stores"):
        auth = PasswdFileAuthenticator(users)
        assert auth.credential("alice") is None
    assert "cannot read the users file" in caplog.text


def test_passwd_file_skips_malformed_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    users = tmp_path / "users"
    users.write_bytes(
        b"broken:{SCRAM-SHA-256}1,bad\n"
        + passwd_line("alice", "secret").encode()
        + b"\n"
        + b"latin:{PLAIN}caf\xe9\n"
        + passwd_line("bob", "pencil").encode()
        + b"\n"
    )
    with caplog.at_level(logging.WARNING, logger="pop3_stores"):
        auth = PasswdFileAuthenticator(users)
    assert auth.credential("broken") is None
    assert auth.credential("latin") is None
    assert auth.credential("alice") is not None
    assert auth.credential("bob") is not None
    messages = [r.getMessage() for r in caplog.records if r.name == "pop3_stores"]
    assert any("line 1" in m for m in messages)
    assert any("line 3" in m and "UTF-8" in m for m in messages)


def test_passwd_file_is_thread_safe(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text(passwd_line("alice", "a", "PLAIN") + "\n")
    auth = PasswdFileAuthenticator(users)
    stop = threading.Event()
    errors: list[BaseException] = []

    def lookups() -> None:
        try:
            while not stop.is_set():
                credential = auth.credential("alice")
                assert credential is not None
                assert credential.secret in ("a", "b")
        except BaseException as exc:
            errors.append(exc)

    readers = [threading.Thread(target=lookups) for _ in range(4)]
    for reader in readers:
        reader.start()
    try:
        for i in range(50):
            replacement = tmp_path / "users.new"
            replacement.write_text(passwd_line("alice", "ab"[i % 2], "PLAIN") + "\n")
            os.replace(replacement, users)
    finally:
        stop.set()
        for reader in readers:
            reader.join(timeout=10)
    assert not errors


# ================================================================ end to end


@pytest.fixture
def running_server(tmp_path: Path) -> Iterator[tuple[Server, Maildir, list[Path]]]:
    maildir = Maildir(tmp_path / "mail")
    messages = [
        b"Subject: one\n\n.leading dot\nbody\n",
        b"Subject: two\r\n\r\nCRLF stored\r\n",
        b"Subject: three\n\nno final newline \xff",
    ]
    paths = [maildir.deliver(m) for m in messages]
    users = tmp_path / "users"
    users.write_text(passwd_line("alice", "secret") + "\n")
    server = Server(
        MaildirStore(maildir.template),
        PasswdFileAuthenticator(users),
        port=0,
        auth_failure_delay=0,
    ).start()
    try:
        yield server, maildir, paths
    finally:
        server.shutdown()


def connect(server: Server) -> Client:
    assert server.port is not None
    return Client("127.0.0.1", server.port, tls="none", timeout=10, connect_timeout=10)


def test_end_to_end_maildir_server(
    running_server: tuple[Server, Maildir, list[Path]],
) -> None:
    server, maildir, paths = running_server
    expected = [p.normalize_newlines(path.read_bytes()) for path in paths]
    names = [path.name for path in paths]
    with connect(server) as client:
        client.login("alice", "secret")
        assert client.stat() == (3, sum(map(len, expected)))
        assert client.list() == {i + 1: len(m) for i, m in enumerate(expected)}
        assert client.uidl() == {i + 1: name for i, name in enumerate(names)}
        for i, message in enumerate(expected):
            assert client.retr(i + 1) == message
        assert client.top(1, 0) == b"Subject: one\r\n\r\n"
        # A second session for the same user is refused while this one holds the lock.
        with connect(server) as other, pytest.raises(p.MailboxInUse):
            other.login("alice", "secret")
        client.dele(2)
    assert maildir.files("cur") == sorted([names[0] + ":2,", names[2] + ":2,"])
    with connect(server) as client:
        client.login("alice", "secret")
        assert client.uidl() == {1: names[0], 2: names[2]}
        assert client.retr(2) == expected[2]


def test_end_to_end_without_quit_deletes_nothing(
    running_server: tuple[Server, Maildir, list[Path]],
) -> None:
    server, maildir, _ = running_server
    client = connect(server)
    client.login("alice", "secret")
    client.dele(1)
    client.close()  # no QUIT: no UPDATE
    for _ in range(100):  # the server closes the maildrop once it sees EOF
        try:
            MaildirStore(maildir.template).open("alice").close()
            break
        except MaildropLocked:
            time.sleep(0.05)
    else:
        pytest.fail("the server never released the maildrop")
    assert len(maildir.files("cur")) == 3
