"""``python -m pop3_anyio`` (the ``pop3`` command): serve (the demo and Maildirs), errors, passwd.

The servers run as child processes on free loopback ports; each is stopped by
its PID (SIGTERM, the graceful path) and killed if it does not end.
"""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import pop3core as p
from pop3_anyio.__main__ import main
from pop3_blocking import Client
from tests.peers import free_port, peer

ROOT = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(ROOT / "src"))


def start(*args: str, module: str = "pop3_anyio") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", module, "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )


def stop(server: subprocess.Popen[str]) -> str:
    """SIGTERM, then what it printed; it must have shut down cleanly."""
    server.send_signal(signal.SIGTERM)
    out, err = server.communicate(timeout=20)
    assert server.returncode == 0, err
    assert "shut down" in out
    return out


@pytest.fixture
def cleanup() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for server in started:
        if server.poll() is None:
            server.kill()
            server.communicate()


def read_until(server: subprocess.Popen[str], marker: str) -> str:
    assert server.stdout is not None
    lines = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = server.stdout.readline()
        assert line, "".join(lines) + (server.stderr.read() if server.stderr else "")
        lines.append(line)
        if marker in line:
            return "".join(lines)
    raise AssertionError("".join(lines))


@pytest.mark.parametrize(
    ("module", "backend"),
    [("pop3_anyio", "asyncio"), ("pop3_anyio", "trio"), ("pop3_blocking", None)],
)
def test_the_demo_serves_sample_mail_over_tls_and_prints_how(
    cleanup: list[subprocess.Popen[str]], module: str, backend: str | None, tmp_path: Path
) -> None:
    plain, implicit = free_port(), free_port()
    args = ["--listen", f"127.0.0.1:{plain}", "--tls-listen", f"127.0.0.1:{implicit}"]
    if backend:
        args += ["--backend", backend]
    server = start(*args, module=module)
    cleanup.append(server)
    text = read_until(server, "Ctrl-C stops the server.")
    assert f"listening on 127.0.0.1:{plain} (plain + STLS)" in text
    assert f"listening on 127.0.0.1:{implicit} (implicit TLS)" in text
    found = re.search(r"user 'demo', password '([^']+)'", text)
    ca = re.search(r"certificate authority to trust: (\S+)", text)
    assert found, text
    assert ca, text
    password, ca_file = found.group(1), ca.group(1)
    assert f"pop3s://127.0.0.1:{implicit}/" in text
    context = ssl.create_default_context(cafile=ca_file)

    # The Python snippet it printed runs as printed.
    snippet = text.split("or Python:\n", 1)[1].split("Ctrl-C", 1)[0]
    code = "\n".join(line[2:] for line in snippet.splitlines())
    ran = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=ENV,
        check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "MaildropStat(messages=3" in ran.stdout
    assert "Hello! This maildrop is served by pop3." in ran.stdout

    # So does the curl line, and a client in every TLS mode sees the sample mail.
    curl = subprocess.run(
        [peer("curl"), "-sS", "--cacert", ca_file, "-u", f"demo:{password}",
         f"pop3s://127.0.0.1:{implicit}/2"],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert curl.returncode == 0, curl.stderr
    assert curl.stdout == b".a message whose very first octet is a dot, and no header block\r\n"
    for mode, port in (("implicit", implicit), ("starttls", plain)):
        with Client(
            "127.0.0.1",
            port,
            tls=mode,
            ssl_context=context,
            timeout=10,  # type: ignore[arg-type]
        ) as client:
            client.login("demo", password)
            sizes = client.list()
            assert len(sizes) == 3
            assert sizes[3] > 1_000_000  # the larger one
            first = client.retr(1)
            assert b"\r\n..this line starts with a dot" not in first  # unstuffed
            assert b"\r\n.this line starts with a dot" in first
            assert b"\r\n.\r\nThe line above is a lone dot" in first
    directory = Path(ca_file).parent
    assert directory.exists()
    stop(server)
    assert not directory.exists(), "the demo's temporary directory was left behind"


def test_serve_maildirs_on_trio(cleanup: list[subprocess.Popen[str]], tmp_path: Path) -> None:
    users = tmp_path / "users"
    entry = p.PasswdEntry("alice", p.Credential.parse(p.hash_password("secret")))
    users.write_text(p.format_passwd_line(entry) + "\n")
    new = tmp_path / "alice" / "Maildir" / "new"
    for sub in ("new", "cur", "tmp"):
        (tmp_path / "alice" / "Maildir" / sub).mkdir(parents=True)
    (new / "1700000000.M1P1.host").write_bytes(b"Subject: hi\n\n.dot\n")
    port = free_port()
    server = start(
        "--maildir", str(tmp_path / "{user}" / "Maildir"), "--users", str(users),
        "--listen", f"127.0.0.1:{port}", "--backend", "trio", "-v",
    )  # fmt: skip
    cleanup.append(server)
    assert server.stdout is not None
    assert server.stdout.readline() == f"listening on 127.0.0.1:{port} (plain)\n"
    with Client("127.0.0.1", port, tls="none", timeout=10) as client:
        client.login("alice", "secret")
        assert client.retr(1) == b"Subject: hi\r\n\r\n.dot\r\n"
        client.dele(1)
    stop(server)
    assert not list(new.iterdir())
    assert not list((tmp_path / "alice" / "Maildir" / "cur").iterdir())
    assert server.stderr is not None


def error_of(*args: str) -> tuple[int, str]:
    """Run serve with `args` in this process; its exit status and its one stderr line."""
    err = io.StringIO()
    saved = sys.stderr
    sys.stderr = err
    try:
        status = main(["serve", *args])
    finally:
        sys.stderr = saved
    return status, err.getvalue()


def test_clear_one_line_errors(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text("alice:{PLAIN}secret\n")
    cases = [
        (["--maildir", "/nonexistent/mail/{user}/Maildir", "--users", str(users)],
         "pop3: --maildir: the directory /nonexistent/mail does not exist"),
        (["--maildir", str(tmp_path / "Maildir"), "--users", str(users)],
         "must contain {user}"),
        (["--maildir", str(tmp_path / "{user}"), "--users", str(tmp_path / "missing")],
         f"pop3: --users: cannot read {tmp_path / 'missing'}: No such file or directory"),
        (["--maildir", str(tmp_path / "{user}"), "--users", str(tmp_path)],
         f"pop3: --users: cannot read {tmp_path}: Is a directory"),
        (["--users", str(users)], "give both --users and --maildir"),
        (["--cert", str(users)], "--cert and --key go together"),
        (["--listen", "127.0.0.1:99999"], "port 99999 is out of range"),
        (["--cert", str(users), "--key", str(users)], "pop3: --cert/--key: cannot load"),
    ]  # fmt: skip
    for args, expected in cases:
        status, message = error_of(*args)
        assert status == 2, (args, message)
        assert expected in message, (args, message)
        assert message.count("\n") == 1, message  # one line, no traceback


@pytest.mark.parametrize("module", ["pop3_anyio", "pop3_blocking"])
def test_a_port_in_use_is_one_line(module: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        plain = free_port()
        result = subprocess.run(
            [sys.executable, "-m", module, "serve", "--listen", f"127.0.0.1:{plain}",
             "--tls-listen", f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=60, env=ENV, check=False,
        )  # fmt: skip
    assert result.returncode == 1
    prefix = "pop3" if module == "pop3_anyio" else "pop3_blocking"
    assert result.stderr == (
        f"{prefix}: cannot listen on 127.0.0.1:{port}: the port is in use "
        "(another server? choose others with --listen/--tls-listen)\n"
    )


def test_passwd_and_the_console_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    users = tmp_path / "users"
    monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret\n"))
    assert main(["passwd", "carol", "--users", str(users), "--password-stdin"]) == 0
    assert users.read_text().startswith("carol:{SCRAM-SHA-256}")
    script = Path(sys.executable).parent / "pop3"  # installed with the package
    shown = subprocess.run(
        [str(script), "serve", "--help"], capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert shown.returncode == 0
    assert "--backend {asyncio,trio}" in shown.stdout
