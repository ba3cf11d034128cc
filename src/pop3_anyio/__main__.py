"""``python -m pop3_anyio`` (the ``pop3`` command): the async POP3 server and a users-file tool.

pop3 serve                                  # the demo: sample mail, TLS, printed instructions
pop3 serve --maildir '/var/mail/{user}/Maildir' --users users.passwd [--backend trio]
pop3 passwd alice --users users.passwd
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence

import anyio

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
    raise_descriptor_limit,
)
from ._server import Server

# How long sessions may go on after Ctrl-C or SIGTERM before they are closed.
SHUTDOWN_GRACE = 10.0


async def serve(setup: ServeSetup) -> None:
    """Serve until SIGINT or SIGTERM; then shut down gracefully."""
    server = Server(setup.store, setup.authenticator, **setup.server_options)
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        try:
            await server.__aenter__()
        except OSError as exc:
            raise describe_listen_error(exc, setup.server_options) from None
        try:
            tls = setup.server_options.get("ssl_context") is not None
            for host, port, implicit in server.addresses:
                kind = "implicit TLS" if implicit else "plain" + (" + STLS" if tls else "")
                print(f"listening on {host}:{port} ({kind})", flush=True)
            if setup.demo:
                print(instructions(setup, server.addresses), flush=True)
            async for signum in signals:
                print(f"{signal.Signals(signum).name}: shutting down", flush=True)
                break
            await server.shutdown(SHUTDOWN_GRACE)
        finally:
            await server.__aexit__(None, None, None)
    print("shut down", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pop3", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    add_serve_arguments(
        commands.add_parser(
            "serve",
            help="serve Maildirs to the users of a passwd-file (with neither: a demo)",
        )
    )
    add_passwd_arguments(
        commands.add_parser("passwd", help="write a user's line to a passwd-file")
    )
    args = parser.parse_args(argv)
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
        print(f"pop3: {exc}", file=sys.stderr)
        return 2
    try:
        raise_descriptor_limit()
        anyio.run(serve, setup, backend=args.backend)
    except CliError as exc:
        print(f"pop3: {exc}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:  # the trio backend without trio
        print(
            f"pop3: the {args.backend} backend needs {exc.name}: pip install {exc.name}",
            file=sys.stderr,
        )
        return 1
    finally:
        setup.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
