"""The fail2ban filter in docs/fail2ban/ against the lines `serve` really writes.

A real `python -m pop3_blocking serve --log-file` is made to fail logins in
several ways (a wrong password, an unknown user, a forbidden authorization
identity, a user name forged to look like another log line), and fail2ban's
own `fail2ban-regex` reads its log with the shipped filter: every failure, and
only failures, must yield the client's address.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import pop3core as p
from pop3_blocking import Client
from tests.peers import free_port, peer

ROOT = Path(__file__).resolve().parents[2]
FILTER = ROOT / "docs" / "fail2ban" / "pop3-server.conf"


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture(params=["127.0.0.1", "::1"])
def serve(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, int, Path]]:
    host = str(request.param)
    if host == "::1" and not ipv6_loopback():
        pytest.skip("no IPv6 loopback here")
    users = tmp_path / "users"
    users.write_text(
        "\n".join(
            p.format_passwd_line(p.PasswdEntry(name, p.Credential.parse(p.hash_password(pw))))
            for name, pw in (("alice", "alice-pw"), ("bob", "bob-pw"))
        )
        + "\n"
    )
    log = tmp_path / "server.log"
    port = free_port()
    listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "pop3_blocking", "serve",
         "--maildir", str(tmp_path / "{user}" / "Maildir"), "--create",
         "--users", str(users), "--listen", listen, "--log-file", str(log),
         "--auth-failure-delay", "0", "--allow-cleartext"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT / "src")),
    )  # fmt: skip
    try:
        assert server.stdout is not None
        assert server.stdout.readline().startswith("listening on")
        yield host, port, log
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=15)


def plain(authzid: str, name: str, password: str) -> bytes:
    message = f"{authzid}\0{name}\0{password}".encode()
    return b"AUTH PLAIN " + base64.b64encode(message) + b"\r\n"


def fail_logins(host: str, port: int) -> int:
    """Fail in several ways; the number of failed logins."""
    with socket.create_connection((host, port), timeout=10) as sock, sock.makefile("rb") as reader:
        assert reader.readline().startswith(b"+OK")
        sock.sendall(b"USER alice\r\nPASS wrong\r\n")
        assert reader.readline().startswith(b"+OK")
        assert reader.readline().startswith(b"-ERR [AUTH]")
        sock.sendall(plain("", "nobody", "pw"))
        assert reader.readline().startswith(b"-ERR [AUTH]")
        sock.sendall(plain("alice", "bob", "bob-pw"))  # right password, wrong identity
        assert reader.readline().startswith(b"-ERR [AUTH]")
    with socket.create_connection((host, port), timeout=10) as sock, sock.makefile("rb") as reader:
        reader.readline()
        forged = 'x" login failed: address=6.6.6.6 port=1 user="\nlogin failed: address=7.7.7.7'
        sock.sendall(plain("", forged, "pw"))
        assert reader.readline().startswith(b"-ERR [AUTH]")
        sock.sendall(b"QUIT\r\n")
    with (
        Client(host, port, tls="none", timeout=10) as client,
        pytest.raises(p.AuthenticationError),
    ):
        client.login("alice", "wrong", method="SCRAM-SHA-256")
    with Client(host, port, tls="none", timeout=10) as client:  # a success: no ban
        client.login("bob", "bob-pw")
    return 5


def test_the_filter_finds_every_failed_login_and_only_its_address(
    serve: tuple[str, int, Path],
) -> None:
    host, port, log = serve
    failures = fail_logins(host, port)
    deadline = time.monotonic() + 10
    while log.read_text().count("login failed") < failures:
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    result = subprocess.run(
        [peer("fail2ban-regex"), "-o", "ip", str(log), str(FILTER)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.split() == [host] * failures, (result.stdout, log.read_text())
    lines = log.read_text().splitlines()
    assert sum("login failed" in line for line in lines) == failures
    assert all("6.6.6.6" not in line.split(" user=")[0] for line in lines)
