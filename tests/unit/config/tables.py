"""Helpers of the named-account tests: settings from a TOML text, account tables."""

from __future__ import annotations

from pathlib import Path

from receiptd import config

ALIYUN = 'provider = "aliyun"\naccess_key_id = "{id}"\naccess_key_secret = "{id}-secret"\n'
HUAWEI = 'provider = "huawei"\naccess_key_id = "{id}"\nsecret_access_key = "{id}-sk"\n'


def load(tmp_path: Path, text: str = "") -> config.Settings:
    path = tmp_path / "receiptd.toml"
    path.write_text(text)
    return config.load_settings(path)


def aliyun_table(name: str, extra: str = 'queue_prefix = "Q-{id}-"\n') -> str:
    return f"[accounts.{name}]\n" + (ALIYUN + extra).format(id=name)


def named(settings: config.Settings, name: str) -> config.Account:
    return settings.parts.account(name)
