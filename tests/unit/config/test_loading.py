"""Loading the settings (receiptd.config.loading): layering, secret files, and errors that
name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiptd import config

pytestmark = pytest.mark.usefixtures("clean_env")


def test_defaults() -> None:
    s = config.load_settings()
    assert s.database_url == "sqlite:///receiptd.db"
    assert s.token_mode
    assert s.http_addr == "127.0.0.1:9400"


def test_toml_tables_flatten_and_env_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "r.toml"
    toml.write_text(
        'log_level = "DEBUG"\n[aliyun]\naccess_key_id = "AK"\nqueue_prefix = "Alicom-Queue-1-"\n'
    )
    monkeypatch.setenv("RECEIPTD_LOG_LEVEL", "WARNING")
    s = config.load_settings(toml)
    assert (s.aliyun_access_key_id, s.log_level) == ("AK", "WARNING")
    assert (s.report_queue, s.up_queue) == ("Alicom-Queue-1-SmsReport", "Alicom-Queue-1-SmsUp")


def test_secret_from_file_and_credentials_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "aliyun_access_key_secret").write_text("from-credential\n")
    (creds / "status_api_token").write_text("tok-cred")
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-file\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.setenv("RECEIPTD_ALIYUN_ACCESS_KEY_SECRET_FILE", str(secret_file))
    s = config.load_settings()
    assert s.aliyun_access_key_secret.get_secret_value() == "from-file"
    assert s.status_api_token is not None
    assert s.status_api_token.get_secret_value() == "tok-cred"
    assert "from-file" not in repr(s)
    assert s.masked()["aliyun_access_key_secret"] == "**********"


def test_settings_are_immutable() -> None:
    s = config.load_settings()
    with pytest.raises(ValueError, match="frozen"):
        s.log_level = "DEBUG"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("env", "value", "key"),
    [
        ("RECEIPTD_DATABASE_URL", "nonsense", "database_url"),
        ("RECEIPTD_DATABASE_URL", "oracle://x/y", "database_url"),
        ("RECEIPTD_HTTP_ADDR", "localhost", "http_addr"),
        ("RECEIPTD_LOG_FORMAT", "xml", "log_format"),
        ("RECEIPTD_CONSUMER_BATCH_SIZE", "17", "consumer_batch_size"),
        ("RECEIPTD_CONSUMER_WAIT_SECONDS", "31", "consumer_wait_seconds"),
        ("RECEIPTD_CONSUMER_MAX_DEQUEUE", "0", "consumer_max_dequeue"),
        ("RECEIPTD_CONSUMER_MAX_DEQUEUE", "many", "consumer_max_dequeue"),
        ("RECEIPTD_COMPENSATOR_RATE_LIMIT", "0", "compensator_rate_limit"),
        ("RECEIPTD_PROVIDER_TIMEZONE", "Mars/Base", "provider_timezone"),
        ("RECEIPTD_ALIYUN_MNS_ENDPOINT", "ftp://x", "aliyun_mns_endpoint"),
    ],
)
def test_invalid_value_names_the_key(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, key: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(config.ConfigError, match=f"invalid setting {key}:"):
        config.load_settings()


def test_unknown_toml_key_is_named(tmp_path: Path) -> None:
    toml = tmp_path / "r.toml"
    toml.write_text('databse_url = "sqlite://"\n')
    with pytest.raises(config.ConfigError, match="invalid setting databse_url: unknown setting"):
        config.load_settings(toml)


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    toml = tmp_path / "r.toml"
    toml.write_text("= nope")
    with pytest.raises(config.ConfigError, match="not valid TOML"):
        config.load_settings(toml)
