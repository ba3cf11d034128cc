"""``python -m pop3_blocking``: a POP3 server, a users-file tool, and a demonstration.

python -m pop3_blocking demo
python -m pop3_blocking serve --maildir '/var/mail/{user}/Maildir' --users users.passwd
python -m pop3_blocking passwd alice --users users.passwd
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import io
import logging
import os
import signal
import ssl
import sys
import threading
from collections.abc import Sequence

import pop3core
from pop3_stores import MaildirStore, MemoryAuthenticator, MemoryStore, PasswdFileAuthenticator

from ._client import Client
from ._server import MINIMUM_AUTOLOGOUT, Server
from .poplib import POP3

# The format docs/fail2ban/pop3-server.conf expects: a timestamp fail2ban can read.
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"

DEMO_MAIL = [
    b"From: bob@example.org\nTo: alice@example.org\nSubject: hello\n\nHi Alice,\n"
    b".this line starts with a dot: POP3 stuffs it on the wire.\n",
    b".a message whose very first octet is a dot\n",
    b"Subject: bye\n\nThis one is deleted at the end of the demo.\n",
]


def _address(text: str, default_port: int) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        return text or "127.0.0.1", default_port
    return host.strip("[]") or "127.0.0.1", int(port)


def demo(out: io.TextIOBase | None = None) -> int:
    """Serve three messages on loopback and fetch them with the client and the poplib drop-in."""
    write = (out or sys.stdout).write
    store = MemoryStore({"alice": DEMO_MAIL})
    with Server(store, MemoryAuthenticator({"alice": "secret"}), port=0) as server:
        assert server.port is not None
        write(f"server listening on 127.0.0.1:{server.port}\n\n")
        write("-- the modern client (protocol log; secrets never appear in it):\n")

        def log(line: str) -> None:
            write(f"   {line}\n")

        with Client("127.0.0.1", server.port, tls="none", log=log) as client:
            client.login("alice", "secret")  # SCRAM-SHA-256: the strongest both offer
            write(f"stat: {client.stat()}\n")
            write(f"uidl: {client.uidl()}\n")
            for number, message in client.retr_many([1, 2]):
                write(f"message {number}: {message!r}\n")
            client.dele(3)
        write("\n-- the poplib drop-in (pop3_blocking.POP3, poplib's API):\n")
        legacy = POP3("127.0.0.1", server.port)
        write(f"welcome: {legacy.getwelcome()!r}\n")
        legacy.user("alice")
        legacy.pass_("secret")
        write(f"stat: {legacy.stat()}\n")
        write(f"retr(2): {legacy.retr(2)}\n")
        write(f"quit: {legacy.quit()!r}\n")
    return 0


def serve(args: argparse.Namespace) -> int:
    context = None
    if args.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
    host, port = _address(args.listen, 8110)
    tls_port = None
    if args.tls_listen:
        tls_host, tls_port = _address(args.tls_listen, 8995)
        if tls_host != host:
            raise SystemExit("--listen and --tls-listen must use the same address")
    server = Server(
        MaildirStore(args.maildir, create=args.create),
        PasswdFileAuthenticator(args.users),
        host=host,
        port=port,
        tls_port=tls_port,
        ssl_context=context,
        allow_cleartext=True if args.allow_cleartext else "loopback",
        autologout=args.autologout,
        login_timeout=args.login_timeout,
        auth_failure_delay=args.auth_failure_delay,
        max_connections=args.max_connections,
        max_connections_per_address=args.max_connections_per_address,
        max_login_penalty=args.max_login_penalty,
        options=pop3core.ServerOptions(
            implementation=f"pop3 {pop3core.__version__}", utf8=args.utf8
        ),
    )
    for bound_host, bound_port, implicit in server.addresses:
        kind = "implicit TLS" if implicit else "plain" + (" + STLS" if context else "")
        print(f"listening on {bound_host}:{bound_port} ({kind})", flush=True)
    stopped = threading.Event()

    def stop(signum: int, frame: object) -> None:
        stopped.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    with server:
        stopped.wait()
    print("shut down", flush=True)
    return 0


def passwd(args: argparse.Namespace) -> int:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.user}: ")
        if password != getpass.getpass("again: "):
            print("the passwords differ", file=sys.stderr)
            return 1
    field = pop3core.hash_password(password, args.scheme)
    entry = pop3core.PasswdEntry(args.user, pop3core.Credential.parse(field))
    line = pop3core.format_passwd_line(entry)
    if args.users is None:
        print(line)
        return 0
    lines = []
    if os.path.exists(args.users):
        with open(args.users, encoding="utf-8") as existing:
            lines = [
                old for old in existing.read().splitlines() if old.split(":", 1)[0] != args.user
            ]
    lines.append(line)
    with open(args.users + ".tmp", "w", encoding="utf-8") as new:
        new.write("\n".join(lines) + "\n")
    os.chmod(args.users + ".tmp", 0o600)
    os.replace(args.users + ".tmp", args.users)
    print(f"{args.user} written to {args.users} ({args.scheme})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pop3_blocking", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="serve and fetch three messages on loopback, printed")
    s = commands.add_parser("serve", help="serve Maildirs to the users of a passwd-file")
    s.add_argument("--maildir", required=True, help="a path template with {user}")
    s.add_argument("--users", required=True, help="a Dovecot-style passwd-file")
    s.add_argument("--create", action="store_true", help="create missing Maildirs")
    s.add_argument("--listen", default="127.0.0.1:8110", help="plain POP3 (with STLS if --cert)")
    s.add_argument("--tls-listen", help="implicit TLS (POP3S), e.g. 127.0.0.1:8995")
    s.add_argument("--cert", help="PEM certificate chain (enables STLS and --tls-listen)")
    s.add_argument("--key", help="PEM private key")
    s.add_argument(
        "--allow-cleartext",
        action="store_true",
        help="accept USER/PASS and PLAIN without TLS from anywhere (default: loopback only)",
    )
    s.add_argument(
        "--autologout",
        type=float,
        default=MINIMUM_AUTOLOGOUT,
        help="seconds of silence after login before a session ends (>= 600, RFC 1939)",
    )
    s.add_argument(
        "--login-timeout",
        type=float,
        default=180.0,
        help="seconds from connecting to logging in before a client is closed (default 180)",
    )
    s.add_argument(
        "--auth-failure-delay",
        type=float,
        default=2.0,
        help="seconds before a failed login is answered (default 2), doubled for each "
        "recent failure from the same address",
    )
    s.add_argument(
        "--max-login-penalty",
        type=float,
        default=15.0,
        help="the most that doubling may reach, in seconds (default 15)",
    )
    s.add_argument(
        "--max-connections",
        type=int,
        default=1000,
        help="sessions in all; when full, the oldest not logged in is closed (default 1000)",
    )
    s.add_argument(
        "--max-connections-per-address",
        type=int,
        default=100,
        help="sessions per client IPv4 address or IPv6 /64 (default 100)",
    )
    s.add_argument(
        "--log-file",
        help="append the log here (default: standard error); failed logins are WARNING "
        "lines for fail2ban (docs/fail2ban/)",
    )
    s.add_argument(
        "--utf8",
        action="store_true",
        help="offer UTF8 (RFC 6856); clients that do not use it then get -ERR [UTF8] "
        "for messages with non-ASCII header fields (default: not offered, all served as stored)",
    )
    s.add_argument("-v", "--verbose", action="count", default=0)
    pw = commands.add_parser("passwd", help="write a user's line to a passwd-file")
    pw.add_argument("user")
    pw.add_argument("--users", help="the passwd-file to update (default: print the line)")
    pw.add_argument("--scheme", default="SCRAM-SHA-256", help="SCRAM-SHA-256, SSHA512, PLAIN, ...")
    pw.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo()
    if args.command == "serve":
        if bool(args.cert) != bool(args.key) or (args.tls_listen and not args.cert):
            parser.error("--cert and --key go together, and --tls-listen needs them")
        logging.basicConfig(
            level=logging.WARNING - 10 * min(args.verbose, 2),
            format=LOG_FORMAT,
            filename=args.log_file,
        )
        return serve(args)
    with contextlib.suppress(KeyboardInterrupt):
        return passwd(args)
    return 1


if __name__ == "__main__":
    sys.exit(main())
