"""A private Dovecot POP3 server on loopback, for interop tests.

It follows the recipe of a Debian 12 Dovecot 2.3: a generated configuration in
a fresh state directory, a passwd-file, Maildirs owned by an unprivileged user,
listeners on 127.0.0.1 only (plain with STLS, and implicit TLS), and a
self-signed certificate for ``localhost``. The master runs as root and is
stopped by its own PID.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.peers import free_port, peer, require_root, unavailable


@dataclass
class Dovecot:
    """A running private Dovecot; `users` maps user names to passwd-file values."""

    state: Path
    port: int
    tls_port: int
    pid: int
    cert: Path
    users: dict[str, str] = field(default_factory=dict)

    def maildir(self, user: str) -> Path:
        return self.state / "mail" / user / "Maildir"

    def client_context(self) -> ssl.SSLContext:
        """A context that trusts this server's certificate, for host ``localhost``."""
        return ssl.create_default_context(cafile=str(self.cert))

    def log(self) -> str:
        path = self.state / "log" / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _make_certificate(directory: Path) -> tuple[Path, Path]:
    openssl = peer("openssl")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    key.chmod(0o600)
    return cert, key


def _wait_for_greeting(port: int, *, tls: ssl.SSLContext | None = None) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                if tls is None:
                    greeting = sock.recv(512)
                else:
                    with tls.wrap_socket(sock, server_hostname="localhost") as stream:
                        greeting = stream.recv(512)
            if greeting.startswith(b"+OK"):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"Dovecot did not greet on port {port}")
        time.sleep(0.1)


def start_dovecot(users: dict[str, str], *, mechanisms: str) -> Iterator[Dovecot]:
    """Start Dovecot with `users` (name -> passwd-file value such as ``{PLAIN}pw``)."""
    require_root("a private Dovecot")
    dovecot = peer("dovecot")
    peer("doveconf")
    version = subprocess.run(
        [dovecot, "--version"], check=True, capture_output=True, text=True
    ).stdout
    if not version.startswith("2.3."):
        unavailable(f"these tests configure Dovecot 2.3, found {version.strip()}")
    if not Path("/usr/share/dovecot/dh.pem").exists():
        unavailable("Dovecot's dh.pem is missing (package dovecot-core)")
    # Dovecot's unprivileged processes must be able to traverse the state directory,
    # so it lives in /tmp with mode 755 (pytest's own tmp directories are 700).
    state = Path(tempfile.mkdtemp(prefix="pop3-dovecot-"))
    state.chmod(0o755)
    mail_user = pwd.getpwnam("nobody")
    dovecot_group = grp.getgrnam("dovecot").gr_gid
    for sub in ("run", "lib", "log", "tls", "mail"):
        (state / sub).mkdir()
        (state / sub).chmod(0o755)
    cert, key = _make_certificate(state / "tls")
    passwd = state / "passwd"
    passwd.write_text("".join(f"{name}:{value}::::::\n" for name, value in users.items()))
    passwd.chmod(0o640)
    os.chown(passwd, 0, dovecot_group)
    for name in users:
        for sub in ("cur", "new", "tmp"):
            (state / "mail" / name / "Maildir" / sub).mkdir(parents=True)
        for path in [state / "mail" / name, *(state / "mail" / name).rglob("*")]:
            os.chown(path, mail_user.pw_uid, mail_user.pw_gid)
    port, tls_port = free_port(), free_port()
    config = state / "dovecot.conf"
    config.write_text(
        f"""
instance_name = pop3-tests-{port}
base_dir = {state}/run
state_dir = {state}/lib
protocols = pop3
listen = 127.0.0.1
shutdown_clients = yes
log_path = {state}/log/dovecot.log
auth_verbose = yes
auth_failure_delay = 0
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
ssl_dh = </usr/share/dovecot/dh.pem
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
passdb {{
  driver = passwd-file
  args = username_format=%u {passwd}
}}
userdb {{
  driver = static
  args = uid={mail_user.pw_uid} gid={mail_user.pw_gid} home={state}/mail/%u
}}
mail_location = maildir:{state}/mail/%u/Maildir
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
"""
    )
    # The master daemonises and keeps its standard streams: never leave a pipe open.
    subprocess.run(
        [dovecot, "-c", str(config)],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pidfile = state / "run" / "master.pid"
    deadline = time.monotonic() + 15
    while not (pidfile.exists() and pidfile.read_text().strip()):
        if time.monotonic() > deadline:
            raise RuntimeError(
                "Dovecot did not start:\n" + (state / "log" / "dovecot.log").read_text()
            )
        time.sleep(0.05)
    pid = int(pidfile.read_text().strip())
    server = Dovecot(state, port, tls_port, pid, cert, dict(users))
    try:
        _wait_for_greeting(port)
        _wait_for_greeting(tls_port, tls=server.client_context())
        yield server
    finally:
        _stop(pid)
        shutil.rmtree(state, ignore_errors=True)


def _stop(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
