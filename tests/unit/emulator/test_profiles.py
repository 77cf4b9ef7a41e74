"""Emulator profiles (receiptd_emulator.profiles): shipped ones, files, validation, fates."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from receiptd_emulator.faults import FaultSpec
from receiptd_emulator.profiles import FATES, Profile


@pytest.mark.parametrize("name", ["default", "lossy", "chaos", "demo"])
def test_shipped_profiles_load(name: str) -> None:
    profile = Profile.load(name)
    assert profile.name == name
    assert profile.report_queue == f"Alicom-Queue-{profile.account_uid}-SmsReport"


def test_profile_sections_and_files(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(
        "seed = 3\n[receipts]\ndelay = [1.0, 2.0]\nlost = 0.5\n[replies]\nrate = 0.25\n"
        'samples = ["ok"]\n[faults.mns]\nerror_rate = 0.1\n[qps]\nSendSms = 5\n'
        '[[failures]]\ncode = "X"\nmessage = "y"\n',
        encoding="utf-8",
    )
    profile = Profile.load(path)
    assert (profile.name, profile.seed, profile.receipt_delay, profile.lost) == (
        "mine",
        3,
        (1.0, 2.0),
        0.5,
    )
    assert (profile.reply_rate, profile.replies) == (0.25, ("ok",))
    assert profile.faults["mns"] == FaultSpec(error_rate=0.1)
    assert profile.qps == {"SendSms": 5}
    assert [f.code for f in profile.failures] == ["X"]


@pytest.mark.parametrize(
    "data",
    [
        {"bogus": 1},
        {"receipts": {"lost": 0.8, "duplicate": 0.5}},
        {"outcomes": {"delivered": 0, "failed": 0, "pending": 0}},
        {"receipts": {"delay": [3.0, 1.0]}},
        {"faults": {"nope": {}}},
        {"accounts": [{"name": "default"}]},
        {"accounts": [{"name": "b"}, {"name": "b"}]},
        {"accounts": [{"name": "Brand-B"}]},
        {"accounts": [{"name": "b", "uid": "12a"}]},
        {"accounts": [{"name": "b", "colour": "red"}]},
        {"accounts": [{"name": "b", "push": {"Nope": {"url": "http://x"}}}]},
    ],
)
def test_invalid_profiles_are_rejected(data: dict[str, object]) -> None:
    with pytest.raises((ValueError, TypeError)):
        Profile.from_mapping(data)


def test_profile_accounts() -> None:
    profile = Profile.from_toml(
        '[[accounts]]\nname = "brand_b"\nuid = 1092397003988387\n'
        '[accounts.push.SmsReport]\nurl = "http://127.0.0.1:1/p"\n'
        '[[accounts]]\nname = "brand_c"\n'
    )
    brand_b, brand_c = profile.accounts
    assert (brand_b.name, brand_b.uid, brand_b.push["SmsReport"].url) == (
        "brand_b",
        "1092397003988387",
        "http://127.0.0.1:1/p",
    )
    assert (brand_c.name, brand_c.uid, dict(brand_c.push)) == ("brand_c", None, {})


def test_unknown_profile_name() -> None:
    with pytest.raises(ValueError, match="unknown profile"):
        Profile.load("no-such-profile")


def test_fate_draws_follow_weights() -> None:
    profile = Profile(lost=0.3)
    rng = random.Random(1)
    fates = [profile.pick_fate(rng) for _ in range(10_000)]
    assert set(fates) <= set(FATES)
    assert 2700 < fates.count("lost") < 3300


def test_profile_sites_and_globe_limits() -> None:
    profile = Profile.from_toml(
        "[outcomes]\nexpired_share = 0.5\n[globe_qps]\nQueryMessage = 10\n"
        '[[accounts]]\nname = "global_co"\nsite = "intl"\n'
    )
    (account,) = profile.accounts
    assert account.site == "intl"
    assert profile.expired_share == 0.5
    assert profile.globe_qps == {
        "SendMessageToGlobe": 2000.0,
        "BatchSendMessageToGlobe": 1.0,
        "QueryMessage": 10,
    }
    assert Profile().accounts == () and Profile().globe_qps["QueryMessage"] == 300


@pytest.mark.parametrize(
    "data",
    [
        {"accounts": [{"name": "b", "site": "mars"}]},
        {"globe_qps": {"SendSms": 5}},
        {"globe_qps": {"QueryMessage": 0}},
        {"outcomes": {"expired_share": 1.5}},
    ],
)
def test_invalid_site_settings_are_rejected(data: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Profile.from_mapping(data)
