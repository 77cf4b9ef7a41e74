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


@pytest.mark.parametrize(
    ("given", "extra", "message"),
    [
        ("consumer,everything", {}, "--roles: unknown role(s) everything; known: consumer"),
        (" , ", {}, "--roles: give at least one role"),
        ("push", {}, "invalid setting push_addr: not set (role push is named)"),
        ("webhooks", {}, "invalid setting webhook_urls: no webhook endpoint is configured"),
        (
            "worker",
            {"RECEIPTD_COMPENSATOR_ENABLED": "false"},
            "invalid setting compensator_enabled: false (role compensator is named)",
        ),
        (
            "consumer",
            {"RECEIPTD_CONSUMER_REPORT_THREADS": "0", "RECEIPTD_CONSUMER_UP_THREADS": "0"},
            "invalid setting aliyun_access_key_id: no Aliyun account served here has a queue",
        ),
        # One process writes a SQLite file: a part of the roles is refused there.
        ("consumer", {}, "invalid setting roles: consumer is only part of the configured roles"),
    ],
)
def test_run_roles_refuses_unknown_unconfigured_or_split_on_sqlite_with_exit_2(
    tmp_path: Path, given: str, extra: dict[str, str], message: str
) -> None:
    """Before the database is asked (the SQLite file here has no schema: exit 3 otherwise)."""
    from click.testing import CliRunner

    from receiptd.cli import main

    env = ACCOUNTS_ENV | {"RECEIPTD_DATABASE_URL": f"sqlite:///{tmp_path / 'r.db'}"} | extra
    result = CliRunner().invoke(main, ["run", "--roles", given], env=env)
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_run_roles_setting_is_checked_at_load_naming_the_key(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from receiptd.cli import main

    env = ACCOUNTS_ENV | {
        "RECEIPTD_DATABASE_URL": f"sqlite:///{tmp_path / 'r.db'}",
        "RECEIPTD_ROLES": "consumer,pusher",
    }
    result = CliRunner().invoke(main, ["run"], env=env)
    assert result.exit_code == 2
    assert "roles" in result.stderr and "unknown role(s) pusher" in result.stderr


def test_every_role_named_on_sqlite_is_not_a_split(tmp_path: Path) -> None:
    """Naming every configured role is no split: it goes on to the database (exit 3 here)."""
    from click.testing import CliRunner

    from receiptd.cli import main

    env = ACCOUNTS_ENV | {"RECEIPTD_DATABASE_URL": f"sqlite:///{tmp_path / 'r.db'}"}
    result = CliRunner().invoke(main, ["run", "--roles", "consumer,worker"], env=env)
    assert result.exit_code == 3, result.output
