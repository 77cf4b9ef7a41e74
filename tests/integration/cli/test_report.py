"""`receiptd report` end to end on every backend, on a fixed clock: the table, the JSON, the
account filter, the provider's calendar day, and the exits of bad input and a dead database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from receiptd import domain
from receiptd.cli import main
from receiptd.cli import report as report_cmd
from receiptd.db.models import REPORT, SEND

NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
SENT = datetime(2026, 12, 1, 17, 0, tzinfo=UTC)  # 01:00 on 2 December in Shanghai


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report_cmd, "utc_now", lambda: NOW)


def send(
    biz_id: str, status: str, settled_by: str | None, account: str = "default"
) -> dict[str, Any]:
    return {
        "provider": "aliyun", "account": account, "biz_id": biz_id,
        "phone_number": "13800000000", "template_code": "SMS_1", "sent_at": SENT,
        "send_date": domain.provider_send_date(SENT), "status": status,
        "settled_by": settled_by, "settled_at": None if settled_by is None else SENT,
        "check_count": 0, "created_at": SENT, "updated_at": SENT,
    }  # fmt: skip


def receipt(biz_id: str, seconds: float, account: str = "default") -> dict[str, Any]:
    return {
        "account": account, "biz_id": biz_id, "phone_number": "13800000000",
        "success": True, "send_time": SENT, "report_time": SENT + timedelta(seconds=seconds),
        "received_at": SENT + timedelta(seconds=seconds + 1),
    }  # fmt: skip


@pytest.fixture
def seeded(engine: sa.Engine) -> Iterator[sa.Engine]:
    with engine.begin() as conn:
        conn.execute(
            SEND.insert(),
            [
                send("a", "delivered", "receipt"),
                send("b", "delivered", "receipt"),
                send("c", "delivered", "query"),
                send("d", "failed", "receipt"),
                send("e", "pending", None),
                send("s", "delivered", "receipt", account="shop"),
            ],
        )
        conn.execute(
            REPORT.insert(),
            [receipt("a", 2), receipt("b", 4), receipt("d", 90), receipt("s", 3, "shop")],
        )
    yield engine


def run(engine: sa.Engine, *args: str, **env: str) -> tuple[int, str]:
    env = {"RECEIPTD_DATABASE_URL": engine.url.render_as_string(hide_password=False), **env}
    result = CliRunner().invoke(main, ["report", *args], env=env)
    return result.exit_code, result.output


def test_the_table(seeded: sa.Engine) -> None:
    code, out = run(seeded, "--since", "1d", "--by", "account")
    assert code == 0, out
    assert out.splitlines() == [
        "window 1d, since 2026-12-01 08:00 UTC: sends settled in it, and sends made in it still "
        "pending",
        "delivery time (report_time - send_time): all 4 receipts received in it",
        "account  sends  delivered  failed  expired  pending  by receipt  by query  by expiry  "
        " p50    p90  timed",
        "default      5      60.0%   20.0%     0.0%    20.0%       75.0%     25.0%       0.0%  "
        "4.0s  1m30s      3",
        "shop         1     100.0%    0.0%     0.0%     0.0%      100.0%      0.0%       0.0%  "
        "3.0s   3.0s      1",
        "all          6      66.7%   16.7%     0.0%    16.7%       80.0%     20.0%       0.0%  "
        "3.0s  1m30s      4",
    ]


def test_json_and_one_account(seeded: sa.Engine) -> None:
    code, out = run(seeded, "--since", "1d", "--by", "provider", "--json", "--account", "shop")
    assert code == 0, out
    (only,) = json.loads(out)
    assert (only["provider"], only["sends"], only["delivered"]) == ("aliyun", 1, 1)
    assert only["delivery_seconds"] == {"p50": 3.0, "p90": 3.0, "samples": 1}


def test_the_day_is_the_configured_provider_timezones(seeded: sa.Engine) -> None:
    """Sends carry the day registration wrote (Shanghai); receipts' days follow the setting."""
    code, out = run(seeded, "--by", "day", "--json")
    assert code == 0, out
    assert [(g["day"], g["sends"], g["delivery_seconds"]["samples"]) for g in json.loads(out)] == [
        ("2026-12-02", 6, 4)
    ]
    _, out = run(seeded, "--by", "day", "--json", RECEIPTD_PROVIDER_TIMEZONE="UTC")
    assert [(g["day"], g["sends"], g["delivery_seconds"]["samples"]) for g in json.loads(out)] == [
        ("2026-12-01", 0, 4),
        ("2026-12-02", 6, 0),
    ]


def test_a_window_the_sends_fall_out_of(seeded: sa.Engine) -> None:
    code, out = run(seeded, "--since", "1h")
    assert (code, out.splitlines()[-1]) == (0, "no sends or receipts in the window")


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--since", "1y"], "'--since': '1y' is not a window"),
        (["--since", "0d"], "'--since'"),
        (["--by", "week"], "'--by'"),
        (["--account", "Not An Id"], "'--account'"),
    ],
)
def test_bad_input_exits_2_naming_the_option(
    seeded: sa.Engine, args: list[str], named: str
) -> None:
    code, out = run(seeded, *args)
    assert code == 2 and named in out, out


def test_an_unreachable_database_exits_3(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing' / 'receiptd.db'}"
    result = CliRunner().invoke(main, ["report"], env={"RECEIPTD_DATABASE_URL": url})
    assert result.exit_code == 3, result.output
    assert "database unreachable" in result.output
