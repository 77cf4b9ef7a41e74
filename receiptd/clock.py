"""The one wall clock: aware UTC. Everything that needs "now" takes a clock so tests can
control it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)
