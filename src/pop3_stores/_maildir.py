"""`MaildirStore`: one Maildir per user, locked with ``flock`` across processes."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
import sys
import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from pop3core import MessageInfo, NewlineNormalizer, WireSizer, is_valid_uid

from ._interfaces import MaildropError, MaildropLocked
from ._maildrops import DEFAULT_CHUNK, SessionMaildrop, check_indexes

if sys.platform != "win32":
    import fcntl

__all__ = ["MaildirMaildrop", "MaildirStore"]

logger = logging.getLogger("pop3_stores")

_LF = 0x0A
_SCAN_CHUNK = 1024 * 1024  # for sizing files: big reads, one buffer at a time


_LOCK_NAME = "pop3.lock"  # distinct from Dovecot's dovecot-uidlist.lock (a dotlock)
_INFO_SEP = ":"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOCTTY = getattr(os, "O_NOCTTY", 0)
# ",S=<n>" / ",W=<n>" fields between the unique name and the info (Dovecot, Courier).
_SIZE_FIELD = re.compile(r",([SW])=([0-9]+)(?=,|\Z)")
# The delivery time of a conventional unique name: "<seconds>.<...M<usec>...>.<host>".
_DELIVERY_TIME = re.compile(r"([0-9]+)\.([^.]*)")
_MICROSECONDS = re.compile(r"M([0-9]+)")

# Maildirs locked by this process, by (st_dev, st_ino) of the lock file. flock
# already keeps two descriptors of one process apart on Linux, but not where it
# is emulated with fcntl locks (which are per process) or on some network file
# systems; this registry makes in-process exclusion independent of that.
_held: set[tuple[int, int]] = set()
_held_lock = threading.Lock()


def _check_username(username: str) -> None:
    """Refuse a user name that could leave the path template's directory."""
    bad = (
        not username
        or username.startswith(".")
        or ".." in username
        or "/" in username
        or os.sep in username
        or (os.altsep is not None and os.altsep in username)
        or any(ord(c) < 0x20 or c == "\x7f" for c in username)  # NUL, newlines: never a path
    )
    if bad:
        raise MaildropError(f"refusing the user name {username!r} in a Maildir path")


def _unique_name(name: str) -> str:
    """The file name without its info (``:2,FLAGS``): what flag changes keep."""
    return name.split(_INFO_SEP, 1)[0]


def _uid_for(unique: str) -> str:
    """The UIDL: the unique name without its size fields, or a digest if unfit.

    The size fields are dropped so that a tool adding ``,W=`` does not change
    the id; a name that is not 1-70 printable ASCII characters becomes a
    SHA-256 hex digest (64 characters) of itself.
    """
    base = _SIZE_FIELD.sub("", unique)
    if is_valid_uid(base):
        return base
    return hashlib.sha256(os.fsencode(base)).hexdigest()


def _delivery_order(name: str, st: os.stat_result) -> tuple[int, int, str]:
    """Sort key: the unique name's time (seconds, then microseconds), then the name.

    A name that does not start with ``<seconds>.`` is placed by its mtime.
    """
    match = _DELIVERY_TIME.match(name)
    if match is None:
        return st.st_mtime_ns // 10**9, st.st_mtime_ns // 1000 % 10**6, name
    micro = _MICROSECONDS.search(match.group(2))
    return int(match.group(1)), int(micro.group(1)) if micro else 0, name


def _open_regular(path: str) -> BinaryIO:
    """Open a message file for reading; never through a symlink, never a non-file.

    A Maildir may belong to the user while the server reads it with more
    rights: a symlink planted in cur/ must not serve, say, /etc/shadow.
    Anything but a regular file is `MaildropError`; the open never blocks on it.
    """
    # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer
    # forever, and a stat before the open cannot rule one out (the file may be
    # swapped in between); only the fstat of what was opened can.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW | _CLOEXEC | _NOCTTY)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise MaildropError(f"{path} is not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise


def _scan_wire_size(file: BinaryIO, chunk_size: int = _SCAN_CHUNK) -> int:
    """`pop3core.wire_size` of a file's contents, reading it in chunks."""
    sizer = WireSizer()
    while chunk := file.read(chunk_size):
        sizer.feed(chunk)
    return sizer.size


def _w_fits(virtual: int, disk_size: int, last: int) -> bool:
    """Whether `virtual` can be the Dovecot ``,W=`` of a file of `disk_size` octets.

    W is the size on disk plus one per bare LF: at most one per octet, less
    one if the last octet (`last`, -1 if none) is not an LF; a file that is
    just an LF has exactly one.
    """
    bare_lf = virtual - disk_size
    most = disk_size if last == _LF else max(disk_size - 1, 0)
    least = 1 if disk_size == 1 and last == _LF else 0
    return least <= bare_lf <= most


def _last_octet(file: BinaryIO, size: int) -> int:
    if size == 0:
        return -1
    file.seek(size - 1)
    data = file.read(1)
    return data[0] if data else -1


@dataclass(slots=True)
class _MaildirMessage:
    path: str  # where it was at open time (updated if found renamed)
    unique: str  # the name before the info, for finding it after a flag change
    uid: str
    size: int


class _Lock:
    """An exclusive ``flock`` on the Maildir's lock file, plus the in-process registry."""

    def __init__(self, maildir: str) -> None:
        path = os.path.join(maildir, _LOCK_NAME)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | _NOFOLLOW | _CLOEXEC, 0o600)
        except OSError as exc:
            raise MaildropError(f"cannot open the lock file {path}: {exc}") from exc
        try:
            st = os.fstat(fd)
            key = (st.st_dev, st.st_ino)
            with _held_lock:
                if key in _held:
                    raise MaildropLocked(f"{maildir} is in use by this process")
                _held.add(key)
        except BaseException:
            os.close(fd)
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException as exc:
            with _held_lock:
                _held.discard(key)
            os.close(fd)
            if isinstance(exc, BlockingIOError):
                raise MaildropLocked(f"{maildir} is in use by another process") from None
            if isinstance(exc, OSError):
                raise MaildropError(f"cannot lock {path}: {exc}") from exc
            raise
        self._fd: int | None = fd
        self._key = key

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        # Closing the only descriptor releases the flock. The lock file stays:
        # removing it would let two processes lock two different files.
        os.close(fd)
        with _held_lock:
            _held.discard(self._key)


class MaildirStore:
    """One Maildir per user, at `path_template` with ``{user}`` replaced.

    Opening a maildrop:

    * refuses user names that could leave the template's directory (empty,
      a leading ``.``, ``..``, ``/``, NUL or another control character) with
      `MaildropError`;
    * needs ``cur/`` and ``new/``; with ``create=True`` missing directories
      (``cur``, ``new``, ``tmp``) are made (mode 0700), otherwise a missing
      Maildir is a `MaildropError`: a typo in the template then shows up as an
      error instead of as an empty mailbox;
    * takes an exclusive ``flock`` on ``pop3.lock`` in the Maildir (other
      processes and other sessions of this one get `MaildropLocked`);
    * moves every file in ``new/`` to ``cur/`` with ``:2,`` appended (as
      Dovecot does), skipping dotfiles and anything but regular files; a file
      that cannot be moved (its name taken in cur/, too long, no permission)
      is served from ``new/``;
    * lists every regular non-dot file in ``cur/``, flags ignored (as
      Dovecot's POP3 does), in delivery order: the unique name's leading
      seconds, then its ``M<microseconds>`` part, then the name.

    A message's unique id is its unique name (before ``:``) without ``,S=``/
    ``,W=`` fields, or a SHA-256 hex digest of that if it is not a valid UIDL;
    the id does not change when new/ becomes cur/ or flags change. Its size is
    ``,W=`` (Dovecot's CRLF size; plus 2 if the file lacks a final newline,
    which Dovecot does not count but every server sends) if the file's size
    on disk allows it, otherwise counted from the file once and kept in
    memory by (device, inode, mtime, size).
    ``,S=`` is the size on disk, never the wire size. The store only ever
    renames new/ to cur/ and unlinks on commit; it never rewrites a file.
    """

    def __init__(self, path_template: str | os.PathLike[str], *, create: bool = False) -> None:
        if sys.platform == "win32":
            raise OSError("MaildirStore needs flock (a POSIX system)")
        template = os.fspath(path_template)
        if "{user}" not in template:
            raise ValueError("path_template must contain {user}")
        self.path_template = template
        self.create = create
        self._cache_lock = threading.Lock()
        # maildir -> {(dev, ino, mtime_ns, size, W or -1): wire size}; replaced on
        # each open, so it holds only messages that still exist.
        self._sizes: dict[str, dict[tuple[int, int, int, int, int], int]] = {}

    def path_for(self, username: str) -> str:
        """The Maildir of `username`; `MaildropError` for a refused user name."""
        _check_username(username)
        return self.path_template.replace("{user}", username)

    def open(self, username: str) -> MaildirMaildrop:
        """Open and lock `username`'s Maildir (see the class docstring)."""
        maildir = self.path_for(username)
        cur, new = os.path.join(maildir, "cur"), os.path.join(maildir, "new")
        try:
            if self.create:
                for sub in ("cur", "new", "tmp"):
                    os.makedirs(os.path.join(maildir, sub), mode=0o700, exist_ok=True)
            if not (os.path.isdir(cur) and os.path.isdir(new)):
                raise MaildropError(f"no Maildir (cur/ and new/) at {maildir}")
        except OSError as exc:
            raise MaildropError(f"cannot open the Maildir {maildir}: {exc}") from exc
        lock = _Lock(maildir)
        try:
            messages = self._scan(maildir, cur, new)
        except BaseException as exc:
            lock.release()
            if isinstance(exc, OSError):
                raise MaildropError(f"cannot read the Maildir {maildir}: {exc}") from exc
            raise
        return MaildirMaildrop(maildir, lock, messages)

    def _scan(self, maildir: str, cur: str, new: str) -> list[_MaildirMessage]:
        found: list[tuple[str, str, os.stat_result]] = []
        stuck = self._deliver_new(cur, new)
        for directory, name in [*((cur, n) for n in os.listdir(cur)), *stuck]:
            if name.startswith("."):
                continue
            try:
                st = os.stat(os.path.join(directory, name), follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed meanwhile (by another MUA or a cleaner)
            if stat.S_ISREG(st.st_mode):
                found.append((directory, name, st))
            elif stat.S_ISLNK(st.st_mode):
                logger.warning("skipping the symlink %s in %s", name, directory)
        found.sort(key=lambda item: _delivery_order(item[1], item[2]))

        with self._cache_lock:
            known = self._sizes.get(maildir, {})
        sizes: dict[tuple[int, int, int, int, int], int] = {}
        messages: list[_MaildirMessage] = []
        uids: set[str] = set()
        for directory, name, st in found:
            path = os.path.join(directory, name)
            unique = _unique_name(name)
            fields = dict(_SIZE_FIELD.findall(unique))
            virtual = int(fields["W"]) if "W" in fields else -1
            key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size, virtual)
            size = known.get(key)
            if size is None:
                try:
                    size = self._wire_size(path, st.st_size, virtual)
                except FileNotFoundError:
                    continue
                except (MaildropError, OSError) as exc:
                    # No longer a regular file (swapped since the stat), or not
                    # readable (EACCES, EIO): it could not be served anyway, and
                    # one such file must not lock the user out of the others.
                    logger.warning("skipping %s: %s", name, exc)
                    continue
            sizes[key] = size
            uid = _uid_for(unique)
            if uid in uids:
                # Two files with one unique name (a broken copy): keep both
                # reachable; the second gets a digest of its whole name.
                logger.warning("duplicate unique name %s in %s", unique, maildir)
                uid = hashlib.sha256(os.fsencode(name)).hexdigest()
                if uid in uids:
                    continue
            uids.add(uid)
            messages.append(_MaildirMessage(path, unique, uid, size))
        with self._cache_lock:
            self._sizes[maildir] = sizes
        return messages

    @staticmethod
    def _deliver_new(cur: str, new: str) -> list[tuple[str, str]]:
        """Move new/ to cur/; return the files that had to stay in new/."""
        stuck: list[tuple[str, str]] = []
        for name in os.listdir(new):
            if name.startswith("."):
                continue  # a dotfile is no message (Maildir spec; Dovecot skips them too)
            source = os.path.join(new, name)
            try:
                if not stat.S_ISREG(os.stat(source, follow_symlinks=False).st_mode):
                    continue
            except FileNotFoundError:
                continue
            # A name from new/ should have no info; if it has some, keep it.
            target = name if _INFO_SEP in name else name + _INFO_SEP + "2,"
            destination = os.path.join(cur, target)
            if os.path.lexists(destination):
                # rename() would silently replace that message: serve this one from new/.
                logger.warning("%s exists in both new/ and cur/; leaving it in new/", target)
                stuck.append((new, name))
                continue
            try:
                os.rename(source, destination)
            except FileNotFoundError:
                continue  # taken by another reader meanwhile
            except OSError as exc:
                # A name too long for ":2,", a cur/ on another device, no
                # permission: one file must not lock the user out of the rest.
                logger.warning("cannot move %s to cur/ (%s); leaving it in new/", name, exc)
                stuck.append((new, name))
        return stuck

    @staticmethod
    def _wire_size(path: str, disk_size: int, virtual: int) -> int:
        with _open_regular(path) as file:
            if virtual < 0:
                return _scan_wire_size(file)
            # Dovecot's W= counts LF as CRLF but not the CRLF a server adds to
            # a message without a final newline.
            last = _last_octet(file, disk_size)
            if _w_fits(virtual, disk_size, last):
                return virtual + (2 if last not in (-1, _LF) else 0)
            # A W= no file of this size can have would make the message
            # unreadable for good (every read fails on the size): count instead.
            logger.warning("ignoring ,W=%d of %s (%d octets on disk)", virtual, path, disk_size)
            file.seek(0)
            return _scan_wire_size(file)


class MaildirMaildrop(SessionMaildrop):
    """One session's view of a Maildir, opened by `MaildirStore.open`."""

    def __init__(self, maildir: str, lock: _Lock, messages: list[_MaildirMessage]) -> None:
        self.maildir = maildir
        self._lock = lock
        self._messages = messages
        self._listing = [MessageInfo(m.size, m.uid) for m in messages]
        self._closed = False
        # Where each listed message is now: a lookup by unique name must never
        # land on another listed message's file (commit would delete it).
        self._owners = {m.path: m for m in messages}
        counts: dict[str, int] = {}
        for m in messages:
            counts[m.unique] = counts.get(m.unique, 0) + 1
        # Unique names held by several listed messages: a match could be any of them.
        self._shared = {unique for unique, count in counts.items() if count > 1}

    def listing(self) -> Sequence[MessageInfo]:
        """The messages found at open time, in delivery order."""
        return list(self._listing)

    def read(self, index: int, chunk_size: int = DEFAULT_CHUNK) -> Generator[bytes, None, None]:
        """Stream message `index` (0-based), CRLF-normalised; a generator.

        Reads the file `chunk_size` octets at a time, so a chunk is at most
        ``2 * chunk_size + 2`` octets (every LF doubled) and memory stays
        bounded. The file is opened at the first ``next()``. Raises
        `MaildropError` if the file is gone or does not come to the listed
        size; the last chunk is held back until the size is confirmed, so a
        short message with a wrong size fails before any of it is sent.
        """
        self._check_open()
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        (index,) = check_indexes((index,), len(self._messages))
        return self._stream(self._messages[index], index, chunk_size)

    def _stream(
        self, message: _MaildirMessage, index: int, chunk_size: int
    ) -> Generator[bytes, None, None]:
        file = self._open(message, index)
        with file:
            normalizer = NewlineNormalizer()
            produced = 0
            pending = b""
            while True:
                try:
                    raw = file.read(chunk_size)
                except OSError as exc:
                    raise MaildropError(f"cannot read message {index}: {exc}") from exc
                if not raw:
                    break
                out = normalizer.feed(raw)
                produced += len(out)
                if produced > message.size:
                    raise MaildropError(
                        f"message {index} is longer than its listed {message.size} octets"
                    )
                if pending:
                    yield pending
                pending = out
            tail = normalizer.end()
            produced += len(tail)
            if produced != message.size:
                raise MaildropError(
                    f"message {index} has {produced} octets, not the listed {message.size}"
                )
            last = pending + tail if tail else pending
            if last:
                yield last

    def _open(self, message: _MaildirMessage, index: int) -> BinaryIO:
        try:
            try:
                return _open_regular(message.path)
            except FileNotFoundError:
                # Perhaps renamed by a flag change (another MUA): look once in cur/.
                moved = self._find(message)
                if moved is None:
                    raise
                del self._owners[message.path]
                message.path = moved
                self._owners[moved] = message
                return _open_regular(moved)
        except OSError as exc:
            raise MaildropError(f"cannot open message {index}: {exc}") from exc

    def _find(self, message: _MaildirMessage, names: list[str] | None = None) -> str | None:
        """The one file in cur/ with `message`'s unique name, or None.

        None if there is no such file or several, if the one found is where
        another listed message is, or if another listed message has this
        unique name (then the file found may be that message's, renamed).
        `names` is cur/'s listing if the caller has it.
        """
        if message.unique in self._shared:
            return None
        cur = os.path.join(self.maildir, "cur")
        if names is None:
            try:
                names = os.listdir(cur)
            except OSError:
                return None
        paths = [os.path.join(cur, name) for name in names if _unique_name(name) == message.unique]
        matches = [path for path in paths if self._owners.get(path, message) is message]
        return matches[0] if len(matches) == 1 else None

    def commit(self, indexes: Sequence[int]) -> bool:
        """Unlink exactly these messages; True if every one of them was removed.

        A file no longer at its path is looked up once by its unique name in
        cur/ (a flag change renames it), unless that could find another listed
        message's file; one that is gone counts as not removed, but the others
        are removed all the same.
        """
        self._check_open()
        all_removed = True
        missing: list[_MaildirMessage] = []
        for index in check_indexes(indexes, len(self._messages)):
            message = self._messages[index]
            try:
                os.unlink(message.path)
            except FileNotFoundError:
                missing.append(message)
            except OSError as exc:
                logger.warning("cannot remove %s: %s", message.path, exc)
                all_removed = False
        if missing:
            try:
                names: list[str] = os.listdir(os.path.join(self.maildir, "cur"))
            except OSError:
                names = []
            for message in missing:
                moved = self._find(message, names)
                if moved is None:
                    logger.warning("%s vanished before it could be removed", message.path)
                    all_removed = False
                    continue
                try:
                    os.unlink(moved)
                except OSError as exc:
                    logger.warning("cannot remove %s: %s", moved, exc)
                    all_removed = False
        return all_removed

    def close(self) -> None:
        """Release the lock. Idempotent."""
        self._closed = True
        self._lock.release()
