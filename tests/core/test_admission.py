"""pop3core.SessionTable: connection limits, and whom a full server closes to make room."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pop3core as p


def table(total: int = 1000, per_address: int = 100) -> p.SessionTable:
    return p.SessionTable(p.ConnectionLimits(total, per_address))


def test_admits_until_a_limit_then_closes_the_oldest_not_logged_in() -> None:
    sessions = table(per_address=3)
    for key in "abc":
        assert sessions.admit(key, "192.0.2.1") == []
    assert sessions.admit("d", "192.0.2.1") == ["a"]  # the oldest makes room
    assert "a" not in sessions
    assert sessions.count("192.0.2.1") == 3
    assert sessions.admit("x", "192.0.2.2") == []  # another address is not affected


def test_a_logged_in_session_is_never_closed() -> None:
    sessions = table(per_address=2)
    sessions.admit("a", "192.0.2.1")
    sessions.admit("b", "192.0.2.1")
    sessions.logged_in("a")
    assert sessions.admit("c", "192.0.2.1") == ["b"]
    sessions.logged_in("c")
    assert sessions.admit("d", "192.0.2.1") is None  # all logged in: refused
    assert len(sessions) == 2


def test_a_busy_session_is_spared_until_it_is_idle_again() -> None:
    sessions = table(per_address=2)
    sessions.admit("a", "192.0.2.1")
    sessions.admit("b", "192.0.2.1")
    sessions.busy("a", True)  # waiting on a credential backend
    assert sessions.admit("c", "192.0.2.1") == ["b"]
    sessions.busy("a", False)  # idle again: the oldest, so the next to go
    assert sessions.admit("d", "192.0.2.1") == ["a"]


def test_the_total_limit_closes_the_oldest_anywhere() -> None:
    sessions = table(total=3, per_address=10)
    sessions.admit("a", "192.0.2.1")
    sessions.admit("b", "192.0.2.2")
    sessions.admit("c", "192.0.2.3")
    sessions.logged_in("a")
    assert sessions.admit("d", "192.0.2.4") == ["b"]
    assert len(sessions) == 3


def test_both_limits_at_once_close_two() -> None:
    sessions = table(total=2, per_address=1)
    sessions.admit("a", "192.0.2.1")
    sessions.admit("b", "192.0.2.2")
    # A third from 192.0.2.1: its own address is full (a goes), and then the
    # total still holds b and the newcomer: that fits. No second victim needed.
    assert sessions.admit("c", "192.0.2.1") == ["a"]
    sessions.logged_in("b")
    sessions.logged_in("c")
    assert sessions.admit("d", "192.0.2.3") is None


def test_release_is_idempotent_and_a_victim_released_later_is_a_no_op() -> None:
    sessions = table(per_address=1)
    sessions.admit("a", "192.0.2.1")
    assert sessions.admit("b", "192.0.2.1") == ["a"]
    sessions.release("a")  # the closed session's own thread ends later
    sessions.release("a")
    assert "b" in sessions
    sessions.logged_in("a")  # calls about a departed session change nothing
    sessions.busy("a", True)
    assert len(sessions) == 1
    with pytest.raises(ValueError, match="already"):
        sessions.admit("b", "192.0.2.9")


@pytest.mark.parametrize(
    ("address", "group"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),  # IPv4 on a dual-stack socket
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::99", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("/run/pop3.sock", "/run/pop3.sock"),
    ],
)
def test_address_groups(address: str, group: str) -> None:
    assert p.address_group(address) == group


def test_an_ipv6_subscriber_is_one_address() -> None:
    # Every address in a /64 counts as one client: rotating through them gains nothing.
    sessions = table(per_address=2)
    sessions.admit(1, "2001:db8::1")
    sessions.admit(2, "2001:db8::2")
    assert sessions.admit(3, "2001:db8::ffff:3") == [1]
    assert sessions.count("2001:db8::abcd") == 2


def test_failed_logins_from_one_address_double_the_delay() -> None:
    sessions = p.SessionTable(p.ConnectionLimits(max_login_penalty=15, penalty_memory=600))
    sessions.admit("a", "192.0.2.1")
    sessions.admit("b", "192.0.2.1")  # another connection from the same address
    sessions.admit("c", "192.0.2.2")
    delays = [
        sessions.login_failed(key, now, 2.0) for key, now in zip("abab", (0, 1, 2, 3), strict=True)
    ]
    assert delays == [2.0, 4.0, 8.0, 15.0]  # across connections, capped
    assert sessions.login_failed("c", 4, 2.0) == 2.0  # other addresses are not affected
    assert sessions.login_failed("a", 700, 2.0) == 2.0  # forgotten after quiet time
    assert sessions.login_failed("gone", 701, 2.0) == 2.0  # a departed session
    assert sessions.login_failed("a", 702, 0.0) == 0.0  # no delay, nothing to double
    assert (
        p.SessionTable(p.ConnectionLimits(max_login_penalty=1)).login_failed("x", 0, 2.0) == 2.0
    )  # never below the session's own delay


def test_the_failure_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from pop3core import _admission

    monkeypatch.setattr(_admission, "_MAX_REMEMBERED", 3)
    sessions = table(per_address=1)
    for i in range(10):
        sessions.admit(i, f"192.0.2.{i}")
        sessions.login_failed(i, i, 1.0)
    assert len(sessions._failures) == 3


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        p.ConnectionLimits(0)
    with pytest.raises(ValueError, match="at least 1"):
        p.ConnectionLimits(10, 0)
    with pytest.raises(ValueError, match="prefix"):
        p.ConnectionLimits(ipv6_prefix=129)
    with pytest.raises(ValueError, match="penalties"):
        p.ConnectionLimits(max_login_penalty=-1)


Step = tuple[str, int, int]  # (action, key, address)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 6),
    st.integers(1, 4),
    st.lists(
        st.tuples(
            st.sampled_from(["admit", "login", "busy", "idle", "release"]),
            st.integers(0, 15),
            st.integers(0, 3),
        ),
        max_size=60,
    ),
)
def test_limits_always_hold_and_logged_in_sessions_survive(
    total: int, per_address: int, steps: list[Step]
) -> None:
    sessions = table(total, per_address)
    live: dict[int, str] = {}
    logged_in: set[int] = set()
    for action, key, address_number in steps:
        address = f"192.0.2.{address_number}"
        if action == "admit":
            if key in live:
                continue
            victims = sessions.admit(key, address)
            if victims is None:
                continue
            for victim in victims:
                assert victim not in logged_in, "a logged-in session was closed"
                del live[victim]
            live[key] = address
        elif key in live:
            if action == "login":
                sessions.logged_in(key)
                logged_in.add(key)
            elif action in ("busy", "idle"):
                sessions.busy(key, action == "busy")
            else:
                sessions.release(key)
                del live[key]
                logged_in.discard(key)
        assert len(sessions) == len(live) <= total
        for number in range(4):
            held = sum(1 for a in live.values() if a == f"192.0.2.{number}")
            assert sessions.count(f"192.0.2.{number}") == held <= per_address
