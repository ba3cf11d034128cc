"""What a client may expect of a server's reply: a pace and a size.

A read timeout alone cannot stop a server that sends one byte just inside it,
and a multi-line reply has no length on the wire. `ReplyTimer` is the low-speed
guard (in the manner of curl's ``--speed-limit``/``--speed-time``) and the
optional deadline; `size_hint` and `body_limit` bound a body by the size the
server announced. Pure logic: the adapter passes in the time (any monotonic
clock, in seconds) and the octets it read.
"""

from __future__ import annotations

import re
from collections import deque

__all__ = [
    "DEFAULT_LOW_SPEED",
    "ReplyTimeout",
    "ReplyTimer",
    "body_limit",
    "size_hint",
]

DEFAULT_LOW_SPEED = (1024, 60.0)
"""Fewer than 1 KiB in the last minute of a reply: slower than any real link (a
GPRS modem moves that in a second), and a stall of up to a minute is tolerated,
as the default read timeout tolerates it."""

# The window is kept as a few buckets, so memory does not grow with the reads.
_BUCKETS = 16


class ReplyTimeout(TimeoutError):
    """A reply came too slowly (the low-speed guard) or too late (the deadline)."""


class ReplyTimer:
    """The pace and the deadline of the reply being read.

    ``low_speed=(octets, seconds)``: once a reply has begun to arrive, fewer
    than ``octets`` in the last ``seconds`` fail it. The window counts from the
    reply's first octet, so a server that thinks for a while and then answers
    is left to the read timeout. ``deadline``: seconds from `start` by which the
    whole reply must have arrived. Either may be None.

    Use: `start` when a reply becomes owed, `received` after each read,
    `stop` when none is owed any more; before each blocking read, `wait_limit`
    says how long the read may wait (and raises if the time is already up).
    Time the caller spends with a chunk in hand (between `pause` and `resume`)
    is not the server's and does not count, for the pace or the deadline.
    """

    __slots__ = (
        "_buckets",
        "_deadline_at",
        "_first",
        "_in_window",
        "_paused_at",
        "_span",
        "deadline",
        "low_speed",
    )

    def __init__(
        self,
        low_speed: tuple[int, float] | None = DEFAULT_LOW_SPEED,
        deadline: float | None = None,
    ) -> None:
        if low_speed is not None:
            octets, seconds = low_speed
            if octets < 1 or not seconds > 0:
                raise ValueError("low_speed is (octets >= 1, seconds > 0)")
        if deadline is not None and not deadline > 0:
            raise ValueError("deadline must be positive")
        self.low_speed = low_speed
        self.deadline = deadline
        self._span = 0.0 if low_speed is None else low_speed[1] / _BUCKETS
        self._first: float | None = None  # when the reply's first octet arrived
        self._deadline_at: float | None = None
        # [time of the bucket's last octet, octets]; oldest first
        self._buckets: deque[list[float]] = deque()
        self._in_window = 0
        self._paused_at: float | None = None

    @property
    def active(self) -> bool:
        """Whether a reply is being timed."""
        return self._deadline_at is not None or self._first is not None or bool(self._buckets)

    def start(self, now: float) -> None:
        """A reply is owed from `now`: time it afresh."""
        self._paused_at = None
        self._first = None
        self._buckets.clear()
        self._in_window = 0
        self._deadline_at = None if self.deadline is None else now + self.deadline

    def stop(self) -> None:
        """No reply is owed any more."""
        self._paused_at = None
        self._first = None
        self._deadline_at = None
        self._buckets.clear()
        self._in_window = 0

    def pause(self, now: float) -> None:
        """From `now`, the caller has the reply's data in hand: the clock stops."""
        if self._paused_at is None:
            self._paused_at = now

    def resume(self, now: float) -> None:
        """The caller is reading again: what passed since `pause` is not counted."""
        paused_at, self._paused_at = self._paused_at, None
        if paused_at is None or now <= paused_at:
            return
        gap = now - paused_at
        if self._first is not None:
            self._first += gap
        for bucket in self._buckets:
            bucket[0] += gap
        if self._deadline_at is not None:
            self._deadline_at += gap

    def received(self, octets: int, now: float) -> None:
        """`octets` arrived at `now`."""
        if self.low_speed is None or not octets:
            return
        if self._first is None:
            self._first = now
        buckets = self._buckets
        if buckets and now - buckets[-1][0] < self._span:
            last = buckets[-1]
            last[0] = now  # a bucket is as recent as its last octet: never trip early
            last[1] += octets
        else:
            buckets.append([now, octets])
        self._in_window += octets

    def wait_limit(self, now: float) -> float | None:
        """How long the next read may wait, in seconds; None for no limit here.

        Raises `ReplyTimeout` if the deadline has passed or the reply is too slow.
        """
        limit: float | None = None
        if self._deadline_at is not None:
            limit = self._deadline_at - now
            if limit <= 0:
                raise ReplyTimeout(f"no complete reply within {self.deadline:g} seconds")
        if self.low_speed is not None and self._first is not None:
            until = self._slow_at(now) - now
            if until <= 0:
                octets, seconds = self.low_speed
                raise ReplyTimeout(
                    f"the server sent fewer than {octets} octets in {seconds:g} seconds"
                )
            limit = until if limit is None else min(limit, until)
        return limit

    def _slow_at(self, now: float) -> float:
        """When the window would hold fewer octets than the guard wants, if no more come."""
        assert self.low_speed is not None
        assert self._first is not None
        octets, seconds = self.low_speed
        buckets = self._buckets
        while buckets and buckets[0][0] <= now - seconds:
            self._in_window -= int(buckets.popleft()[1])
        earliest = self._first + seconds  # a full window must have passed
        left = self._in_window
        if left < octets:
            return earliest
        for when, count in buckets:
            left -= int(count)
            if left < octets:
                return max(earliest, when + seconds)
        raise AssertionError("unreachable: the window ends below the limit")


_SIZE_HINT = re.compile(rb"([0-9]{1,20}) octets(?:[ .,;)]|\Z)", re.IGNORECASE)


def size_hint(text: bytes) -> int | None:
    """The size a RETR ``+OK`` announces (``+OK 320 octets``), or None.

    Only ``<number> octets`` at the start of the text counts (Dovecot, Courier,
    qpopper and this library's server send it); free text such as ``message 1
    follows`` announces nothing.
    """
    match = _SIZE_HINT.match(text)
    return None if match is None else int(match.group(1))


def body_limit(announced: int) -> int:
    """The most octets a body announced as `announced` octets may bring.

    RFC 1939 sizes are hints: a server that counts a message stored with bare
    LFs before turning them into CRLF (Dovecot's fast size lookups) sends up to
    twice what it announced. Twice the announcement plus 64 KiB is allowed;
    beyond that the server is sending something else.
    """
    return 2 * announced + 64 * 1024
