from __future__ import annotations

import pytest

import pop3core as p
from tests.core.helpers import SPLITS, ConnectionPair


@pytest.mark.parametrize("split", SPLITS)
def test_login_and_retr(split: str) -> None:
    pair = ConnectionPair(split)  # type: ignore[arg-type]
    pair.greet(p.Greeting(b"ready <1.2@x>"))
    pair.exchange(p.User("alice"), p.OkResponse())
    pair.exchange(p.Pass("s e c"), p.OkResponse(b"logged in"))
    assert pair.client.state is p.State.TRANSACTION
    pair.exchange(
        p.Retr(1),
        p.OkResponse(),
        p.Data(b".x\r\n"),
        p.EndOfMultiline(),
        expect=[p.OkResponse(), p.Data(b".x\r\n"), p.EndOfMultiline()],
    )
    pair.exchange(p.Quit(), p.OkResponse(), expect=[p.OkResponse(), p.ConnectionClosed()])
    assert pair.client.state is p.State.CLOSED
