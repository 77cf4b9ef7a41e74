"""`receiptd run` (receiptd.cli.run) refuses to start without a provider."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("clean_env")


def test_run_without_any_provider_stops_with_exit_2(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from receiptd.cli import main

    env = {"RECEIPTD_DATABASE_URL": f"sqlite:///{tmp_path / 'r.db'}"}
    result = CliRunner().invoke(main, ["run"], env=env)
    assert result.exit_code == 2
    assert "invalid setting aliyun_access_key_id: no provider is configured" in result.stderr
