"""Retention rules (receiptd.db.retention): per-table days and cutoffs, pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from receiptd.db import retention

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def test_every_table_follows_the_default_unless_it_has_its_own_days() -> None:
    days = retention.days_per_table(90, {"sms_report": 7, "dead_letter": 0, "sms_send": None})
    assert days == {
        "sms_send": 90,
        "sms_report": 7,
        "sms_inbound": 90,
        "dead_letter": 0,
        "compensator_run": 90,
    }


def test_cutoffs_follow_the_rules_order_and_zero_days_keeps_forever() -> None:
    days = retention.days_per_table(30, {"dead_letter": 0})
    cuts = retention.cutoffs(days, NOW)
    assert [c.rule.table for c in cuts] == list(retention.TABLES)
    by_table = {c.rule.table: c for c in cuts}
    assert by_table["sms_report"].before == NOW - timedelta(days=30)
    assert (by_table["dead_letter"].days, by_table["dead_letter"].before) == (0, None)


def test_cutoffs_can_be_restricted_to_some_tables() -> None:
    days = retention.days_per_table(30, {})
    cuts = retention.cutoffs(days, NOW, tables=("compensator_run", "sms_send"))
    assert [c.rule.table for c in cuts] == ["sms_send", "compensator_run"]


def test_pending_sends_are_kept_and_settled_ones_age_from_settling() -> None:
    (send,) = (r for r in retention.RULES if r.table == "sms_send")
    assert (send.column, send.keep_column, send.keep_value) == ("settled_at", "status", "pending")
    assert all(r.keep_column is None for r in retention.RULES if r is not send)
