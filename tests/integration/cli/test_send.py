"""`receiptd send`, `sends import`, `compensate --once` and `status` against the emulator."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from receiptd import wiring
from receiptd.cli import main
from receiptd.db.engine import create_db_engine
from receiptd.db.sends import SendStore
from receiptd.db.store import SqlStore
from receiptd_emulator import Emulator, FaultSpec, Profile


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
