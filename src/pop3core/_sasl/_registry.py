"""The built-in mechanisms by name: client instances from credentials, server classes.

Nothing in the engine depends on these tables: a GSSAPI or NTLM mechanism is a
subclass of `ClientMechanism` or `ServerMechanism` used directly (put the
instance in `ServerOptions.mechanisms`, or hand it to `AuthExchange`).
"""

from __future__ import annotations

from collections.abc import Iterable

from ._base import ClientMechanism, ServerMechanism
from ._cram import CramMD5Client, CramMD5Server
from ._credentials import Credential
from ._oauth import OAuthBearerClient, OAuthBearerServer, XOAuth2Client, XOAuth2Server
from ._scram import ScramSHA1Client, ScramSHA1Server, ScramSHA256Client, ScramSHA256Server
from ._simple import (
    AnonymousClient,
    AnonymousServer,
    ExternalClient,
    ExternalServer,
    LoginClient,
    LoginServer,
    PlainClient,
    PlainServer,
)

__all__ = [
    "CLIENT_MECHANISMS",
    "SERVER_MECHANISMS",
    "client_mechanism",
    "server_mechanisms",
    "store_mechanisms",
]

CLIENT_MECHANISMS: tuple[type[ClientMechanism], ...] = (
    ScramSHA256Client,
    ScramSHA1Client,
    CramMD5Client,
    PlainClient,
    LoginClient,
    OAuthBearerClient,
    XOAuth2Client,
    ExternalClient,
    AnonymousClient,
)
"""The built-in client mechanism classes."""

SERVER_MECHANISMS: tuple[type[ServerMechanism], ...] = (
    ScramSHA256Server,
    ScramSHA1Server,
    CramMD5Server,
    PlainServer,
    LoginServer,
    OAuthBearerServer,
    XOAuth2Server,
    ExternalServer,
    AnonymousServer,
)
"""The built-in server mechanism classes, strongest first; each works with no arguments."""

_PASSWORD_MECHANISMS = {
    "SCRAM-SHA-256": ScramSHA256Client,
    "SCRAM-SHA-1": ScramSHA1Client,
}


def client_mechanism(
    name: str,
    *,
    username: str = "",
    password: str | None = None,
    token: str | None = None,
    authzid: str = "",
    host: str | None = None,
    port: int | None = None,
    trace: str = "",
) -> ClientMechanism:
    """A built-in client mechanism called `name`, set up with these credentials.

    ``password`` serves SCRAM-SHA-256, SCRAM-SHA-1, CRAM-MD5, PLAIN and LOGIN;
    ``token`` (an OAuth 2.0 access token) serves XOAUTH2 and OAUTHBEARER (which
    also sends ``host`` and ``port`` when given); EXTERNAL sends ``authzid`` and
    ANONYMOUS sends ``trace``. Raises `ValueError` for an unknown name or missing
    credentials.
    """
    key = name.upper()
    if key in ("SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN"):
        if password is None or not username:
            raise ValueError(f"{key} needs a user name and a password")
        if key == "CRAM-MD5":
            return CramMD5Client(username, password)
        if key == "PLAIN":
            return PlainClient(username, password, authzid=authzid)
        if key == "LOGIN":
            return LoginClient(username, password)
        return _PASSWORD_MECHANISMS[key](username, password, authzid=authzid)
    if key in ("XOAUTH2", "OAUTHBEARER"):
        if token is None:
            raise ValueError(f"{key} needs an OAuth 2.0 token")
        if key == "XOAUTH2":
            return XOAuth2Client(username, token)
        return OAuthBearerClient(username, token, host=host, port=port)
    if key == "EXTERNAL":
        return ExternalClient(authzid)
    if key == "ANONYMOUS":
        return AnonymousClient(trace)
    raise ValueError(f"no built-in client mechanism is called {name!r}")


def server_mechanisms(
    names: Iterable[str] = ("SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN", "LOGIN"),
    *,
    hostname: str = "localhost",
) -> list[ServerMechanism]:
    """Instances of the built-in server mechanisms called `names`, in that order.

    For `ServerOptions.mechanisms`. ``hostname`` goes into CRAM-MD5 challenges.
    The default set needs only what a users file with SCRAM keys or passwords
    provides; PLAIN and LOGIN are offered only over TLS (or with cleartext allowed).
    """
    by_name = {cls.name: cls for cls in SERVER_MECHANISMS}
    mechanisms: list[ServerMechanism] = []
    for name in names:
        cls = by_name.get(name.upper())
        if cls is None:
            raise ValueError(f"no built-in server mechanism is called {name!r}")
        mechanisms.append(CramMD5Server(hostname) if cls is CramMD5Server else cls())
    return mechanisms


# The password-based SASL mechanisms a credential store can back, strongest first.
_STORE_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN")


def store_mechanisms(credentials: Iterable[Credential]) -> list[str]:
    """The SASL mechanisms every one of `credentials` can serve, strongest first.

    A server does not know who will log in when it announces ``SASL``, so it
    should offer only what all its users' records support: a store of SCRAM-SHA-256
    keys cannot serve CRAM-MD5, which needs the plaintext secret. Pass the result
    to `server_mechanisms`. APOP and USER are not SASL: see ``Credential.mechanisms``.
    """
    common = set(_STORE_MECHANISMS)
    for credential in credentials:
        common &= credential.mechanisms
    return [name for name in _STORE_MECHANISMS if name in common]
