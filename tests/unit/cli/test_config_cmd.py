"""`receiptd config check` (receiptd.cli.config_cmd): errors without a traceback, secrets masked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from receiptd.cli import main

pytestmark = pytest.mark.usefixtures("clean_env")


def test_cli_config_check_exits_2_without_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECEIPTD_DATABASE_URL", "nonsense")
    proc = subprocess.run(
        [sys.executable, "-m", "receiptd", "config", "check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "database_url" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_cli_config_check_masks_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECEIPTD_ALIYUN_ACCESS_KEY_SECRET", "very-secret-value")
    monkeypatch.setenv("RECEIPTD_DATABASE_URL", "postgresql+psycopg://u:dbpass123@h/db")
    proc = subprocess.run(
        [sys.executable, "-m", "receiptd", "config", "check"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "very-secret-value" not in proc.stdout
    assert "dbpass123" not in proc.stdout
    assert 'aliyun_access_key_secret = "**********"' in proc.stdout


def test_cli_config_check_lists_every_account_secrets_masked(tmp_path: Path) -> None:
    toml = tmp_path / "r.toml"
    toml.write_text(
        'serve_accounts = "brand_a"\n[aliyun]\naccess_key_id = "AK"\n'
        '[accounts.brand_a]\nprovider = "aliyun"\naccess_key_id = "A1"\n'
        'queue_prefix = "Alicom-Queue-2-"\nmns_endpoint = "https://2.mns.example"\n'
        '[accounts.hw]\nprovider = "huawei"\naccess_key_id = "H1"\nproject_id = "p"\n'
    )
    env = {
        "RECEIPTD_ACCOUNT_BRAND_A_ACCESS_KEY_SECRET": "brand-a-secret-value",
        "RECEIPTD_ACCOUNT_HW_SECRET_ACCESS_KEY": "hw-secret-value",
    }
    result = CliRunner().invoke(main, ["config", "check", "--config", str(toml)], env=env)
    assert result.exit_code == 0, result.output
    assert "secret-value" not in result.stdout
    listed = [
        json.loads(line.removeprefix("account = "))
        for line in result.stdout.splitlines()
        if line.startswith("account = ")
    ]
    rows = [(a["name"], a["provider"], a["configured"], a["served"]) for a in listed]
    assert rows == [
        ("default", "aliyun", True, False),
        ("default", "huawei", False, False),
        ("brand_a", "aliyun", True, True),
        ("hw", "huawei", True, False),
    ]
    brand_a, hw = listed[2], listed[3]
    assert (brand_a["report_queue"], brand_a["up_queue"], brand_a["mode"]) == (
        "Alicom-Queue-2-SmsReport",
        "Alicom-Queue-2-SmsUp",
        "direct",
    )
    assert (brand_a["mns_endpoint"], brand_a["dysms_endpoint"]) == (
        "https://2.mns.example",
        "https://dysmsapi.aliyuncs.com",
    )
    assert (brand_a["access_key_secret"], hw["secret_access_key"]) == ("**********",) * 2
    assert hw["endpoint"] == "https://koomessage.myhuaweicloud.cn"
    as_json = CliRunner().invoke(
        main, ["config", "check", "--json", "--config", str(toml)], env=env
    )
    values = json.loads(as_json.stdout)
    assert [a["name"] for a in values["effective_accounts"]] == [r[0] for r in rows]
    assert values["accounts"]["brand_a"]["access_key_secret"] == "**********"
    assert "secret-value" not in as_json.stdout
