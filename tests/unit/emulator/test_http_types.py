"""Requests as the emulator's HTTP layer reads them (receiptd_emulator.http_types)."""

from __future__ import annotations

import pytest

from receiptd_emulator.http_types import Request, split_raw_query, strip_absolute_uri


def test_raw_query_keeps_plus_slash_and_equals() -> None:
    handle = "1-MbZj6wDWli+QEauMZc8ZRv37sIW2iJKq3M9Mx/KSbkJ0=="
    pairs = split_raw_query(f"ReceiptHandle={handle}&VisibilityTimeout=30")
    assert pairs == [("ReceiptHandle", handle), ("VisibilityTimeout", "30")]
    assert Request("DELETE", f"/queues/q/messages?ReceiptHandle={handle}", {}).raw_params() == {
        "ReceiptHandle": handle
    }


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("http://127.0.0.1:1/queues/q/messages?a=1", "/queues/q/messages?a=1"),
        ("https://h/queues", "/queues"),
        ("http://h", "/"),
        ("/queues/q", "/queues/q"),
    ],
)
def test_absolute_uri_is_stripped(target: str, expected: str) -> None:
    assert strip_absolute_uri(target) == expected
