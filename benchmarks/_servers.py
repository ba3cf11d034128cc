"""Plumbing for `bench_servers`: Maildirs, the servers, raw clients, a load generator.

Everything listens on and connects to 127.0.0.1 only, every socket has a timeout,
and every process started here is stopped by its own PID (SIGTERM, then SIGKILL).

* `Workspace`: one temporary directory with a Dovecot-style passwd-file, a
  self-signed certificate and LF-stored Maildirs (written as mail delivery
  writes them: into ``new/``, named as Dovecot's LDA does, ``,S=`` and ``,W=``
  included; ``POP3_BENCH_MAILDIR_NAMES=postfix`` names them as Postfix does,
  without sizes), owned by ``nobody`` so that Dovecot's mail processes can use them.
* `start_dovecot`: a private Dovecot 2.3 on those Maildirs, as
  ``tests/interop/dovecot.py`` starts one (master as root, mail as ``nobody``),
  with its own index and control directories so that two instances (default
  and tuned) never share state.
* `start_ours`: ``python -m pop3_blocking serve`` / ``python -m pop3_anyio serve``
  as a separate process on the same Maildirs and passwd-file.
* `RawSession`: a client that costs nothing (a plain or TLS socket, one
  ``recv_into`` buffer, no parsing).
* `LoadGenerator`: worker processes (``python _servers.py loadgen``), each
  running many non-blocking POP3 sessions on a ``selectors`` loop.
* `start_trivial`: a server that answers without doing any work
  (``python _servers.py trivial``), for the load generator's own ceiling.
* `tree_memory`: RSS and PSS summed over a process and its descendants.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import json
import os
import pwd
import random
import select
import selectors
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
PASSWORD = "secret"
TIMEOUT = 60.0  # every connect, read and write of a measuring client
START_TIMEOUT = 30.0  # a server must greet within this after it was started
STOP_TIMEOUT = 10.0  # SIGTERM, then this long, then SIGKILL
TERMINATOR = b"\r\n.\r\n"
DELIVERY_HOST = "bench.example.org"
DELIVERY_EPOCH = 1715671267  # the first message's delivery time (its unique name)
NAMING_ENV = "POP3_BENCH_MAILDIR_NAMES"


class Unavailable(Exception):
    """A server that cannot run here (not installed, not root, no CLI yet)."""


# ------------------------------------------------------------------ processes


def stop_pid(pid: int, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM `pid`, wait for it to go, SIGKILL it if it lingers (children we own are reaped)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    """Whether `pid` still runs; reaps it if it is our child and has exited."""
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def stop_popen(proc: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT) -> None:
    """Stop a process we started, by its PID; close its pipes."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def descendants(root: int) -> list[int]:
    """`root` and every process below it (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


@dataclass(frozen=True)
class Memory:
    rss: int  # octets, summed over the processes
    pss: int  # proportional set size: shared pages divided among their users
    processes: int


def _status_kib(path: str, key: bytes) -> int:
    try:
        with open(path, "rb") as file:
            for line in file:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def tree_memory(root: int) -> Memory:
    """RSS and PSS of `root` and its descendants, summed."""
    rss = pss = count = 0
    for pid in descendants(root):
        kib = _status_kib(f"/proc/{pid}/status", b"VmRSS:")
        if not kib:
            continue  # exited meanwhile, or a kernel thread
        rss += kib
        pss += _status_kib(f"/proc/{pid}/smaps_rollup", b"Pss:")
        count += 1
    return Memory(rss * 1024, pss * 1024, count)


def settled_memory(root: int, *, limit: float = 5.0) -> Memory:
    """`tree_memory` once two samples 0.25 s apart agree within 1 % (or after `limit` s)."""
    last = tree_memory(root)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = tree_memory(root)
        if abs(now.rss - last.rss) <= 0.01 * max(last.rss, 1) and now.processes == last.processes:
            return now
        last = now
    return last


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _which(program: str) -> str:
    path = shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")
    if path is None:
        raise Unavailable(f"{program} is not installed")
    return path


# ------------------------------------------------------------------ the mail


def lf_stored(message: bytes) -> bytes:
    """A CRLF message as mail delivery stores it: LF line ends."""
    return message.replace(b"\r\n", b"\n")


def small_pool(count: int = 1000, seed: int = 1081) -> list[bytes]:
    """`count` distinct small CRLF messages (1-4 KB) of corpus prose, for big Maildirs."""
    from _harness import make_text_message

    rng = random.Random(seed)
    prose = make_text_message(count * 4200 + 65536, seed=seed)
    lines = prose[prose.index(b"\r\n\r\n") + 4 :].split(b"\r\n")[:-1]
    messages, at = [], 0
    for n in range(count):
        head = [
            b"Return-Path: <alice@example.org>",
            b"From: alice@example.org",
            b"To: bob@example.com",
            b"Subject: note %d" % n,
            b"Date: Tue, 14 May 2024 09:21:05 +0200",
            b"Message-ID: <%d.%d@bench.example.org>" % (n, seed),
            b"",
        ]
        target, body, size = rng.randrange(1024, 4096), [], 0
        while size < target:
            body.append(lines[at % len(lines)])
            size += len(body[-1]) + 2
            at += 1
        messages.append(b"\r\n".join(head + body) + b"\r\n")
    return messages


def naming() -> str:
    value = os.environ.get(NAMING_ENV, "dovecot")
    if value not in ("dovecot", "postfix"):
        raise ValueError(f"{NAMING_ENV} must be 'dovecot' or 'postfix', not {value!r}")
    return value


class MaildirWriter:
    """Delivers LF-stored messages into ``new/`` of Maildirs, in delivery order."""

    def __init__(self, uid: int, gid: int) -> None:
        self.uid, self.gid = uid, gid
        self.sequence = 0
        self.naming = naming()

    def maildir(self, path: Path) -> Path:
        for sub in ("cur", "new", "tmp"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        for directory in (path.parent, path, path / "cur", path / "new", path / "tmp"):
            os.chown(directory, self.uid, self.gid)
            directory.chmod(0o700 if directory != path.parent else 0o755)
        return path

    def _name(self, stored: bytes, wire: int, st: os.stat_result | None) -> str:
        seconds, micro = divmod(self.sequence, 1000)
        when = DELIVERY_EPOCH + seconds
        if self.naming == "dovecot":  # deliver / LMTP: sizes in the name
            return f"{when}.M{micro * 1000}P4242.{DELIVERY_HOST},S={len(stored)},W={wire}"
        assert st is not None  # Postfix: device and inode, no sizes
        return f"{when}.V{st.st_dev:x}I{st.st_ino:x}M{micro * 1000}.{DELIVERY_HOST}"

    def deliver(self, maildir: Path, crlf_message: bytes) -> Path:
        """Write one message (given with CRLF) LF-stored: tmp/, then renamed into new/."""
        stored = lf_stored(crlf_message)
        self.sequence += 1
        temporary = maildir / "tmp" / f"delivery.{self.sequence}"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchown(fd, self.uid, self.gid)
            view = memoryview(stored)
            while view:
                view = view[os.write(fd, view) :]
            st = os.fstat(fd)
        finally:
            os.close(fd)
        target = maildir / "new" / self._name(stored, len(crlf_message), st)
        os.rename(temporary, target)
        return target

    def link(self, maildir: Path, source: Path) -> Path:
        """The same file delivered to another Maildir too (a hard link, as LDA copies do)."""
        self.sequence += 1
        target = maildir / "new" / source.name
        os.link(source, target)
        return target


@dataclass
class Workspace:
    """The directory shared by every server: passwd-file, certificate, Maildirs."""

    root: Path
    passwd: Path
    cert: Path
    key: Path
    mail_user: pwd.struct_passwd
    users: list[str] = field(default_factory=list)

    @property
    def mail_root(self) -> Path:
        return self.root / "mail"

    @property
    def maildir_template(self) -> str:
        return f"{self.mail_root}/{{user}}/Maildir"

    def maildir(self, user: str) -> Path:
        return self.mail_root / user / "Maildir"

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def make_workspace() -> Workspace:
    if os.geteuid() != 0:
        raise Unavailable("the Maildirs belong to 'nobody' for Dovecot: the benchmark needs root")
    try:
        mail_user = pwd.getpwnam("nobody")
    except KeyError as exc:
        raise Unavailable("no user 'nobody'") from exc
    openssl = _which("openssl")
    # Dovecot's unprivileged processes traverse it: mode 755 (pytest's tmp dirs are 700).
    root = Path(tempfile.mkdtemp(prefix="pop3-bench-servers-"))
    try:
        root.chmod(0o755)
        for sub in ("tls", "mail"):
            (root / sub).mkdir()
            (root / sub).chmod(0o755)
        cert, key = root / "tls" / "cert.pem", root / "tls" / "key.pem"
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        key.chmod(0o600)
        return Workspace(root, root / "passwd", cert, key, mail_user)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


def write_passwd(workspace: Workspace, users: Sequence[str]) -> None:
    """One passwd-file for both servers: ``user:{PLAIN}secret::::::`` (Dovecot's format)."""
    workspace.users = list(users)
    workspace.passwd.write_text("".join(f"{u}:{{PLAIN}}{PASSWORD}::::::\n" for u in users))
    workspace.passwd.chmod(0o640)
    with contextlib.suppress(KeyError):
        os.chown(workspace.passwd, 0, grp.getgrnam("dovecot").gr_gid)


# --------------------------------------------------------------- the servers


@dataclass
class Running:
    """A started server: where it listens and the PID at the root of its processes."""

    name: str
    port: int
    tls_port: int
    pid: int
    detail: str
    stop: Callable[[], None]
    log: Callable[[], str]


def _wait_for_greeting(port: int, context: ssl.SSLContext | None, deadline: float) -> None:
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=2) as sock:
                if context is None:
                    greeting = sock.recv(512)
                else:
                    with context.wrap_socket(sock, server_hostname="localhost") as stream:
                        greeting = stream.recv(512)
            if greeting.startswith(b"+OK"):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"no greeting on {HOST}:{port} within {START_TIMEOUT:.0f} s")
        time.sleep(0.1)


def dovecot_version() -> str:
    dovecot = _which("dovecot")
    version = subprocess.run(
        [dovecot, "--version"], check=True, capture_output=True, text=True, timeout=30
    ).stdout.strip()
    if not version.startswith("2.3."):
        raise Unavailable(f"this benchmark configures Dovecot 2.3, found {version}")
    if not Path("/usr/share/dovecot/dh.pem").exists():
        raise Unavailable("Dovecot's dh.pem is missing (package dovecot-core)")
    return version


def start_dovecot(workspace: Workspace, name: str, *, tuning: str = "") -> Running:
    """A private Dovecot on the workspace's Maildirs; `tuning` is added to its configuration.

    Its base, state, index and control directories are its own, under
    ``<workspace>/<name>``; the Maildirs and the passwd-file are the shared ones.
    """
    dovecot = _which("dovecot")
    version = dovecot_version()
    mail_user = workspace.mail_user
    state = workspace.root / name
    for sub in ("run", "lib", "log", "index", "control"):
        (state / sub).mkdir(parents=True)
        (state / sub).chmod(0o755)
    for sub in ("index", "control"):
        os.chown(state / sub, mail_user.pw_uid, mail_user.pw_gid)
    port, tls_port = free_port(), free_port()
    mail_location = (
        f"maildir:{workspace.mail_root}/%u/Maildir"
        f":INDEX={state}/index/%u:CONTROL={state}/control/%u"
    )
    config = state / "dovecot.conf"
    config.write_text(
        f"""
instance_name = pop3-bench-{name}-{port}
base_dir = {state}/run
state_dir = {state}/lib
protocols = pop3
listen = 127.0.0.1
shutdown_clients = yes
log_path = {state}/log/dovecot.log
auth_failure_delay = 0
ssl = yes
ssl_cert = <{workspace.cert}
ssl_key = <{workspace.key}
ssl_dh = </usr/share/dovecot/dh.pem
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain
passdb {{
  driver = passwd-file
  args = username_format=%u {workspace.passwd}
}}
userdb {{
  driver = static
  args = uid={mail_user.pw_uid} gid={mail_user.pw_gid} home={workspace.mail_root}/%u
}}
mail_location = {mail_location}
mail_max_userip_connections = 100
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
service doveadm {{
  inet_listener {{
    port = 0
  }}
}}
{tuning}
"""
    )
    log_path = state / "log" / "dovecot.log"

    def log() -> str:
        return log_path.read_text(errors="replace") if log_path.exists() else ""

    # The master daemonises and keeps its standard streams: never leave a pipe open.
    subprocess.run(
        [dovecot, "-c", str(config)],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=START_TIMEOUT,
    )
    pidfile = state / "run" / "master.pid"
    deadline = time.monotonic() + START_TIMEOUT
    while not (pidfile.exists() and pidfile.read_text().strip()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"Dovecot did not start:\n{log()}")
        time.sleep(0.05)
    pid = int(pidfile.read_text().strip())
    try:
        _wait_for_greeting(port, None, deadline)
        _wait_for_greeting(tls_port, workspace.client_context(), deadline)
    except BaseException:
        stop_pid(pid)
        raise
    detail = f"Dovecot {version.split()[0]}, " + (" ".join(tuning.split()) or "default services")
    return Running(name, port, tls_port, pid, detail, lambda: stop_pid(pid), log)


def start_ours(workspace: Workspace, name: str, module: str, extra: Sequence[str]) -> Running:
    """``python -m <module> serve`` on the workspace's Maildirs, plain and implicit TLS."""
    port, tls_port = free_port(), free_port()
    command = [
        sys.executable, "-m", module, "serve",
        "--maildir", workspace.maildir_template,
        "--users", str(workspace.passwd),
        "--listen", f"{HOST}:{port}",
        "--tls-listen", f"{HOST}:{tls_port}",
        "--cert", str(workspace.cert),
        "--key", str(workspace.key),
        "--allow-cleartext",
        *extra,
    ]  # fmt: skip
    logs = workspace.root / name
    logs.mkdir()
    out_path, err_path = logs / "stdout", logs / "stderr"

    def log() -> str:
        return "".join(p.read_text(errors="replace") for p in (out_path, err_path) if p.exists())

    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        want = {f"listening on {HOST}:{port} ", f"listening on {HOST}:{tls_port} "}
        while True:
            said = out_path.read_text(errors="replace")
            if all(w in said for w in want):
                break
            if proc.poll() is not None:
                raise RuntimeError(f"{' '.join(command[:5])} exited {proc.returncode}:\n{log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{' '.join(command[:5])} did not listen in time:\n{log()}")
            time.sleep(0.05)
        _wait_for_greeting(port, None, deadline)
        _wait_for_greeting(tls_port, workspace.client_context(), deadline)
    except BaseException:
        stop_popen(proc)
        raise
    detail = " ".join(["python -m", module, "serve", *extra])
    return Running(name, port, tls_port, proc.pid, detail, lambda: stop_popen(proc), log)


# --------------------------------------------------------- the raw client


class ServerError(ConnectionError):
    """A -ERR where +OK was needed."""


class RawSession:
    """A socket (plain or implicit TLS) logged in with USER/PASS; nothing parsed.

    `multiline` sends a command and ``recv_into``'s one reusable buffer until the
    stream ends with the terminator: what a client that costs nothing does.
    """

    def __init__(
        self,
        port: int,
        user: str | None = None,
        *,
        context: ssl.SSLContext | None = None,
        rcvbuf: int | None = None,
    ) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(TIMEOUT)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        try:
            sock.connect((HOST, port))
            if context is not None:
                sock = context.wrap_socket(sock, server_hostname="localhost")
            self.sock = sock
            self.pending = b""
            self.greeting = self.line()
            if user is not None:
                self.login(user)
        except BaseException:
            sock.close()
            raise

    def line(self) -> bytes:
        """One status line (without waiting for more than it)."""
        buffer = self.pending
        while (end := buffer.find(b"\r\n")) < 0:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection")
            buffer += data
        self.pending = buffer[end + 2 :]
        return buffer[: end + 2]

    def command(self, line: bytes) -> bytes:
        self.sock.sendall(line + b"\r\n")
        reply = self.line()
        if not reply.startswith(b"+OK"):
            raise ServerError(f"{line.split()[0].decode()}: {reply.decode('ascii', 'replace')}")
        return reply

    def login(self, user: str) -> None:
        self.command(b"USER " + user.encode())
        self.command(b"PASS " + PASSWORD.encode())

    def multiline(self, command: bytes, buffer: bytearray, keep: bytearray | None = None) -> int:
        """Octets of the reply to `command`, status line and terminator included."""
        assert not self.pending
        sock = self.sock
        sock.sendall(command + b"\r\n")
        view = memoryview(buffer)
        total = 0
        tail = b""
        while True:
            n = sock.recv_into(view)
            if not n:
                raise ConnectionError("the server closed the connection")
            if not total and buffer.startswith(b"-ERR"):
                raise ServerError(bytes(view[:n]).decode("ascii", "replace"))
            total += n
            if keep is not None:
                keep += view[:n]
            tail = (tail + view[max(0, n - 5) : n])[-5:]
            if tail == TERMINATOR:
                return total

    def quit(self) -> None:
        """QUIT, then wait for the server to close (it has released the maildrop by then)."""
        try:
            self.command(b"QUIT")
            self.wait_closed()
        finally:
            self.close()

    def wait_closed(self) -> None:
        deadline = time.monotonic() + TIMEOUT
        while self.sock.recv(65536):
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not close the connection after QUIT")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def login_retrying(
    port: int, user: str, *, context: ssl.SSLContext | None = None, rcvbuf: int | None = None
) -> RawSession:
    """A logged-in `RawSession`; an -ERR [IN-USE] (a session still closing) is retried for 5 s."""
    deadline = time.monotonic() + 5.0
    while (raw := _login_unless_in_use(port, user, context, rcvbuf, deadline)) is None:
        time.sleep(0.05)
    return raw


def _login_unless_in_use(
    port: int, user: str, context: ssl.SSLContext | None, rcvbuf: int | None, deadline: float
) -> RawSession | None:
    try:
        return RawSession(port, user, context=context, rcvbuf=rcvbuf)
    except ServerError as exc:
        if "IN-USE" not in str(exc) or time.monotonic() > deadline:
            raise
        return None


def tls_description(port: int, context: ssl.SSLContext) -> str:
    """The protocol and cipher a server negotiates with `context`."""
    with (
        socket.create_connection((HOST, port), timeout=TIMEOUT) as sock,
        context.wrap_socket(sock, server_hostname="localhost") as stream,
    ):
        stream.recv(512)
        cipher = stream.cipher()
        return f"{stream.version()} {cipher[0] if cipher else '?'}"


# --------------------------------------------------------- the load generator

# Each worker is a process (``python _servers.py loadgen``) running its share of
# the clients as non-blocking sockets on one selectors loop. It reads one JSON
# command per line on stdin ({"port", "duration"}), runs full sessions (connect,
# USER, PASS, STAT, QUIT, wait for the server to close) until the duration is up,
# lets the sessions under way finish (uncounted), and prints one JSON result line.

_STEPS = 4  # USER, PASS, STAT, QUIT: the replies after the greeting


class _Client:
    __slots__ = ("buffer", "script", "sock", "started", "step", "user")

    def __init__(self, user: str) -> None:
        self.user = user
        self.script = (
            f"USER {user}\r\n".encode(),
            f"PASS {PASSWORD}\r\n".encode(),
            b"STAT\r\n",
            b"QUIT\r\n",
        )
        self.sock: socket.socket | None = None
        self.buffer = b""
        self.step = 0  # replies received so far: the greeting, then one per line sent
        self.started = 0.0


def _run_round(port: int, users: Sequence[str], duration: float) -> dict[str, Any]:
    selector = selectors.DefaultSelector()
    clients = [_Client(u) for u in users]
    completed = errors = late = 0
    latencies: list[float] = []
    first_errors: list[str] = []

    def fail(client: _Client, why: str) -> None:
        nonlocal errors
        errors += 1
        if len(first_errors) < 5:
            first_errors.append(f"{client.user}: {why}")
        finish(client)

    def start(client: _Client) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        client.sock, client.buffer, client.step = sock, b"", 0
        client.started = time.perf_counter()
        selector.register(sock, selectors.EVENT_READ, client)
        code = sock.connect_ex((HOST, port))
        if code not in (0, errno.EINPROGRESS):
            fail(client, os.strerror(code))
            time.sleep(0.01)  # a refused connect: do not spin

    def finish(client: _Client) -> None:
        assert client.sock is not None
        selector.unregister(client.sock)
        client.sock.close()
        client.sock = None

    began = time.perf_counter()
    deadline = began + duration
    hard_deadline = deadline + TIMEOUT  # sessions under way at the deadline finish by then
    for client in clients:
        start(client)
    while selector.get_map():
        if time.perf_counter() > hard_deadline:
            for key in list(selector.get_map().values()):
                fail(key.data, "still under way long after the deadline")
            break
        for key, _ in selector.select(timeout=1.0):
            client = key.data
            sock = client.sock
            try:
                data = sock.recv(4096)
            except OSError as exc:
                fail(client, repr(exc))
                data = None
            if data == b"":
                if client.step == _STEPS + 1:  # QUIT answered, then closed: done
                    now = time.perf_counter()
                    if now <= deadline:
                        completed += 1
                        latencies.append(now - client.started)
                    else:
                        late += 1
                    finish(client)
                else:
                    fail(client, f"closed by the server after {client.step} replies")
            elif data:
                client.buffer += data
                while client.sock is not None and b"\r\n" in client.buffer:
                    reply, client.buffer = client.buffer.split(b"\r\n", 1)
                    if not reply.startswith(b"+OK"):
                        fail(client, reply.decode("ascii", "replace"))
                    elif client.step < _STEPS:
                        sock.send(client.script[client.step])  # a few octets: never blocks
                        client.step += 1
                    else:
                        client.step += 1
            while client.sock is None and time.perf_counter() < deadline:
                start(client)
    selector.close()
    latencies.sort()
    return {
        "completed": completed,
        "late": late,
        "errors": errors,
        "first_errors": first_errors,
        "elapsed": time.perf_counter() - began,
        "p50": latencies[len(latencies) // 2] if latencies else None,
        "p99": latencies[len(latencies) * 99 // 100] if latencies else None,
    }


def _loadgen_main(users: list[str]) -> None:
    print(json.dumps({"ready": len(users)}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        try:
            result = _run_round(command["port"], users, command["duration"])
        except Exception as exc:  # reported to the parent, which raises it
            result = {"fatal": repr(exc)}
        print(json.dumps(result), flush=True)


@dataclass(frozen=True)
class LoadResult:
    sessions: int
    duration: float
    errors: int
    late: int
    first_errors: list[str]
    p50: float | None
    p99: float | None

    @property
    def rate(self) -> float:
        return self.sessions / self.duration


def _read_json(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if not line:
        raise RuntimeError(f"a load generator worker said nothing in {timeout:.0f} s")
    result: dict[str, Any] = json.loads(line)
    return result


class LoadGenerator:
    """`workers` processes sharing `users` (one client per user, all concurrent)."""

    def __init__(self, users: Sequence[str], workers: int) -> None:
        self.users = list(users)
        self.workers = workers
        self.procs: list[subprocess.Popen[str]] = []
        try:
            for w in range(workers):
                share = self.users[w::workers]
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, str(Path(__file__)), "loadgen", json.dumps(share)],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        text=True,
                        cwd=Path(__file__).parent,
                    )
                )
            for proc in self.procs:
                _read_json(proc, START_TIMEOUT)
        except BaseException:
            self.close()
            raise

    def run(self, port: int, duration: float) -> LoadResult:
        """Every worker at once for `duration` seconds; the sessions completed within it."""
        command = json.dumps({"port": port, "duration": duration}) + "\n"
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(command)
            proc.stdin.flush()
        results = [_read_json(proc, duration + TIMEOUT + 30) for proc in self.procs]
        for result in results:
            if "fatal" in result:
                raise RuntimeError(f"a load generator worker failed: {result['fatal']}")
        p50s = [r["p50"] for r in results if r["p50"] is not None]
        p99s = [r["p99"] for r in results if r["p99"] is not None]
        return LoadResult(
            sessions=sum(r["completed"] for r in results),
            duration=duration,
            errors=sum(r["errors"] for r in results),
            late=sum(r["late"] for r in results),
            first_errors=[e for r in results for e in r["first_errors"]][:5],
            p50=max(p50s) if p50s else None,
            p99=max(p99s) if p99s else None,
        )

    def close(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(OSError):
                if proc.stdin is not None:
                    proc.stdin.close()
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(STOP_TIMEOUT)  # a worker ends when its stdin closes
            stop_popen(proc)
        self.procs = []


# ------------------------------------------------------- the trivial server

# It answers a full session without looking at anything: a greeting at accept,
# "+OK" to each line, a STAT figure to STAT, and at QUIT "+OK" and a close.
# Several processes share the port (SO_REUSEPORT), so that it is not the limit.


def _trivial_main(port: int) -> None:
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind((HOST, port))
    listener.listen(1024)
    listener.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, None)
    buffers: dict[socket.socket, bytes] = {}
    print("ready", flush=True)
    while True:
        for key, _ in selector.select():
            sock = key.fileobj
            if key.data is None:
                while True:
                    try:
                        conn, _ = listener.accept()
                    except BlockingIOError:
                        break
                    conn.setblocking(False)
                    conn.send(b"+OK trivial ready\r\n")
                    buffers[conn] = b""
                    selector.register(conn, selectors.EVENT_READ, True)
                continue
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(4096)
            except OSError:
                data = b""
            buffer = buffers[sock] + data
            closing = not data
            while not closing and b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                verb = line[:4].upper()
                if verb == b"QUIT":
                    sock.send(b"+OK bye\r\n")
                    closing = True
                elif verb == b"STAT":
                    sock.send(b"+OK 10 40960\r\n")
                else:
                    sock.send(b"+OK\r\n")
            if closing:
                selector.unregister(sock)
                del buffers[sock]
                sock.close()
            else:
                buffers[sock] = buffer


@contextlib.contextmanager
def trivial_server(processes: int) -> Iterator[int]:
    """The trivial server in `processes` processes on one port; yields the port."""
    port = free_port()
    procs: list[subprocess.Popen[str]] = []
    try:
        for _ in range(processes):
            proc = subprocess.Popen(
                [sys.executable, str(Path(__file__)), "trivial", str(port)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                text=True,
                cwd=Path(__file__).parent,
            )
            procs.append(proc)
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT)
            if not ready or proc.stdout.readline().strip() != "ready":
                raise RuntimeError("the trivial server did not start")
        yield port
    finally:
        for proc in procs:
            stop_popen(proc)


if __name__ == "__main__":
    if sys.argv[1] == "loadgen":
        _loadgen_main(json.loads(sys.argv[2]))
    elif sys.argv[1] == "trivial":
        _trivial_main(int(sys.argv[2]))
    else:
        raise SystemExit(f"unknown command {sys.argv[1]!r}")
