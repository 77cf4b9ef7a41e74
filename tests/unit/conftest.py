"""Unit-test fixtures: the in-memory send store (no database; the contract suite in
tests/integration/test_send_store_contract.py holds it to the SQL store's rules)."""

from __future__ import annotations

import pytest

from receiptd.testing import InMemorySendStore


@pytest.fixture
def sends() -> InMemorySendStore:
    return InMemorySendStore()
