"""Retention (pure): which rows of which table are old enough to remove.

One :class:`Rule` per table. Adding a table to retention is one line in :data:`RULES` (its
``retention_days_<table>`` override is optional: without one the table follows
``retention_days``). Pending sends are never removed: a send is removed only once settled,
counted from when it settled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

DEFAULT_DAYS = 90


@dataclass(frozen=True, slots=True)
class Rule:
    """Rows of ``table`` whose ``column`` (a UTC time) is older than the cutoff go; rows whose
    ``keep_column`` equals ``keep_value`` always stay."""

    table: str
    column: str
    keep_column: str | None = None
    keep_value: str | None = None


RULES: tuple[Rule, ...] = (
    Rule("sms_send", "settled_at", keep_column="status", keep_value="pending"),
    Rule("sms_report", "received_at"),
    Rule("sms_inbound", "received_at"),
    Rule("dead_letter", "last_seen"),
    Rule("compensator_run", "started_at"),
)
TABLES = tuple(rule.table for rule in RULES)


@dataclass(frozen=True, slots=True)
class Cutoff:
    rule: Rule
    days: int  # 0: keep forever (no cutoff)
    before: datetime | None


def days_per_table(default: int, overrides: Mapping[str, int | None]) -> dict[str, int]:
    """The retention of every table: its override when set, else ``default``."""
    days = {}
    for table in TABLES:
        own = overrides.get(table)
        days[table] = default if own is None else own
    return days


def cutoffs(
    days: Mapping[str, int], now: datetime, tables: tuple[str, ...] = TABLES
) -> list[Cutoff]:
    """Per table (in :data:`RULES` order, restricted to ``tables``): rows older than ``before``
    are removable; ``before`` is None for a table kept forever (0 days)."""
    return [
        Cutoff(
            rule,
            days[rule.table],
            now - timedelta(days=days[rule.table]) if days[rule.table] else None,
        )
        for rule in RULES
        if rule.table in tables
    ]
