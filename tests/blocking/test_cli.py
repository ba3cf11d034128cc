"""``python -m pop3_blocking``: the demo (the README's main job), serve and passwd."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pop3core as p
from pop3_blocking import Client, MaildirStore, PasswdFileAuthenticator
from pop3_blocking.__main__ import demo, main
from tests.peers import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_fetches_with_both_clients_and_hides_secrets() -> None:
    out = io.StringIO()
    assert demo(out) == 0
    text = out.getvalue()
    assert "C: AUTH SCRAM-SHA-256 <hidden>" in text
    assert "secret\n" not in text
    assert "'secret'" not in text
    assert "PASS" not in text
    assert "message 2: b'.a message whose very first octet is a dot\\r\\n'" in text
    assert "stat: (2, 178)" in text  # the drop-in sees the deletion the client committed
    assert text.rstrip().endswith("quit: b'+OK bye'")


def test_passwd_writes_a_line_the_authenticator_accepts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    users = tmp_path / "users"
    for password in ("first", "second"):  # the second replaces the first
        monkeypatch.setattr(sys, "stdin", io.StringIO(password + "\n"))
        assert main(["passwd", "alice", "--users", str(users), "--password-stdin"]) == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO("bob-pw\n"))
    assert (
        main(["passwd", "bob", "--users", str(users), "--password-stdin", "--scheme", "SSHA512"])
        == 0
    )
    lines = users.read_text().splitlines()
    assert [line.split(":", 1)[0] for line in lines] == ["alice", "bob"]
    assert lines[0].startswith("alice:{SCRAM-SHA-256}")
    assert oct(users.stat().st_mode & 0o777) == "0o600"
    authenticator = PasswdFileAuthenticator(users)
    alice = authenticator.credential("alice")
    bob = authenticator.credential("bob")
    assert alice is not None
    assert bob is not None
    assert alice.verify_password("second")
    assert not alice.verify_password("first")
    assert bob.verify_password("bob-pw")


@pytest.mark.parametrize("utf8", [False, True])
def test_serve_serves_maildirs_until_terminated(tmp_path: Path, utf8: bool) -> None:
    users = tmp_path / "users"
    entry = p.PasswdEntry("alice", p.Credential.parse(p.hash_password("secret")))
    users.write_text(p.format_passwd_line(entry) + "\n")
    template = str(tmp_path / "{user}" / "Maildir")
    store = MaildirStore(template, create=True)
    store.open("alice").close()  # creates it
    (tmp_path / "alice" / "Maildir" / "new" / "1700000000.M1P1.host").write_bytes(
        b"Subject: hi\n\n.dot\n"
    )
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "pop3_blocking", "serve", "--maildir", template,
         "--users", str(users), "--listen", f"127.0.0.1:{port}", *(["--utf8"] if utf8 else [])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT / "src")),
    )  # fmt: skip
    try:
        assert server.stdout is not None
        assert server.stdout.readline().startswith(f"listening on 127.0.0.1:{port}")
        with Client("127.0.0.1", port, tls="none", timeout=10) as client:
            capabilities = client.capabilities
            assert capabilities is not None
            assert capabilities.utf8 is utf8
            client.login("alice", "secret")  # SCRAM-SHA-256 from the passwd-file
            assert client.retr(1) == b"Subject: hi\r\n\r\n.dot\r\n"
            client.dele(1)
        deadline = time.monotonic() + 10
        while list((tmp_path / "alice" / "Maildir" / "cur").iterdir()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=15)
        assert server.returncode == 0, err
        assert "shut down" in out
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
