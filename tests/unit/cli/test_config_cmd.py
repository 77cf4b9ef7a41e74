"""`receiptd config check` (receiptd.cli.config_cmd): errors without a traceback, secrets masked."""

from __future__ import annotations

import subprocess
import sys

import pytest

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
