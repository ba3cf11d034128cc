# GENERATED FILE: do not edit. scripts/unasync.py makes it from src/pop3_anyio/_cli.py;
# change that file and run `python scripts/unasync.py` (CI checks it is current).
"""What both servers' command lines share: the ``serve`` options, their checks, the demo setup.

Plain (blocking) code with no event loop in it; scripts/unasync.py copies it
into pop3_blocking, leaving out the ``--backend`` option (the lines marked
``# unasync: remove``). Each package's ``__main__`` runs the server its way.
Errors a user can fix are `CliError`s with a one-line message.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import errno
import getpass
import ipaddress
import os
import secrets
import shutil
import ssl
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import pop3core
from pop3_stores import (
    Authenticator,
    MaildirStore,
    MailStore,
    MemoryAuthenticator,
    PasswdFileAuthenticator,
)

__all__ = [
    "DEMO_USER",
    "LOG_FORMAT",
    "CliError",
    "ServeSetup",
    "add_passwd_arguments",
    "add_serve_arguments",
    "describe_listen_error",
    "instructions",
    "passwd",
    "prepare_serve",
    "raise_descriptor_limit",
]

# The format docs/fail2ban/pop3-server.conf expects: a timestamp fail2ban can read.
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"

DEMO_USER = "demo"
DEMO_PORT = 8110
DEMO_TLS_PORT = 8995


class CliError(Exception):
    """A mistake in the command line or its files, said in one line."""


def _sample_messages() -> list[bytes]:
    """The demo's mail, LF-terminated as delivery writes it."""
    larger = b"".join(
        b"%05d the quick brown fox jumps over the lazy dog, line after line\n" % i
        for i in range(16_000)
    )
    return [
        b"From: Bob <bob@example.org>\nTo: demo@example.org\nSubject: Welcome\n\n"
        b"Hello! This maildrop is served by pop3.\n"
        b".this line starts with a dot: POP3 stuffs it on the wire (RFC 1939).\n"
        b".\n"
        b"The line above is a lone dot; it does not end the message.\n",
        b".a message whose very first octet is a dot, and no header block\n",
        b"From: Carol <carol@example.org>\nTo: demo@example.org\n"
        b"Subject: A larger message (about 1 MiB)\n\n" + larger,
    ]


def _address(text: str, default_port: int) -> tuple[str, int]:
    """``host:port``, ``[v6]:port``, ``host`` or ``:port``."""
    host, sep, port = text.rpartition(":")
    if not sep or (host.count(":") and not host.endswith("]")):
        host, port = text, ""  # a bare IPv6 address
    host = host.strip("[]") or "127.0.0.1"
    if not port:
        return host, default_port
    try:
        number = int(port)
    except ValueError:
        raise CliError(f"{text!r} is not host:port") from None
    if not 0 <= number <= 65535:
        raise CliError(f"port {number} is out of range")
    return host, number


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``serve`` options (the same for both servers, but ``--backend``)."""
    s = parser
    s.add_argument(
        "--maildir",
        help="a path template with {user}, e.g. '/var/mail/{user}/Maildir' (with --users; "
        "without both: a demo maildrop in a temporary directory)",
    )
    s.add_argument("--users", help="a Dovecot-style passwd-file (see the passwd command)")
    s.add_argument("--create", action="store_true", help="create missing Maildirs")
    s.add_argument(
        "--listen",
        help="plain POP3, with STLS if there is a certificate (default 127.0.0.1:8110)",
    )
    s.add_argument("--tls-listen", help="implicit TLS (POP3S), e.g. 127.0.0.1:8995 (demo default)")
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
        default=pop3core.MINIMUM_AUTOLOGOUT,
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
        default=None,
        help="sessions in all; when full, the oldest not logged in is closed (default: "
        "this server's)",
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


@dataclasses.dataclass
class ServeSetup:
    """What ``serve`` runs: the stores, the server's keyword arguments, and the demo's facts.

    Call `cleanup` when the server has stopped (it removes the demo's files).
    """

    store: MailStore
    authenticator: Authenticator
    server_options: dict[str, Any]
    demo_password: str | None = None
    ca_file: str | None = None  # the certificate a client should trust, for the demo
    directory: str | None = None  # the demo's temporary directory

    @property
    def demo(self) -> bool:
        return self.demo_password is not None

    def cleanup(self) -> None:
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None


def _check_maildir_template(template: str) -> None:
    if "{user}" not in template:
        raise CliError(f"--maildir {template!r} must contain {{user}}")
    prefix = template.split("{user}", 1)[0]
    parent = prefix if prefix.endswith(os.sep) else os.path.dirname(prefix)
    parent = os.path.normpath(parent or ".")
    if not os.path.isdir(parent):
        raise CliError(f"--maildir: the directory {parent} does not exist")


def _load_users(path: str) -> Authenticator:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise CliError(f"--users: cannot read {path}: {exc.strerror or exc}") from None
    try:
        authenticator = PasswdFileAuthenticator(path)
        authenticator.mechanisms()  # reads and parses it now, not at the first login
    except (OSError, ValueError) as exc:
        raise CliError(f"--users: cannot use {path}: {exc}") from None
    return authenticator


def _load_certificate(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise CliError(f"--cert/--key: cannot load {cert} and {key}: {exc}") from None
    return context


def make_demo_certificate(directory: str) -> tuple[str, str, str]:
    """A throwaway CA and a certificate it signs for localhost, 127.0.0.1 and ::1.

    Returns ``(ca_file, cert_file, key_file)`` in `directory`. Needs the
    ``cryptography`` package (``pip install 'pop3[devserver]'``).
    """
    try:
        from cryptography import x509  # noqa: PLC0415 - optional, for the demo only
        from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: PLC0415
    except ImportError:
        raise CliError(
            "the demo's certificate needs the cryptography package: "
            "pip install 'pop3[devserver]' (or give --cert and --key)"
        ) from None
    now = datetime.datetime.now(datetime.timezone.utc)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("pop3 demo CA (throwaway)")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name("localhost"))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_file = os.path.join(directory, "demo-ca.pem")
    cert_file = os.path.join(directory, "server-cert.pem")
    key_file = os.path.join(directory, "server-key.pem")
    with open(ca_file, "wb") as out:
        out.write(ca.public_bytes(pem))
    with open(cert_file, "wb") as out:
        out.write(leaf.public_bytes(pem) + ca.public_bytes(pem))
    with open(os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
        out.write(
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
    return ca_file, cert_file, key_file


def _seed_demo_maildir(directory: str) -> MaildirStore:
    template = os.path.join(directory, "{user}", "Maildir")
    store = MaildirStore(template, create=True)
    store.open(DEMO_USER).close()  # creates the Maildir
    new = os.path.join(directory, DEMO_USER, "Maildir", "new")
    for number, message in enumerate(_sample_messages(), start=1):
        with open(os.path.join(new, f"1700000000.M{number}P1.demo"), "wb") as out:
            out.write(message)
    return store


def _common_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "allow_cleartext": True if args.allow_cleartext else "loopback",
        "autologout": args.autologout,
        "login_timeout": args.login_timeout,
        "auth_failure_delay": args.auth_failure_delay,
        "max_connections_per_address": args.max_connections_per_address,
        "max_login_penalty": args.max_login_penalty,
        "options": pop3core.ServerOptions(
            implementation=f"pop3 {pop3core.__version__}", utf8=args.utf8
        ),
        **({"max_connections": args.max_connections} if args.max_connections else {}),
    }


def prepare_serve(args: argparse.Namespace) -> ServeSetup:
    """Check the ``serve`` options and build what they describe; `CliError` if they are wrong.

    With neither ``--users`` nor ``--maildir``: the demo (a temporary Maildir
    with sample mail, a user with a fresh password, a throwaway certificate,
    plain+STLS on 127.0.0.1:8110 and implicit TLS on 127.0.0.1:8995).
    """
    if bool(args.cert) != bool(args.key):
        raise CliError("--cert and --key go together")
    if (args.users is None) != (args.maildir is None):
        raise CliError("give both --users and --maildir, or neither for the demo")
    demo = args.users is None
    if args.tls_listen and not args.cert and not demo:
        raise CliError("--tls-listen needs --cert and --key")
    options = _common_options(args)
    listen = args.listen or f"127.0.0.1:{DEMO_PORT}"
    host, port = _address(listen, DEMO_PORT)
    tls_port = None
    tls_listen = args.tls_listen or (f"{host}:{DEMO_TLS_PORT}" if demo else None)
    if tls_listen:
        tls_host, tls_port = _address(tls_listen, DEMO_TLS_PORT)
        if tls_host != host:
            raise CliError("--listen and --tls-listen must use the same address")
    options.update(host=host, port=port, tls_port=tls_port)
    if not demo:
        _check_maildir_template(args.maildir)
        authenticator = _load_users(args.users)
        if args.cert:
            options["ssl_context"] = _load_certificate(args.cert, args.key)
        return ServeSetup(MaildirStore(args.maildir, create=args.create), authenticator, options)

    directory = tempfile.mkdtemp(prefix="pop3-demo-")
    try:
        password = secrets.token_urlsafe(9)
        store = _seed_demo_maildir(directory)
        authenticator = MemoryAuthenticator({DEMO_USER: password})
        ca_file = None
        if args.cert:
            options["ssl_context"] = _load_certificate(args.cert, args.key)
        else:
            ca_file, cert, key = make_demo_certificate(directory)
            options["ssl_context"] = _load_certificate(cert, key)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return ServeSetup(store, authenticator, options, password, ca_file, directory)


def describe_listen_error(exc: OSError, options: dict[str, Any]) -> CliError:
    """A failure to bind the listeners, in one line (`exc.filename`: which ``host:port``)."""
    ports = exc.filename or ", ".join(
        f"{options['host']}:{options[name]}"
        for name in ("port", "tls_port")
        if options.get(name) is not None
    )
    if exc.errno == errno.EADDRINUSE:
        return CliError(
            f"cannot listen on {ports}: the port is in use (another server? choose "
            "others with --listen/--tls-listen)"
        )
    if exc.errno == errno.EACCES:
        return CliError(
            f"cannot listen on {ports}: permission denied (ports below 1024 need root)"
        )
    return CliError(f"cannot listen on {ports}: {exc.strerror or exc}")


def raise_descriptor_limit(wanted: int = 65536) -> None:
    """Let this process open up to `wanted` descriptors, if the hard limit allows.

    Many idle sessions need a descriptor each; the usual soft limit is 1024.
    """
    try:
        import resource  # noqa: PLC0415 - POSIX only
    except ImportError:  # pragma: no cover - not on Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _snippet(port: int, ca_file: str, password: str) -> list[str]:
    return [
        "import ssl",
        "from pop3_blocking import Client",
        "",
        "def main():",
        f"    context = ssl.create_default_context(cafile={ca_file!r})",
        f'    with Client("127.0.0.1", {port}, tls="implicit", ssl_context=context) as c:',
        f'        c.login("{DEMO_USER}", "{password}")',
        "        print(c.stat())",
        "        print((c.retr(1)).decode())",
        "",
        "main()",
    ]


def instructions(setup: ServeSetup, addresses: Sequence[tuple[str, int, bool]]) -> str:
    """What the demo prints once it listens: the account, and how to try it."""
    assert setup.demo_password is not None
    plain = next((port for _, port, implicit in addresses if not implicit), None)
    tls = next((port for _, port, implicit in addresses if implicit), None)
    password = setup.demo_password
    ca = setup.ca_file or "<your CA file>"
    lines = [
        "",
        f"demo maildrop: user {DEMO_USER!r}, password {password!r} "
        f"({len(_sample_messages())} messages; deletions are real, in a temporary Maildir "
        "removed at exit)",
        f"certificate authority to trust: {ca}",
        "",
        "try it with curl (lists the messages, then fetches the first):",
    ]
    if tls is not None:
        lines += [
            f"  curl --cacert {ca} -u {DEMO_USER}:{password} pop3s://127.0.0.1:{tls}/",
            f"  curl --cacert {ca} -u {DEMO_USER}:{password} pop3s://127.0.0.1:{tls}/1",
        ]
    if plain is not None:
        lines.append(
            f"  curl --ssl-reqd --cacert {ca} -u {DEMO_USER}:{password} pop3://127.0.0.1:{plain}/1"
        )
    lines += ["", "or a mail client:"]
    if tls is not None:
        lines.append(f"  server 127.0.0.1, port {tls}, SSL/TLS (implicit)")
    if plain is not None:
        lines.append(f"  server 127.0.0.1, port {plain}, STARTTLS")
    lines += [
        f"  user name {DEMO_USER}, password {password} (trust {ca}, or accept the certificate)",
        "",
        "or Python:",
    ]
    if tls is not None:
        lines += ["  " + line for line in _snippet(tls, ca, password)]
    lines.append("Ctrl-C stops the server.")
    return "\n".join(lines)


def add_passwd_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("user")
    parser.add_argument("--users", help="the passwd-file to update (default: print the line)")
    parser.add_argument(
        "--scheme", default="SCRAM-SHA-256", help="SCRAM-SHA-256, SSHA512, PLAIN, ..."
    )
    parser.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )


def passwd(args: argparse.Namespace, ask: Callable[[str], str] = getpass.getpass) -> int:
    """Write `args.user`'s line (a hash of a password read from the terminal or stdin)."""
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = ask(f"password for {args.user}: ")
        if password != ask("again: "):
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
