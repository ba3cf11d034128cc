"""ServerSession: whole sessions against a real client Connection."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pop3core as p
from pop3core._message import HeaderScreen
from tests.core.helpers import SPLITS, Split, drain, feed

RFC_TIMESTAMP = b"<1896.697170952@dbc.mtview.ca.us>"
UTF8_OFFERED = p.ServerOptions(allow_cleartext=True, utf8=True)

MESSAGES = [
    b"Subject: one\r\nFrom: a@example.org\r\n\r\n.dot first body line\r\nline 2\r\nline 3\r\n",
    b".leading dot, no headers\r\nsecond\r\n",
    b"Subject: three\r\n\r\n",
]


class App:
    """A scripted application: answers the session's requests from dictionaries."""

    def __init__(
        self,
        session: p.ServerSession,
        *,
        users: dict[str, str] | None = None,
        messages: Sequence[bytes] = MESSAGES,
        utf8_flags: Sequence[bool] | None = None,
        chunk: int = 7,
    ) -> None:
        self.session = session
        self.users = {"alice": "secret"} if users is None else users
        self.messages = [p.normalize_newlines(m) for m in messages]
        self.utf8_flags = utf8_flags or [False] * len(self.messages)
        self.chunk = chunk
        self.events: list[Any] = []
        self.manual: set[type] = set()  # request types the test answers itself

    def pump(self) -> Any:
        """Run the session until it needs data; return the first manual request, if any."""
        session = self.session
        while True:
            event = session.next_event()
            if event is p.NEED_DATA or event is p.PAUSED:
                return None
            self.events.append(event)
            kind = type(event)
            if kind in self.manual:
                return event
            if kind is p.PasswordCheck:
                session.password_checked(self.users.get(event.username) == event.password)
            elif kind is p.SecretRequest:
                session.secret_provided(self.users.get(event.username))
            elif kind is p.LoginFailed:
                session.failure_delay_elapsed()
            elif kind is p.MaildropRequest:
                session.maildrop_opened(
                    p.MessageInfo(len(m), f"uid-{i}", flag)
                    for i, (m, flag) in enumerate(zip(self.messages, self.utf8_flags, strict=True))
                )
            elif kind is p.MessageRequest:
                data = self.messages[event.index]
                for i in range(0, len(data), self.chunk):
                    if not session.send_message(data[i : i + self.chunk]):
                        break
                session.end_message()
            elif kind is p.UpdateRequest:
                session.update_done()
            elif kind is p.SessionEnded:
                return None
            elif kind is p.StartTLS:
                return event


class Harness:
    """A client Connection talking to a ServerSession run by an App."""

    def __init__(
        self, options: p.ServerOptions | None = None, split: Split = "whole", **app: Any
    ) -> None:
        self.session = p.ServerSession(
            options or p.ServerOptions(allow_cleartext=True, apop=True),
            timestamp=RFC_TIMESTAMP,
        )
        self.app = App(self.session, **app)
        self.client = p.Connection(p.CLIENT)
        self.split = split
        self.received: list[p.Event] = []
        self.greeting = self._to_client()

    def _to_client(self) -> list[p.Event]:
        data = self.session.bytes_to_send()
        events = feed(self.client, data, self.split) if data else drain(self.client)
        self.received.extend(events)
        return events

    def send(self, *commands: p.Event) -> list[p.Event]:
        data = b"".join(self.client.send(c) for c in commands)
        return self.send_raw(data)

    def send_raw(self, data: bytes) -> list[p.Event]:
        if self.split == "whole":
            self.session.receive_data(data)
            self.app.pump()
        else:
            for i in range(len(data)):
                self.session.receive_data(data[i : i + 1])
                self.app.pump()
        return self._to_client()

    def login(self) -> None:
        events = self.send(p.User("alice"), p.Pass("secret"))
        assert [type(e) for e in events] == [p.OkResponse, p.OkResponse]
        assert self.client.state is p.State.TRANSACTION
        assert self.session.state is p.State.TRANSACTION

    def body(self, command: p.Command) -> bytes:
        events = self.send(command)
        assert type(events[0]) is p.OkResponse, events
        assert type(events[-1]) is p.EndOfMultiline
        return b"".join(bytes(e.data) for e in events if isinstance(e, p.Data))

    def agree(self) -> None:
        assert self.client.state is self.session.state
        assert self.client.exchange is self.session.conn.exchange


def kinds(events: Sequence[object]) -> list[type]:
    return [type(e) for e in events]


@pytest.mark.parametrize("split", SPLITS)
def test_full_session_with_update(split: Split) -> None:
    h = Harness(split=split)
    (greeting,) = h.greeting
    assert isinstance(greeting, p.Greeting)
    assert greeting.timestamp == RFC_TIMESTAMP
    h.login()
    stat = h.send(p.Stat())[0]
    assert isinstance(stat, p.OkResponse)
    sizes = [len(m) for m in h.app.messages]
    assert p.parse_stat(stat.text) == (3, sum(sizes))
    assert p.parse_list(h.body(p.List())) == {1: sizes[0], 2: sizes[1], 3: sizes[2]}
    assert p.parse_uidl(h.body(p.Uidl())) == {1: "uid-0", 2: "uid-1", 3: "uid-2"}
    single = h.send(p.List(2))[0]
    assert isinstance(single, p.OkResponse)
    assert p.parse_list_line(single.text) == (2, sizes[1])
    assert h.body(p.Retr(1)) == h.app.messages[0]
    assert h.body(p.Retr(2)) == h.app.messages[1]
    assert h.body(p.Top(1, 0)) == b"Subject: one\r\nFrom: a@example.org\r\n\r\n"
    assert h.body(p.Top(1, 2)) == h.app.messages[0].split(b"line 3")[0]
    assert h.body(p.Top(2, 1)) == h.app.messages[1]  # no blank line: all headers

    assert kinds(h.send(p.Dele(2))) == [p.OkResponse]
    assert kinds(h.send(p.Dele(2))) == [p.ErrResponse]  # already deleted
    assert kinds(h.send(p.Retr(2))) == [p.ErrResponse]
    assert kinds(h.send(p.List(2))) == [p.ErrResponse]
    assert kinds(h.send(p.Uidl(2))) == [p.ErrResponse]
    assert kinds(h.send(p.Top(2, 0))) == [p.ErrResponse]
    assert kinds(h.send(p.Retr(4))) == [p.ErrResponse]
    assert p.parse_list(h.body(p.List())) == {1: sizes[0], 3: sizes[2]}
    stat = h.send(p.Stat())[0]
    assert isinstance(stat, p.OkResponse)
    assert p.parse_stat(stat.text) == (2, sizes[0] + sizes[2])

    assert kinds(h.send(p.Rset())) == [p.OkResponse]
    assert p.parse_list(h.body(p.List())) == {1: sizes[0], 2: sizes[1], 3: sizes[2]}
    h.send(p.Dele(1))
    h.send(p.Dele(3))
    assert kinds(h.send(p.Noop())) == [p.OkResponse]
    assert not [e for e in h.app.events if type(e) is p.UpdateRequest]
    events = h.send(p.Quit())
    assert kinds(events) == [p.OkResponse, p.ConnectionClosed]
    (update,) = [e for e in h.app.events if type(e) is p.UpdateRequest]
    assert update == p.UpdateRequest((0, 2), ("uid-0", "uid-2"))
    assert type(h.app.events[-1]) is p.SessionEnded
    assert h.session.state is p.State.CLOSED
    h.agree()


def test_pipelined_commands_in_one_segment() -> None:
    h = Harness()
    events = h.send(p.User("alice"), p.Pass("secret"), p.Stat(), p.Retr(1), p.Retr(2), p.Quit())
    assert kinds(events) == [
        p.OkResponse,
        p.OkResponse,
        p.OkResponse,
        p.OkResponse,
        p.Data,
        p.EndOfMultiline,
        p.OkResponse,
        p.Data,
        p.EndOfMultiline,
        p.OkResponse,
        p.ConnectionClosed,
    ]
    assert [e for e in h.app.events if type(e) is p.UpdateRequest] == [p.UpdateRequest((), ())]


def test_quit_in_authorization_never_updates() -> None:
    h = Harness()
    assert kinds(h.send(p.Quit())) == [p.OkResponse, p.ConnectionClosed]
    assert not [e for e in h.app.events if type(e) is p.UpdateRequest]
    assert h.app.events[-1] == p.SessionEnded("QUIT")


@pytest.mark.parametrize("split", SPLITS)
def test_eof_mid_session_never_updates(split: Split) -> None:
    h = Harness(split=split)
    h.login()
    h.send(p.Dele(1))
    h.session.receive_data(b"")
    h.app.pump()
    assert not [e for e in h.app.events if type(e) is p.UpdateRequest]
    ended = h.app.events[-1]
    assert isinstance(ended, p.SessionEnded)
    assert ended.error is None
    assert h.session.next_event() is p.PAUSED  # reported once


def test_protocol_error_mid_session_never_updates() -> None:
    h = Harness()
    h.login()
    h.send(p.Dele(1))
    h.session.receive_data(b"NOOP " + b"x" * 300 + b"\r\n")
    h.app.pump()
    assert h.session.bytes_to_send() == b"-ERR line too long\r\n"
    ended = h.app.events[-1]
    assert isinstance(ended, p.SessionEnded)
    assert isinstance(ended.error, p.RemoteProtocolError)
    assert not [e for e in h.app.events if type(e) is p.UpdateRequest]


def test_eof_during_pipelined_quit_still_updates() -> None:
    # The client sent QUIT, then closed its side before reading: QUIT was sent,
    # so the session commits.
    h = Harness()
    h.login()
    h.session.receive_data(b"DELE 1\r\nQUIT\r\n")
    h.session.receive_data(b"")
    h.app.pump()
    assert [e for e in h.app.events if type(e) is p.UpdateRequest] == [
        p.UpdateRequest((0,), ("uid-0",))
    ]


def test_failed_update_reports_sys_temp() -> None:
    h = Harness()
    h.app.manual.add(p.UpdateRequest)
    h.login()
    h.send(p.Dele(1))
    h.session.receive_data(h.client.send(p.Quit()))
    request = h.app.pump()
    assert isinstance(request, p.UpdateRequest)
    assert h.session.next_event() is p.PAUSED
    h.session.update_done(False)
    events = h._to_client()
    err = events[0]
    assert isinstance(err, p.ErrResponse)
    assert err.code == p.SYS_TEMP
    assert h.session.next_event() == p.SessionEnded("QUIT")


def test_wrong_password_and_failure_budget() -> None:
    h = Harness()
    for attempt in range(3):
        events = h.send(p.User("alice"), p.Pass("wrong"))
        assert kinds(events)[:2] == [p.OkResponse, p.ErrResponse]
        err = events[1]
        assert isinstance(err, p.ErrResponse)
        assert err.code == p.AUTH
        if attempt < 2:
            assert h.session.state is p.State.AUTHORIZATION
    assert isinstance(h.app.events[-1], p.SessionEnded)
    assert h.app.events[-1].reason == "too many failed logins"


def test_unknown_user_is_indistinguishable() -> None:
    h = Harness()
    events = h.send(p.User("mallory"), p.Pass("secret"))
    assert kinds(events) == [p.OkResponse, p.ErrResponse]  # USER never reveals users


def test_unknown_user_and_wrong_password_get_the_same_reply_and_failure() -> None:
    h = Harness()
    replies = []
    for name in ("alice", "mallory"):
        h.send(p.User(name))
        (err,) = h.send(p.Pass("wrong"))
        replies.append(err)
    assert replies[0] == replies[1] == p.ErrResponse(b"invalid user name or password", p.AUTH)
    failures = [e for e in h.app.events if isinstance(e, p.LoginFailed)]
    assert [(f.username, f.mechanism, f.reason) for f in failures] == [
        ("alice", "USER", "invalid user name or password"),
        ("mallory", "USER", "invalid user name or password"),
    ]


def test_a_failed_login_is_held_until_its_delay_is_over() -> None:
    session = p.ServerSession(p.ServerOptions(allow_cleartext=True, auth_failure_delay=1.5))
    session.bytes_to_send()
    session.receive_data(b"USER alice\r\nPASS wrong\r\nUSER alice\r\n")
    check = session.next_event()
    assert isinstance(check, p.PasswordCheck)
    session.password_checked(False)
    failed = session.next_event()
    assert failed == p.LoginFailed("alice", "USER", "invalid user name or password", 1.5)
    assert session.bytes_to_send() == b"+OK send PASS\r\n"  # the -ERR is held...
    assert session.next_event() is p.PAUSED  # ...and nothing pipelined behind it runs
    with pytest.raises(p.LocalProtocolError):
        session.password_checked(True)  # not what is waiting
    session.failure_delay_elapsed()
    assert session.next_event() is p.NEED_DATA
    assert session.bytes_to_send() == (
        b"-ERR [AUTH] invalid user name or password\r\n+OK send PASS\r\n"
    )
    with pytest.raises(p.LocalProtocolError, match="no LoginFailed"):
        session.failure_delay_elapsed()


def test_the_last_allowed_failure_ends_the_session_after_its_delay() -> None:
    session = p.ServerSession(p.ServerOptions(allow_cleartext=True, max_login_failures=1))
    session.bytes_to_send()
    session.receive_data(b"USER alice\r\nPASS wrong\r\n")
    session.password_checked(False) if isinstance(session.next_event(), p.PasswordCheck) else None
    assert isinstance(session.next_event(), p.LoginFailed)
    session.failure_delay_elapsed()
    assert session.next_event() == p.SessionEnded("too many failed logins")
    assert session.bytes_to_send().endswith(b"-ERR [AUTH] invalid user name or password\r\n")


def test_read_timeout_is_the_login_deadline_then_the_autologout() -> None:
    options = p.ServerOptions(allow_cleartext=True, login_timeout=60, autologout=900)
    h = Harness(options)
    assert h.session.read_timeout(0) == 60
    assert h.session.read_timeout(45.5) == pytest.approx(14.5)
    assert h.session.read_timeout(61) <= 0  # past the deadline: close now
    assert not h.session.logged_in
    h.login()
    assert h.session.logged_in
    assert h.session.read_timeout(10_000) == 900  # idle time only, from each wait
    long_login = p.ServerOptions(login_timeout=3600)
    assert p.ServerSession(long_login).read_timeout(0) == p.MINIMUM_AUTOLOGOUT


def test_session_policy_options_are_validated() -> None:
    with pytest.raises(ValueError, match="10 minutes"):
        p.ServerOptions(autologout=599)
    with pytest.raises(ValueError, match="login_timeout"):
        p.ServerOptions(login_timeout=0)
    with pytest.raises(ValueError, match="auth_failure_delay"):
        p.ServerOptions(auth_failure_delay=-1)


@pytest.mark.parametrize(
    "between",
    [
        b"AUTH PLAIN AGJvYgB3cm9uZw==\r\n",  # \0bob\0wrong
        b"APOP bob 00000000000000000000000000000000\r\n",
        b"CAPA\r\n",
        b"USER \r\n",  # a bad USER
    ],
)
def test_pass_only_right_after_user(between: bytes) -> None:
    """USER, then anything else, then PASS: the PASS is refused, never checked for USER's name."""
    session = p.ServerSession(p.ServerOptions(allow_cleartext=True, apop=True))
    app = App(session, users={"alice": "secret", "bob": "bob-pw"})
    session.receive_data(b"USER alice\r\n" + between + b"PASS secret\r\n")
    app.pump()
    replies = session.bytes_to_send().splitlines()
    assert replies[-1] == b"-ERR send USER first"
    assert session.state is p.State.AUTHORIZATION
    checked = [e for e in app.events if isinstance(e, p.PasswordCheck)]
    assert not [e for e in checked if e.password == "secret"]


def test_cleartext_refused_without_tls() -> None:
    h = Harness(p.ServerOptions())
    (err,) = h.send(p.User("alice"))
    assert isinstance(err, p.ErrResponse)
    assert err.code == p.AUTH
    caps = h.send(p.Capa())
    assert "USER" not in p.parse_capa(b"".join(bytes(e.data) for e in caps if type(e) is p.Data))


def test_apop_rfc1939_example() -> None:
    h = Harness(users={"mrose": "tanstaaf"})
    digest = p.apop_digest(RFC_TIMESTAMP, "tanstaaf")
    assert digest == "c4c9334bac560ecc979e58001b3e22fb"
    assert kinds(h.send(p.Apop("mrose", digest))) == [p.OkResponse]
    assert h.session.username == "mrose"
    assert h.client.state is p.State.TRANSACTION


def test_apop_wrong_digest_and_unknown_user() -> None:
    h = Harness(users={"mrose": "tanstaaf"})
    for name, digest in [("mrose", "0" * 32), ("nobody", p.apop_digest(RFC_TIMESTAMP, "x"))]:
        (err,) = h.send(p.Apop(name, digest))
        assert isinstance(err, p.ErrResponse)
        assert err.code == p.AUTH


def test_apop_unavailable_without_timestamp() -> None:
    h = Harness(p.ServerOptions(allow_cleartext=True))
    (greeting,) = h.greeting
    assert isinstance(greeting, p.Greeting)
    assert greeting.timestamp is None
    (err,) = h.send(p.Apop("alice", "0" * 32))
    assert isinstance(err, p.ErrResponse)


def test_maildrop_in_use_then_retry() -> None:
    h = Harness()
    h.app.manual.add(p.MaildropRequest)
    h.session.receive_data(h.client.send(p.User("alice")) + h.client.send(p.Pass("secret")))
    request = h.app.pump()
    assert request == p.MaildropRequest("alice", "USER")
    h.session.maildrop_failed("mailbox locked", p.IN_USE)
    events = h._to_client()
    err = events[-1]
    assert isinstance(err, p.ErrResponse)
    assert err.code == p.IN_USE
    assert h.session.state is p.State.AUTHORIZATION
    h.app.manual.clear()
    h.login()


def test_backend_failure_is_sys_temp() -> None:
    h = Harness()
    h.app.manual.add(p.PasswordCheck)
    h.session.receive_data(h.client.send(p.User("alice")) + h.client.send(p.Pass("secret")))
    check = h.app.pump()
    assert isinstance(check, p.PasswordCheck)
    assert check.password == "secret"
    assert "secret" not in repr(check)
    h.session.backend_failed()
    err = h._to_client()[-1]
    assert isinstance(err, p.ErrResponse)
    assert err.code == p.SYS_TEMP
    assert h.session.login_failures == 0


def test_password_keeps_spaces() -> None:
    h = Harness(users={"bob": " two  spaces "})
    assert kinds(h.send(p.User("bob"), p.Pass(" two  spaces "))) == [p.OkResponse] * 2


def test_answering_without_a_request_is_refused() -> None:
    h = Harness()
    for call in (
        lambda: h.session.password_checked(True),
        lambda: h.session.secret_provided("x"),
        lambda: h.session.maildrop_opened([]),
        h.session.maildrop_failed,
        lambda: h.session.send_message(b"x"),
        h.session.end_message,
        h.session.message_failed,
        h.session.update_done,
        h.session.tls_established,
        h.session.backend_failed,
    ):
        with pytest.raises(p.LocalProtocolError):
            call()


@pytest.mark.parametrize(
    ("uid", "size"),
    [
        ("", 1),
        ("x" * 71, 1),
        ("has space", 1),
        ("ok", -1),
        ("é", 1),
        ("new\nline", 1),
        ("tab\t", 1),
        ("del\x7f", 1),
        (b"bytes", 1),
        ("ok", "1"),
        ("ok", 1.0),
    ],
)
@pytest.mark.parametrize("position", [0, 2])
def test_invalid_listing_is_refused(uid: Any, size: Any, position: int) -> None:
    h = Harness()
    h.app.manual.add(p.MaildropRequest)
    h.session.receive_data(b"USER alice\r\nPASS secret\r\n")
    h.app.pump()
    listing = [p.MessageInfo(10, "a"), p.MessageInfo(20, "x" * 70)]
    listing.insert(position, p.MessageInfo(size, uid))
    with pytest.raises(p.LocalProtocolError, match="invalid"):
        h.session.maildrop_opened(listing)


def test_a_listing_of_plain_tuples_is_accepted() -> None:
    h = Harness()
    h.app.manual.add(p.MaildropRequest)
    h.session.receive_data(b"USER alice\r\nPASS secret\r\n")
    h.app.pump()
    h.session.maildrop_opened([(10, "a"), p.MessageInfo(0, "~!"), (5, "b", False)])  # type: ignore[list-item]
    assert h.session.bytes_to_send().endswith(b"+OK alice has 3 messages (15 octets)\r\n")


def test_empty_maildrop() -> None:
    h = Harness(messages=[])
    h.login()
    assert h.body(p.List()) == b""
    assert h.body(p.Uidl()) == b""
    stat = h.send(p.Stat())[0]
    assert isinstance(stat, p.OkResponse)
    assert stat.text == b"0 0"
    # the wire form of an empty listing (the client is not involved here)
    h.session.receive_data(b"LIST\r\n")
    h.app.pump()
    assert h.session.bytes_to_send() == b"+OK 0 messages (0 octets)\r\n.\r\n"


def test_large_listing_is_cached_until_dele_or_rset() -> None:
    h = Harness(messages=[b"x\r\n"] * 20_000)
    h.login()
    uids = p.parse_uidl(h.body(p.Uidl()))
    assert len(uids) == 20_000
    assert uids[20_000] == "uid-19999"
    assert p.parse_uidl(h.body(p.Uidl())) == uids  # served from the cache
    h.send(p.Dele(2))
    listing = p.parse_list(h.body(p.List()))
    assert 2 not in listing
    assert len(listing) == 19_999
    assert 2 not in p.parse_uidl(h.body(p.Uidl()))
    h.send(p.Rset())
    assert len(p.parse_list(h.body(p.List()))) == 20_000


_UID_CHARS = "".join(map(chr, range(0x21, 0x7F)))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 2**40), st.text(_UID_CHARS, min_size=1, max_size=70)),
        max_size=40,
    ),
    st.data(),
)
def test_listing_bodies_are_one_line_per_undeleted_message(
    entries: list[tuple[int, str]], data: st.DataObject
) -> None:
    """LIST and UIDL render, in one pass, what a line-by-line format would."""
    deleted = data.draw(st.sets(st.integers(1, len(entries))) if entries else st.just(set()))
    session = p.ServerSession(p.ServerOptions(allow_cleartext=True))
    session.receive_data(b"USER alice\r\nPASS secret\r\n")
    while (event := session.next_event()) is not p.NEED_DATA:
        if type(event) is p.PasswordCheck:
            session.password_checked(True)
        elif type(event) is p.MaildropRequest:
            session.maildrop_opened(p.MessageInfo(size, uid) for size, uid in entries)
    if deleted:
        session.receive_data(b"".join(b"DELE %d\r\n" % n for n in sorted(deleted)))
        assert session.next_event() is p.NEED_DATA
    session.bytes_to_send()
    kept = [(n, size, uid) for n, (size, uid) in enumerate(entries, 1) if n not in deleted]
    for command, line in ((b"LIST", "{} {}\r\n"), (b"UIDL", "{} {}\r\n")):
        session.receive_data(command + b"\r\n")
        assert session.next_event() is p.NEED_DATA
        reply = session.bytes_to_send()
        body = reply[reply.index(b"\r\n") + 2 :]
        field = 1 if command == b"LIST" else 2
        expected = "".join(line.format(entry[0], entry[field]) for entry in kept)
        assert body == expected.encode("ascii") + b".\r\n"


def test_pipelined_replies_are_held_to_the_high_water_mark() -> None:
    """A client that pipelines commands without reading cannot make the session buffer them all."""
    h = Harness(messages=[b"x\r\n"] * 2000)
    h.login()
    listing = h.body(p.Uidl())
    assert len(listing) > 20_000
    commands = b"DELE 1\r\nRSET\r\nUIDL\r\n" * 500  # each UIDL renders the listing anew
    h.session.receive_data(commands)
    written = []
    while (event := h.session.next_event()) is p.PAUSED:
        pending = h.session.bytes_to_send()
        assert len(pending) < p.OUTPUT_HIGH_WATER + 2 * len(listing)
        written.append(pending)
    assert event is p.NEED_DATA
    written.append(h.session.bytes_to_send())
    assert len(written) > 10
    replies = b"".join(written)
    assert replies.count(b"+OK unique-id listing follows\r\n") == 500
    assert replies.count(b"\r\n" + listing + b".\r\n") == 500


def test_message_failure_before_and_after_start() -> None:
    h = Harness(UTF8_OFFERED)
    h.app.manual.add(p.MessageRequest)
    h.login()
    h.session.receive_data(h.client.send(p.Retr(1)))
    request = h.app.pump()
    assert request == p.MessageRequest(1, 0, "uid-0", len(h.app.messages[0]), None)
    h.session.message_failed()
    err = h._to_client()[-1]
    assert isinstance(err, p.ErrResponse)
    assert err.code == p.SYS_TEMP
    h.session.receive_data(b"RETR 1\r\n")
    h.app.pump()
    h.session.send_message(b"Subject: x\r\n")
    assert not h.session.message_started  # held until the header section is seen
    h.session.send_message(b"\r\nbody")
    assert h.session.message_started
    with pytest.raises(p.LocalProtocolError):
        h.session.message_failed()


def test_empty_message_and_memoryview_chunks() -> None:
    h = Harness()
    h.app.manual.add(p.MessageRequest)
    h.login()
    h.session.receive_data(b"RETR 3\r\n")
    h.app.pump()
    h.session.end_message()
    assert h.session.bytes_to_send() == b"+OK " + b"%d" % len(MESSAGES[2]) + b" octets\r\n.\r\n"
    h.session.receive_data(b"TOP 1 1\r\n")
    h.app.pump()
    data = h.app.messages[0]
    assert h.session.send_message(memoryview(data)[:20]) is True
    assert h.session.send_message(memoryview(data)[20:]) is False
    assert h.session.send_message(b"ignored") is False
    h.session.end_message()
    h.client.receive_data(h.session.bytes_to_send())
    h.client.send(p.Top(1, 1))  # the client learns which reply this is
    # (RETR 3's reply and TOP's reply are both queued; drain both)
    body = b"".join(bytes(e.data) for e in drain(h.client) if isinstance(e, p.Data))
    assert body == h.app.messages[0].split(b"line 2")[0]


@pytest.mark.parametrize("chunk", [1, 2, 5, 64, 4096])
def test_top_cut_is_independent_of_chunking(chunk: int) -> None:
    message = b"A: 1\r\nB: 2\r\n\r\n" + b"".join(b"line %d\r\n" % i for i in range(50))
    h = Harness(messages=[message], chunk=chunk)
    h.login()
    for lines in (0, 1, 7, 50, 1000, 99999999999, int("9" * 200)):
        expected = b"A: 1\r\nB: 2\r\n\r\n" + b"".join(
            b"line %d\r\n" % i for i in range(min(lines, 50))
        )
        assert h.body(p.Top(1, lines)) == expected


def test_top_with_a_huge_line_count_sends_the_whole_message() -> None:
    # RFC 1939: a count beyond the body sends the entire message; the count is
    # digits of any length, not -ERR (the old bound was 10 digits).
    message = b"A: 1\r\n\r\nbody 1\r\nbody 2\r\n"
    h = Harness(messages=[message])
    h.login()
    for wire in (b"TOP 1 99999999999\r\n", b"TOP 1 " + b"0" * 30 + b"7\r\n"):
        h.session.receive_data(wire)
        h.app.pump()
        assert h.session.bytes_to_send() == b"+OK top of message follows\r\n" + message + b".\r\n"


def test_capabilities_depend_on_state() -> None:
    options = p.ServerOptions(
        allow_cleartext=True,
        tls_available=True,
        implementation="pop3 tests",
        login_delay=300,
        expire=30,
        utf8=True,
    )
    h = Harness(options)
    caps = p.parse_capa(h.body(p.Capa()))
    assert caps.stls
    assert caps.user
    assert caps.pipelining
    assert caps.resp_codes
    assert caps.auth_resp_code
    assert caps.utf8_user
    assert caps.lang
    assert caps.login_delay == (300, False)
    assert caps.expire == (30, False)
    assert caps.implementation is None  # only in TRANSACTION
    assert h.client.capabilities == caps
    h.login()
    caps = p.parse_capa(h.body(p.Capa()))
    assert caps.implementation == "pop3 tests"
    assert not caps.stls
    assert caps.user  # RFC 2449: AUTHORIZATION capabilities are announced in TRANSACTION too


def test_expire_never() -> None:
    h = Harness(p.ServerOptions(allow_cleartext=True, expire="NEVER"))
    caps = p.parse_capa(h.body(p.Capa()))
    assert caps.expire == (None, False)


def test_stls_hand_off() -> None:
    h = Harness(p.ServerOptions(tls_available=True))
    h.body(p.Capa())
    assert h.client.capabilities is not None
    h.session.receive_data(h.client.send(p.Stls()))
    start = h.app.pump()
    assert isinstance(start, p.StartTLS)
    events = h._to_client()
    assert kinds(events) == [p.OkResponse]
    assert h.client.state is p.State.STARTING_TLS
    assert h.session.state is p.State.STARTING_TLS
    assert h.client.next_event() is p.PAUSED
    assert h.session.next_event() is p.PAUSED
    # (the adapters run the TLS handshake here)
    h.session.tls_established()
    h.client.tls_established()
    assert h.client.capabilities is None
    assert h.client.state is p.State.AUTHORIZATION
    h.agree()
    caps = p.parse_capa(h.body(p.Capa()))
    assert not caps.stls
    assert caps.user  # cleartext is fine over TLS
    with pytest.raises(p.LocalProtocolError):
        h.client.send(p.Stls())
    h.login()


def test_stls_injection_is_refused() -> None:
    h = Harness(p.ServerOptions(tls_available=True, allow_cleartext=True))
    h.session.receive_data(b"STLS\r\nUSER alice\r\nPASS secret\r\n")
    h.app.pump()
    assert (
        h.session.bytes_to_send() == b"-ERR nothing may follow STLS before the TLS handshake\r\n"
    )
    ended = h.app.events[-1]
    assert isinstance(ended, p.SessionEnded)
    assert isinstance(ended.error, p.RemoteProtocolError)
    assert not [e for e in h.app.events if type(e) is p.PasswordCheck]


def test_stls_injection_during_handshake_is_refused() -> None:
    h = Harness(p.ServerOptions(tls_available=True))
    h.session.receive_data(b"STLS\r\n")
    assert isinstance(h.app.pump(), p.StartTLS)
    h.session.receive_data(b"CAPA\r\n")  # plaintext that arrived before the handshake
    h.session.tls_established()
    ended = h.session.next_event()
    assert isinstance(ended, p.SessionEnded)
    assert isinstance(ended.error, p.RemoteProtocolError)


def test_stls_unavailable() -> None:
    h = Harness(p.ServerOptions())
    assert kinds(h.send(p.Stls())) == [p.ErrResponse]
    assert h.session.state is p.State.AUTHORIZATION


def test_utf8_mode_and_messages_that_need_it() -> None:
    h = Harness(
        p.ServerOptions(allow_cleartext=True, tls_available=True, utf8=True),
        utf8_flags=[True, False, False],
    )
    h.login()
    for command in (p.Retr(1), p.Top(1, 0), p.List(1)):
        (err,) = h.send(command)
        assert isinstance(err, p.ErrResponse)
        assert err.code == p.UTF8
    assert h.body(p.Retr(2)) == h.app.messages[1]

    h2 = Harness(
        p.ServerOptions(allow_cleartext=True, tls_available=True, utf8=True),
        utf8_flags=[True, False, False],
    )
    assert kinds(h2.send(p.Utf8())) == [p.OkResponse]
    assert h2.client.utf8_active
    assert h2.session.conn.utf8_active
    assert "STLS" not in p.parse_capa(h2.body(p.Capa()))
    h2.login()
    assert h2.body(p.Retr(1)) == h2.app.messages[0]


INTERNATIONAL = [
    "Subject: Grüße\r\nFrom: a@example.org\r\n\r\nbody\r\n".encode(),  # raw UTF-8 header
    "Subject: plain\r\n\r\nÜnïcödé body only\r\n".encode(),  # 8-bit body: fine
    "X-Only-Headers: ✓\r\n".encode(),  # no empty line: all header section
    b"X-Only-Headers: ascii\r\n",
    "\r\nno header section at all: \xff body\r\n".encode("latin-1"),
]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1000])
def test_utf8_headers_are_refused_outside_utf8_mode(chunk: int) -> None:
    """RFC 6856: having offered UTF8, never send raw UTF-8 header fields without it."""
    h = Harness(UTF8_OFFERED, messages=INTERNATIONAL, chunk=chunk)
    h.login()
    for command in (p.Retr(1), p.Top(1, 0), p.Retr(3), p.Top(3, 5)):
        (err,) = h.send(command)
        assert isinstance(err, p.ErrResponse)
        assert err.code == p.UTF8
    assert h.body(p.Retr(2)) == h.app.messages[1]
    assert h.body(p.Retr(4)) == h.app.messages[3]
    assert h.body(p.Retr(5)) == h.app.messages[4]
    assert h.body(p.Top(2, 0)) == b"Subject: plain\r\n\r\n"
    assert p.parse_list(h.body(p.List()))[1] == len(h.app.messages[0])  # LIST knows no better
    assert kinds(h.send(p.Noop())) == [p.OkResponse]

    h2 = Harness(UTF8_OFFERED, messages=INTERNATIONAL, chunk=chunk)
    assert kinds(h2.send(p.Utf8())) == [p.OkResponse]
    h2.login()
    assert h2.body(p.Retr(1)) == h2.app.messages[0]
    assert h2.body(p.Retr(3)) == h2.app.messages[2]
    assert h2.body(p.Top(1, 0)) == "Subject: Grüße\r\nFrom: a@example.org\r\n\r\n".encode()

    h3 = Harness(messages=INTERNATIONAL)  # UTF8 not offered (the default)
    h3.login()
    assert h3.body(p.Retr(1)) == h3.app.messages[0]  # served as stored


def test_header_screen_judges_a_header_section_without_end_at_its_limit() -> None:
    screen = HeaderScreen(limit=10)
    assert screen.feed(b"X-A: 12") is None
    assert screen.feed(b"34\r\nmore") is True  # 10 octets seen and no empty line
    assert screen.held == [b"X-A: 12", b"34\r\nmore"]
    screen = HeaderScreen(limit=10)
    assert screen.feed("X: é".encode()) is None
    assert screen.feed(b"\r\n\r") is None
    assert screen.feed(b"\n") is False  # the empty line straddled three chunks
    screen = HeaderScreen(limit=10)
    assert screen.feed(b"\r\n") is True  # an empty header section
    assert HeaderScreen().finish() is True


def test_message_failed_after_a_utf8_refusal_adds_no_reply() -> None:
    h = Harness(UTF8_OFFERED, messages=INTERNATIONAL)
    h.app.manual.add(p.MessageRequest)
    h.login()
    h.session.receive_data(h.client.send(p.Retr(1)))
    request = h.app.pump()
    assert isinstance(request, p.MessageRequest)
    assert h.session.send_message(h.app.messages[0][:3]) is True  # held: no verdict yet
    assert not h.session.message_started
    assert h.session.data_to_send() == []
    assert h.session.send_message(h.app.messages[0][3:]) is False
    assert h.session.send_message(b"more") is False
    h.session.message_failed()
    (err,) = h._to_client()
    assert isinstance(err, p.ErrResponse)
    assert err.code == p.UTF8
    h.app.manual.clear()
    assert kinds(h.send(p.Noop())) == [p.OkResponse]


def test_utf8_disabled() -> None:
    h = Harness(p.ServerOptions(allow_cleartext=True, utf8=False))
    assert kinds(h.send(p.Utf8())) == [p.ErrResponse]
    assert not h.client.utf8_active
    assert "UTF8" not in p.parse_capa(h.body(p.Capa()))


def test_lang() -> None:
    options = p.ServerOptions(
        allow_cleartext=True, languages=(("en", "English"), ("de-CH", "Deutsch (Schweiz)"))
    )
    h = Harness(options)
    assert p.parse_lang_listing(h.body(p.Lang())) == [
        ("en", "English"),
        ("de-CH", "Deutsch (Schweiz)"),
    ]
    for wanted, chosen in [("*", "en"), ("en-US", "en"), ("de", "de-CH"), ("DE-ch", "de-CH")]:
        (ok,) = h.send(p.Lang(wanted))
        assert isinstance(ok, p.OkResponse)
        assert ok.text.startswith(chosen.encode())
        assert h.session.language == chosen
    assert kinds(h.send(p.Lang("fr"))) == [p.ErrResponse]
    assert h.session.language == "de-CH"
    h.login()
    assert kinds(h.send(p.Lang("en"))) == [p.OkResponse]  # LANG works in TRANSACTION too


def test_lang_unsupported() -> None:
    h = Harness(p.ServerOptions(allow_cleartext=True, languages=()))
    assert kinds(h.send(p.Lang())) == [p.ErrResponse]
    assert "LANG" not in p.parse_capa(h.body(p.Capa()))


def test_auth_without_mechanisms() -> None:
    h = Harness()
    assert h.body(p.Auth()) == b""
    (err,) = h.send(p.Auth("PLAIN", b"\0alice\0secret"))
    assert isinstance(err, p.ErrResponse)
    assert h.session.state is p.State.AUTHORIZATION


def test_bad_commands_are_answered_then_budgeted() -> None:
    h = Harness(p.ServerOptions(allow_cleartext=True, max_bad_commands=3))
    h.session.receive_data(b"STAT\r\nFOO\r\nRETR x\r\n")
    h.app.pump()
    assert h.session.bytes_to_send() == (
        b"-ERR log in first\r\n-ERR unknown command\r\n-ERR log in first\r\n"
    )
    h.session.receive_data(b"LAST\r\n")
    h.app.pump()
    assert h.session.bytes_to_send() == b"-ERR too many bad commands\r\n"
    ended = h.app.events[-1]
    assert isinstance(ended, p.SessionEnded)
    assert isinstance(ended.error, p.RemoteProtocolError)


def test_auth_refused_after_login() -> None:
    h = Harness()
    h.login()
    (err,) = h.send(p.RawCommand("AUTH PLAIN AGFsaWNlAHNlY3JldA=="))
    assert isinstance(err, p.ErrResponse)
    assert err.text == b"already authenticated"


def test_greeting_timestamps_differ() -> None:
    stamps = {p.make_apop_timestamp("mail.example.org") for _ in range(100)}
    assert len(stamps) == 100
    assert all(s.startswith(b"<") and s.endswith(b"@mail.example.org>") for s in stamps)
    session = p.ServerSession(p.ServerOptions(apop=True, hostname="h.example"))
    greeting = p.Connection(p.CLIENT)
    greeting.receive_data(session.bytes_to_send())
    event = greeting.next_event()
    assert isinstance(event, p.Greeting)
    assert event.timestamp == session.timestamp


def test_duplicate_mechanisms_rejected() -> None:
    class Dummy(p.ServerMechanism):
        name = "X-DUMMY"

        def exchange(self, initial_response: bytes | None) -> Any:
            yield p.Challenge(b"")
            return "x"

    with pytest.raises(ValueError, match="twice"):
        p.ServerOptions(mechanisms=[Dummy(), Dummy()])
