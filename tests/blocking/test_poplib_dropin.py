"""pop3_blocking.poplib: a drop-in for the standard library's poplib.

CPython's own test_poplib runs against it; differential tests drive stdlib
poplib and the drop-in against the same scripted server and compare every
result, exception and debug line; the additions (auth, context manager) run
against our threaded server.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import importlib.util
import inspect
import io
import os
import poplib as stdlib_poplib
import socket
import ssl
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pop3_blocking.poplib as dropin
import pop3core as p
from pop3_blocking._server import Server
from tests.peers import unavailable
from tests.server_doubles import Certificates, DictAuthenticator, DictStore

ROOT = Path(__file__).resolve().parents[2]

# -- CPython's own test suite -------------------------------------------------------

RUN_CPYTHON_TESTS = """
import sys, unittest
import pop3_blocking.poplib as dropin
import pop3core as p
sys.modules["poplib"] = dropin  # before test.test_poplib imports it
from test import test_poplib
assert test_poplib.poplib is dropin
result = unittest.main(module=test_poplib, exit=False, verbosity=1).result
print("RAN", result.testsRun, "SKIPPED", len(result.skipped), flush=True)
sys.exit(0 if result.wasSuccessful() else 1)
"""


def test_cpython_test_poplib_passes_with_the_dropin_substituted() -> None:
    if importlib.util.find_spec("test.test_poplib") is None:
        unavailable("this interpreter has no 'test' package (CPython's test suite)")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    done = subprocess.run(
        [sys.executable, "-c", RUN_CPYTHON_TESTS],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    ran = output.split("RAN ", 1)[1].split()
    assert int(ran[0]) >= 60, output[-2000:]  # 71 on CPython 3.11 to 3.13
    assert int(ran[2]) == 0, output[-5000:]  # nothing skipped


# -- a scripted server --------------------------------------------------------------

HANG_UP = b"<hang up>"  # at the end of a scripted reply: close after sending the rest


class Scripted:
    """A loopback server that answers each command line with canned bytes.

    `replies` maps a command's first word (upper case) to the bytes to send;
    a callable gets the whole line. It serves any number of connections, one
    after another, and records the lines it received.
    """

    def __init__(
        self,
        replies: dict[str, bytes | Callable[[bytes], bytes]],
        greeting: bytes = b"+OK scripted <1896.697170952@dbc.mtview.ca.us>\r\n",
    ) -> None:
        self.replies = replies
        self.greeting = greeting
        self.received: list[bytes] = []
        self.stopped = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(0.1)
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn, conn.makefile("rb") as reader:
                conn.settimeout(30)
                try:
                    conn.sendall(self.greeting)
                    for line in reader:
                        self.received.append(line)
                        word = line.split(b" ", 1)[0].strip().upper().decode("ascii", "replace")
                        reply = self.replies.get(word, b"-ERR unknown\r\n")
                        data = reply(line) if callable(reply) else reply
                        if not data:
                            break  # an empty reply: close the connection
                        hang_up = data.endswith(HANG_UP)
                        with memoryview(data) as view:  # big replies are not copied
                            conn.sendall(view[: len(data) - len(HANG_UP)] if hang_up else view)
                        if hang_up:
                            break
                        if word == "QUIT":
                            break
                except OSError:
                    pass

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(10)
        self.listener.close()


@pytest.fixture
def scripted() -> Iterator[Callable[..., Scripted]]:
    servers: list[Scripted] = []

    def make(replies: dict[str, Any], **kwargs: Any) -> Scripted:
        server = Scripted(replies, **kwargs)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", call()
    except stdlib_poplib.error_proto as exc:  # the drop-in's is a subclass
        return "error_proto", exc.args
    except Exception as exc:
        return type(exc).__name__, str(exc)


def both(port: int, action: Callable[[Any], Any]) -> tuple[tuple[str, Any], tuple[str, Any]]:
    """Run `action` on a connection of stdlib poplib, then of the drop-in."""
    results = []
    for module in (stdlib_poplib, dropin):
        pop = module.POP3("127.0.0.1", port, timeout=10)
        try:
            results.append(outcome(lambda pop=pop: action(pop)))
        finally:
            pop.close()
    return results[0], results[1]


BODY_LINES = [b"Subject: x", b"", b"..dotted", b".kept", b"plain", b"...."]
RETR_WIRE = b"+OK 42 octets\r\n" + b"".join(line + b"\r\n" for line in BODY_LINES) + b".\r\n"
REPLIES: dict[str, Any] = {
    "USER": b"+OK\r\n",
    "PASS": b"+OK maildrop has 2 messages\r\n",
    "APOP": lambda line: b"+OK " + line.split()[2].strip() + b"\r\n",
    "STAT": b"+OK 2 320\r\n",
    "LIST": lambda line: (
        b"+OK 1 120\r\n" if b" " in line.strip() else b"+OK\r\n1 120\r\n2 200\r\n.\r\n"
    ),
    "UIDL": b"+OK\r\n1 aaa\r\n2 bbb\r\n.\r\n",
    "RETR": RETR_WIRE,
    "TOP": RETR_WIRE,
    "DELE": b"+OK marked\r\n",
    "NOOP": b"+OK\r\n",
    "RSET": b"+OK\r\n",
    "RPOP": b"-ERR no\r\n",
    "UTF8": b"+OK UTF8 enabled\r\n",
    "CAPA": b"+OK\r\nTOP\r\nUIDL\r\nSASL PLAIN CRAM-MD5\r\nimplementation x y\r\n.\r\n",
    "QUIT": b"+OK bye\r\n",
}


@pytest.mark.parametrize(
    "action",
    [
        lambda pop: pop.getwelcome(),
        lambda pop: (pop.user("alice"), pop.pass_("secret")),
        lambda pop: pop.apop("alice", "tanstaaf"),
        lambda pop: pop.stat(),
        lambda pop: pop.list(),
        lambda pop: pop.list(1),
        lambda pop: pop.uidl(),
        lambda pop: pop.retr(1),
        lambda pop: pop.top(1, 0),
        lambda pop: (pop.dele(1), pop.noop(), pop.rset()),
        lambda pop: pop.rpop("alice"),
        lambda pop: pop.utf8(),
        lambda pop: pop.capa(),
        lambda pop: pop._shortcmd("XYZZY"),
        lambda pop: pop._longcmd("RETR 1"),
        lambda pop: (pop.quit(), pop.sock, pop.file),
    ],
)
def test_every_command_gives_what_poplib_gives(
    scripted: Callable[..., Scripted], action: Callable[[Any], Any]
) -> None:
    server = scripted(REPLIES)
    expected, got = both(server.port, action)
    assert got == expected


def test_the_apop_digest_is_rfc_1939s(scripted: Callable[..., Scripted]) -> None:
    server = scripted(REPLIES)
    pop = dropin.POP3("127.0.0.1", server.port)
    assert pop.apop("mrose", "tanstaaf") == b"+OK c4c9334bac560ecc979e58001b3e22fb"
    pop.close()


@pytest.mark.parametrize(
    "stat",
    [b"+OK\r\n", b"+OK 1\r\n", b"+OK one two\r\n", b"+OK 3 300 extra words\r\n"],
)
def test_stat_validates_the_reply(scripted: Callable[..., Scripted], stat: bytes) -> None:
    server = scripted({"STAT": stat})
    pop = dropin.POP3("127.0.0.1", server.port)
    result = outcome(pop.stat)
    pop.close()
    if stat.startswith(b"+OK 3"):
        assert result == ("ok", (3, 300))
    else:
        assert result[0] == "error_proto"
        assert result[1][0].startswith("Invalid STAT response")


@pytest.mark.parametrize(
    ("greeting", "reply"),
    [
        (b"+OK <1.2@host>\r\n", b"-ERR [AUTH] no\r\n"),  # -ERR: args[0] is the line
        (b"+ Hola mundo\n", b"+\r\n"),  # any "+" counts, LF alone ends a line
        (b"+OK\r\n", b""),  # EOF
        (b"+OK\r\n", b"+OK " + b"a" * 3000 + b"\r\n"),  # line too long
        (b"+OK\r\n", b"\r+OK cr first\n"),
    ],
)
def test_replies_and_errors_are_poplibs(
    scripted: Callable[..., Scripted], greeting: bytes, reply: bytes
) -> None:
    server = scripted({"NOOP": reply}, greeting=greeting)
    expected, got = both(server.port, lambda pop: (pop.getwelcome(), pop.noop()))
    assert got == expected


def test_a_greeting_that_is_not_ok_raises(scripted: Callable[..., Scripted]) -> None:
    server = scripted({}, greeting=b"-ERR go away\r\n")
    with pytest.raises(dropin.error_proto) as caught:
        dropin.POP3("127.0.0.1", server.port)
    assert caught.value.args == (b"-ERR go away",)


def test_error_proto_is_caught_by_the_standard_librarys_except() -> None:
    assert issubclass(dropin.error_proto, stdlib_poplib.error_proto)
    assert dropin.__all__ == ["POP3", "error_proto", "POP3_SSL"]
    assert (dropin.POP3_PORT, dropin.POP3_SSL_PORT, dropin._MAXLINE) == (110, 995, 2048)
    assert (dropin.CR, dropin.LF, dropin.CRLF) == (b"\r", b"\n", b"\r\n")


def test_maxline_is_read_at_call_time(
    scripted: Callable[..., Scripted], monkeypatch: pytest.MonkeyPatch
) -> None:
    long_line = b"x" * 5000
    server = scripted(
        {
            "NOOP": b"+OK " + long_line + b"\r\n",
            "RETR": b"+OK\r\n" + long_line + b"\r\n.\r\n",
        }
    )

    def action(pop: Any) -> list[tuple[str, Any]]:
        # poplib reads _MAXLINE + 1 octets of the long line and leaves the rest
        # unread, for the next replies (test_poplib's TLS tearDown relies on it).
        return [outcome(lambda: pop.retr(1)), outcome(pop.noop), outcome(pop.noop)]

    expected, got = both(server.port, action)
    assert got == expected
    assert got[1][0] == ("error_proto", ("line too long",))
    for module in (stdlib_poplib, dropin):
        monkeypatch.setattr(module, "_MAXLINE", 1 << 20)  # what getmail6 does
    expected, got = both(server.port, lambda pop: (pop.noop(), pop.retr(1)))
    assert got == expected
    assert got[1] == (b"+OK " + long_line, (b"+OK", [long_line], 5002))


def test_commands_with_cr_or_lf_are_refused(scripted: Callable[..., Scripted]) -> None:
    server = scripted(REPLIES)
    pop = dropin.POP3("127.0.0.1", server.port)
    for bad in ("alice\r\nDELE 1", "alice\nDELE 1", "alice\r"):
        with pytest.raises(ValueError, match="CR or LF"):
            pop.user(bad)
    assert pop.noop() == b"+OK"
    pop.close()
    assert not any(b"DELE" in line for line in server.received)


def test_debug_output_is_poplibs(
    scripted: Callable[..., Scripted], capsys: pytest.CaptureFixture[str]
) -> None:
    server = scripted(REPLIES)
    outputs = []
    for module in (stdlib_poplib, dropin):
        for level in (1, 2):
            pop = module.POP3("127.0.0.1", server.port)
            pop.set_debuglevel(level)
            pop.user("alice")
            pop.stat()
            pop.retr(1)
            pop.quit()
        outputs.append(capsys.readouterr().out)
    assert outputs[1] == outputs[0]
    assert "*get*" in outputs[1]


AUDIT_SCRIPT = """
import sys
events = []
def hook(name, args):
    if name.startswith("poplib."):
        events.append((name, args))
sys.addaudithook(hook)
import pop3_blocking.poplib as poplib
try:
    poplib.POP3("127.0.0.1", int(sys.argv[1]), timeout=5).quit()
except Exception as exc:
    print("error", exc)
for name, args in events:
    print(name, args[1:])
"""


def test_audit_events(scripted: Callable[..., Scripted]) -> None:
    server = scripted(REPLIES)
    done = subprocess.run(
        [sys.executable, "-c", AUDIT_SCRIPT, str(server.port)],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=str(ROOT / "src")),
        check=True,
    )
    assert done.stdout.splitlines() == [
        f"poplib.connect ('127.0.0.1', {server.port})",
        "poplib.putline (b'QUIT',)",
    ]


def test_timeouts_are_poplibs(scripted: Callable[..., Scripted]) -> None:
    server = scripted(REPLIES)
    with pytest.raises(ValueError, match="Non-blocking"):
        dropin.POP3("127.0.0.1", server.port, timeout=0)
    pop = dropin.POP3("127.0.0.1", server.port, timeout=3.5)
    assert pop.sock.gettimeout() == 3.5
    pop.close()
    pop.close()  # twice is fine
    assert pop.sock is None
    assert pop.file is None


# -- multi-line bodies: hypothesis against stdlib poplib ------------------------------

LINE_ENDS = st.sampled_from([b"\r\n", b"\n", b"\r\r\n"])
LINE_TEXT = st.one_of(
    st.sampled_from([b"", b".", b"..", b"...", b".x", b"..x", b"\r", b"\rx", b"\r..x", b" ."]),
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")),
    st.integers(min_value=2000, max_value=2100).map(lambda n: b"y" * n),
    st.integers(min_value=2000, max_value=2100).map(lambda n: b"." * n),
)
# "+\n" is the only status line poplib reads with a _MAXLINE as small as 2.
STATUS = st.sampled_from([b"+OK body\r\n", b"+\n"])
# How a body ends: with a terminator (a reply follows), or cut off by EOF, where
# poplib's line stripping may still see a terminator (".\r", "..", ".x").
ENDINGS = st.sampled_from(
    [b".\r\n", b".\n", b".\r", b"..", b".x", b".", b"x", b"\r.", b"\r..", b""]
)


def wire_body(lines: list[tuple[bytes, bytes]], stuff: bool = True) -> bytes:
    """A multi-line reply body with the given lines, stuffed as an RFC 1939 server does.

    Without `stuff`, dot lines go out as they are, as a careless server sends them.
    """
    out = []
    for text, end in lines:
        line = b"." + text if stuff and text.startswith(b".") else text
        if line == b"\r." and end == b"\n":
            # poplib also ends the body at "CR . LF"; pop3core does not (see poplib.py).
            line = b"\r.."
        out.append(line + end)
    return b"".join(out)


@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    status=STATUS,
    lines=st.lists(st.tuples(LINE_TEXT, LINE_ENDS), max_size=30),
    stuff=st.booleans(),
    ending=ENDINGS,
    maxline=st.sampled_from([2048, 60, 3, 2, 1 << 20]),
    buffer_size=st.sampled_from([1, 2, 3, 7, 64, 8192]),
)
def test_multiline_bodies_match_poplib(
    *,
    status: bytes,
    lines: list[tuple[bytes, bytes]],
    stuff: bool,
    ending: bytes,
    maxline: int,
    buffer_size: int,
) -> None:
    wire = status + wire_body(lines, stuff) + ending
    if ending.endswith(b"\n"):
        wire += b"+OK after\r\n"
    results = []
    for module in (stdlib_poplib, dropin):
        old = module._MAXLINE
        module._MAXLINE = maxline
        try:
            pop = module.POP3.__new__(module.POP3)
            pop._debugging = 0
            raw = io.BytesIO(wire)
            pop.file = io.BufferedReader(raw, buffer_size=buffer_size)  # type: ignore[arg-type]
            # The reply, then what is left unread, also after an error.
            results.append((outcome(pop._getlongresp), pop.file.read()))
        finally:
            module._MAXLINE = old
    assert results[1] == results[0]


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    status=STATUS,
    lines=st.lists(st.tuples(LINE_TEXT, LINE_ENDS), max_size=30),
    stuff=st.booleans(),
    ending=ENDINGS,
    maxline=st.sampled_from([2048, 60, 2, 1 << 20]),
    buffer_size=st.sampled_from([1, 7, 64, 8192]),
)
def test_multiline_bodies_over_a_socket_match_poplib(
    *,
    status: bytes,
    lines: list[tuple[bytes, bytes]],
    stuff: bool,
    ending: bytes,
    maxline: int,
    buffer_size: int,
) -> None:
    # Over a socket, once the file's buffer is drained, the drop-in peeks at
    # the kernel's queue (MSG_PEEK) and consumes through file.raw.
    wire = status + wire_body(lines, stuff) + ending
    if ending.endswith(b"\n"):
        wire += b"+OK after\r\n"
    results = []
    for module in (stdlib_poplib, dropin):
        old = module._MAXLINE
        module._MAXLINE = maxline
        ours, theirs = socket.socketpair()
        try:
            theirs.sendall(wire)
            theirs.shutdown(socket.SHUT_WR)
            pop = module.POP3.__new__(module.POP3)
            pop._debugging = 0
            pop.sock = ours
            pop.file = ours.makefile("rb", buffering=buffer_size)
            results.append((outcome(pop._getlongresp), pop.file.read()))
            pop.file.close()
        finally:
            module._MAXLINE = old
            ours.close()
            theirs.close()
    assert results[1] == results[0]


def big_body(size: int, long_line_at: int | None = None) -> bytes:
    """A stuffed body of about `size` octets with every kind of line poplib reads."""
    kinds = [
        b"Subject: a header line\r\n",
        b"..stuffed dot line\r\n",
        b".\x00 dot kept as it is\r\n",
        b"\r\n",
        b"a bare LF line\n",
        b"\rCR-first line\n",
        b"x" * 2040 + b"\r\n",
        b"prose " * 12 + b"\r\n",
    ]
    out = []
    total = 0
    count = 0
    while total < size:
        line = kinds[count % len(kinds)]
        if long_line_at is not None and total >= long_line_at:
            line = b"y" * 3000 + b"\r\n"
            long_line_at = None
        out.append(line)
        total += len(line)
        count += 1
    return b"".join(out)


@pytest.mark.parametrize("long_line_at", [None, 3 << 20])
def test_a_big_body_over_loopback_matches_poplib(
    scripted: Callable[..., Scripted], long_line_at: int | None
) -> None:
    body = big_body(6 << 20, long_line_at)
    server = scripted({"RETR": b"+OK\r\n" + body + b".\r\n+OK extra\r\n", "NOOP": b"+OK\r\n"})

    def action(pop: Any) -> tuple[Any, Any]:
        return outcome(lambda: pop.retr(1)), outcome(pop._getresp)

    expected, got = both(server.port, action)
    assert got == expected
    retr, after = got[1]
    if long_line_at is None:
        assert retr[0] == "ok"
        assert after == ("ok", b"+OK extra")
    else:
        assert retr == ("error_proto", ("line too long",))


# -- what poplib code hooks into, and poplib's limits ----------------------------------


BODY_REPLIES = {"RETR": b"+OK\r\na\r\n..b\r\n.\r\n", "NOOP": b"+OK\r\n"}


@pytest.mark.parametrize("where", ["instance", "class"])
def test_a_patched_getline_reads_bodies(scripted: Callable[..., Scripted], where: str) -> None:
    server = scripted(BODY_REPLIES)

    def action(pop: Any) -> tuple[Any, int]:
        calls: list[bytes] = []
        if where == "instance":  # p._getline = wrapper
            original = pop._getline

            def counting() -> tuple[bytes, int]:
                line, octets = original()
                calls.append(line)
                return line, octets

            pop._getline = counting
            return pop.retr(1), len(calls)
        unbound = type(pop)._getline  # mock.patch.object(poplib.POP3, "_getline", ...)

        def counting_method(self: Any) -> tuple[bytes, int]:
            line, octets = unbound(self)
            calls.append(line)
            return line, octets

        with mock.patch.object(type(pop), "_getline", counting_method):
            return pop.retr(1), len(calls)

    expected, got = both(server.port, action)
    assert got == expected
    assert got[1][1] == 4  # status, two lines, terminator


class LoggingFile:
    """Wraps poplib's `file` to log every line read, delegating the rest."""

    def __init__(self, file: Any) -> None:
        self.file = file
        self.lines: list[bytes] = []

    def readline(self, *args: Any) -> bytes:
        line: bytes = self.file.readline(*args)
        self.lines.append(line)
        return line

    def __getattr__(self, name: str) -> Any:
        return getattr(self.file, name)


def test_a_wrapped_file_reads_bodies(scripted: Callable[..., Scripted]) -> None:
    server = scripted(BODY_REPLIES)

    def action(pop: Any) -> tuple[Any, list[bytes]]:
        pop.file = LoggingFile(pop.file)
        return pop.retr(1), pop.file.lines

    expected, got = both(server.port, action)
    assert got == expected
    assert len(got[1][1]) == 4


class FakeSocket:
    """A hand-written socket double, with Lib/test/mock_socket.py's makefile signature."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.sent: list[bytes] = []

    def makefile(self, mode: str = "r", bufsize: int = -1) -> io.BufferedReader:
        return io.BufferedReader(io.BytesIO(self.data))

    def sendall(self, data: bytes) -> None:
        self.sent.append(data)

    def shutdown(self, how: int) -> None:
        pass

    def close(self) -> None:
        pass


class FakeContext:
    """Wraps a socket into a FakeSocket, as `ssl.SSLContext.wrap_socket` would."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.wrapped: list[tuple[Any, str]] = []

    def wrap_socket(self, sock: Any, server_hostname: str) -> FakeSocket:
        self.wrapped.append((sock, server_hostname))
        return FakeSocket(self.data)


def test_a_fake_socket_gets_poplibs_makefile_calls() -> None:
    results = []
    for module in (stdlib_poplib, dropin):
        fake = FakeSocket(b"+OK hi\r\n+OK\r\n1 1\r\n.\r\n+OK\r\nSTLS\r\n.\r\n+OK go\r\n")
        context = FakeContext(b"+OK\r\n1 1\r\n.\r\n")
        with mock.patch("socket.create_connection", return_value=fake):
            pop = module.POP3("pop.example", 110)
        results.append(
            (
                pop.welcome,
                pop.list(),
                pop.stls(context),  # type: ignore[arg-type]
                pop.sock is not fake and context.wrapped == [(fake, "pop.example")],
                pop.list(),
                fake.sent,
            )
        )
    assert results[1] == results[0]


def test_small_replies_cost_little_memory(scripted: Callable[..., Scripted]) -> None:
    server = scripted(REPLIES)
    peaks = []
    for module in (stdlib_poplib, dropin):
        tracemalloc.start()
        try:
            pop = module.POP3("127.0.0.1", server.port)
            pop.capa()
            pop.list()
            peaks.append(tracemalloc.get_traced_memory()[1])
            pop.close()
        finally:
            tracemalloc.stop()
    assert peaks[1] < peaks[0] + 32 * 1024, peaks


class Spelled:
    """An argument whose str() and format() differ: poplib's "%s" uses str()."""

    def __str__(self) -> str:
        return "7"

    def __format__(self, spec: str) -> str:
        return "<formatted>"


def echo(line: bytes) -> bytes:
    return b"+OK " + line.rstrip(b"\r\n") + b"\r\n"


@pytest.mark.parametrize(
    "action",
    [
        lambda pop: pop.dele((1,)),
        lambda pop: pop.dele((1, 2)),  # TypeError from "%" itself
        lambda pop: pop.dele(Spelled()),
        lambda pop: pop.list((2,)),
        lambda pop: pop.uidl(Spelled()),
        lambda pop: pop.user(Spelled()),
        lambda pop: pop.pass_(("secret",)),
        lambda pop: pop.rpop(Spelled()),
        lambda pop: pop.retr(Spelled()),
        lambda pop: pop.top(Spelled(), (0,)),
        lambda pop: pop.apop(Spelled(), "tanstaaf"),
    ],
)
def test_arguments_are_formatted_as_poplibs(
    scripted: Callable[..., Scripted], action: Callable[[Any], Any]
) -> None:
    replies: dict[str, Any] = dict.fromkeys(("DELE", "LIST", "UIDL", "USER"), echo)
    replies |= dict.fromkeys(("PASS", "RPOP", "APOP"), echo)
    replies |= dict.fromkeys(("RETR", "TOP"), lambda line: echo(line) + b".\r\n")
    server = scripted(replies)
    expected, got = both(server.port, action)
    assert got == expected


@pytest.mark.parametrize(
    ("greeting", "action"),
    [
        (None, lambda pop: pop._putcmd(b"NOOP")),
        (None, lambda pop: pop._shortcmd(b"NOOP")),
        (None, lambda pop: pop._putline("NOOP")),
        (None, lambda pop: pop._putline(memoryview(b"NOOP"))),
        (None, lambda pop: pop.apop("alice", b"tanstaaf")),
        (b"+OK no timestamp\r\n", lambda pop: pop.apop("alice", b"tanstaaf")),
    ],
)
def test_wrong_argument_types_fail_as_in_poplib(
    scripted: Callable[..., Scripted], greeting: bytes | None, action: Callable[[Any], Any]
) -> None:
    server = scripted(REPLIES, **({"greeting": greeting} if greeting else {}))
    expected, got = both(server.port, lambda pop: (outcome(lambda: action(pop)), pop.noop()))
    assert got == expected
    assert got[1][0][0] == "TypeError"


PUTLINE_AUDIT_SCRIPT = """
import sys
import poplib
import pop3_blocking.poplib as dropin
events = []
sys.addaudithook(lambda name, args: events.append(args[1]) if name == "poplib.putline" else None)
class Sink:
    def sendall(self, data):
        events.append(("sent", data))
for module in (poplib, dropin):
    pop = module.POP3.__new__(module.POP3)
    pop._debugging = 0
    pop.sock = Sink()
    for line in ("NOOP", b"NOOP", b"USER a\\r\\nDELE 1"):
        events.clear()
        try:
            pop._putline(line)
            print("ok", events)
        except Exception as exc:
            print(type(exc).__name__, exc, events)
"""


def test_putline_audits_and_fails_as_poplib() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PUTLINE_AUDIT_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=str(ROOT / "src")),
        check=True,
    )
    lines = done.stdout.splitlines()
    # A str is audited, then fails with poplib's TypeError; bytes are sent.
    assert lines[3:5] == lines[:2]
    assert lines[3] == "TypeError can only concatenate str (not \"bytes\") to str ['NOOP']"
    assert lines[4] == "ok [b'NOOP', ('sent', b'NOOP\\r\\n')]"
    # CR or LF: refused before the audit event, as nothing is sent.
    assert lines[5] == "ValueError a POP3 command must not contain CR or LF []"


@pytest.mark.parametrize("tail", [b".\r", b"..", b".x", b"\r..", b"x", b""])
def test_a_body_cut_off_by_eof_is_poplibs(scripted: Callable[..., Scripted], tail: bytes) -> None:
    # poplib's _getline strips the last octet of an unfinished line: ".\r", ".."
    # and ".x" end the body; anything else is "-ERR EOF".
    server = scripted({"LIST": b"+OK\r\n1 10\r\n" + tail + HANG_UP})
    expected, got = both(server.port, lambda pop: pop.list())
    assert got == expected


@pytest.mark.parametrize("then", [b"", HANG_UP])
def test_a_body_line_without_end_is_refused_after_maxline_octets(
    scripted: Callable[..., Scripted], then: bytes
) -> None:
    # CVE-2013-1752: poplib stops reading after _MAXLINE + 1 octets of a line,
    # whether the server then waits or hangs up.
    flood = b"x" * (8 << 20)
    server = scripted({"RETR": b"+OK\r\n" + flood + then})
    expected, got = both(
        server.port, lambda pop: (outcome(lambda: pop.retr(1)), outcome(pop.noop))
    )
    assert got == expected
    assert got[1][0] == ("error_proto", ("line too long",))
    tracemalloc.start()
    try:
        pop = dropin.POP3("127.0.0.1", server.port, timeout=10)
        with pytest.raises(dropin.error_proto, match="line too long"):
            pop.retr(1)
        peak = tracemalloc.get_traced_memory()[1]
        pop.close()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


@pytest.mark.parametrize(
    "line",
    [
        b"." + b"a" * 2045 + b"\r\n",  # 2048 octets, an unstuffed dot line: accepted
        b"." + b"a" * 2046 + b"\n",
        b"." + b"a" * 2046 + b"\r\n",  # 2049 octets: too long
        b".." + b"a" * 2045 + b"\r\n",  # 2049 octets on the wire, 2048 unstuffed: too long
        b"a" * 2047 + b"\n",
        b"a" * 2047 + b"\r\n",
    ],
)
def test_lines_at_the_maxline_bound_are_poplibs(
    scripted: Callable[..., Scripted], line: bytes
) -> None:
    server = scripted({"RETR": b"+OK\r\nfirst\r\n" + line + b".\r\n", "NOOP": b"+OK\r\n"})
    expected, got = both(
        server.port, lambda pop: (outcome(lambda: pop.retr(1)), outcome(pop.noop))
    )
    assert got == expected


def shape(function: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


@pytest.mark.parametrize("name", ["POP3", "POP3_SSL"])
def test_method_signatures_are_this_pythons_poplibs(name: str) -> None:
    theirs = getattr(stdlib_poplib, name)
    ours = getattr(dropin, name)
    methods = [
        attr
        for attr, value in vars(stdlib_poplib.POP3).items() | vars(theirs).items()
        if inspect.isfunction(value)
    ]
    assert "stls" in methods
    for attr in methods:
        assert shape(getattr(ours, attr)) == shape(getattr(theirs, attr)), attr


def test_pop3_ssl_stls_refuses_as_poplibs() -> None:
    # Every argument this Python's poplib accepts (3.11 still has keyfile and certfile).
    arguments = [None] * (len(inspect.signature(stdlib_poplib.POP3_SSL.stls).parameters) - 1)
    results = []
    for module in (stdlib_poplib, dropin):
        pop = module.POP3_SSL.__new__(module.POP3_SSL)
        results.append((outcome(lambda pop=pop: pop.stls(*arguments)), outcome(pop.stls)))
    assert results[1] == results[0]
    assert results[1][0] == ("error_proto", ("-ERR TLS session already established",))


def test_the_default_tls_context_is_made_at_call_time(scripted: Callable[..., Scripted]) -> None:
    # Applications patch ssl._create_stdlib_context (to verify, or to log).
    server = scripted({"CAPA": b"+OK\r\nSTLS\r\n.\r\n", "STLS": b"+OK go\r\n"})
    calls: list[Any] = []

    def factory(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        calls.append((args, kwargs))
        raise RuntimeError("the patched factory")

    results = []
    with mock.patch.object(ssl, "_create_stdlib_context", factory):
        for module in (stdlib_poplib, dropin):
            calls.clear()
            pop = module.POP3("127.0.0.1", server.port, timeout=10)
            results.append((outcome(pop.stls), list(calls)))
            pop.close()
            calls.clear()
            tls = outcome(lambda module=module: module.POP3_SSL("127.0.0.1", server.port))
            results.append((tls, list(calls)))
    assert results[2:] == results[:2]
    assert results[2] == (("RuntimeError", "the patched factory"), [((), {})])


# -- poplib's internals, as applications use them ---------------------------------------


class Getmail6Style(dropin.POP3_SSL):
    """Sets up the connection itself, as getmail6's POP3_SSL subclass does."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext) -> None:
        self.host = host
        self.port = port
        self.context = context
        self._tls_established = False
        raw = socket.create_connection((host, port), 10)
        self.sock = context.wrap_socket(raw, server_hostname=host)
        self.file = self.sock.makefile("rb")
        self._debugging = 0
        self.welcome = self._getresp()


class CountingLines(dropin.POP3):
    """Overrides _getline: multi-line replies must still go through it."""

    calls = 0

    def _getline(self) -> tuple[bytes, int]:
        CountingLines.calls += 1
        return super()._getline()


MAIL = [
    b"Subject: one\n\n.leading dot line\nbody\n",
    b".first octet is a dot\nno headers\n",
    b"Subject: three\r\n\r\n" + b"x" * 998 + b"\r\n..two dots\r\n",
]


@pytest.fixture(scope="module")
def certs() -> Certificates:
    return Certificates()


@pytest.fixture
def server(certs: Certificates) -> Iterator[Server]:
    store = DictStore({"alice": list(MAIL)})
    with Server(
        store,
        DictAuthenticator({"alice": "secret"}, tokens={"alice": "tok-en"}),
        port=0,
        tls_port=0,
        ssl_context=certs.server_context(),
        auth_failure_delay=0,
        oauth=True,
    ) as running:
        running.test_store = store  # type: ignore[attr-defined]
        yield running


def expected_lines(message: bytes) -> list[bytes]:
    return message.replace(b"\r\n", b"\n").split(b"\n")[:-1]


def test_a_getmail6_style_subclass_works(server: Server, certs: Certificates) -> None:
    assert server.tls_port is not None
    pop = Getmail6Style("localhost", server.tls_port, certs.client_context())
    assert pop._shortcmd("USER alice").startswith(b"+OK")
    pop.pass_("secret")
    for number, message in enumerate(MAIL, 1):
        assert pop.retr(number)[1] == expected_lines(message)
    pop.quit()


def test_a_subclass_overriding_getline_is_honoured(server: Server) -> None:
    assert server.port is not None
    pop = CountingLines("127.0.0.1", server.port)
    pop.user("alice")
    pop.pass_("secret")
    before = CountingLines.calls
    assert pop.retr(3)[1] == expected_lines(MAIL[2])
    assert CountingLines.calls - before == 6  # status, four lines, terminator
    pop.quit()


@pytest.mark.parametrize("mode", ["none", "stls", "implicit"])
def test_against_our_server_in_every_mode(server: Server, certs: Certificates, mode: str) -> None:
    assert server.port is not None
    assert server.tls_port is not None
    pop: dropin.POP3
    if mode == "implicit":
        pop = dropin.POP3_SSL("localhost", server.tls_port, context=certs.client_context())
        assert isinstance(pop.sock, ssl.SSLSocket)
    else:
        pop = dropin.POP3("localhost", server.port)
    if mode == "stls":
        assert "STLS" in pop.capa()
        assert pop.stls(certs.client_context()).startswith(b"+OK")
        with pytest.raises(dropin.error_proto, match="already established"):
            pop.stls()
    pop.apop("alice", "secret")
    assert pop.stat() == (3, sum(len(p.normalize_newlines(m)) for m in MAIL))
    _, lines, _ = pop.uidl()
    assert len(lines) == 3
    for number, message in enumerate(MAIL, 1):
        assert pop.retr(number)[1] == expected_lines(message)
    pop.quit()


def test_the_default_tls_context_does_not_verify_as_poplibs(
    server: Server, certs: Certificates
) -> None:
    assert server.tls_port is not None
    pop = dropin.POP3_SSL("127.0.0.1", server.tls_port)  # self-signed, and an IP address
    assert pop.context.verify_mode == ssl.CERT_NONE
    pop.close()
    with pytest.raises(ssl.SSLError):
        dropin.POP3_SSL("127.0.0.1", server.tls_port, context=ssl.create_default_context())


# -- additions: auth() and the context manager -------------------------------------------


def test_auth_with_an_smtplib_style_authobject(server: Server) -> None:
    assert server.port is not None
    calls: list[bytes | None] = []

    def plain(challenge: bytes | None = None) -> bytes:
        calls.append(challenge)
        return b"\0alice\0secret"

    with dropin.POP3("127.0.0.1", server.port) as pop:
        assert pop.auth("PLAIN", plain).startswith(b"+OK")
        assert pop.stat()[0] == 3
    assert calls == [None]  # the initial response, then nothing more was asked


def test_auth_with_a_challenge_response_authobject(server: Server) -> None:
    assert server.port is not None

    def cram(challenge: bytes) -> str:
        digest = hmac.new(b"secret", challenge, hashlib.md5).hexdigest()
        return f"alice {digest}"

    with dropin.POP3("127.0.0.1", server.port) as pop:
        assert pop.auth("CRAM-MD5", cram).startswith(b"+OK")
        assert pop.stat()[0] == 3


def test_auth_with_an_initial_response_and_oauth(server: Server) -> None:
    assert server.port is not None
    token = b"user=alice\x01auth=Bearer tok-en\x01\x01"
    with dropin.POP3("127.0.0.1", server.port) as pop:
        assert pop.auth("XOAUTH2", initial_response=token).startswith(b"+OK")
    with dropin.POP3("127.0.0.1", server.port) as pop:
        bad = b"user=alice\x01auth=Bearer wrong\x01\x01"
        with pytest.raises(dropin.error_proto) as caught:
            # The error challenge must be answered (with an empty line) to get the -ERR.
            pop.auth("XOAUTH2", lambda challenge: b"", initial_response=bad)
        assert caught.value.args[0].startswith(b"-ERR")


def test_auth_cancel_and_failure(server: Server, scripted: Callable[..., Scripted]) -> None:
    assert server.port is not None
    with dropin.POP3("127.0.0.1", server.port) as pop:
        with pytest.raises(dropin.error_proto):
            pop.auth("CRAM-MD5", lambda challenge: None)  # cancels with "*"
        with pytest.raises(dropin.error_proto):
            pop.auth("PLAIN", initial_response=b"\0alice\0wrong")
        assert pop.auth("PLAIN", initial_response=b"\0alice\0secret").startswith(b"+OK")
    fake = scripted({"AUTH": b"+OK\r\n", "QUIT": b"+OK\r\n"})
    with dropin.POP3("127.0.0.1", fake.port) as pop:
        pop.auth("ANONYMOUS", initial_response=b"")
    assert fake.received[0] == b"AUTH ANONYMOUS =\r\n"
    invalid = scripted(
        {"AUTH": b"+ not base64!\r\n", "*": b"-ERR cancelled\r\n", "QUIT": b"+OK\r\n"}
    )
    with dropin.POP3("127.0.0.1", invalid.port) as pop, pytest.raises(dropin.error_proto):
        pop.auth("X-TEST", lambda challenge: pytest.fail("called with invalid base64"))
    assert invalid.received[1] == b"*\r\n"
    assert base64.b64decode(b"") == b""


def test_the_context_manager_commits_only_on_success(server: Server) -> None:
    assert server.port is not None
    store: DictStore = server.test_store  # type: ignore[attr-defined]
    with contextlib.suppress(RuntimeError), dropin.POP3("127.0.0.1", server.port) as pop:
        pop.user("alice")
        pop.pass_("secret")
        pop.dele(1)
        raise RuntimeError("the application failed")
    assert pop.sock is None
    assert len(store.mail["alice"]) == 3
    with dropin.POP3("127.0.0.1", server.port) as pop:
        pop.user("alice")
        pop.pass_("secret")
        pop.dele(1)
    assert pop.sock is None
    assert len(store.mail["alice"]) == 2


@pytest.mark.parametrize(
    ("replies", "greeting", "action", "message"),
    [
        ({"RETR": b"+OK\r\nhalf a message\r\n" + HANG_UP}, None, lambda pop: pop.retr(1), "EOF"),
        ({}, b"+OK no timestamp\r\n", lambda pop: pop.apop("a", "b"), "APOP not supported"),
        ({"CAPA": b"-ERR what\r\n"}, None, lambda pop: pop.capa(), "CAPA not supported"),
        ({"CAPA": b"+OK\r\nUSER\r\n.\r\n"}, None, lambda pop: pop.stls(), "STLS not supported"),
    ],
)
def test_local_errors_are_poplibs(
    scripted: Callable[..., Scripted],
    replies: dict[str, bytes],
    greeting: bytes | None,
    action: Callable[[Any], Any],
    message: str,
) -> None:
    kwargs = {"greeting": greeting} if greeting else {}
    server = scripted(replies, **kwargs)
    expected, got = both(server.port, action)
    assert got == expected
    assert got[0] == "error_proto"
    assert message in got[1][0]


def test_pop3_ssl_has_the_signature_of_this_pythons_poplib() -> None:
    if sys.version_info >= (3, 12):  # gh-94172 removed keyfile and certfile
        with pytest.raises(TypeError):
            dropin.POP3_SSL("127.0.0.1", 1, "key.pem")  # type: ignore[misc]
        return
    context = ssl.create_default_context()
    for kwargs in ({"keyfile": "k.pem"}, {"certfile": "c.pem"}):
        with pytest.raises(ValueError, match="mutually exclusive"):
            dropin.POP3_SSL("127.0.0.1", 1, context=context, **kwargs)
    with pytest.warns(DeprecationWarning, match="deprecated"), pytest.raises(OSError):
        dropin.POP3_SSL("127.0.0.1", 1, certfile="/nonexistent/cert.pem")


def test_auth_debug_output(
    scripted: Callable[..., Scripted], capsys: pytest.CaptureFixture[str]
) -> None:
    server = scripted({"AUTH": b"+ \r\n", "": b"+OK done\r\n", "QUIT": b"+OK\r\n"})
    with dropin.POP3("127.0.0.1", server.port) as pop:
        pop.set_debuglevel(2)
        assert pop.auth("X", lambda challenge: b"") == b"+OK done"
    out = capsys.readouterr().out
    assert "*resp* b'+ '" in out
    assert "*resp* b'+OK done'" in out
