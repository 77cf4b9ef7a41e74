"""Unit-test fixtures: the in-memory send store (no database; the contract suite in
tests/integration/test_send_store_contract.py holds it to the SQL store's rules) and an
environment without receiptd's settings."""

from __future__ import annotations

import os

import pytest

from receiptd.testing import InMemorySendStore


@pytest.fixture
def sends() -> InMemorySendStore:
    return InMemorySendStore()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``RECEIPTD_*`` setting (nor systemd credentials) from the machine running the tests."""
    for key in list(os.environ):
        if key.startswith("RECEIPTD_") or key == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(key)
