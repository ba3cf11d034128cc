"""Each mechanism on its own: malformed messages, refusals, and client-side checks."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import pytest

from pop3core._sasl._base import (
    AuthenticationFailed,
    Challenge,
    ExternalCheck,
    Identity,
    PasswordCheck,
    SASLError,
    ScramKeysRequest,
    SecretRequest,
    ServerStep,
    TokenCheck,
)
from pop3core._sasl._cram import CramMD5Client, CramMD5Server, cram_md5_digest
from pop3core._sasl._oauth import (
    OAuthBearerClient,
    OAuthBearerServer,
    XOAuth2Client,
    XOAuth2Server,
)
from pop3core._sasl._scram import (
    ScramKeys,
    ScramSHA1Client,
    ScramSHA1Server,
    ScramSHA256Client,
    ScramSHA256Server,
)
from pop3core._sasl._simple import (
    AnonymousClient,
    AnonymousServer,
    ExternalClient,
    ExternalServer,
    LoginClient,
    LoginServer,
    PlainClient,
    PlainServer,
)

Answer = Callable[[ServerStep], Any]


def run(
    exchange: Generator[ServerStep, Any, str], answer: Answer
) -> tuple[list[ServerStep], str | AuthenticationFailed]:
    steps: list[ServerStep] = []
    value: Any = None
    try:
        while True:
            step = exchange.send(value)
            steps.append(step)
            value = answer(step)
    except StopIteration as stop:
        return steps, stop.value
    except AuthenticationFailed as exc:
        return steps, exc


def fails(exchange: Generator[ServerStep, Any, str], answer: Answer = lambda s: True) -> str:
    result = run(exchange, answer)[1]
    assert isinstance(result, AuthenticationFailed), result
    assert result.code is not None
    assert str(result.code) == "AUTH"
    return result.text


# ---------------------------------------------------------------- PLAIN / LOGIN


def test_plain_asks_for_initial_response() -> None:
    steps, result = run(
        PlainServer().exchange(None),
        lambda step: b"\x00bob\x00pw" if isinstance(step, Challenge) else True,
    )
    assert steps == [Challenge(b""), PasswordCheck("bob", "pw", "PLAIN", "")]
    assert result == Identity("bob")


@pytest.mark.parametrize(
    "message",
    [b"bob\x00pw", b"\x00\x00pw", b"\x00bob\x00", b"a\x00b\x00c\x00d", b"\x00b\xffb\x00pw", b""],
)
def test_plain_malformed(message: bytes) -> None:
    fails(PlainServer().exchange(message))


def test_plain_wrong_password() -> None:
    assert fails(PlainServer().exchange(b"\x00bob\x00pw"), lambda step: False) == (
        "invalid user name or password"
    )


def test_plain_client_checks() -> None:
    for args in [("", "pw"), ("bob", ""), ("b\x00b", "pw"), ("bob", "p\x00w")]:
        with pytest.raises(ValueError):
            PlainClient(*args)
    client = PlainClient("bob", "pw")
    assert "pw" not in repr(client)
    with pytest.raises(SASLError):
        client.respond(b"")
    client.finish()


def test_login_server_prompts() -> None:
    answers = iter([b"bob", b"pw", True])
    steps, result = run(LoginServer().exchange(None), lambda step: next(answers))
    assert steps == [
        Challenge(b"Username:"),
        Challenge(b"Password:"),
        PasswordCheck("bob", "pw", "LOGIN"),
    ]
    assert result == "bob"


def test_login_server_takes_initial_response_as_user_name() -> None:
    answers = iter([b"pw", True])
    steps, result = run(LoginServer().exchange(b"bob"), lambda step: next(answers))
    assert steps[0] == Challenge(b"Password:")
    assert result == "bob"


@pytest.mark.parametrize(("user", "password"), [(b"", b"pw"), (b"bob", b""), (b"\xff", b"pw")])
def test_login_server_malformed(user: bytes, password: bytes) -> None:
    answers = iter([user, password, True])
    fails(LoginServer().exchange(None), lambda step: next(answers))


def test_login_client() -> None:
    client = LoginClient("bob", "pw")
    assert client.initial_response() is None
    assert client.respond(b"Username:") == b"bob"
    assert client.respond(b"Password:") == b"pw"
    with pytest.raises(SASLError):
        client.respond(b"More?")
    assert "pw" not in repr(client)
    with pytest.raises(ValueError):
        LoginClient("", "pw")


# ---------------------------------------------------------------- CRAM-MD5


def test_cram_md5_challenge_is_fresh() -> None:
    server = CramMD5Server("mail.example.org")
    first, second = server.make_challenge(), server.make_challenge()
    assert first != second
    for challenge in (first, second):
        assert challenge.startswith(b"<")
        assert challenge.endswith(b"@mail.example.org>")


def test_cram_md5_server_refuses_initial_response() -> None:
    assert "initial response" in fails(CramMD5Server().exchange(b""))


@pytest.mark.parametrize(
    "response",
    [b"bob", b"bob 1234", b" " + b"a" * 32, b"bob " + b"g" * 32, b"bob\xff " + b"a" * 32],
)
def test_cram_md5_malformed(response: bytes) -> None:
    fails(CramMD5Server().exchange(None), lambda step: response)


def test_cram_md5_unknown_user_and_wrong_digest() -> None:
    server = CramMD5Server(challenge=b"<1.2@x>")
    good = cram_md5_digest("secret", b"<1.2@x>")

    def unknown(step: ServerStep) -> Any:
        return f"bob {good}".encode() if isinstance(step, Challenge) else None

    fails(server.exchange(None), unknown)

    def wrong(step: ServerStep) -> Any:
        return f"bob {good}".encode() if isinstance(step, Challenge) else b"other"

    fails(server.exchange(None), wrong)

    def upper(step: ServerStep) -> Any:
        if isinstance(step, Challenge):
            return f"bob smith {good.upper()}".encode()
        assert step == SecretRequest("bob smith", "CRAM-MD5")
        return b"secret"

    assert run(server.exchange(None), upper)[1] == "bob smith"


def test_cram_md5_client_checks() -> None:
    client = CramMD5Client("bob", "pw")
    with pytest.raises(SASLError, match="empty"):
        client.respond(b"")
    client.respond(b"<1@x>")
    with pytest.raises(SASLError, match="second"):
        client.respond(b"<1@x>")
    with pytest.raises(ValueError):
        CramMD5Client("", "pw")
    with pytest.raises(ValueError):
        CramMD5Server("")


# ---------------------------------------------------------------- SCRAM

NONCE = "clientnonce"


def scram_keys(mechanism: str = "SCRAM-SHA-256", password: str = "pencil") -> ScramKeys:
    return ScramKeys.from_password(password, mechanism, salt=b"saltsalt")


def scram_run(
    server: ScramSHA256Server | ScramSHA1Server,
    first: bytes,
    final: Callable[[bytes], bytes] | bytes,
    keys: ScramKeys | None,
    last: bytes = b"",
) -> tuple[list[ServerStep], str | AuthenticationFailed]:
    challenges: list[bytes] = []

    def answer(step: ServerStep) -> Any:
        if isinstance(step, ScramKeysRequest):
            return keys
        assert isinstance(step, Challenge)
        challenges.append(step.data)
        if len(challenges) == 1:
            return final(step.data) if callable(final) else final
        return last

    return run(server.exchange(first), answer)


@pytest.mark.parametrize(
    ("client_cls", "server_cls"),
    [(ScramSHA1Client, ScramSHA1Server), (ScramSHA256Client, ScramSHA256Server)],
)
def test_scram_roundtrip(client_cls: Any, server_cls: Any) -> None:
    client = client_cls("us,er=x", "p\u00e4ss", authzid="us,er=x")
    first = client.initial_response()
    assert first.startswith(b"n,a=us=2Cer=3Dx,n=us=2Cer=3Dx,r=")
    keys = ScramKeys.from_password("p\u00e4ss", server_cls.name)
    challenges: list[bytes] = []

    def answer(step: ServerStep) -> Any:
        if isinstance(step, ScramKeysRequest):
            assert step.username == "us,er=x"
            return keys
        assert isinstance(step, Challenge)
        challenges.append(step.data)
        return client.respond(step.data)

    assert run(server_cls().exchange(first), answer)[1] == Identity("us,er=x", "us,er=x")
    assert client.server_verified


def test_scram_server_asks_for_initial_response() -> None:
    client = ScramSHA256Client("user", "pencil")
    steps: list[ServerStep] = []

    def answer(step: ServerStep) -> Any:
        steps.append(step)
        if isinstance(step, ScramKeysRequest):
            return scram_keys()
        assert isinstance(step, Challenge)
        if step.data == b"":
            return client.initial_response()
        return client.respond(step.data)

    assert run(ScramSHA256Server().exchange(None), answer)[1] == Identity("user")
    assert steps[0] == Challenge(b"")


@pytest.mark.parametrize(
    "first",
    [
        b"p=tls-unique,,n=user,r=abc",  # channel binding
        b"x,,n=user,r=abc",
        b"n,,m=ext,n=user,r=abc",  # mandatory extension
        b"n,,n=user",
        b"n,,r=abc,n=user",
        b"n,,n=,r=abc",
        b"n,,n=us=41er,r=abc",  # bad escape
        b"n,,n=user,r=",
        b"n,,n=user,r=a\x7fb",
        b"n,b=other,n=user,r=abc",
        b"n,,n=us\x07er,r=abc",  # SASLprep refuses a control character
        b"n,n=user,r=abc",
        b"n\xff,,n=user,r=abc",
    ],
)
def test_scram_server_malformed_first(first: bytes) -> None:
    steps, result = scram_run(ScramSHA256Server(), first, b"", scram_keys())
    assert isinstance(result, AuthenticationFailed)
    assert not any(isinstance(step, ScramKeysRequest) for step in steps)


def test_scram_server_accepts_y_flag_and_extensions() -> None:
    client = ScramSHA256Client("user", "pencil", nonce=NONCE)
    first = b"y,,n=user,r=" + NONCE.encode() + b",x=ext"

    def final(server_first: bytes) -> bytes:
        # Build a client-final whose channel binding is base64("y,,").
        client._gs2_header = "y,,"
        client._first_bare = f"n=user,r={NONCE},x=ext"
        return client.respond(server_first)

    _steps, result = scram_run(ScramSHA256Server(), first, final, scram_keys())
    assert result == Identity("user")


def good_final(server_first: bytes) -> bytes:
    client = ScramSHA256Client("user", "pencil", nonce=NONCE)
    return client.respond(server_first)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda final: final.replace(b"c=biws", b"c=eSws"),  # channel binding differs
        lambda final: final.replace(b"c=biws", b"c=bi!s"),
        lambda final: final.replace(b"r=" + NONCE.encode(), b"r=other"),
        lambda final: final[: final.index(b",p=")],  # no proof
        lambda final: final[: final.index(b",p=") + 3] + b"AAAA",  # short proof
        lambda final: final[: final.index(b",p=") + 3] + b"!!!!",
        lambda final: final[:-8] + b"AAAAAAA=",  # wrong proof
        lambda final: b"r=x,c=biws" + final[final.index(b",p=") :],
        lambda final: final + b"\xff",
    ],
)
def test_scram_server_malformed_final(mangle: Callable[[bytes], bytes]) -> None:
    first = f"n,,n=user,r={NONCE}".encode()
    result = scram_run(ScramSHA256Server(), first, lambda sf: mangle(good_final(sf)), scram_keys())
    assert isinstance(result[1], AuthenticationFailed)


def test_scram_server_wrong_password_and_unknown_user() -> None:
    first = f"n,,n=user,r={NONCE}".encode()
    _steps, result = scram_run(
        ScramSHA256Server(), first, good_final, scram_keys(password="other")
    )
    assert isinstance(result, AuthenticationFailed)
    assert result.text == "invalid user name or password"

    # An unknown user gets a plausible server-first message (a stable decoy salt),
    # and the same refusal at the end.
    server = ScramSHA256Server()
    runs = [scram_run(server, first, good_final, None) for _ in range(2)]
    for _steps, result in runs:
        assert isinstance(result, AuthenticationFailed)
        assert result.text == "invalid user name or password"
    salts = [
        next(s.data for s in steps if isinstance(s, Challenge)).split(b",")[1] for steps, _ in runs
    ]
    assert salts[0] == salts[1]


def test_scram_server_wants_an_empty_last_response() -> None:
    first = f"n,,n=user,r={NONCE}".encode()
    result = scram_run(ScramSHA256Server(), first, good_final, scram_keys(), last=b"x")[1]
    assert isinstance(result, AuthenticationFailed)


def test_scram_server_checks_the_application_answer() -> None:
    first = f"n,,n=user,r={NONCE}".encode()
    with pytest.raises(TypeError):
        scram_run(ScramSHA256Server(), first, good_final, "keys")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="SCRAM-SHA-1 keys"):
        scram_run(ScramSHA256Server(), first, good_final, scram_keys("SCRAM-SHA-1"))


def test_scram_server_fixed_nonce_must_be_valid() -> None:
    with pytest.raises(ValueError):
        ScramSHA256Server(nonce="a,b")


@pytest.mark.parametrize(
    ("server_first", "match"),
    [
        (b"e=unknown-user", "error"),
        (b"m=x,r=clientnonceX,s=c2FsdA==,i=4096", "extension"),
        (b"r=clientnonceX,s=c2FsdA==", "malformed"),
        (b"s=c2FsdA==,r=clientnonceX,i=4096", "malformed"),
        (b"r=othernonce,s=c2FsdA==,i=4096", "nonce"),
        (b"r=clientnonce,s=c2FsdA==,i=4096", "nothing"),
        (b"r=clientnonceX,s=!!,i=4096", "salt"),
        (b"r=clientnonceX,s=,i=4096", "salt"),
        (b"r=clientnonceX,s=c2FsdA==,i=x", "iteration"),
        (b"r=clientnonceX,s=c2FsdA==,i=1", "outside"),
        (b"r=clientnonceX,s=c2FsdA==,i=99999999999", "iteration"),
        (b"\xff", "UTF-8"),
    ],
)
def test_scram_client_refuses_server_first(server_first: bytes, match: str) -> None:
    client = ScramSHA256Client("user", "pencil", nonce=NONCE)
    with pytest.raises(SASLError, match=match):
        client.respond(server_first)


@pytest.mark.parametrize("server_final", [b"e=invalid-proof", b"v=AAAA", b"x=1", b"v=!!"])
def test_scram_client_refuses_server_final(server_final: bytes) -> None:
    client = ScramSHA1Client("user", "pencil", nonce=NONCE)
    client.respond(b"r=clientnonceX,s=c2FsdA==,i=4096")
    with pytest.raises(SASLError):
        client.respond(server_final)
    with pytest.raises(SASLError):
        client.finish()


def test_scram_client_checks() -> None:
    with pytest.raises(SASLError):
        ScramSHA256Client("", "pw")
    with pytest.raises(SASLError):
        ScramSHA256Client("a\x07", "pw")
    with pytest.raises(ValueError):
        ScramSHA256Client("user", "pw", nonce="a,b")
    client = ScramSHA256Client("user", "pencil")
    assert "pencil" not in repr(client)
    with pytest.raises(SASLError, match="proved"):
        client.finish()
    client._step = 2
    with pytest.raises(SASLError):
        client.respond(b"")


def test_scram_keys_validation() -> None:
    with pytest.raises(ValueError):
        ScramKeys(b"salt", 0, bytes(32), bytes(32))
    with pytest.raises(ValueError):
        ScramKeys(b"", 4096, bytes(32), bytes(32))
    with pytest.raises(ValueError):
        ScramKeys(b"salt", 4096, bytes(32), bytes(20))
    with pytest.raises(ValueError):
        ScramKeys.from_password("pw", "SCRAM-SHA-512")


def test_scram_password_preparation() -> None:
    """Keys use the SASLprep form: a no-break space is a space (RFC 5802 s. 2.2)."""
    keys = ScramKeys.from_password("a\u00a0b", "SCRAM-SHA-1", salt=b"salt")
    assert keys == ScramKeys.from_password("a b", "SCRAM-SHA-1", salt=b"salt")
    assert keys.matches_password("a\u00a0b")
    # A password SASLprep refuses is used as it is, on both sides.
    odd = ScramKeys.from_password("a\x07b", "SCRAM-SHA-1", salt=b"salt")
    assert odd.matches_password("a\x07b")
    assert ScramKeys.from_password(b"raw", "sha1", salt=b"s").matches_password(b"raw")


# ---------------------------------------------------------------- XOAUTH2 / OAUTHBEARER


@pytest.mark.parametrize(
    "message",
    [
        b"user=bob\x01auth=Bearer tok\x01",  # one ^A short
        b"user=bob\x01auth=Basic tok\x01\x01",
        b"user=bob\x01auth=Bearer \x01\x01",
        b"auth=Bearer tok\x01\x01",
        b"user=\x01auth=Bearer tok\x01\x01",
        b"user=bob\x01noequals\x01\x01",
        b"user=bob\x01auth=Bearer tok\x01\xff\x01\x01",
    ],
)
def test_xoauth2_server_malformed(message: bytes) -> None:
    fails(XOAuth2Server().exchange(message))


def test_xoauth2_server_asks_for_initial_response_and_refuses() -> None:
    steps, result = run(
        XOAuth2Server().exchange(None),
        lambda step: (
            b"user=bob\x01auth=bearer tok\x01\x01" if isinstance(step, Challenge) else False
        ),
    )
    assert steps == [Challenge(b""), TokenCheck("bob", "tok", "XOAUTH2")]
    assert isinstance(result, AuthenticationFailed)  # False: no error challenge


def test_xoauth2_client_checks() -> None:
    for args in [("", "t"), ("u", ""), ("u\x01", "t"), ("u", "t\x01")]:
        with pytest.raises(ValueError):
            XOAuth2Client(*args)
    client = XOAuth2Client("u", "secret-token")
    assert "secret-token" not in repr(client)
    assert client.respond(b"not json") == b""
    assert client.error is None
    with pytest.raises(SASLError):
        client.respond(b"{}")


@pytest.mark.parametrize(
    "message",
    [
        b"n,b=bob,\x01auth=Bearer tok\x01\x01",  # not an authorization identity
        b"p=tls-unique,a=bob,\x01auth=Bearer tok\x01\x01",
        b"q,a=bob,\x01auth=Bearer tok\x01\x01",
        b"n,a=bob\x01auth=Bearer tok\x01\x01",
        b"n,a=bob,x\x01auth=Bearer tok\x01\x01",
        b"n,a=bob,",
        b"n,a=bob,\x01auth=Bearer tok\x01",
        b"n,a=bob,\x01host=h\x01\x01",
        b"n,a=bob,\x01auth=Bearer tok\x01port=http\x01\x01",
        b"n,a=bob,\x01auth=Bearer tok\x01port=1234567\x01\x01",
        b"n,a=bob,\x01auth=Bearer tok\x019=x\x01\x01",
        b"n,a=b=ZZob,\x01auth=Bearer tok\x01\x01",
    ],
)
def test_oauthbearer_server_malformed(message: bytes) -> None:
    steps, result = run(OAuthBearerServer().exchange(message), lambda step: True)
    assert isinstance(result, AuthenticationFailed)
    assert steps == []


def test_oauthbearer_server_without_a_names_the_token_owner() -> None:
    # Without a=, only the application can say whom the token belongs to.
    message = b"n,,\x01auth=Bearer tok\x01\x01"
    steps, result = run(OAuthBearerServer().exchange(message), lambda step: "carol")
    assert steps == [TokenCheck("", "tok", "OAUTHBEARER")]
    assert result == Identity("carol")
    # True says "the one it named": with no name, that is a refusal.
    steps, result = run(
        OAuthBearerServer().exchange(message),
        lambda step: b"\x01" if isinstance(step, Challenge) else True,
    )
    assert isinstance(result, AuthenticationFailed)


def test_oauthbearer_server_y_flag_and_escapes() -> None:
    message = b"y,a=b=2Cob,\x01auth=Bearer tok\x01\x01"
    steps, result = run(OAuthBearerServer().exchange(message), lambda step: True)
    assert steps == [TokenCheck("b,ob", "tok", "OAUTHBEARER")]
    assert result == Identity("b,ob", "b,ob")


def test_oauthbearer_client() -> None:
    client = OAuthBearerClient("b,ob", "tok")
    assert client.initial_response() == b"n,a=b=2Cob,\x01auth=Bearer tok\x01\x01"
    assert OAuthBearerClient("", "tok").initial_response() == b"n,,\x01auth=Bearer tok\x01\x01"
    assert client.respond(b"[1]") == b"\x01"
    assert client.error is None
    with pytest.raises(SASLError):
        client.respond(b"")
    with pytest.raises(ValueError):
        OAuthBearerClient("bob", "")
    with pytest.raises(ValueError):
        OAuthBearerClient("bob", "t", host="a\x01b")


# ---------------------------------------------------------------- EXTERNAL / ANONYMOUS


def test_external() -> None:
    assert ExternalClient().initial_response() == b""
    assert ExternalClient("bob").initial_response() == b"bob"
    with pytest.raises(SASLError):
        ExternalClient().respond(b"x")
    with pytest.raises(ValueError):
        ExternalClient("a\x00b")

    steps, result = run(ExternalServer().exchange(b""), lambda step: "cert-user")
    assert steps == [ExternalCheck()]
    assert result == Identity("cert-user")
    # The requested identity is not part of the question; the session compares it.
    steps, result = run(
        ExternalServer().exchange(None),
        lambda step: b"bob" if isinstance(step, Challenge) else "cert-user",
    )
    assert steps == [Challenge(b""), ExternalCheck()]
    assert result == Identity("cert-user", "bob")
    fails(ExternalServer().exchange(b"bob"), lambda step: None)
    fails(ExternalServer().exchange(b"a\x00b"))
    fails(ExternalServer().exchange(b"\xff"))
    with pytest.raises(TypeError):
        run(ExternalServer().exchange(b""), lambda step: 42)


def test_anonymous() -> None:
    assert AnonymousClient().initial_response() == b""
    assert AnonymousClient("sirhc@example.org").initial_response() == b"sirhc@example.org"
    with pytest.raises(ValueError):
        AnonymousClient("x" * 256)
    with pytest.raises(ValueError):
        AnonymousServer("")
    assert run(AnonymousServer().exchange(b"sirhc"), lambda step: None)[1] == "anonymous"
    assert run(AnonymousServer("guest").exchange(None), lambda step: b"")[1] == "guest"
    fails(AnonymousServer().exchange("\u00e9".encode() * 256))
    fails(AnonymousServer().exchange(b"\xff"))


def test_cleartext_flags() -> None:
    cleartext = {PlainServer, LoginServer, XOAuth2Server, OAuthBearerServer}
    for cls in (
        PlainServer,
        LoginServer,
        CramMD5Server,
        ScramSHA1Server,
        ScramSHA256Server,
        XOAuth2Server,
        OAuthBearerServer,
        ExternalServer,
        AnonymousServer,
    ):
        assert cls.cleartext == (cls in cleartext), cls
    assert PlainClient.cleartext
    assert LoginClient.cleartext
    assert XOAuth2Client.cleartext
    assert OAuthBearerClient.cleartext
    assert not ScramSHA256Client.cleartext
    assert not CramMD5Client.cleartext
