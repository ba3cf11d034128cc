"""Shared fixtures."""

from __future__ import annotations

import pytest

from tests.hostile import certs, hostile, peak_memory
from tests.peers import peer

__all__ = ["certs", "doveadm_path", "hostile", "peak_memory"]  # fixtures for every test module


@pytest.fixture(scope="session")
def doveadm_path() -> str:
    """Dovecot's doveadm; skipped locally, a failure in CI, when it is missing."""
    return peer("doveadm")
