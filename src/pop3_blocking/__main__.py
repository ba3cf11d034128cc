"""``python -m pop3_blocking``: a POP3 server, a users-file tool, and a demonstration.

python -m pop3_blocking demo
python -m pop3_blocking serve --maildir '/var/mail/{user}/Maildir' --users users.passwd
python -m pop3_blocking serve          # a demo maildrop over TLS, with instructions
python -m pop3_blocking passwd alice --users users.passwd
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from pop3_stores import MemoryAuthenticator, MemoryStore

from ._cli import (
    LOG_FORMAT,
    CliError,
    ServeSetup,
    add_passwd_arguments,
    add_serve_arguments,
    describe_listen_error,
    instructions,
    passwd,
    prepare_serve,
)
from ._client import Client
from ._server import Server
from .poplib import POP3

# How long sessions may go on after Ctrl-C or SIGTERM before they are closed.
SHUTDOWN_GRACE = 10.0

DEMO_MAIL = [
    b"From: bob@example.org\nTo: alice@example.org\nSubject: hello\n\nHi Alice,\n"
    b".this line starts with a dot: POP3 stuffs it on the wire.\n",
    b".a message whose very first octet is a dot\n",
    b"Subject: bye\n\nThis one is deleted at the end of the demo.\n",
]


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


def serve(setup: ServeSetup) -> int:
    """Serve until SIGINT or SIGTERM; then shut down (no unfinished session commits)."""
    try:
        server = Server(setup.store, setup.authenticator, **setup.server_options)
    except OSError as exc:
        raise describe_listen_error(exc, setup.server_options) from None
    tls = setup.server_options.get("ssl_context") is not None
    for bound_host, bound_port, implicit in server.addresses:
        kind = "implicit TLS" if implicit else "plain" + (" + STLS" if tls else "")
        print(f"listening on {bound_host}:{bound_port} ({kind})", flush=True)
    if setup.demo:
        print(instructions(setup, server.addresses), flush=True)
    stopped = threading.Event()

    def stop(signum: int, frame: object) -> None:
        stopped.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    with server:
        stopped.wait()
        print("shutting down", flush=True)
        server.shutdown(grace=SHUTDOWN_GRACE)
    print("shut down", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pop3_blocking", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="serve and fetch three messages on loopback, printed")
    add_serve_arguments(
        commands.add_parser(
            "serve", help="serve Maildirs to the users of a passwd-file (with neither: a demo)"
        )
    )
    add_passwd_arguments(
        commands.add_parser("passwd", help="write a user's line to a passwd-file")
    )
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo()
    if args.command == "passwd":
        with contextlib.suppress(KeyboardInterrupt):
            return passwd(args)
        return 1
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format=LOG_FORMAT,
        filename=args.log_file,
    )
    try:
        setup = prepare_serve(args)
    except CliError as exc:
        print(f"pop3_blocking: {exc}", file=sys.stderr)
        return 2
    try:
        return serve(setup)
    except CliError as exc:
        print(f"pop3_blocking: {exc}", file=sys.stderr)
        return 1
    finally:
        setup.cleanup()


if __name__ == "__main__":
    sys.exit(main())
