"""The poplib drop-in against hostile servers.

Slow replies (the low-speed guard), endless replies (the memory bound), bytes
no command asked for, bodies cut off by EOF and malformed capabilities, in
every TLS mode that applies; then random replies, of which only `error_proto`,
`TimeoutError` and `OSError` may come out.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import pop3_blocking.poplib as dropin
from tests.hostile import CAPA_STLS, TLS_MODES, Clock, HostileServer, Peer, TLSMode
from tests.server_doubles import Certificates

Hostile = Callable[..., HostileServer]

# A drip one octet just inside each read timeout: the timeout alone never fires.
TIMEOUT = 0.4
DRIP = 0.3
GUARD = (100, 0.5)  # octets, seconds: small, so that a test trips it soon
BOUND = 3.0  # seconds any hostile case may take on the fixed drop-in


Connect = Callable[..., Any]


@pytest.fixture
def connect(certs: Certificates) -> Iterator[Connect]:
    """Opens drop-in sessions with a `HostileServer` in its TLS mode; all closed afterwards.

    ``connect(server, tls, timeout=5.0, cls=dropin.POP3)``; the "starttls" peer
    expects STLS, which is sent.
    """
    sessions: list[Any] = []

    def open_session(
        server: HostileServer, tls: TLSMode, timeout: float = 5.0, cls: type[Any] = dropin.POP3
    ) -> Any:
        if tls == "implicit":
            if cls is dropin.POP3:
                cls = dropin.POP3_SSL
            else:  # the same subclass, over implicit TLS
                cls = type(cls.__name__, (cls, dropin.POP3_SSL), {})
            pop = cls("localhost", server.port, timeout=timeout, context=certs.client_context())
        else:
            pop = cls("localhost", server.port, timeout=timeout)
        sessions.append(pop)
        if tls == "starttls":
            pop.stls(certs.client_context())
        return pop

    yield open_session
    for pop in sessions:
        pop.close()


@pytest.fixture
def small_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    # raising=False: the same tests show what a drop-in without the settings does.
    monkeypatch.setattr(dropin, "_LOW_SPEED_LIMIT", GUARD[0], raising=False)
    monkeypatch.setattr(dropin, "_LOW_SPEED_TIME", GUARD[1], raising=False)


# -- 1. the low-speed guard -----------------------------------------------------------


@pytest.mark.parametrize("tls", ["none", "implicit"])  # STLS needs the greeting first
@pytest.mark.usefixtures("small_guard")
def test_a_dripped_greeting_times_out(hostile: Hostile, connect: Connect, tls: TLSMode) -> None:
    server = hostile(lambda peer: peer.drip(b"+OK slow\r\n", DRIP), tls=tls, greeting=None)
    clock = Clock()
    with pytest.raises(TimeoutError, match="fewer than 100 octets"):
        connect(server, tls, timeout=TIMEOUT)
    assert clock() < BOUND


@pytest.mark.parametrize("tls", TLS_MODES)
@pytest.mark.usefixtures("small_guard")
def test_a_body_dripped_mid_retr_times_out(
    hostile: Hostile, connect: Connect, tls: TLSMode
) -> None:
    def script(peer: Peer) -> None:
        peer.serve_until(b"RETR")
        peer.send(b"+OK 16 octets\r\n")
        peer.drip(b"a slow body\r\n.\r\n", DRIP)
        peer.finish()

    pop = connect(hostile(script, tls=tls), tls, timeout=TIMEOUT)
    clock = Clock()
    with pytest.raises(TimeoutError, match="fewer than 100 octets"):
        pop.retr(1)
    assert clock() < BOUND
    pop.close()


@pytest.mark.parametrize("tls", TLS_MODES)
@pytest.mark.usefixtures("small_guard")
def test_pauses_and_a_steady_pace_pass_the_guard(
    hostile: Hostile, connect: Connect, tls: TLSMode
) -> None:
    # A server that thinks before answering, a caller that pauses between
    # commands, and a reply that comes in pieces faster than the guard's pace.
    piece = b"y" * 98 + b"\r\n"

    def script(peer: Peer) -> None:
        peer.serve_until(b"RETR")
        time.sleep(GUARD[1] * 1.2)
        peer.send(b"+OK 500 octets\r\n")
        for _ in range(5):
            peer.send(piece)
            time.sleep(GUARD[1] * 0.4)
        peer.send(b".\r\n")
        peer.finish()

    pop = connect(hostile(script, tls=tls), tls, timeout=2.0)
    assert pop.noop() == b"+OK"
    time.sleep(GUARD[1] * 1.2)
    assert pop.stat() == (1, 100)
    assert pop.retr(1) == (b"+OK 500 octets", [piece[:-2]] * 5, 500)
    assert pop.quit() == b"+OK bye"


# -- 2. the memory bound -----------------------------------------------------------------

STREAM = 32 << 20  # "endless": far past any bound here, then a terminator
PIECE = b"".join(b"%06d " % i + b"x" * 56 + b"\r\n" for i in range(1024))  # 64 KiB of lines
SMALL_BOUND = 256 * 1024


def endless(keyword: bytes, status: bytes, piece: bytes = PIECE) -> Callable[[Peer], None]:
    def script(peer: Peer) -> None:
        peer.serve_until(keyword)
        peer.send(status)
        sent = 0
        while sent < STREAM:  # until the client hangs up (Gone)
            peer.send(piece)
            sent += len(piece)
        peer.send(b".\r\n")
        peer.finish()

    return script


@pytest.mark.parametrize("tls", TLS_MODES)
def test_an_endless_retr_is_bounded_by_its_announced_size(
    hostile: Hostile, connect: Connect, tls: TLSMode, peak_memory: Callable[[], int]
) -> None:
    pop = connect(hostile(endless(b"RETR", b"+OK 1000 octets\r\n"), tls=tls), tls)
    clock = Clock()
    with pytest.raises(dropin.error_proto, match="response too long"):
        pop.retr(1)
    assert clock() < BOUND
    assert peak_memory() < 4 << 20
    assert pop.sock is None  # the rest of the reply cannot be skipped


CALLS: dict[str, tuple[bytes, bytes, Callable[[Any], Any]]] = {
    "list": (b"LIST", b"+OK\r\n", lambda pop: pop.list()),
    "uidl": (b"UIDL", b"+OK\r\n", lambda pop: pop.uidl()),
    "top": (b"TOP", b"+OK\r\n", lambda pop: pop.top(1, 10)),
    "retr": (b"RETR", b"+OK message follows\r\n", lambda pop: pop.retr(1)),
    "capa": (b"CAPA", b"+OK\r\n", lambda pop: pop.capa()),
}


class LineByLine(dropin.POP3):
    """Overrides `_getline`, so multi-line replies are read line by line."""

    def _getline(self) -> tuple[bytes, int]:
        return super()._getline()


@pytest.mark.parametrize("reader", ["blocks", "lines"])
@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("tls", TLS_MODES)
def test_an_endless_unannounced_reply_is_bounded(
    *,
    hostile: Hostile,
    connect: Connect,
    tls: TLSMode,
    call: str,
    reader: str,
    monkeypatch: pytest.MonkeyPatch,
    peak_memory: Callable[[], int],
) -> None:
    monkeypatch.setattr(dropin, "_MAXRESPONSE", SMALL_BOUND, raising=False)
    keyword, status, action = CALLS[call]
    cls = LineByLine if reader == "lines" else dropin.POP3
    pop = connect(hostile(endless(keyword, status), tls=tls), tls, cls=cls)
    clock = Clock()
    # capa() reports every error as CAPA not being supported, as poplib's does.
    message = "CAPA not supported" if call == "capa" else "response too long"
    with pytest.raises(dropin.error_proto, match=message):
        action(pop)
    assert clock() < BOUND
    assert peak_memory() < 4 << 20
    assert pop.sock is None


@pytest.mark.parametrize("reader", ["blocks", "lines"])
def test_endless_short_lines_are_bounded_in_memory_not_just_octets(
    *,
    hostile: Hostile,
    connect: Connect,
    reader: str,
    monkeypatch: pytest.MonkeyPatch,
    peak_memory: Callable[[], int],
) -> None:
    # Every 3-octet line is a bytes object of 36 octets and a list slot: a bound
    # on octets alone would let the list grow to some 14 times the bound.
    monkeypatch.setattr(dropin, "_MAXRESPONSE", SMALL_BOUND, raising=False)
    cls = LineByLine if reader == "lines" else dropin.POP3
    pop = connect(hostile(endless(b"UIDL", b"+OK\r\n", b"x\r\n" * 4096)), "none", cls=cls)
    with pytest.raises(dropin.error_proto, match="response too long"):
        pop.uidl()
    assert peak_memory() < 3 * SMALL_BOUND + (1 << 20)


# -- 3. bytes no command asked for ---------------------------------------------------------


@pytest.mark.parametrize("tls", TLS_MODES)
def test_a_stray_line_in_the_same_segment_ends_the_session(
    hostile: Hostile, connect: Connect, tls: TLSMode
) -> None:
    def script(peer: Peer) -> None:
        peer.serve_until(b"NOOP")
        peer.send(b"+OK\r\n+OK 0 0\r\n")
        peer.finish()

    pop = connect(hostile(script, tls=tls), tls)
    assert pop.noop() == b"+OK"
    with pytest.raises(dropin.error_proto, match=r"unexpected data from server: b'\+OK 0 0"):
        pop.stat()  # a drop-in reading in step with the server says (1, 100)
    assert pop.sock is None


@pytest.mark.parametrize("tls", TLS_MODES)
def test_a_stray_line_sent_later_ends_the_session(
    hostile: Hostile, connect: Connect, tls: TLSMode
) -> None:
    sent = threading.Event()

    def script(peer: Peer) -> None:
        peer.serve_until(b"NOOP")
        peer.send(b"+OK\r\n")
        time.sleep(0.5)
        peer.send(b"+OK 0 0\r\n")
        sent.set()
        peer.finish()

    pop = connect(hostile(script, tls=tls), tls)
    assert pop.noop() == b"+OK"
    assert sent.wait(5)
    time.sleep(0.1)  # loopback delivers at once; leave it a moment all the same
    with pytest.raises(dropin.error_proto, match="unexpected data"):
        pop.stat()
    assert pop.sock is None


@pytest.mark.parametrize("tls", TLS_MODES)
def test_an_unstuffed_lone_dot_line_is_caught_at_the_next_command(
    hostile: Hostile, connect: Connect, tls: TLSMode
) -> None:
    # Dovecot sends a message whose first line is "." without stuffing it: the
    # reply seems to end there and the rest arrives when no reply is owed.
    def script(peer: Peer) -> None:
        peer.serve_until(b"RETR")
        peer.send(b"+OK 20 octets\r\n.\r\nSubject: x\r\n\r\nbody\r\n.\r\n")
        peer.finish()

    pop = connect(hostile(script, tls=tls), tls)
    assert pop.retr(1) == (b"+OK 20 octets", [], 0)  # what poplib returns too
    with pytest.raises(dropin.error_proto, match="unexpected data from server: b'Subject: x"):
        pop.stat()


@pytest.mark.parametrize("tls", TLS_MODES)
def test_a_stray_line_after_a_sasl_challenge_is_caught(
    hostile: Hostile, connect: Connect, tls: TLSMode
) -> None:
    def script(peer: Peer) -> None:
        peer.serve_until(b"AUTH")
        peer.send(b"+ \r\n+OK 0 0\r\n")
        peer.finish()

    pop = connect(hostile(script, tls=tls), tls)
    with pytest.raises(dropin.error_proto, match="unexpected data"):
        pop.auth("PLAIN", lambda challenge: b"\0alice\0secret")


def test_bytes_injected_before_the_tls_handshake_are_refused(
    hostile: Hostile, connect: Connect, certs: Certificates
) -> None:
    # The old plain file would drop them (poplib), or a reader that kept them
    # would take them for replies sent under TLS.
    def script(peer: Peer) -> None:
        peer.serve_until(b"STLS", capa=CAPA_STLS)
        peer.send(b"+OK begin TLS\r\n+OK injected\r\n")
        peer.sock = peer.server.tls_context().wrap_socket(peer.sock, server_side=True)
        peer.finish()

    pop = connect(hostile(script), "none")
    with pytest.raises(dropin.error_proto, match="unexpected data from server: b'\\+OK injected"):
        pop.stls(certs.client_context())
    assert pop.sock is None


@pytest.mark.parametrize("tls", TLS_MODES)
def test_a_server_that_hung_up_gets_no_command(
    hostile: Hostile, connect: Connect, tls: TLSMode
) -> None:
    def script(peer: Peer) -> None:
        peer.serve_until(b"NOOP")
        peer.send(b"+OK\r\n")  # and hang up

    server = hostile(script, tls=tls)
    pop = connect(server, tls)
    assert pop.noop() == b"+OK"
    assert server.finished.wait(5)
    time.sleep(0.1)
    with pytest.raises(dropin.error_proto, match="-ERR EOF"):
        pop.stat()
    assert pop.sock is None


# -- 4. bodies cut off by EOF ----------------------------------------------------------------


@pytest.mark.parametrize("reader", ["blocks", "lines"])
@pytest.mark.parametrize("tail", [b"..", b".\r", b".x", b"\r..", b"half a li"])
@pytest.mark.parametrize("call", ["retr", "top"])
@pytest.mark.parametrize("tls", TLS_MODES)
def test_a_message_cut_off_by_eof_raises(
    *, hostile: Hostile, connect: Connect, tls: TLSMode, call: str, tail: bytes, reader: str
) -> None:
    # poplib strips the last octet of a line cut off by EOF: "..", ".\r", ".x"
    # and "\r.." become the terminator and the message looks whole.
    keyword, _, action = CALLS[call]

    def script(peer: Peer) -> None:
        peer.serve_until(keyword)
        peer.send(b"+OK\r\nfirst line\r\n" + tail)

    cls = LineByLine if reader == "lines" else dropin.POP3
    pop = connect(hostile(script, tls=tls), tls, cls=cls)
    with pytest.raises(dropin.error_proto, match="-ERR EOF"):
        action(pop)


# -- 5. malformed capabilities, and random replies ---------------------------------------------


@pytest.mark.parametrize("line", [b"\xff\xfeX", b"", b"   ", b"IMPLEMENTATION caf\xc3\xa9"])
@pytest.mark.parametrize("tls", TLS_MODES)
def test_a_malformed_capability_line_is_error_proto(
    hostile: Hostile, connect: Connect, tls: TLSMode, line: bytes
) -> None:
    def script(peer: Peer) -> None:
        peer.serve_until(b"CAPA")
        peer.send(b"+OK\r\nUSER\r\n" + line + b"\r\nTOP\r\n.\r\n")
        peer.finish()

    pop = connect(hostile(script, tls=tls), tls)
    with pytest.raises(dropin.error_proto, match="CAPA not supported"):
        pop.capa()
    assert pop.noop() == b"+OK"  # the reply was read whole: still in step
    pop.quit()


ACTIONS: dict[str, Callable[[Any], Any]] = {
    "user": lambda pop: pop.user("alice"),
    "pass_": lambda pop: pop.pass_("secret"),
    "apop": lambda pop: pop.apop("alice", "secret"),
    "auth": lambda pop: pop.auth("CRAM-MD5", lambda challenge: b"alice 0123"),
    "auth_ir": lambda pop: pop.auth("PLAIN", initial_response=b"\0alice\0secret"),
    "stat": lambda pop: pop.stat(),
    "list": lambda pop: pop.list(),
    "list_1": lambda pop: pop.list(1),
    "uidl": lambda pop: pop.uidl(),
    "uidl_1": lambda pop: pop.uidl(1),
    "top": lambda pop: pop.top(1, 2),
    "retr": lambda pop: pop.retr(1),
    "dele": lambda pop: pop.dele(1),
    "noop": lambda pop: pop.noop(),
    "rset": lambda pop: pop.rset(),
    "rpop": lambda pop: pop.rpop("alice"),
    "utf8": lambda pop: pop.utf8(),
    "capa": lambda pop: pop.capa(),
    "stls": lambda pop: pop.stls(),
    "quit": lambda pop: pop.quit(),
}

STATUS = st.sampled_from(
    [
        b"+OK",
        b"+OK 2 320",
        b"+OK 5 octets",
        b"+OK x y",
        b"+OK <1.2@x>",
        b"+",
        b"+ ",
        b"+ PDEyMzQ1QGxvY2FsaG9zdD4=",
        b"+ not base64!",
        b"-ERR no",
        b"",
    ]
)
LINE = st.one_of(
    STATUS,
    st.sampled_from(
        [b".", b"..", b".\r", b"..x", b"STLS", b"\xff\xfe", b"   ", b"1 " + b"9" * 30]
    ),
    st.binary(max_size=30).map(lambda data: data.replace(b"\n", b"")),
)
EOL = st.sampled_from([b"\r\n", b"\n", b"\r"])
LINES = st.lists(st.tuples(LINE, EOL), max_size=5).map(
    lambda lines: b"".join(text + end for text, end in lines)
)
# A status line, some lines, and often a terminator: shaped enough to reach
# the parsing behind each reader, random enough to break it.
REPLY = st.tuples(STATUS, EOL, LINES, st.sampled_from([b".\r\n", b".\n", b""])).map(
    b"".join
) | st.binary(max_size=60)


class Responder:
    """The server's end of a socket pair: a greeting, then one reply per command line.

    It hangs up after the last reply, or when the client sends nothing for a
    moment (it is then waiting for more of a reply than was scripted).
    """

    def __init__(self, sock: socket.socket, greeting: bytes, replies: list[bytes]) -> None:
        self.sock = sock
        self.replies = [greeting, *replies]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        sock = self.sock
        sock.settimeout(0.02)
        pending = b""
        try:
            for number, reply in enumerate(self.replies):
                if number:
                    while b"\n" not in pending:
                        chunk = sock.recv(4096)
                        if not chunk:
                            return
                        pending += chunk
                    pending = pending.split(b"\n", 1)[1]
                sock.sendall(reply)
        except OSError:
            pass
        finally:
            sock.close()


@settings(
    max_examples=200,
    deadline=2000,
    suppress_health_check=[HealthCheck.too_slow],
)
# What poplib lets out, pinned: UnicodeDecodeError and IndexError from capa().
@example(greeting=b"+OK ready\r\n", script=[("capa", b"+OK\r\n\xff\r\n.\r\n")])
@example(greeting=b"+OK ready\r\n", script=[("stls", b"+OK\r\n\r\n.\r\n")])
@given(
    greeting=st.one_of(st.just(b"+OK ready <1.2@x>\r\n"), REPLY),
    script=st.lists(st.tuples(st.sampled_from(sorted(ACTIONS)), REPLY), min_size=1, max_size=6),
)
def test_random_replies_raise_only_poplibs_exceptions(
    greeting: bytes, script: list[tuple[str, bytes]]
) -> None:
    ours, theirs = socket.socketpair()
    responder = Responder(theirs, greeting, [reply for _, reply in script])
    pop: Any = None
    try:
        with mock.patch("socket.create_connection", return_value=ours):
            pop = dropin.POP3("pop.example", 110, timeout=1)
        for name, _ in script:
            if pop.sock is None:  # the drop-in ended the session
                break
            # TimeoutError and the ssl errors are OSErrors; anything else fails the test.
            with contextlib.suppress(dropin.error_proto, OSError):
                ACTIONS[name](pop)
    except (dropin.error_proto, OSError):
        pass
    finally:
        with contextlib.suppress(OSError):
            if pop is not None:
                pop.close()
        ours.close()
        responder.thread.join(5)
