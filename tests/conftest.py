"""Shared fixtures."""

from __future__ import annotations

import pytest

from tests.peers import peer


@pytest.fixture(scope="session")
def doveadm_path() -> str:
    """Dovecot's doveadm; skipped locally, a failure in CI, when it is missing."""
    return peer("doveadm")
