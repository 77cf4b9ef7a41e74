"""`receiptd send`, `sends import`, `compensate --once` and `status` against the emulator."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from receiptd import wiring
from receiptd.cli import main
from receiptd.db.engine import create_db_engine
from receiptd.db.models import REPORT
from receiptd.db.sends import SendStore
from receiptd.db.store import SqlStore
from receiptd_emulator import AccountInfo, Emulator, FaultSpec, Profile


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    profile = Profile.load("lossy").with_overrides(receipt_delay=(0.0, 0.05), seed=11)
    with Emulator(profile=profile) as emulator:
        yield emulator


@pytest.fixture
def env(emu: Emulator, db_url: str) -> dict[str, str]:
    info = emu.info
    return {
        "RECEIPTD_DATABASE_URL": db_url,
        "RECEIPTD_ALIYUN_ACCESS_KEY_ID": info.access_key_id,
        "RECEIPTD_ALIYUN_ACCESS_KEY_SECRET": info.access_key_secret,
        "RECEIPTD_ALIYUN_DYSMS_ENDPOINT": info.dysms_endpoint,
        "RECEIPTD_LOG_FORMAT": "console",
        "RECEIPTD_LOG_LEVEL": "WARNING",
    }


@pytest.fixture
def sends(db_url: str) -> Iterator[SendStore]:
    engine = create_db_engine(db_url)
    yield SendStore(SqlStore(engine))
    engine.dispose()


def cli(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_send_then_compensate_then_status(emu, env, sends) -> None:
    info = emu.info
    sent = cli(
        env,
        "send",
        "--phone",
        "13800000001,13800000002",
        "--sign",
        info.sign_name,
        "--template",
        info.template_code,
        "--param",
        '{"code":"1234"}',
        "--out-id",
        "o-1",
    )
    assert sent.exit_code == 0, sent.output
    biz_id = sent.output.split("BizId ")[1].split()[0]
    rows = sends.by_biz_id(biz_id)
    assert [(r["phone_number"], r["status"], r["out_id"]) for r in rows] == [
        ("13800000001", "pending", "o-1"),
        ("13800000002", "pending", "o-1"),
    ]
    threading.Event().wait(0.2)  # receipts due within 50 ms

    plan = cli(env, "compensate", "--dry-run", "--grace", "0")
    assert plan.exit_code == 0 and "2 queries (2 by BizId" in plan.output
    done = cli(env, "compensate", "--once", "--grace", "0")
    assert done.exit_code == 0, done.output
    assert "claimed:       2" in done.output and "still pending: 0" in done.output

    truth = {r.phone_number: r.status for r in emu.records() if r.biz_id == biz_id}
    status = {1: "pending", 2: "failed", 3: "delivered"}
    assert {r["phone_number"]: r["status"] for r in sends.by_biz_id(biz_id)} == {
        phone: status[s] for phone, s in truth.items()
    }
    report = json.loads(cli(env, "status", "--json").output)
    assert sum(report["sends"]["aliyun"].values()) == 2
    assert report["last_run_finished"] is not None


def test_provider_refusal_exits_4_with_code_and_message(emu, env) -> None:
    result = cli(
        env,
        "send",
        "--phone",
        "13800000001",
        "--sign",
        "NoSuchSign",
        "--template",
        emu.info.template_code,
        "--param",
        '{"code":"1"}',
    )
    assert result.exit_code == 4
    assert "isv.SMS_SIGNATURE_ILLEGAL" in result.output


@pytest.mark.parametrize("param", ["{not json", "[1, 2]"])
def test_bad_param_exits_2(emu, env, param: str) -> None:
    result = cli(
        env, "send", "--phone", "13800000001", "--sign", "S", "--template", "T", "--param", param
    )
    assert result.exit_code == 2
    assert "--param" in result.output


CSV = """provider,biz_id,phone_number,sent_at,out_id,template_code,sign_name
aliyun,100^0,13800000001,2026-11-24T09:30:00+08:00,o1,SMS_1,Sig
,100^0,13800000002,2026-11-24T01:30:00Z,,,
"""


def test_import_csv_is_idempotent(env, sends, tmp_path: Path) -> None:
    path = tmp_path / "sends.csv"
    path.write_text(CSV)
    first = cli(env, "sends", "import", str(path))
    again = cli(env, "sends", "import", str(path))
    assert first.exit_code == 0 and "2 new" in first.output
    assert again.exit_code == 0 and "0 new, 2 known" in again.output
    rows = sends.by_biz_id("100^0")
    assert [(r["phone_number"], r["out_id"], str(r["send_date"])) for r in rows] == [
        ("13800000001", "o1", "2026-11-24"),
        ("13800000002", None, "2026-11-24"),
    ]


def test_import_json_lines(env, sends, tmp_path: Path) -> None:
    path = tmp_path / "sends.jsonl"
    line = {"biz_id": "200^0", "phone_number": "13800000009", "sent_at": "2026-11-24T23:59:00Z"}
    path.write_text(json.dumps(line) + "\n\n")
    assert cli(env, "sends", "import", str(path)).exit_code == 0
    (row,) = sends.by_biz_id("200^0")
    assert str(row["send_date"]) == "2026-11-25"  # 23:59 UTC is the next day in China


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (CSV + "aliyun,101^0,13800000003,2026-11-24 09:30,,,\n", "4: sent_at needs a zone"),
        (CSV + "aliyun,,13800000003,2026-11-24T09:30:00Z,,,\n", "4: biz_id is required"),
        (CSV + "sms77,101^0,13800000003,2026-11-24T09:30:00Z,,,\n", "4: unknown provider"),
        (
            '{"biz_id": "1", "phone_number": "1", "sent_at": "2026-11-24T09:30:00Z"}\n{oops\n',
            "2: not valid JSON",
        ),
    ],
)
def test_a_bad_line_imports_nothing(env, sends, tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    result = cli(env, "sends", "import", str(path))
    assert result.exit_code == 1
    assert message in result.output
    assert sends.by_biz_id("100^0") == [] and sends.by_biz_id("1") == []


@pytest.fixture
def faults_reset(emu: Emulator) -> Iterator[None]:
    yield
    emu.set_faults("dysms", FaultSpec())


@pytest.mark.usefixtures("faults_reset")
def test_send_sms_retries_throttling_but_not_server_errors(emu, sends) -> None:
    from receiptd import api, config
    from receiptd.providers.aliyun import dysms

    info = emu.info
    settings = config.Settings(
        aliyun_access_key_id=info.access_key_id,
        aliyun_access_key_secret=info.access_key_secret,
        aliyun_dysms_endpoint=info.dysms_endpoint,
    )
    client = wiring.dysms_client(settings)
    fast = dysms.RetryPolicy(attempts=8, base=0.01, cap=0.05)
    emu.reset_calls()
    emu.set_faults("dysms", FaultSpec(throttle_rate=0.5, seed=4))  # seed 4: throttle, throttle, OK
    receipt = dysms.send_sms(
        client, ["13800000077"], info.sign_name, info.template_code, '{"code":"1"}', retry=fast
    )
    outcomes = [c.outcome for c in emu.calls("SendSms")]
    assert outcomes == ["Throttling.User", "Throttling.User", "OK"]
    assert [r.biz_id for r in emu.records()].count(receipt.biz_id) == 1

    emu.reset_calls()
    emu.set_faults("dysms", FaultSpec(error_rate=1.0))
    with pytest.raises(dysms.DysmsError) as raised:
        api.send_and_register(client, sends, "13800000078", info.sign_name, info.template_code)
    assert raised.value.kind == "unavailable"
    assert len(emu.calls("SendSms")) == 1  # a 5xx may have sent the SMS: never re-sent


def test_receipts_consumed_and_the_lost_ones_compensated(emu, env, sends) -> None:
    """lossy: ~30 % of receipts never arrive; consumer + one compensation cycle settle all."""
    info = emu.info
    env = env | {
        "RECEIPTD_ALIYUN_QUEUE_PREFIX": info.queue_prefix,
        "RECEIPTD_ALIYUN_ALICOM_MNS_ENDPOINT": info.mns_endpoint,
        "RECEIPTD_ALIYUN_DYBASE_ENDPOINT": info.dybase_endpoint,
        "RECEIPTD_CONSUMER_WAIT_SECONDS": "1",
    }
    phones = ",".join(f"1360000{i:04d}" for i in range(30))
    sent = cli(env, "send", "--phone", phones, "--sign", info.sign_name,
               "--template", info.template_code, "--param", '{"code":"9"}')  # fmt: skip
    assert sent.exit_code == 0, sent.output
    biz_id = sent.output.split("BizId ")[1].split()[0]
    # Every receipt is due within 50 ms: wait until they are all in the queue (a fixed
    # 0.3 s could pass before the emulator's scheduler thread ran on a loaded machine).
    assert emu.scheduler.wait_idle()

    assert cli(env, "consume", "--until-idle", "--queue", "report").exit_code == 0
    assert cli(env, "compensate", "--once", "--grace", "0").exit_code == 0

    truth = {r.phone_number: r for r in emu.records() if r.biz_id == biz_id}
    rows = {r["phone_number"]: r for r in sends.by_biz_id(biz_id)}
    status = {2: "failed", 3: "delivered"}
    assert set(rows) == set(truth)
    for phone, record in truth.items():
        row = rows[phone]
        assert (row["status"], row["err_code"]) == (status[record.status], record.err_code)
        assert row["settled_by"] == ("query" if record.receipt_fate == "lost" else "receipt")
    assert {r["settled_by"] for r in rows.values()} == {"query", "receipt"}


def test_compensate_needs_once_and_a_provider(env) -> None:
    assert cli(env, "compensate").exit_code == 2
    no_provider = env | {"RECEIPTD_ALIYUN_ACCESS_KEY_ID": ""}
    result = cli(no_provider, "compensate", "--once")
    assert result.exit_code == 2 and "no provider is configured" in result.output


def test_status_text_with_nothing_registered(env) -> None:
    result = cli(env, "status")
    assert result.exit_code == 0
    assert "no sends registered" in result.output and "last compensator run: never" in result.output


# --- accounts (issue 23) ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def brand_b(emu: Emulator) -> AccountInfo:
    """A second customer account on the emulator: its own keys, sends and call log."""
    return emu.add_account("brand_b")


@pytest.fixture
def accounts_env(env: dict[str, str], brand_b: AccountInfo) -> dict[str, str]:
    """The default account (the flat settings) plus ``brand_b`` and a Huawei account ``hw``."""
    return env | {
        "RECEIPTD_ACCOUNT_BRAND_B_PROVIDER": "aliyun",
        "RECEIPTD_ACCOUNT_BRAND_B_ACCESS_KEY_ID": brand_b.access_key_id,
        "RECEIPTD_ACCOUNT_BRAND_B_ACCESS_KEY_SECRET": brand_b.access_key_secret,
        "RECEIPTD_ACCOUNT_BRAND_B_QUEUE_PREFIX": brand_b.queue_prefix,
        "RECEIPTD_ACCOUNT_HW_PROVIDER": "huawei",
        "RECEIPTD_ACCOUNT_HW_ACCESS_KEY_ID": "hw-ak",
        "RECEIPTD_ACCOUNT_HW_SECRET_ACCESS_KEY": "hw-sk",
        "RECEIPTD_ACCOUNT_HW_PROJECT_ID": "hw-project",
    }


def send_args(info: AccountInfo, phone: str, *extra: str) -> list[str]:
    return ["send", "--phone", phone, "--sign", info.sign_name, "--template", info.template_code,
            "--param", '{"code":"1"}', *extra]  # fmt: skip


def test_send_with_an_account_uses_its_keys_and_registers_under_it(
    emu, accounts_env, sends, brand_b
) -> None:
    emu.reset_calls()
    sent = cli(accounts_env, *send_args(brand_b, "13800000031", "--account", "brand_b"))
    assert sent.exit_code == 0, sent.output
    biz_id = sent.output.split("BizId ")[1].split()[0]
    assert [r.biz_id for r in emu.records("brand_b")].count(biz_id) == 1
    assert biz_id not in {r.biz_id for r in emu.records()}  # not the default account's send
    assert [c.outcome for c in emu.calls("SendSms", account="brand_b")] == ["OK"]
    assert emu.calls("SendSms", account="default") == []
    assert [(r["account"], r["status"]) for r in sends.by_biz_id(biz_id)] == [
        ("brand_b", "pending")
    ]

    default = cli(accounts_env, *send_args(emu.info, "13800000032"))  # no --account: default
    assert default.exit_code == 0, default.output
    (row,) = sends.by_biz_id(default.output.split("BizId ")[1].split()[0])
    assert row["account"] == "default"


@pytest.mark.parametrize(
    ("account", "message"),
    [
        ("nobody", "unknown aliyun account 'nobody' (configured: brand_b, default)"),
        ("hw", "account 'hw' is a Huawei account"),
        ("Brand-B", "is not an account id"),
    ],
)
def test_send_with_an_account_that_cannot_send_exits_2_naming_it(
    emu, accounts_env, account: str, message: str
) -> None:
    emu.reset_calls()
    result = cli(accounts_env, *send_args(emu.info, "13800000033", "--account", account))
    assert result.exit_code == 2
    assert message in result.output
    assert emu.calls("SendSms") == []


def test_import_with_an_account_column(accounts_env, sends, tmp_path: Path) -> None:
    path = tmp_path / "sends.csv"
    path.write_text(
        "provider,biz_id,phone_number,sent_at,account\n"
        "aliyun,300^0,13800000001,2026-11-24T09:30:00+08:00,brand_b\n"
        "aliyun,300^0,13800000001,2026-11-24T09:30:00+08:00,\n"
        "huawei,t-1,13800000002,2026-11-24T09:30:00+08:00,hw\n"
    )
    result = cli(accounts_env, "sends", "import", str(path))
    assert result.exit_code == 0, result.output
    assert "3 new" in result.output
    assert sorted(r["account"] for r in sends.by_biz_id("300^0")) == ["brand_b", "default"]
    assert [r["account"] for r in sends.by_biz_id("300^0", account="brand_b")] == ["brand_b"]
    (huawei,) = sends.by_biz_id("t-1")
    assert (huawei["provider"], huawei["account"]) == ("huawei", "hw")


def test_import_of_an_account_not_configured_names_the_line(
    accounts_env, sends, tmp_path: Path
) -> None:
    path = tmp_path / "sends.jsonl"
    lines = [
        {"biz_id": "301^0", "phone_number": "1", "sent_at": "2026-11-24T01:30:00Z"},
        {"biz_id": "301^0", "phone_number": "2", "sent_at": "2026-11-24T01:30:00Z",
         "account": "brand_c"},
    ]  # fmt: skip
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = cli(accounts_env, "sends", "import", str(path))
    assert result.exit_code == 1
    assert f"{path}:2: unknown aliyun account 'brand_c'" in result.output
    assert sends.by_biz_id("301^0") == []


def test_status_per_account_and_of_one_account(accounts_env, tmp_path: Path) -> None:
    path = tmp_path / "sends.csv"
    path.write_text(
        "biz_id,phone_number,sent_at,account\n"
        "400^0,13800000001,2026-11-24T01:30:00Z,brand_b\n"
        "400^0,13800000002,2026-11-24T01:30:00Z,brand_b\n"
        "401^0,13800000003,2026-11-24T01:30:00Z,default\n"
    )
    assert cli(accounts_env, "sends", "import", str(path)).exit_code == 0
    report = json.loads(cli(accounts_env, "status", "--json").output)
    assert report["sends"] == {"aliyun": {"pending": 3}}  # every account, as before
    assert [(a["provider"], a["account"], a["sends"]) for a in report["accounts"]] == [
        ("aliyun", "brand_b", {"pending": 2}),
        ("aliyun", "default", {"pending": 1}),
    ]
    assert all(a["oldest_pending_seconds"] > 0 for a in report["accounts"])
    one = json.loads(cli(accounts_env, "status", "--json", "--account", "brand_b").output)
    assert one["sends"] == {"aliyun": {"pending": 2}}
    assert [a["account"] for a in one["accounts"]] == ["brand_b"]

    text = cli(accounts_env, "status").output.splitlines()
    assert text[:3] == [
        "aliyun: pending=3",
        "  aliyun/brand_b: pending=2",
        "  aliyun/default: pending=1",
    ]
    assert any(line.startswith("aliyun/brand_b: oldest pending ") for line in text)
    only = cli(accounts_env, "status", "--account", "default").output
    assert "aliyun: pending=1" in only and "brand_b" not in only


def test_compensate_one_account_plans_and_runs_that_account_alone(
    emu, accounts_env, sends, brand_b
) -> None:
    sent_b = cli(accounts_env, *send_args(brand_b, "13800000041", "--account", "brand_b"))
    sent_d = cli(accounts_env, *send_args(emu.info, "13800000042"))
    assert sent_b.exit_code == 0 and sent_d.exit_code == 0
    biz_b = sent_b.output.split("BizId ")[1].split()[0]
    biz_d = sent_d.output.split("BizId ")[1].split()[0]
    threading.Event().wait(0.2)  # receipts due within 50 ms: the records are final

    plan = cli(accounts_env, "compensate", "--dry-run", "--grace", "0")
    assert plan.exit_code == 0, plan.output
    assert "aliyun/brand_b: 1 due" in plan.output and "aliyun/default: 1 due" in plan.output
    plan_b = cli(accounts_env, "compensate", "--dry-run", "--grace", "0", "--account", "brand_b")
    assert "aliyun/brand_b: 1 due" in plan_b.output and "aliyun/default" not in plan_b.output

    emu.reset_calls()
    done = cli(accounts_env, "compensate", "--once", "--grace", "0", "--account", "brand_b")
    assert done.exit_code == 0, done.output
    assert "claimed:       1" in done.output
    assert len(emu.calls("QuerySendDetails", account="brand_b")) == 1
    assert emu.calls("QuerySendDetails", account="default") == []
    (truth,) = [r for r in emu.records("brand_b") if r.biz_id == biz_b]
    status = {1: "pending", 2: "failed", 3: "delivered"}
    assert sends.by_biz_id(biz_b)[0]["status"] == status[truth.status]
    assert sends.by_biz_id(biz_d)[0]["status"] == "pending"  # the other account's: untouched
    refused = cli(accounts_env, "compensate", "--once", "--account", "nobody")
    assert refused.exit_code == 2 and "unknown account 'nobody'" in refused.output


def test_consume_one_account_reads_that_accounts_queues_alone(
    emu, accounts_env, db_url, brand_b
) -> None:
    env = accounts_env | {
        "RECEIPTD_ALIYUN_QUEUE_PREFIX": emu.info.queue_prefix,
        "RECEIPTD_ALIYUN_ALICOM_MNS_ENDPOINT": emu.info.mns_endpoint,
        "RECEIPTD_ALIYUN_DYBASE_ENDPOINT": emu.info.dybase_endpoint,
        "RECEIPTD_CONSUMER_WAIT_SECONDS": "1",
    }
    receipt = {"biz_id": "800^0", "phone_number": "13800000051", "success": True,
               "send_time": "2026-11-25 16:00:00", "report_time": "2026-11-25 16:00:05",
               "err_code": "DELIVERED", "err_msg": "ok", "sms_size": "1"}  # fmt: skip
    emu.enqueue_report(receipt, account="brand_b")
    emu.enqueue_report(receipt | {"biz_id": "801^0"})  # the default account's
    default_before = emu.queue_depth("report")["visible"]

    result = cli(env, "consume", "--until-idle", "--queue", "report", "--account", "brand_b")
    assert result.exit_code == 0, result.output
    # (brand_b's queue also holds the receipts of the earlier tests' brand_b sends)
    assert emu.queue_depth("report", account="brand_b")["visible"] == 0
    assert emu.queue_depth("report")["visible"] == default_before  # not read
    engine = create_db_engine(db_url)
    try:
        with engine.connect() as conn:
            stored = conn.execute(sa.select(REPORT.c.biz_id, REPORT.c.account)).all()
    finally:
        engine.dispose()
    assert ("800^0", "brand_b") in stored and "801^0" not in {b for b, _ in stored}
    assert {account for _, account in stored} == {"brand_b"}

    hw = cli(env, "consume", "--until-idle", "--account", "hw")
    assert hw.exit_code == 2 and "unknown aliyun account 'hw'" in hw.output
