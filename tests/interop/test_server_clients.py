"""Interop: real POP3 clients fetch from both our servers, in every TLS mode they support.

The threaded server (pop3_blocking) and the async one (pop3_anyio) on asyncio
and on trio (`tests.server_kinds`), each from the same seeded Maildir.

Each retrieved message must equal what was stored (as CRLF wire bytes) up to the
documented changes each client makes on delivery:

* curl writes the raw message;
* fetchmail prepends a ``Received:`` header, writes LF line ends, and deletes bare CRs;
* mpop prepends a ``Received:`` header and writes LF line ends;
* stdlib poplib returns lines, joined here with CRLF.
"""

from __future__ import annotations

import contextlib
import os
import poplib
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pop3_blocking import MaildirStore, PasswdFileAuthenticator
from pop3core import ServerOptions
from tests.interop.mailcorpus import (
    find_id,
    large_message,
    seed_maildir,
    small_messages,
    special_messages,
)
from tests.peers import peer
from tests.server_doubles import Certificates
from tests.server_kinds import SERVER_KINDS, RunningServer

MESSAGES = [*special_messages(), *small_messages(30), large_message(4 * 1024 * 1024)]
BY_ID = {m.hid: m for m in MESSAGES}
MODES = ["none", "stls", "implicit"]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates()


@pytest.fixture(scope="module")
def ca_file(certs: Certificates, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    certs.ca.cert_pem.write_to_path(str(path))
    return path


def start_server(
    kind: str, certs: Certificates, home: Path, options: ServerOptions | None = None
) -> RunningServer:
    # The real stores: a seeded Maildir (LF-stored files, served as CRLF) and a
    # Dovecot-style passwd-file.
    seed_maildir(home / "alice" / "Maildir", MESSAGES)
    (home / "users").write_text("alice:{PLAIN}secret\n")
    return RunningServer(
        kind,
        MaildirStore(str(home / "{user}" / "Maildir")),
        PasswdFileAuthenticator(home / "users"),
        port=0,
        tls_port=0,
        ssl_context=certs.server_context(),
        auth_failure_delay=0,
        options=options,
    )


@pytest.fixture(scope="module", params=SERVER_KINDS)
def server(
    certs: Certificates, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[RunningServer]:
    """The default server, which does not offer UTF8 (RFC 6856): every message as stored.

    None of these clients speaks UTF8; offered it, the server refuses them the
    message with raw UTF-8 header fields (`test_utf8_headers_need_utf8_mode`).
    """
    server = start_server(request.param, certs, tmp_path_factory.mktemp("mail"))
    yield server
    server.shutdown()


@pytest.fixture(scope="module", params=SERVER_KINDS)
def utf8_server(
    certs: Certificates, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[RunningServer]:
    """A server that offers UTF8."""
    server = start_server(
        request.param, certs, tmp_path_factory.mktemp("mail"), ServerOptions(utf8=True)
    )
    yield server
    server.shutdown()


def port_for(server: RunningServer, mode: str) -> int:
    port = server.tls_port if mode == "implicit" else server.port
    assert port is not None
    return port


# ------------------------------------------------------------ comparison

_HEADER = re.compile(rb"[!-9;-~]+:[^\n]*\n(?:[ \t][^\n]*\n)*")


def strip_added_headers(data: bytes, original: bytes) -> bytes:
    """Remove header fields a client put in front of the message's first line."""
    first_line = original.split(b"\n", 1)[0].rstrip(b"\r")
    start = data.find(first_line)
    assert start >= 0, data[:300]
    prefix = data[:start]
    assert _HEADER.sub(b"", prefix.replace(b"\r\n", b"\n")) == b"", prefix
    return data[start:]


def check(files: list[Path], client: str) -> None:
    seen: set[str] = set()
    for path in files:
        data = path.read_bytes()
        hid = find_id(data)
        assert hid is not None, (path, data[:200])
        message = BY_ID[hid]
        wire = message.wire
        if client in ("fetchmail", "mpop"):
            data = strip_added_headers(data, wire)
            expected = wire.replace(b"\r\n", b"\n")
            if client == "fetchmail":
                expected = expected.replace(b"\r", b"")  # fetchmail deletes bare CRs
        else:
            expected = wire
        assert data == expected, (client, hid, len(data), len(expected))
        seen.add(hid)
    assert seen == set(BY_ID), sorted(set(BY_ID) - seen)


# ------------------------------------------------------------ the clients


def run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=300, check=False, env=env)


def fetch_with_curl(server: RunningServer, mode: str, out: Path, ca_file: Path) -> list[Path]:
    curl = peer("curl")
    scheme = "pop3s" if mode == "implicit" else "pop3"
    url = f"{scheme}://127.0.0.1:{port_for(server, mode)}"
    common = [curl, "-sS", "--user", "alice:secret", "--cacert", str(ca_file)]
    if mode == "stls":
        common.append("--ssl-reqd")
    listing = run([*common, f"{url}/"])
    assert listing.returncode == 0, listing.stderr
    count = len(re.findall(r"^\d+ \d+", listing.stdout, re.M))
    assert count == len(MESSAGES)
    result = run([*common, f"{url}/[1-{count}]", "-o", str(out / "#1.eml")])
    assert result.returncode == 0, result.stderr
    return sorted(out.glob("*.eml"))


def deliver_script(directory: Path) -> Path:
    script = directory / "deliver.sh"
    script.write_text('#!/bin/sh\nset -e\nf=$(mktemp "$1/msg-XXXXXXXX")\ncat > "$f"\n')
    script.chmod(0o755)
    return script


def fetch_with_fetchmail(server: RunningServer, mode: str, out: Path, ca_file: Path) -> list[Path]:
    fetchmail = peer("fetchmail")
    work = out / "work"
    mail = out / "mail"
    work.mkdir()
    mail.mkdir()
    tls = {"none": "sslproto ''", "stls": "sslproto 'auto'", "implicit": "ssl sslproto 'auto'"}[
        mode
    ]
    user = os.environ.get("USER", "root")
    rc = work / "fetchmailrc"
    rc.write_text(
        f'set no syslog\nset no bouncemail\nset postmaster "{user}"\n'
        f"poll 127.0.0.1 with protocol POP3 service {port_for(server, mode)} bad-header accept\n"
        f'  user "alice" there with password "secret" is "{user}" here\n'
        # bad-header accept: fetchmail drops a message whose first line is not a
        # header unless told otherwise (special-dot-first-line); sslcommonname: it
        # checks certificates against DNS names only, not IP addresses.
        "  options keep fetchall no rewrite\n"
        f'  sslcertck sslcertfile "{ca_file}" sslcommonname localhost {tls}\n'
        f'  mda "{deliver_script(work)} {mail}"\n'
    )
    rc.chmod(0o600)
    env = {**os.environ, "FETCHMAILHOME": str(work), "FETCHMAILUSER": user}
    result = run(
        [fetchmail, "-f", str(rc), "--nosyslog", "-v", "--idfile", str(work / "ids"),
         "--pidfile", str(work / "pid")],
        env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return sorted(mail.iterdir())


def fetch_with_mpop(server: RunningServer, mode: str, out: Path, ca_file: Path) -> list[Path]:
    mpop = peer("mpop")
    work = out / "work"
    maildir = work / "maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    tls = {
        "none": "tls off",
        "stls": f"tls on\ntls_starttls on\ntls_trust_file {ca_file}",
        "implicit": f"tls on\ntls_starttls off\ntls_trust_file {ca_file}",
    }[mode]
    rc = work / "mpoprc"
    rc.write_text(
        f"defaults\naccount test\nhost 127.0.0.1\nport {port_for(server, mode)}\n"
        f"user alice\npassword secret\nauth on\n{tls}\nkeep on\nonly_new off\n"
        f"uidls_file {work / 'uidls'}\ndelivery maildir {maildir}\n"
    )
    rc.chmod(0o600)
    result = run([mpop, "-C", str(rc), "test"])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return sorted([*(maildir / "new").iterdir(), *(maildir / "cur").iterdir()])


def fetch_with_poplib(server: RunningServer, mode: str, out: Path, ca_file: Path) -> list[Path]:
    import ssl

    context = ssl.create_default_context(cafile=str(ca_file))
    if mode == "implicit":
        client: poplib.POP3 = poplib.POP3_SSL("127.0.0.1", port_for(server, mode), context=context)
    else:
        client = poplib.POP3("127.0.0.1", port_for(server, mode))
        if mode == "stls":
            client.stls(context)
    client.user("alice")
    client.pass_("secret")
    count, _ = client.stat()
    files = []
    for number in range(1, count + 1):
        _, lines, _ = client.retr(number)
        path = out / f"{number}.eml"
        path.write_bytes(b"\r\n".join(lines) + b"\r\n")
        files.append(path)
    client.quit()
    return files


CLIENTS: dict[str, Callable[[RunningServer, str, Path, Path], list[Path]]] = {
    "curl": fetch_with_curl,
    "fetchmail": fetch_with_fetchmail,
    "mpop": fetch_with_mpop,
    "poplib": fetch_with_poplib,
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_client_fetches_everything(
    server: RunningServer, ca_file: Path, tmp_path: Path, client: str, mode: str
) -> None:
    files = CLIENTS[client](server, mode, tmp_path, ca_file)
    assert len(files) == len(MESSAGES)
    check(files, client)


@pytest.mark.parametrize("mode", ["none", "implicit"])
def test_utf8_headers_need_utf8_mode(utf8_server: RunningServer, ca_file: Path, mode: str) -> None:
    """stdlib poplib gets -ERR [UTF8] for raw UTF-8 header fields, the message after UTF8."""
    import ssl

    context = ssl.create_default_context(cafile=str(ca_file))
    port = port_for(utf8_server, mode)
    international = [n for n, m in enumerate(MESSAGES, 1) if m.hid == "special-8bit-utf8"]
    assert len(international) == 1
    number = international[0]

    def connect() -> poplib.POP3:
        if mode == "implicit":
            return poplib.POP3_SSL("127.0.0.1", port, context=context)
        return poplib.POP3("127.0.0.1", port)

    with contextlib.closing(connect()) as client:
        assert "UTF8" in client.capa()
        client.user("alice")
        client.pass_("secret")
        with pytest.raises(poplib.error_proto) as refused:
            client.retr(number)
        assert refused.value.args[0].startswith(b"-ERR [UTF8]")
        with pytest.raises(poplib.error_proto):
            client.top(number, 0)
        # Everything else, 8-bit bodies included, comes as stored.
        for n, message in enumerate(MESSAGES, 1):
            if n != number:
                assert b"\r\n".join(client.retr(n)[1]) + b"\r\n" == message.wire
        client.quit()

    with contextlib.closing(connect()) as client:
        assert client.utf8().startswith(b"+OK")
        client.user("alice")
        client.pass_("secret")
        _, lines, _ = client.retr(number)
        assert b"\r\n".join(lines) + b"\r\n" == MESSAGES[number - 1].wire
        client.quit()
