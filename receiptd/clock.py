"""The one wall clock of receiptd: every aware "now" in the core comes from here."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    """The current time as an aware UTC datetime (injected as ``clock`` where tests need it)."""
    return datetime.now(UTC)
