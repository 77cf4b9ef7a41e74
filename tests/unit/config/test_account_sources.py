"""Named accounts from the environment, ``_FILE`` and systemd credentials
(receiptd.config.account_sources): names read against the declared ids, and the precedence
environment > file > credential > TOML."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiptd import config
from receiptd.config import account_sources
from tests.unit.config.tables import aliyun_table, load, named

pytestmark = pytest.mark.usefixtures("clean_env")


@pytest.mark.parametrize(
    ("name", "declared", "reading"),
    [
        ("a_b_region", {"a", "a_b"}, ("a_b", "region")),
        ("a_region", {"a", "a_b"}, ("a", "region")),
        ("a_alicom_mns_endpoint", {"a", "a_b"}, ("a", "alicom_mns_endpoint")),
        ("a_mns_endpoint", {"a", "a_b"}, ("a", "mns_endpoint")),
        ("a_b_mns_endpoint", {"a", "a_b"}, ("a_b", "mns_endpoint")),
        ("a_b_up_queue", {"a", "a_b", "a_b_up"}, ("a_b", "up_queue")),
        ("new_one_provider", set(), ("new_one", "provider")),
    ],
)
def test_a_name_reads_against_the_declared_ids(
    name: str, declared: set[str], reading: tuple[str, str]
) -> None:
    assert account_sources.split_name(name, declared, "VAR") == reading


@pytest.mark.parametrize(
    ("name", "declared", "message"),
    [
        ("a_alicom_mns_endpoint", {"a", "a_alicom"}, "ambiguous, it reads "
         "accounts.a.alicom_mns_endpoint or accounts.a_alicom.mns_endpoint"),
        ("c_region", {"a", "a_b"}, "names no declared account and known key"),
        ("a_regio", {"a"}, "names no declared account and known key"),
    ],
)  # fmt: skip
def test_a_name_that_reads_no_way_or_two_is_refused(
    name: str, declared: set[str], message: str
) -> None:
    with pytest.raises(config.ConfigError, match=rf"^invalid setting VAR: {message}"):
        account_sources.split_name(name, declared, "VAR")


def test_accounts_from_the_environment_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "A_PROVIDER": "aliyun", "A_ACCESS_KEY_ID": "ka", "A_ACCESS_KEY_SECRET": "sa",
        "A_QUEUE_PREFIX": "QA-", "A_ALICOM_MNS_ENDPOINT": "https://alicom.a.example",
        "A_B_PROVIDER": "aliyun", "A_B_ACCESS_KEY_ID": "kb", "A_B_ACCESS_KEY_SECRET": "sb",
        "A_B_REPORT_QUEUE": "RB", "A_B_CONSUMER_UP_THREADS": "0", "A_B_REQUEST_TIMEOUT": "3",
        "H_PROVIDER": "huawei", "H_ACCESS_KEY_ID": "kh", "H_SECRET_ACCESS_KEY": "sh",
        "H_PROJECT_ID": "ph",
    }  # fmt: skip
    for key, value in env.items():
        monkeypatch.setenv(f"RECEIPTD_ACCOUNT_{key}", value)
    monkeypatch.setenv("RECEIPTD_SERVE_ACCOUNTS", "a_b, h")
    parts = config.load_settings().parts
    a, b = parts.account("a"), parts.account("a_b")
    assert isinstance(a, config.AliyunAccount) and isinstance(b, config.AliyunAccount)
    assert (a.access_key_id, a.report_queue, a.alicom_mns_endpoint) == (
        "ka",
        "QA-SmsReport",
        "https://alicom.a.example",
    )
    assert (b.access_key_id, b.report_queue, b.up_threads, b.request_timeout) == (
        "kb",
        "RB",
        0,
        3.0,
    )
    assert parts.account("h", "huawei").access_key_id == "kh"
    assert [x.name for x in parts.served_accounts] == ["a_b", "h"]
    assert [x.name for x in parts.configured_accounts] == ["a", "a_b", "h"]


def test_an_unmatched_account_variable_stops_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECEIPTD_ACCOUNT_A_PROVIDER", "aliyun")
    monkeypatch.setenv("RECEIPTD_ACCOUNT_BRAND_A_REGION", "cn-shanghai")
    with pytest.raises(
        config.ConfigError,
        match=r"^invalid setting RECEIPTD_ACCOUNT_BRAND_A_REGION: names no declared account",
    ):
        config.load_settings()


# Each layer that may give brand_a's region (lowest first); the highest one present wins.
LAYERS = ("toml", "credential", "file", "env")


@pytest.mark.parametrize(
    "present",
    [("toml",), ("credential",), ("toml", "credential"), ("credential", "file"),
     ("toml", "file"), ("file", "env"), LAYERS, ("toml", "env")],
)  # fmt: skip
def test_precedence_environment_file_credential_toml(
    present: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    text = aliyun_table("brand_a") + ('region = "toml"\n' if "toml" in present else "")
    if "credential" in present:
        (creds / "account_brand_a_region").write_text("credential\n")
    if "file" in present:
        (tmp_path / "region").write_text("file\n")
        monkeypatch.setenv("RECEIPTD_ACCOUNT_BRAND_A_REGION_FILE", str(tmp_path / "region"))
    if "env" in present:
        monkeypatch.setenv("RECEIPTD_ACCOUNT_BRAND_A_REGION", "env")
    account = named(load(tmp_path, text), "brand_a")
    assert isinstance(account, config.AliyunAccount)
    assert account.region == present[-1]


def test_secrets_and_whole_accounts_from_credentials_and_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    for name, value in {
        "account_hw_provider": "huawei\n", "account_hw_access_key_id": "kh",
        "account_hw_secret_access_key": "from-credential\n", "account_hw_project_id": "p",
        "aliyun_access_key_secret": "flat-secret",  # a flat setting's credential, untouched
    }.items():  # fmt: skip
        (creds / name).write_text(value)
    (tmp_path / "sk").write_text("from-file\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.setenv("RECEIPTD_ACCOUNT_BRAND_A_ACCESS_KEY_SECRET_FILE", str(tmp_path / "sk"))
    settings = load(tmp_path, aliyun_table("brand_a"))
    hw, brand_a = named(settings, "hw"), named(settings, "brand_a")
    assert isinstance(hw, config.HuaweiAccount) and isinstance(brand_a, config.AliyunAccount)
    assert (hw.access_key_id, hw.secret_access_key.get_secret_value()) == ("kh", "from-credential")
    assert brand_a.access_key_secret.get_secret_value() == "from-file"
    assert settings.parts.aliyun.access_key_secret.get_secret_value() == "flat-secret"
    shown = repr(settings) + repr(settings.parts) + str(settings.masked())
    assert "from-file" not in shown and "from-credential" not in shown
    assert settings.masked()["accounts"]["hw"]["secret_access_key"] == "**********"


def test_an_unreadable_account_file_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECEIPTD_ACCOUNT_A_PROVIDER", "aliyun")
    monkeypatch.setenv("RECEIPTD_ACCOUNT_A_ACCESS_KEY_SECRET_FILE", "/nonexistent/sk")
    with pytest.raises(
        config.ConfigError,
        match=r"^invalid setting accounts.a.access_key_secret: "
        r"RECEIPTD_ACCOUNT_A_ACCESS_KEY_SECRET_FILE=/nonexistent/sk: No such file",
    ):
        config.load_settings()


def test_a_bad_account_variable_names_accounts_id_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECEIPTD_ACCOUNT_A_B_PROVIDER", "huawei")
    monkeypatch.setenv("RECEIPTD_ACCOUNT_A_B_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("RECEIPTD_ACCOUNT_A_B_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("RECEIPTD_ACCOUNT_A_B_PROJECT_ID", "p")
    monkeypatch.setenv("RECEIPTD_ACCOUNT_A_B_REQUEST_TIMEOUT", "soon")
    with pytest.raises(
        config.ConfigError, match=r"^invalid setting accounts.a_b.request_timeout: "
    ):
        config.load_settings()
    monkeypatch.setenv("RECEIPTD_ACCOUNT_A_B_REQUEST_TIMEOUT", "4")
    monkeypatch.setenv("RECEIPTD_ACCOUNT_A_B_REGION", "cn-shanghai")  # an Aliyun key
    with pytest.raises(config.ConfigError, match=r"^invalid setting accounts.a_b.region: unknown"):
        config.load_settings()


def test_a_reserved_id_from_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECEIPTD_ACCOUNT_DEFAULT_PROVIDER", "aliyun")
    with pytest.raises(config.ConfigError, match=r"^invalid setting accounts.default: reserved"):
        config.load_settings()
