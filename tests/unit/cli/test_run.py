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


ACCOUNTS_ENV = {
    "RECEIPTD_ALIYUN_ACCESS_KEY_ID": "ak",
    "RECEIPTD_ALIYUN_ACCESS_KEY_SECRET": "secret",
    "RECEIPTD_ALIYUN_QUEUE_PREFIX": "Alicom-Queue-1-",
    "RECEIPTD_ACCOUNT_BRAND_A_PROVIDER": "aliyun",
    "RECEIPTD_ACCOUNT_BRAND_A_ACCESS_KEY_ID": "ak-a",
    "RECEIPTD_ACCOUNT_BRAND_A_ACCESS_KEY_SECRET": "secret-a",
    "RECEIPTD_ACCOUNT_BRAND_A_QUEUE_PREFIX": "Alicom-Queue-2-",
    "RECEIPTD_SERVE_ACCOUNTS": "default",
}


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("brand_a,nobody", "--accounts: unknown account(s) nobody; known: default, brand_a"),
        ("Brand-A", "--accounts: not account ids"),
        (" , ", "--accounts: give at least one account id"),
    ],
)
def test_run_accounts_refuses_unknown_or_malformed_ids_with_exit_2(
    tmp_path: Path, given: str, message: str
) -> None:
    from click.testing import CliRunner

    from receiptd.cli import main

    env = ACCOUNTS_ENV | {"RECEIPTD_DATABASE_URL": f"sqlite:///{tmp_path / 'r.db'}"}
    result = CliRunner().invoke(main, ["run", "--accounts", given], env=env)
    assert result.exit_code == 2
    assert message in result.stderr


def test_run_accounts_overrides_serve_accounts(tmp_path: Path) -> None:
    """``--accounts`` replaces the setting for this process: the replica serves those alone
    (it then goes on to the database: an empty one stops it with exit 3)."""
    from click.testing import CliRunner

    from receiptd import config
    from receiptd.cli import main, run

    settings = config.Settings(
        **{k.removeprefix("RECEIPTD_").lower(): v for k, v in ACCOUNTS_ENV.items()
           if not k.startswith("RECEIPTD_ACCOUNT_")},
        accounts={"brand_a": {"provider": "aliyun", "access_key_id": "ak-a",
                              "access_key_secret": "s", "queue_prefix": "Alicom-Queue-2-"}},
    )  # fmt: skip
    assert [a.name for a in settings.parts.served_accounts] == ["default"]
    served = run.serving(settings, " brand_a ")
    assert served.serve_accounts == "brand_a"
    assert [(a.provider, a.name) for a in served.parts.served_accounts] == [("aliyun", "brand_a")]
    assert [a.name for a in run.serving(settings, "default,brand_a").parts.served_accounts] == [
        "default",
        "brand_a",
    ]

    env = ACCOUNTS_ENV | {"RECEIPTD_DATABASE_URL": f"sqlite:///{tmp_path / 'r.db'}"}
    result = CliRunner().invoke(main, ["run", "--accounts", "brand_a"], env=env)
    assert result.exit_code == 3, result.output
    assert "schema is not at the head revision" in result.stderr
