"""Emulator state without a server (receiptd_emulator.emulator): seeding and queries."""

from __future__ import annotations

import datetime as dt

import pytest

from receiptd_emulator import Emulator, SeedSend

CST = dt.timezone(dt.timedelta(hours=8))


def test_seed_100k_sends_and_query_by_phone_and_date() -> None:
    now = dt.datetime.now(dt.UTC)
    emu = Emulator()  # not started: seeding and queries need no server
    try:
        seeds = [
            SeedSend(
                f"138{i % 1000:08d}",
                "阿里云短信测试",
                "SMS_154950909",
                f"o{i}",
                now - dt.timedelta(seconds=i),
                receipt="lost",
            )
            for i in range(100_000)
        ]
        biz_ids = emu.seed_sends(seeds)
        assert len(set(biz_ids)) == 100_000
        day = now.astimezone(CST).strftime("%Y%m%d")
        matches = emu.sms_records.query("13800000007", day)
        expected = {f"o{i}" for i in range(7, 100_000, 1000)}
        # Sends of the last ~28 hours can span two China days; the index keeps them apart.
        assert {m.out_id for m in matches} <= expected
        assert all(m.send_date == day for m in matches)
        assert len(emu.records()) == 100_000
    finally:
        emu.stop()


def test_seed_validation() -> None:
    emu = Emulator()
    try:
        with pytest.raises(ValueError):
            emu.seed_sends([SeedSend("1", "s", "t", outcome="maybe")])
        with pytest.raises(ValueError):
            emu.seed_sends([SeedSend("1", "s", "t", receipt="eaten")])
        with pytest.raises(ValueError):
            emu.seed_sends([SeedSend("1", "s", "t", send_time=dt.datetime(2024, 1, 1))])  # noqa: DTZ001
    finally:
        emu.stop()
