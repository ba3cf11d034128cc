"""Every limit of the protocol and every default bound of the engine, once.

The RFC limits are fixed; the defaults are what `Connection` and
`ServerOptions` start from, each changeable there.
"""

from __future__ import annotations

__all__ = [
    "AUTH_FAILURE_DELAY",
    "LOGIN_TIMEOUT",
    "MAX_BAD_COMMANDS",
    "MAX_CAPA_REPLY",
    "MAX_COMMAND_LINE",
    "MAX_LOGIN_FAILURES",
    "MAX_SASL_LINE",
    "MAX_STATUS_LINE",
    "MINIMUM_AUTOLOGOUT",
    "OUTPUT_HIGH_WATER",
]

MAX_STATUS_LINE = 512
"""Longest status line, CRLF included (RFC 1939 section 3, RFC 2449 section 4)."""

MAX_COMMAND_LINE = 255
"""Longest command line, CRLF included (RFC 2449 section 4)."""

MAX_SASL_LINE = 64 * 1024
"""Default bound of a SASL line: RFC 5034 lets challenges and responses grow
beyond the other limits (an OAuth token runs to a few KiB)."""

MAX_CAPA_REPLY = 64 * 1024
"""A CAPA reply is collected whole to build `Connection.capabilities`; real
ones are a few hundred octets."""

MAX_BAD_COMMANDS = 10
"""Default budget of bad commands a server answers before it hangs up."""

MAX_LOGIN_FAILURES = 3
"""Default number of failed logins after which a server ends the session."""

OUTPUT_HIGH_WATER = 256 * 1024
"""Queued reply octets at which `ServerSession.next_event` stops taking commands."""

MINIMUM_AUTOLOGOUT = 600.0
"""RFC 1939 section 3: an autologout timer MUST be of at least 10 minutes."""

LOGIN_TIMEOUT = 180.0
"""Default seconds from connecting to a successful login (Dovecot's figure)."""

AUTH_FAILURE_DELAY = 2.0
"""Default seconds a failed login's ``-ERR`` is held back."""
