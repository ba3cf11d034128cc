"""What a client engine expects of a server's replies: pace, size, and nothing unasked.

`ReplyTimer` is fed invented clocks (pure logic); the engine's rules are fed
whole, byte by byte and with trailing data.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pop3core as p
from tests.core.helpers import SPLITS, Split, feed

# ---------------------------------------------------------------- ReplyTimer


def test_silence_before_the_first_octet_is_left_to_the_read_timeout() -> None:
    timer = p.ReplyTimer((100, 10.0))
    timer.start(0.0)
    assert timer.wait_limit(0.0) is None
    assert timer.wait_limit(1000.0) is None  # a slow thinker is not slow data


def test_a_drip_trips_once_a_full_window_has_passed() -> None:
    timer = p.ReplyTimer((100, 10.0))
    timer.start(0.0)
    now = 5.0
    timer.received(1, now)  # the reply begins
    assert timer.wait_limit(now) == pytest.approx(10.0)
    now += 9.0
    timer.received(1, now)
    assert timer.wait_limit(now) == pytest.approx(
        1.0
    )  # the window from the first octet ends at 15
    with pytest.raises(p.ReplyTimeout, match="fewer than 100 octets in 10 seconds"):
        timer.wait_limit(15.0)
    assert isinstance(p.ReplyTimeout(), TimeoutError)


def test_a_fast_reply_may_stall_for_almost_a_window() -> None:
    timer = p.ReplyTimer((100, 10.0))
    timer.start(0.0)
    timer.received(1000, 1.0)
    # 1000 octets at t=1 keep the window full until they age out at t=11.
    assert timer.wait_limit(2.0) == pytest.approx(9.0)
    timer.received(1000, 10.5)
    assert timer.wait_limit(10.5) == pytest.approx(10.0)


def test_buckets_keep_memory_flat_and_never_trip_early() -> None:
    timer = p.ReplyTimer((1, 16.0))  # buckets of one second
    timer.start(0.0)
    for i in range(100_000):
        timer.received(1, i * 0.001)  # 100 s of tiny reads
    assert len(timer._buckets) <= 17
    assert timer.wait_limit(100.0) is not None


def test_the_deadline_counts_from_start() -> None:
    timer = p.ReplyTimer(None, deadline=5.0)
    timer.start(10.0)
    assert timer.wait_limit(11.0) == pytest.approx(4.0)
    timer.received(10**6, 12.0)  # speed does not matter
    with pytest.raises(p.ReplyTimeout, match="within 5 seconds"):
        timer.wait_limit(15.0)
    timer.start(20.0)  # the next reply has its own
    assert timer.wait_limit(21.0) == pytest.approx(4.0)
    timer.stop()
    assert not timer.active
    assert timer.wait_limit(100.0) is None


def test_the_callers_time_with_a_chunk_does_not_count() -> None:
    """Between pause and resume the consumer works: neither pace nor deadline run."""
    timer = p.ReplyTimer((100, 10.0), deadline=30.0)
    timer.start(0.0)
    timer.received(1000, 1.0)
    timer.pause(2.0)
    timer.pause(5.0)  # a second pause does not move the first
    timer.resume(102.0)  # 100 s with a chunk in hand
    # As if it were t=2 again: 9 s left in the window, 28 s to the deadline.
    assert timer.wait_limit(102.0) == pytest.approx(9.0)
    timer.received(1000, 110.0)
    assert timer.wait_limit(110.0) == pytest.approx(10.0)
    with pytest.raises(p.ReplyTimeout, match="within 30 seconds"):
        timer.wait_limit(130.0)
    timer.resume(140.0)  # without a pause: nothing moves
    with pytest.raises(p.ReplyTimeout):
        timer.wait_limit(130.0)


def test_start_and_stop_forget_a_pause() -> None:
    timer = p.ReplyTimer((100, 10.0))
    timer.start(0.0)
    timer.pause(1.0)
    timer.start(2.0)  # the next reply: its own clock
    timer.received(1, 3.0)
    timer.resume(50.0)  # nothing was paused any more
    with pytest.raises(p.ReplyTimeout):
        timer.wait_limit(50.0)
    timer.pause(60.0)
    timer.stop()
    timer.resume(100.0)
    assert not timer.active


def test_the_nearer_limit_wins() -> None:
    timer = p.ReplyTimer((100, 10.0), deadline=3.0)
    timer.start(0.0)
    timer.received(1, 1.0)
    assert timer.wait_limit(1.0) == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("low_speed", "deadline"), [((0, 1.0), None), ((1, 0.0), None), (None, 0.0)]
)
def test_bad_settings(low_speed: tuple[int, float] | None, deadline: float | None) -> None:
    with pytest.raises(ValueError):
        p.ReplyTimer(low_speed, deadline)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0.0, 3.0), st.integers(0, 50)), min_size=1, max_size=40),
    st.integers(1, 200),
    st.floats(0.5, 20.0),
)
def test_it_trips_only_when_the_last_window_was_slow(
    reads: list[tuple[float, int]], octets: int, seconds: float
) -> None:
    """Against a log of arrivals: never trips while the last full window had enough."""
    timer = p.ReplyTimer((octets, seconds))
    timer.start(0.0)
    now = 0.0
    log: list[tuple[float, int]] = []
    for gap, count in reads:
        now += gap
        try:
            timer.wait_limit(now)
        except p.ReplyTimeout:
            first = next((t for t, c in log if c), None)
            assert first is not None
            assert now - first >= seconds - 1e-9
            # An octet exactly one window old has left it (to rounding).
            recent = sum(c for t, c in log if t > now - seconds + 1e-9)
            # Buckets count an octet as late as its bucket's last one: the guard is
            # never stricter than the exact rule.
            assert recent < octets
            return
        timer.received(count, now)
        log.append((now, count))


# ---------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    ("text", "size"),
    [
        (b"320 octets", 320),
        (b"320 octets follow.", 320),
        (b"320 Octets", 320),
        (b"0 octets", 0),
        (b"message follows", None),
        (b"1 320", None),
        (b"320octets", None),
        (b"320 octetsX", None),
        (b"", None),
        (b"9" * 21 + b" octets", None),  # not a size anyone can send
    ],
)
def test_size_hint(text: bytes, size: int | None) -> None:
    assert p.size_hint(text) == size


def test_body_limit_allows_lf_counting_servers() -> None:
    # A message of empty lines stored with LF doubles on the wire.
    assert p.body_limit(1000) >= 2 * 1000
    assert p.body_limit(0) == 64 * 1024


# ---------------------------------------------------------------- the engine's rules


def client_in_transaction() -> p.Connection:
    client = p.Connection(p.CLIENT)
    feed(client, b"+OK ready\r\n")
    client.send(p.User("u"))
    client.send(p.Pass("p"))
    feed(client, b"+OK\r\n+OK\r\n")
    assert client.state is p.State.TRANSACTION
    return client


def events_until_error(
    client: p.Connection, data: bytes, split: Split
) -> tuple[list[p.Event], p.RemoteProtocolError]:
    """Feed `data`; the events before the engine raised, and what it raised."""
    events: list[p.Event] = []
    pieces = [data] if split == "whole" else [data[i : i + 1] for i in range(len(data))]
    try:
        for piece in pieces:
            client.receive_data(piece)
            while (event := client.next_event()) not in (p.NEED_DATA, p.PAUSED):
                events.append(event)
    except p.RemoteProtocolError as error:
        assert client.state is p.State.ERROR
        return events, error
    raise AssertionError(f"no error; events: {events}")


@pytest.mark.parametrize("split", SPLITS)
def test_a_stray_line_is_not_the_reply_to_the_next_command(split: Split) -> None:
    client = client_in_transaction()
    client.send(p.Noop())
    events, error = events_until_error(client, b"+OK\r\n+OK 0 0\r\n", split)
    assert events == [p.OkResponse()]
    assert "no reply was owed" in str(error)
    with pytest.raises(p.RemoteProtocolError):
        client.next_event()


def test_a_stray_line_arriving_later_is_caught_at_the_next_look() -> None:
    client = client_in_transaction()
    assert client.next_event() is p.NEED_DATA
    client.receive_data(b"+OK 0 0\r\n")
    with pytest.raises(p.RemoteProtocolError, match="no reply was owed"):
        client.next_event()


@pytest.mark.parametrize("split", SPLITS)
def test_an_unstuffed_lone_dot_shows_as_stray_data(split: Split) -> None:
    # Dovecot sends a message whose first line is "." unstuffed: the body seems
    # to end at once, and the rest arrives when nothing is owed.
    client = client_in_transaction()
    client.send(p.Retr(1))
    events, error = events_until_error(
        client, b"+OK 300 octets\r\n.\r\nrest of it\r\n.\r\n", split
    )
    assert events == [p.OkResponse(b"300 octets"), p.EndOfMultiline()]
    assert "no reply was owed" in str(error)


@pytest.mark.parametrize("split", SPLITS)
def test_a_body_far_past_its_announced_size_is_refused(split: Split) -> None:
    client = client_in_transaction()
    client.send(p.Retr(1))
    limit = p.body_limit(10)
    wire = b"+OK 10 octets\r\n" + b"x" * 78 + b"\r\n"
    data = wire * (limit // 80 + 2)
    events, error = events_until_error(client, data, split)
    received = sum(len(e.data) for e in events if isinstance(e, p.Data))
    assert received <= limit
    assert "announced" in str(error)


@pytest.mark.parametrize("split", SPLITS)
def test_a_body_within_the_allowance_is_fine(split: Split) -> None:
    # A server that counted LF-stored lines sends more than it said: tolerated.
    client = client_in_transaction()
    client.send(p.Retr(1))
    body = b"\r\n" * 500
    events = feed(client, b"+OK 500 octets\r\n" + body + b".\r\n", split)
    assert events == [p.OkResponse(b"500 octets"), p.Data(body), p.EndOfMultiline()]


@pytest.mark.parametrize("split", SPLITS)
def test_a_line_after_a_sasl_challenge_is_not_the_answer_to_our_response(split: Split) -> None:
    # A stray "+OK" after a challenge would log us in without any check.
    client = p.Connection(p.CLIENT)
    feed(client, b"+OK ready\r\n")
    client.send(p.Auth("CRAM-MD5"))
    events, error = events_until_error(client, b"+ PDE+\r\n+OK welcome\r\n", split)
    assert events == [p.AuthChallenge(b"<1>")]
    assert "no reply was owed" in str(error)


def test_sending_a_sasl_response_with_stray_bytes_buffered_raises() -> None:
    client = p.Connection(p.CLIENT)
    feed(client, b"+OK ready\r\n")
    client.send(p.Auth("CRAM-MD5"))
    client.receive_data(b"+ PDE+\r\n+OK welcome\r\n")
    assert client.next_event() == p.AuthChallenge(b"<1>")
    with pytest.raises(p.RemoteProtocolError, match="no reply was owed"):
        client.send(p.AuthResponse(b"user digest"))
    assert client.state is p.State.ERROR


def test_without_an_announced_size_the_engine_does_not_bound_the_body() -> None:
    # (The adapters bound it: by LIST sizes, max_size, or their ceilings.)
    client = client_in_transaction()
    client.send(p.Retr(1))
    body = b"y" * 200_000 + b"\r\n"
    events = feed(client, b"+OK message follows\r\n" + body + b".\r\n")
    assert events[-1] == p.EndOfMultiline()
