"""Named provider accounts (``[accounts.<id>]``, ``RECEIPTD_ACCOUNT_<ID>_<KEY>``): the layers
and their precedence, the reading of names whose ids and keys both hold underscores, what a
named account inherits, the errors naming ``accounts.<id>.<key>``, ``serve_accounts``, and the
``default`` accounts unchanged by it all."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import SecretStr

from receiptd import config
from tests.unit.config.tables import ALIYUN, HUAWEI, aliyun_table, load, named

pytestmark = pytest.mark.usefixtures("clean_env")

TOKEN = "push-token-0123456789"
OWN_TOKEN = "own-push-token-brand-b"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


# --- TOML, order, inheritance ------------------------------------------------------------------

SITE = """
aliyun_dysms_endpoint = "https://dysms.site.example/"
aliyun_alicom_mns_endpoint = "https://alicom.site.example"
aliyun_dybase_endpoint = "https://dybase.site.example"
aliyun_region = "cn-shanghai"
aliyun_request_timeout = 7
aliyun_mns_endpoint = "https://1.mns.site.example"
huawei_endpoint = "https://koo.site.example"
consumer_report_threads = 3
consumer_up_threads = 2
compensator_rate_limit = 9
compensator_horizon = 3600
compensator_horizon_aliyun = 60
push_token = "push-token-0123456789"
"""


def test_named_accounts_from_toml_inherit_the_site_settings(tmp_path: Path) -> None:
    text = SITE + aliyun_table("brand_b", 'report_queue = "R"\nup_queue = "U"\n')
    text += f'push_token = "{OWN_TOKEN}"\ndysms_endpoint = "https://own.example/"\n'
    text += 'mns_endpoint = "https://2.mns.example/"\nconsumer_up_threads = 0\n'
    text += aliyun_table("brand_a") + "[accounts.hw]\n" + HUAWEI.format(id="hw")
    text += 'project_id = "p-hw"\ncompensator_rate_limit = 3\n'
    parts = load(tmp_path, text).parts
    assert [(a.name, a.provider) for a in parts.accounts] == [
        ("default", "aliyun"), ("default", "huawei"),
        ("brand_a", "aliyun"), ("brand_b", "aliyun"), ("hw", "huawei"),
    ]  # fmt: skip
    a, b, hw = named_accounts(parts)
    # brand_a gives keys and a prefix only: the site's endpoints, threads, limits, token.
    assert (a.access_key_id, a.access_key_secret.get_secret_value()) == (
        "brand_a",
        "brand_a-secret",
    )
    assert (a.report_queue, a.up_queue) == ("Q-brand_a-SmsReport", "Q-brand_a-SmsUp")
    assert (a.dysms_endpoint, a.alicom_mns_endpoint) == (
        "https://dysms.site.example",
        "https://alicom.site.example",
    )
    assert (a.dybase_endpoint, a.region, a.request_timeout) == (
        "https://dybase.site.example",
        "cn-shanghai",
        7.0,
    )
    assert (a.report_threads, a.up_threads, a.rate_limit) == (3, 2, 9.0)
    assert a.horizon == timedelta(seconds=60)  # compensator_horizon_aliyun, as the default's
    assert a.push_token == SecretStr(TOKEN)
    # The MNS endpoint names one account's uid: never inherited (token mode), nor the keys.
    assert (a.mns_endpoint, a.token_mode) == (None, True)
    assert parts.aliyun.mns_endpoint == "https://1.mns.site.example"
    assert a.security_token.get_secret_value() == ""
    # brand_b's own values win, trailing slashes dropped as in the flat settings.
    assert (b.report_queue, b.up_queue, b.up_threads) == ("R", "U", 0)
    assert (b.dysms_endpoint, b.mns_endpoint) == ("https://own.example", "https://2.mns.example")
    assert b.push_token == SecretStr(OWN_TOKEN)
    # Huawei: the flat endpoint and request timeout, the shared horizon (no _huawei one).
    assert (hw.endpoint, hw.request_timeout, hw.project_id) == (
        "https://koo.site.example",
        7.0,
        "p-hw",
    )
    assert (hw.rate_limit, hw.horizon, hw.timezone) == (
        3.0,
        timedelta(hours=1),
        ZoneInfo("Asia/Shanghai"),
    )
    assert parts.configured_accounts == parts.served_accounts == (a, b, hw)  # no flat keys


def named_accounts(
    parts: config.Parts,
) -> tuple[config.AliyunAccount, config.AliyunAccount, config.HuaweiAccount]:
    a, b, hw = parts.account("brand_a"), parts.account("brand_b"), parts.account("hw")
    assert isinstance(a, config.AliyunAccount) and isinstance(b, config.AliyunAccount)
    assert isinstance(hw, config.HuaweiAccount)
    return a, b, hw


FLAT: dict[str, Any] = {
    "aliyun_access_key_id": "AK",
    "aliyun_access_key_secret": "SK",
    "aliyun_security_token": "STS",
    "aliyun_queue_prefix": "Alicom-Queue-1-",
    "aliyun_up_queue": "Replies",
    "aliyun_mns_endpoint": "https://mns.example/",
    "aliyun_region": "cn-shanghai",
    "aliyun_request_timeout": 5.0,
    "provider_timezone": "UTC",
    "huawei_access_key_id": "HAK",
    "huawei_secret_access_key": "HSK",
    "huawei_project_id": "project",
    "consumer_report_threads": 2,
    "compensator_rate_limit": 10.0,
    "compensator_horizon": 3600.0,
    "compensator_horizon_huawei": 120.0,
    "push_token": TOKEN,
}


def test_the_default_accounts_are_the_flat_settings_as_before() -> None:
    alone = config.Settings(**FLAT).parts
    utc = ZoneInfo("UTC")
    assert alone.aliyun == config.AliyunAccount(
        access_key_id="AK", access_key_secret=SecretStr("SK"), security_token=SecretStr("STS"),
        report_queue="Alicom-Queue-1-SmsReport", up_queue="Replies",
        mns_endpoint="https://mns.example",
        alicom_mns_endpoint="https://1943695596114318.mns.cn-hangzhou.aliyuncs.com",
        dysms_endpoint="https://dysmsapi.aliyuncs.com",
        dybase_endpoint="https://dybaseapi.aliyuncs.com", region="cn-shanghai",
        request_timeout=5.0, timezone=utc, report_threads=2, up_threads=1, rate_limit=10.0,
        horizon=timedelta(hours=1), push_token=SecretStr(TOKEN),
    )  # fmt: skip
    assert alone.huawei == config.HuaweiAccount(
        access_key_id="HAK", secret_access_key=SecretStr("HSK"), project_id="project",
        endpoint="https://koomessage.myhuaweicloud.cn", request_timeout=5.0, timezone=utc,
        rate_limit=10.0, horizon=timedelta(seconds=120), push_token=SecretStr(TOKEN),
    )  # fmt: skip
    keys = {"provider": "aliyun", "access_key_id": "X", "access_key_secret": "Y"}
    beside = config.Settings(**FLAT, accounts={"x": {**keys, "queue_prefix": "P-"}}).parts
    assert (beside.aliyun, beside.huawei) == (alone.aliyun, alone.huawei)
    assert alone.accounts == (alone.aliyun, alone.huawei)
    assert (alone.serve, alone.served_accounts) == ((), alone.accounts)


# --- The environment, files and credentials ------------------------------------------------------


# --- Errors name accounts.<id>.<key> ------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "key", "reason"),
    [
        ('access_key_id = "x"\n', "provider", "required"),
        ('provider = "gcp"\n', "provider", "must be one of \\['aliyun', 'huawei'\\]"),
        ('provider = "aliyun"\n', "access_key_id", "required"),
        ('provider = "aliyun"\naccess_key_id = "k"\n', "access_key_secret", "required"),
        ('provider = "aliyun"\naccess_key_id = "k"\naccess_key_secret = ""\n',
         "access_key_secret", "required"),
        (ALIYUN.format(id="x"), "queue_prefix", "required"),
        (ALIYUN.format(id="x") + 'report_queue = "R"\n', "up_queue", "required"),
        (ALIYUN.format(id="x") + 'up_queue = "U"\n', "report_queue", "required"),
        (ALIYUN.format(id="x") + 'report_queue = "R"\nconsumer_up_threads = 0\n', "", ""),
        (ALIYUN.format(id="x") + "consumer_report_threads = 0\nconsumer_up_threads = 0\n", "", ""),
        ('provider = "huawei"\n', "access_key_id", "required"),
        (HUAWEI.format(id="x"), "project_id", "required"),
        (HUAWEI.format(id="x") + 'queue_prefix = "Q"\n', "queue_prefix", "unknown setting"),
    ],
)  # fmt: skip
def test_a_missing_or_foreign_key_names_accounts_id_key(
    table: str, key: str, reason: str, tmp_path: Path
) -> None:
    text = "[accounts.x]\n" + table
    if not key:  # complete: an account without consumer threads needs no queue
        assert named(load(tmp_path, text), "x").configured
        return
    with pytest.raises(config.ConfigError, match=rf"^invalid setting accounts.x.{key}: {reason}$"):
        load(tmp_path, text)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("default", r"reserved: the default accounts are the flat settings \(\[aliyun\] and"),
        ("aliyun", "reserved"),
        ("huawei", "reserved"),
        ("v1", "reserved"),
        ("Brand", "an account id is 1 to 32 of a-z 0-9 _"),
        ("brand-a", "an account id is 1 to 32 of a-z 0-9 _"),
        ("a" * 33, "an account id is 1 to 32 of a-z 0-9 _"),
    ],
)
def test_reserved_and_malformed_ids_are_refused(name: str, reason: str, tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match=rf"^invalid setting accounts.{name}: {reason}"):
        load(tmp_path, aliyun_table(name))


def test_accounts_must_be_tables(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match=r"^invalid setting accounts: expected one table"):
        load(tmp_path, 'accounts = "brand_a"\n')


# --- serve_accounts, lookup, webhook subscriptions ------------------------------------------------


def two_brands(tmp_path: Path, extra: str = "") -> config.Settings:
    text = extra + '[aliyun]\naccess_key_id = "AK"\n'
    return load(tmp_path, text + aliyun_table("brand_a") + aliyun_table("brand_b"))


@pytest.mark.parametrize(
    ("serve", "served"),
    [
        ('""', ["default", "brand_a", "brand_b"]),
        ('"brand_b"', ["brand_b"]),
        ('" default , brand_a "', ["default", "brand_a"]),
        ('["brand_a", "brand_b"]', ["brand_a", "brand_b"]),
    ],
)
def test_serve_accounts(serve: str, served: list[str], tmp_path: Path) -> None:
    parts = two_brands(tmp_path, f"serve_accounts = {serve}\n").parts
    assert [a.name for a in parts.served_accounts] == served
    assert [a.name for a in parts.configured_accounts] == ["default", "brand_a", "brand_b"]


@pytest.mark.parametrize("serve", ["brand_c", "brand_a,huawei", "Brand_A"])
def test_an_unknown_served_account_stops_start_up(
    serve: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECEIPTD_SERVE_ACCOUNTS", serve)
    with pytest.raises(config.ConfigError, match=r"^invalid setting serve_accounts: "):
        two_brands(tmp_path)


def test_account_lookup(tmp_path: Path) -> None:
    parts = two_brands(tmp_path, '[huawei]\naccess_key_id = "HAK"\n').parts
    assert parts.account("default") is parts.aliyun
    assert parts.account("default", "huawei") is parts.huawei
    assert parts.account("brand_a", "aliyun").name == "brand_a"
    assert parts.account_names == ["default", "brand_a", "brand_b"]
    with pytest.raises(config.ConfigError, match="unknown huawei account 'brand_a'"):
        parts.account("brand_a", "huawei")
    with pytest.raises(config.ConfigError, match="unknown account 'brand_c'; known: "):
        parts.account("brand_c")


def endpoint_toml(accounts: str) -> str:
    return (
        f'[[webhook.endpoints]]\nname = "app"\nurl = "https://app.example/h"\n'
        f'secret = "{SECRET}"\naccounts = {accounts}\n'
    )


def test_a_webhook_endpoint_subscribes_to_accounts(tmp_path: Path) -> None:
    settings = two_brands(tmp_path, endpoint_toml('["brand_a", "default"]'))
    assert settings.parts.webhooks.endpoints[0].accounts == ("brand_a", "default")
    every = config.WebhookEndpoint(name="b", url="https://b.example/h", secret=SecretStr(SECRET))
    assert every.accounts == ()


@pytest.mark.parametrize(
    ("accounts", "message"),
    [
        ('["brand_c"]', r"webhook_endpoints: endpoint 'app': unknown account\(s\) \['brand_c'\]"),
        ('["Brand A"]', r"webhook_endpoints.0.accounts: not account ids"),
    ],
)
def test_a_webhook_endpoint_of_an_unknown_account_is_refused(
    accounts: str, message: str, tmp_path: Path
) -> None:
    with pytest.raises(config.ConfigError, match=rf"^invalid setting {message}"):
        two_brands(tmp_path, endpoint_toml(accounts))


def test_every_named_account_secret_reaches_the_log_redactor(tmp_path: Path) -> None:
    from receiptd.cli import common

    text = aliyun_table("brand_a", f'queue_prefix = "Q-"\npush_token = "{OWN_TOKEN}"\n')
    text += 'security_token = "sts-a"\n[accounts.hw]\n' + HUAWEI.format(id="hw")
    text += 'project_id = "p"\n'
    secrets = set(common.secret_values(load(tmp_path, text)))
    assert secrets == {"brand_a-secret", OWN_TOKEN, "sts-a", "hw-sk"}


def test_settings_with_named_accounts_stay_frozen_and_hashable(tmp_path: Path) -> None:
    one, again = two_brands(tmp_path), two_brands(tmp_path)
    assert one.accounts == again.accounts and hash(one) == hash(again)
    assert hash(one) != hash(config.Settings())
    with pytest.raises(ValueError, match="frozen"):
        one.accounts["brand_a"].region = "x"  # type: ignore[misc]
