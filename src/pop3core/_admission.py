"""Who gets a session: connection limits, and whom to close to make room.

A server can hold only so many sessions, and a client that connects and says
nothing holds one until a timeout. So a full server makes room instead of
refusing: it closes the oldest session (by connection time) that has not
logged in and is not in the middle of a login step, and never one that has
logged in. `SessionTable`
is that bookkeeping, written once for every server: pure logic, not
thread-safe (a threaded server holds a lock around it).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

__all__ = [
    "ConnectionLimits",
    "SessionTable",
    "address_group",
    "cleartext_allowed",
    "is_loopback",
]


@dataclass(frozen=True)
class ConnectionLimits:
    """How many sessions a server holds, in all and per client address.

    A client address is an IPv4 address, or an IPv6 /`ipv6_prefix` network
    (one subscriber is usually given a whole /64, so counting single IPv6
    addresses would limit nothing).

    Failed logins from one address add up (`SessionTable.login_failed`): the
    failure delay doubles with each failure that comes within
    `penalty_memory` seconds of the previous one, up to `max_login_penalty`
    seconds (as Dovecot's auth_penalty), so that opening many connections
    does not multiply the guesses.
    """

    max_connections: int = 1000
    max_connections_per_address: int = 100
    ipv6_prefix: int = 64
    max_login_penalty: float = 15.0
    penalty_memory: float = 600.0

    def __post_init__(self) -> None:
        if self.max_connections < 1 or self.max_connections_per_address < 1:
            raise ValueError("connection limits must be at least 1")
        if not 0 <= self.ipv6_prefix <= 128:
            raise ValueError("ipv6_prefix is a prefix length, 0 to 128")
        if self.max_login_penalty < 0 or self.penalty_memory < 0:
            raise ValueError("login penalties must not be negative")


def address_group(address: str, ipv6_prefix: int = 64) -> str:
    """The key `address` is counted under: itself for IPv4, its network for IPv6.

    An IPv4-mapped IPv6 address counts as the IPv4 address; a zone index is
    dropped; what is not an IP address (a Unix socket path) is its own group.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, ipv6_prefix), strict=False))
    return str(ip)


_MAX_REMEMBERED = 65536  # addresses whose failed logins are remembered


def is_loopback(address: str) -> bool:
    """Whether `address` is a loopback address (an IPv4-mapped one included)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool((mapped or ip).is_loopback)


def cleartext_allowed(policy: bool | str, address: str) -> bool:
    """Whether a client at `address` may log in without TLS under `policy`.

    ``True`` or ``False`` decide for everyone; ``"loopback"`` (the servers'
    default) allows it only from a loopback address, since nothing else
    crosses the wire there (RFC 2595 section 2.4 asks that cleartext logins
    can be refused).
    """
    if policy == "loopback":
        return is_loopback(address)
    if isinstance(policy, bool):
        return policy
    raise ValueError(f"allow_cleartext is True, False or 'loopback', not {policy!r}")


class _Entry:
    __slots__ = ("busy", "group", "logged_in")

    def __init__(self, group: str) -> None:
        self.group = group
        self.logged_in = False
        self.busy = False


class SessionTable:
    """The sessions a server holds, each under a key of the adapter's choosing.

    `admit` a new connection before serving it; tell the table when a session
    `logged_in` and when it is `busy` in a login step (waiting for a
    credential or maildrop backend); `release` it when it ends. Keys are
    hashable and unique among live sessions.
    """

    def __init__(self, limits: ConnectionLimits | None = None) -> None:
        self.limits = limits or ConnectionLimits()
        # Insertion order is age, the oldest first: in all, and per group.
        self._entries: dict[Hashable, _Entry] = {}
        self._groups: dict[str, dict[Hashable, None]] = {}
        # Per group: [failures in a row, time of the last]; least recent first.
        self._failures: dict[str, list[float]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def count(self, address: str) -> int:
        """Sessions held for `address`'s group."""
        return len(self._groups.get(address_group(address, self.limits.ipv6_prefix), ()))

    def admit(self, key: Hashable, address: str) -> list[Hashable] | None:
        """Take a new session from `address`; None to refuse it.

        Returns the sessions to close first to make room (often none). They
        are already released here; their own `release` later does nothing.
        """
        if key in self._entries:
            raise ValueError(f"session {key!r} is already in the table")
        limits = self.limits
        group = address_group(address, limits.ipv6_prefix)
        members = self._groups.get(group, {})
        victims: list[Hashable] = []
        if len(members) >= limits.max_connections_per_address:
            victim = self._oldest_evictable(members, victims)
            if victim is None:
                return None
            victims.append(victim)
        if len(self._entries) - len(victims) >= limits.max_connections:
            victim = self._oldest_evictable(self._entries, victims)
            if victim is None:
                return None
            victims.append(victim)
        for victim in victims:
            self.release(victim)
        self._entries[key] = _Entry(group)
        self._groups.setdefault(group, {})[key] = None
        return victims

    def _oldest_evictable(
        self, keys: Iterable[Hashable], taken: list[Hashable]
    ) -> Hashable | None:
        entries = self._entries
        for key in keys:
            entry = entries[key]
            if not (entry.logged_in or entry.busy) and key not in taken:
                return key
        return None

    def logged_in(self, key: Hashable) -> None:
        """The session logged in: it is never closed to make room."""
        entry = self._entries.get(key)
        if entry is not None:
            entry.logged_in = True

    def busy(self, key: Hashable, busy: bool) -> None:
        """The session is (or no longer is) in a login step that waits on a backend."""
        entry = self._entries.get(key)
        if entry is not None:
            entry.busy = busy

    def login_failed(self, key: Hashable, now: float, delay: float) -> float:
        """A login failed in session `key` at `now`: how long to hold its ``-ERR``.

        `delay` is the session's own failure delay (`LoginFailed.delay`); the
        answer is that delay doubled for each earlier failure from the same
        address (`ConnectionLimits`), never less than `delay`. `now` is any
        monotonic clock.
        """
        entry = self._entries.get(key)
        if entry is None:
            return delay
        limits = self.limits
        record = self._failures.pop(entry.group, None)
        if record is None or now - record[1] > limits.penalty_memory:
            record = [0.0, now]
        record[0] += 1
        record[1] = now
        self._failures[entry.group] = record  # now the most recent
        # Forget addresses that have been quiet for a while, oldest first, so
        # that an attacker with many addresses cannot grow this without bound.
        while len(self._failures) > _MAX_REMEMBERED:
            del self._failures[next(iter(self._failures))]
        doublings = min(int(record[0]) - 1, 32)
        return max(delay, min(delay * 2.0**doublings, limits.max_login_penalty))

    def release(self, key: Hashable) -> None:
        """The session ended (or was closed to make room). Idempotent."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        members = self._groups[entry.group]
        del members[key]
        if not members:
            del self._groups[entry.group]
