"""The settings' parts: every flat field feeds exactly one part, the defaults, the
provider accounts from the environment and TOML, and the horizon fallback."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import SecretStr

from receiptd import config
from receiptd.db import retention
from receiptd.webhooks import dispatcher as webhooks
from receiptd.wiring import daemon

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
TOKEN = "push-token-0123456789"
# A base where every field can show: a URL endpoint (so webhook_secret, _timeout and
# _concurrency shape it) and a push token (so push_addr may be set).
BASE: dict[str, Any] = {"webhook_urls": "https://a.example/h", "webhook_secret": SECRET}
BASE["push_token"] = TOKEN
HUAWEI_KEYS = {"secret_access_key": "BSK", "project_id": "p2"}
HOOK = config.WebhookEndpoint(name="app", url="https://app.example/h", secret=SecretStr(SECRET))

# One valid value other than the default for every flat field. A field added to Settings and
# missing here fails test_every_field_has_a_changed_value; one that feeds no part (or two)
# fails test_every_field_lands_in_exactly_one_part.
CHANGED: dict[str, Any] = {
    "database_url": "sqlite:///other.db",
    "log_format": "json",
    "log_level": "DEBUG",
    "log_show_phone_numbers": True,
    "http_addr": "0.0.0.0:9500",
    "status_api_token": "status-token",
    "heartbeat_timeout": 60.0,
    "shutdown_timeout": 20.0,
    "migrate_on_start": True,
    "consumer_batch_size": 8,
    "consumer_wait_seconds": 10,
    "consumer_socket_timeout": 30.0,
    "consumer_max_dequeue": 9,
    "compensator_enabled": False,
    "compensator_interval": 60.0,
    "compensator_grace": 30.0,
    "compensator_batch_size": 100,
    "compensator_max_backoff": 600.0,
    "push_addr": "127.0.0.1:9401",
    "push_allow_cidrs": "10.0.0.0/8",
    "push_trusted_proxies": "192.0.2.1",
    "push_threads": 2,
    "push_max_body": 4096,
    "push_max_elements": 10,
    "push_channel_timeout": 5.0,
    "push_max_connections": 2048,
    "push_max_connections_per_source": 64,
    "push_header_timeout": 5.0,
    "push_body_timeout": 5.0,
    "webhook_urls": "https://b.example/h",
    "webhook_secret": OTHER_SECRET,
    "webhook_endpoints": (HOOK,),
    "webhook_timeout": 3.0,
    "webhook_concurrency": 2,
    "webhook_retry_period": 600.0,
    "webhook_backoff_initial": 1.0,
    "webhook_backoff_max": 60.0,
    "webhook_poll_interval": 1.0,
    "webhook_batch_size": 10,
    "events_show_phone_numbers": True,
    "events_retention_days": 1.0,
    "events_notify": True,
    "retention_days": 30,
    "retention_days_sms_send": 1,
    "retention_days_sms_report": 2,
    "retention_days_sms_inbound": 3,
    "retention_days_dead_letter": 4,
    "retention_days_compensator_run": 5,
    "prune_enabled": False,
    "prune_interval": 3600.0,
    "prune_batch_size": 10,
    "aliyun_access_key_id": "AK",
    "aliyun_access_key_secret": "SK",
    "aliyun_security_token": "STS",
    "aliyun_queue_prefix": "Alicom-Queue-1-",
    "aliyun_report_queue": "Reports",
    "aliyun_up_queue": "Replies",
    "aliyun_mns_endpoint": "https://mns.example",
    "aliyun_alicom_mns_endpoint": "https://alicom.example",
    "aliyun_dysms_endpoint": "https://dysms.example",
    "aliyun_dybase_endpoint": "https://dybase.example",
    "aliyun_region": "cn-shanghai",
    "aliyun_request_timeout": 5.0,
    "aliyun_site": "intl",
    "aliyun_globe_queue": "Alicom-Queue-1-GlobeSmsReport",
    "aliyun_globe_reports": True,
    "aliyun_query_message_rate_limit": 300.0,
    "aliyun_send_rate_limit": 2000.0,
    "provider_timezone": "UTC",
    "huawei_access_key_id": "HAK",
    "huawei_secret_access_key": "HSK",
    "huawei_project_id": "project",
    "huawei_endpoint": "https://koomessage.example",
    "consumer_report_threads": 2,
    "consumer_up_threads": 0,
    "consumer_globe_threads": 2,
    "compensator_rate_limit": 10.0,
    "compensator_horizon": 3600.0,
    "compensator_horizon_aliyun": 60.0,
    "compensator_horizon_huawei": 120.0,
    "push_token": "another-push-token-42",
    "accounts": {"brand_a": {"provider": "huawei", "access_key_id": "B"} | HUAWEI_KEYS},
    "serve_accounts": "default",
    "roles": "consumer,worker",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("RECEIPTD_") or key == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(key)


def changed_parts(parts: config.Parts, base: config.Parts) -> list[str]:
    return [
        f.name
        for f in dataclasses.fields(config.Parts)
        if getattr(parts, f.name) != getattr(base, f.name)
    ]


def test_every_field_has_a_changed_value() -> None:
    assert set(CHANGED) == set(config.Settings.model_fields)


@pytest.mark.parametrize("name", sorted(CHANGED))
def test_every_field_lands_in_exactly_one_part(name: str) -> None:
    base = config.Settings(**BASE)
    changed = config.Settings(**{**BASE, name: CHANGED[name]})
    assert getattr(changed, name) != getattr(base, name)
    assert len(changed_parts(changed.parts, base.parts)) == 1, changed_parts(
        changed.parts, base.parts
    )


def test_parts_are_frozen() -> None:
    parts = config.Settings().parts
    with pytest.raises(dataclasses.FrozenInstanceError):
        parts.consumer.batch_size = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        parts.aliyun.rate_limit = 1  # type: ignore[misc]


def test_defaults() -> None:
    parts = config.Settings().parts
    assert parts.database == config.DatabasePart(url="sqlite:///receiptd.db")
    assert parts.consumer == config.ConsumerPart(
        batch_size=16, wait_seconds=20, socket_timeout=45.0, max_dequeue=5
    )
    assert parts.compensator == config.CompensatorPart(
        enabled=True, interval=600.0, grace=300.0, batch_size=5000, max_backoff=6 * 3600.0
    )
    assert (parts.push.addr, parts.push.allow, parts.push.threads) == (None, (), 8)
    assert parts.webhooks.endpoints == ()
    assert (parts.retention.days, parts.retention.prune_enabled) == (90, True)
    assert parts.daemon.http_addr == "127.0.0.1:9400"
    assert [(a.provider, a.name, a.configured) for a in parts.accounts] == [
        ("aliyun", "default", False),
        ("huawei", "default", False),
    ]
    assert parts.configured_accounts == ()
    aliyun = parts.aliyun
    assert (aliyun.report_queue, aliyun.up_queue, aliyun.token_mode) == ("SmsReport", "SmsUp", True)
    assert (aliyun.report_threads, aliyun.up_threads, aliyun.rate_limit) == (8, 1, 50.0)
    assert aliyun.timezone == ZoneInfo("Asia/Shanghai") == parts.huawei.timezone
    assert aliyun.horizon == timedelta(hours=72) == parts.huawei.horizon


def test_the_webhook_policy_takes_the_settings_defaults() -> None:
    assert daemon.webhook_policy(config.Settings()) == webhooks.Policy(
        retry_period=86400.0,
        backoff_initial=5.0,
        backoff_max=3600.0,
        poll_interval=0.5,
        batch_size=64,
    )


def test_retention_overrides_cover_every_table() -> None:
    part = config.Settings(retention_days_dead_letter=3).parts.retention
    assert tuple(part.overrides) == retention.TABLES
    assert part.overrides["dead_letter"] == 3


def test_accounts_from_toml_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "r.toml"
    toml.write_text(
        '[aliyun]\naccess_key_id = "AK"\nqueue_prefix = "Alicom-Queue-1-"\n'
        'mns_endpoint = "https://mns.example/"\n'
        '[huawei]\naccess_key_id = "HAK"\nproject_id = "p1"\n'
        "[consumer]\nreport_threads = 3\nup_threads = 0\n"
    )
    monkeypatch.setenv("RECEIPTD_ALIYUN_ACCESS_KEY_SECRET", "aliyun-secret-value")
    monkeypatch.setenv("RECEIPTD_HUAWEI_SECRET_ACCESS_KEY", "huawei-secret-value")
    monkeypatch.setenv("RECEIPTD_COMPENSATOR_RATE_LIMIT", "7")
    monkeypatch.setenv("RECEIPTD_PUSH_TOKEN", TOKEN)
    parts = config.load_settings(toml).parts
    aliyun, huawei = parts.aliyun, parts.huawei
    assert parts.configured_accounts == (aliyun, huawei) == parts.accounts
    assert (aliyun.access_key_id, aliyun.access_key_secret.get_secret_value()) == (
        "AK",
        "aliyun-secret-value",
    )
    assert (aliyun.report_queue, aliyun.up_queue) == (
        "Alicom-Queue-1-SmsReport",
        "Alicom-Queue-1-SmsUp",
    )
    assert (aliyun.mns_endpoint, aliyun.token_mode) == ("https://mns.example", False)
    assert (aliyun.report_threads, aliyun.up_threads, aliyun.rate_limit) == (3, 0, 7.0)
    assert (huawei.access_key_id, huawei.project_id, huawei.rate_limit) == ("HAK", "p1", 7.0)
    assert huawei.secret_access_key.get_secret_value() == "huawei-secret-value"
    for account in parts.accounts:
        assert account.push_token == SecretStr(TOKEN)
        assert "secret-value" not in repr(account)


def test_horizon_falls_back_to_the_shared_setting() -> None:
    shared = config.Settings(compensator_horizon=3600, compensator_horizon_huawei=0)
    assert shared.parts.aliyun.horizon == timedelta(hours=1)
    assert shared.parts.huawei.horizon == timedelta(0)  # 0: up to the query window
    own = config.Settings(compensator_horizon=3600, compensator_horizon_aliyun=60)
    assert (own.parts.aliyun.horizon, own.parts.huawei.horizon) == (
        timedelta(seconds=60),
        timedelta(hours=1),
    )


def test_every_account_secret_is_redacted_from_logs() -> None:
    from receiptd.cli import common

    settings = config.Settings(
        aliyun_access_key_secret="SK-1",
        aliyun_security_token="STS-1",
        huawei_secret_access_key="HSK-1",
        push_token=TOKEN,
        status_api_token="status-1",
        database_url="postgresql+psycopg://u:dbpass@h/db",
        webhook_endpoints=(HOOK,),
    )
    assert set(common.secret_values(settings)) == {
        "SK-1", "STS-1", "HSK-1", TOKEN, "status-1", "dbpass", SECRET
    }  # fmt: skip
