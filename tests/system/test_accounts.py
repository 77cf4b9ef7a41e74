"""Several provider accounts in `receiptd run` (issue 23): real daemons against the emulator.

* Two Alibaba accounts (the flat ``[aliyun]`` one, ``default``, and ``[accounts.brand_b]``)
  and the flat ``[huawei]`` one in one daemon, with lost receipts: every send settles to its
  own account's outcome, the same (BizId, phone) in both Alibaba accounts too, and the
  emulator's call log shows every QuerySendDetails asked by the account that sent, none by
  another (the emulator answers another account's BizId "no record", as Alibaba does).
* Two replicas on one database, one started with ``--accounts brand_b``.
* A database of single-account rows (migration 0004) upgraded in place and consumed on.

The compensator runs every 2 s with an 8 s grace, past the emulator's longest receipt delay
(5 s): every answer it gets is final, so a send is asked once and settled. Waiting is on the
database and the emulator (``Daemon.wait_until``), never a sleep.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from receiptd import domain
from receiptd.db import migrate
from receiptd.db.models import DEAD, INBOUND, REPORT, SEND
from receiptd_emulator import Emulator, SeedSend
from receiptd_emulator.koomessage_store import SendDetail
from tests.conftest import (
    BACKENDS,
    create_server_database,
    drop_server_database,
    emptied_database,
    unavailable,
)
from tests.integration.test_migrations import receiptd as cli  # receiptd ARGS on one database
from tests.system.daemon import Daemon, daemon_env, free_port
from tests.system.reliability import Db

pytestmark = pytest.mark.system

TOKEN = "accounts-status-token-0123456789"
STATUS = {3: "delivered", 2: "failed"}  # QuerySendDetails SendStatus of a final send
Key = tuple[str, str, str]  # (account, biz_id, phone_number)
ALIYUN = ("default", "brand_b")


# --- settings, sends and the daemon's HTTP API ----------------------------------------------


def settings_file(path: Path, emu: Emulator, *, huawei: bool = False) -> Path:
    """TOML: ``default`` as the flat ``[aliyun]`` (and ``[huawei]``) settings, ``brand_b`` as
    ``[accounts.brand_b]`` with its own keys and queue prefix; both in token mode."""
    info, brand_b, q = emu.info, emu.account("brand_b"), json.dumps
    text = f"""
[aliyun]
access_key_id = {q(info.access_key_id)}
access_key_secret = {q(info.access_key_secret)}
queue_prefix = {q(info.queue_prefix)}
alicom_mns_endpoint = {q(info.mns_endpoint)}
dybase_endpoint = {q(info.dybase_endpoint)}
dysms_endpoint = {q(info.dysms_endpoint)}

[accounts.brand_b]
provider = "aliyun"
access_key_id = {q(brand_b.access_key_id)}
access_key_secret = {q(brand_b.access_key_secret)}
queue_prefix = {q(brand_b.queue_prefix)}
"""
    if huawei:
        default = emu.account()
        text += f"""
[huawei]
access_key_id = {q(default.huawei_access_key_id)}
secret_access_key = {q(default.huawei_secret_access_key)}
endpoint = {q(info.koomessage_endpoint)}
"""
    path.write_text(text)
    return path


def run_env(emu: Emulator, db_url: str, **extra: str) -> dict[str, str]:
    """A daemon's environment without the flat RECEIPTD_ALIYUN_* (the TOML file has them)."""
    env = daemon_env(
        emu,
        db_url,
        free_port(),
        RECEIPTD_STATUS_API_TOKEN=TOKEN,
        RECEIPTD_COMPENSATOR_INTERVAL="2",
        RECEIPTD_COMPENSATOR_GRACE="8",  # > the emulator's receipt delay (5 s at most)
        **extra,
    )
    return {k: v for k, v in env.items() if not k.startswith("RECEIPTD_ALIYUN_")}


def v1(daemon: Daemon, path: str, body: Any = None) -> tuple[int, Any]:
    """A /v1 request with the status token: GET, or POST of ``body`` as JSON."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{daemon.port}{path}",
        data=data,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - local
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def seed(
    emu: Emulator, account: str, sends: Sequence[tuple[str, str, str, str]], sent: datetime
) -> list[dict[str, str]]:
    """Seed (biz_id, phone, outcome, receipt) sends in ``account``; their registration records."""
    info = emu.account(account)
    emu.seed_sends(
        [
            SeedSend(
                phone=phone,
                sign_name=info.sign_name,
                template_code=info.template_code,
                send_time=sent,
                outcome=outcome,
                receipt=receipt,
                receipt_delay=1.0,
                biz_id=biz_id,
            )
            for biz_id, phone, outcome, receipt in sends
        ],
        account=None if account == "default" else account,
    )
    return [
        {"biz_id": b, "phone_number": p, "sent_at": sent.isoformat(), "account": account}
        for b, p, _, _ in sends
    ]


def register(daemon: Daemon, records: list[dict[str, str]]) -> None:
    code, answer = v1(daemon, "/v1/sends", records)
    assert (code, answer) == (200, {"received": len(records), "registered": len(records)})


def truth(emu: Emulator, accounts: Sequence[str]) -> dict[Key, str]:
    """What each Alibaba account's provider knows: (account, biz_id, phone) -> status, final
    once every receipt time has passed (``records()`` reads the real time)."""
    return {
        (a, r.biz_id, r.phone_number): STATUS.get(r.status, "pending")
        for a in accounts
        for r in emu.records(None if a == "default" else a)
    }


def lost(emu: Emulator, accounts: Sequence[str]) -> set[Key]:
    """The sends whose receipts never come: only a query can settle them."""
    return {
        (a, r.biz_id, r.phone_number)
        for a in accounts
        for r in emu.records(None if a == "default" else a)
        if r.receipt_fate == "lost"
    }


def sends(db: Db, provider: str = "aliyun") -> dict[Key, dict[str, Any]]:
    rows = db.sends()
    return {
        (r["account"], r["biz_id"], r["phone_number"]): r for r in rows if r["provider"] == provider
    }


def reports(db: Db) -> list[tuple[str, str, str, bool]]:
    with db.engine.connect() as conn:
        query = sa.select(
            REPORT.c.account, REPORT.c.biz_id, REPORT.c.phone_number, REPORT.c.success
        )
        return [tuple(r) for r in conn.execute(query)]


def asked(emu: Emulator) -> Counter[Key]:
    """QuerySendDetails calls by (signing account, BizId, phone)."""
    return Counter(
        (c.account, str(c.params.get("BizId")), str(c.params.get("PhoneNumber")))
        for c in emu.calls("QuerySendDetails")
    )


def settled(db: Db, provider: str | None = None) -> bool:
    return all(s["status"] != "pending" for s in db.sends() if provider in (None, s["provider"]))


def stop(daemon: Daemon) -> None:
    code, _ = daemon.terminate()
    assert code == 0, daemon.log()[-3000:]
    errors = [e for e in daemon.events() if e.get("level") in ("error", "critical")]
    assert errors == [], errors


@pytest.fixture
def db(db_url: str) -> Iterator[Db]:
    handle = Db(db_url)
    yield handle
    handle.close()


# --- 1. two Alibaba accounts and one Huawei account in one daemon ---------------------------

SHARED_LOST = ("800000000000001^0", "13900000001")  # receipts lost in both accounts
SHARED_QUEUED = ("800000000000002^0", "13900000002")  # receipts queued in both accounts


def seed_both(emu: Emulator, sent: datetime) -> list[dict[str, str]]:
    """The shared keys with opposite outcomes per account, and lost sends of each alone."""
    default = seed(
        emu,
        "default",
        [
            (*SHARED_LOST, "delivered", "lost"),
            (*SHARED_QUEUED, "failed", "queue"),
            *[(f"81000000000000{i}^0", f"1370000000{i}", "delivered", "lost") for i in range(4)],
        ],
        sent,
    )
    brand_b = seed(
        emu,
        "brand_b",
        [
            (*SHARED_LOST, "failed", "lost"),
            (*SHARED_QUEUED, "delivered", "queue"),
            *[(f"82000000000000{i}^0", f"1380000000{i}", "failed", "lost") for i in range(4)],
        ],
        sent,
    )
    return default + brand_b


def seed_huawei(emu: Emulator, sent: datetime) -> tuple[list[dict[str, str]], dict[Key, str]]:
    details = [
        SendDetail(f"msg-{i}", f"task-{i}", f"1310000000{i}", sent, status, result_code=code)
        for i, (status, code) in enumerate([("success", None), ("fail", "E200015")] * 2)
    ]
    emu.seed_koomessage(details)
    records = [  # no account: the default one
        {
            "provider": "huawei",
            "biz_id": d.task_id,
            "phone_number": d.cust_flag,
            "sent_at": sent.isoformat(),
        }
        for d in details
    ]
    expected = {
        ("default", d.task_id, d.cust_flag): "delivered" if d.send_status == "success" else "failed"
        for d in details
    }
    return records, expected


def real_sends(config: Path, db_url: str, emu: Emulator) -> None:
    """`receiptd send --account` with each Alibaba account's keys, 6 recipients each."""
    env = {k: v for k, v in run_env(emu, db_url).items() if k != "RECEIPTD_HTTP_ADDR"}
    for account, prefix in (("default", "1350000000"), ("brand_b", "1360000000")):
        info = emu.account(None if account == "default" else account)
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "receiptd",
                "send",
                "--config",
                str(config),
                "--account",
                account,
                "--phone",
                ",".join(f"{prefix}{i}" for i in range(6)),
                "--sign",
                info.sign_name,
                "--template",
                info.template_code,
                "--param",
                '{"code": "1234", "name": "x", "order": "1"}',
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, out.stderr


@pytest.mark.timeout(120)
def test_two_aliyun_accounts_and_a_huawei_one_settle_each_to_its_own_outcome(
    db_url: str, db: Db, tmp_path: Path
) -> None:
    with Emulator(profile="lossy") as emu:
        emu.add_account("brand_b")
        config = settings_file(tmp_path / "receiptd.toml", emu, huawei=True)
        real_sends(config, db_url, emu)
        sent = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
        records = seed_both(emu, sent)
        huawei, huawei_truth = seed_huawei(emu, sent)
        lost_keys = lost(emu, ALIYUN)
        queued = len(truth(emu, ALIYUN)) - len(lost_keys)  # the receipts that reach a queue
        daemon = Daemon(run_env(emu, db_url), tmp_path / "receiptd.log", "--config", str(config))
        try:
            daemon.wait_until(daemon.ready, timeout=30)
            register(daemon, records + huawei)
            daemon.wait_until(lambda: settled(db) and len(reports(db)) == queued, 60)
            shared = v1(daemon, f"/v1/sends/{SHARED_LOST[0]}")
            narrowed = v1(daemon, f"/v1/sends/{SHARED_LOST[0]}?account=brand_b")
            stop(daemon)
        finally:
            daemon.kill()
        calls = asked(emu)
        koomessage = emu.calls("koomessage")
        receives = emu.calls("MNS.BatchReceiveMessage")
        queues = {a: emu.account(a).report_queue for a in ALIYUN}
        aliyun_truth = truth(emu, ALIYUN)  # every receipt time has passed: all final

    rows = sends(db)
    by = Counter((k[0], r["settled_by"]) for k, r in rows.items())
    print(
        f"\naccounts: settled {dict(by)}; QuerySendDetails by account "
        f"{dict(Counter(k[0] for k in calls.elements()))}; {len(koomessage)} KooMessage calls"
    )
    assert {k: r["status"] for k, r in rows.items()} == aliyun_truth
    assert {k: r["status"] for k, r in sends(db, "huawei").items()} == huawei_truth
    assert lost_keys and all(rows[k]["settled_by"] == "query" for k in lost_keys)
    assert {(a, b, p, s) for a, b, p, s in reports(db)} == {
        (*k, v == "delivered") for k, v in aliyun_truth.items() if k not in lost_keys
    }
    # The same (BizId, phone) in both accounts: two rows, each with its account's outcome.
    assert shared[0] == 200
    assert [(r["account"], r["status"]) for r in shared[1]["recipients"]] == [
        ("brand_b", "failed"),
        ("default", "delivered"),
    ]
    assert [(r["account"], r["status"]) for r in narrowed[1]["recipients"]] == [
        ("brand_b", "failed")
    ]
    # Every query went to the account that sent; each lost send was asked once, by its own.
    assert set(calls) <= set(aliyun_truth), set(calls) - set(aliyun_truth)
    assert all(calls[k] == 1 for k in lost_keys), calls
    assert ("default", *SHARED_LOST) in calls and ("brand_b", *SHARED_LOST) in calls
    assert koomessage and {c.account for c in koomessage} == {"default"}
    for account, queue in queues.items():
        on_queue = {c.account for c in receives if c.params.get("queue") == queue}
        assert on_queue == {account}, (queue, on_queue)


# --- 2. two replicas on one database, one serving brand_b only -------------------------------

# The calls a replica makes for an account, by metric; none may name an account it does not serve.
ACCOUNT_METRICS = (
    "receiptd_compensator_calls_total",
    "receiptd_token_refreshes_total",
    "receiptd_receipts_total",
    "receiptd_sends_settled_total",
)


@pytest.fixture(params=["postgresql", "mariadb"])
def server_db(
    request: pytest.FixtureRequest,
    database_urls: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, Db]]:
    """Two replicas need a database with more than one writer: SQLite runs a single replica
    (docs/operations.md), so this scenario is PostgreSQL's and MariaDB's."""
    url = emptied_database(request.param, database_urls, tmp_path_factory)
    handle = Db(url)
    yield url, handle
    handle.close()


def lost_and_queued(prefix: str, phone: str, outcome: str) -> list[tuple[str, str, str, str]]:
    """Four sends whose receipts are lost and four whose receipts reach the queue."""
    return [
        (f"{prefix}{i:013d}^0", f"{phone}{i:04d}", outcome, "lost" if i < 4 else "queue")
        for i in range(8)
    ]


def metric_accounts(daemon: Daemon) -> set[str]:
    """The accounts named by the per-account call and receipt metrics of one replica."""
    code, body = daemon.get("/metrics")
    assert code == 200
    found = set()
    for line in body.decode().splitlines():
        if line.startswith(ACCOUNT_METRICS) and 'account="' in line:
            found.add(line.split('account="', 1)[1].split('"', 1)[0])
    return found


@pytest.mark.timeout(150)
def test_a_replica_serving_brand_b_only_beside_one_serving_all(
    server_db: tuple[str, Db], tmp_path: Path
) -> None:
    url, db = server_db
    with Emulator(profile="default") as emu:
        emu.add_account("brand_b")
        config = settings_file(tmp_path / "receiptd.toml", emu)
        sent = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
        first = seed(emu, "default", lost_and_queued("84", "1370000", "delivered"), sent)
        first += seed(emu, "brand_b", lost_and_queued("84", "1370000", "failed"), sent)
        only_b = Daemon(
            run_env(emu, url),
            tmp_path / "only-b.log",
            "--config",
            str(config),
            "--accounts",
            "brand_b",
        )
        every = None
        try:
            # Alone, the brand_b replica settles brand_b's sends and never touches default's.
            only_b.wait_until(only_b.ready, timeout=30)
            register(only_b, first)
            only_b.wait_until(lambda: settled_in(db, "brand_b") and len(reports(db)) == 4, 60)
            assert emu.calls(account="default") == []
            assert {s["status"] for s in db.sends() if s["account"] == "default"} == {"pending"}
            assert emu.queue_depth("report")["visible"] == 4  # default's receipts wait
            # Beside it, a replica serving all: new brand_b sends, default's backlog.
            more = seed(emu, "brand_b", lost_and_queued("85", "1380000", "delivered"), sent)
            every = Daemon(run_env(emu, url), tmp_path / "every.log", "--config", str(config))
            every.wait_until(every.ready, timeout=30)
            register(every, more)
            every.wait_until(lambda: settled(db) and len(reports(db)) == 12, 60)
            served_by_b, served_by_all = metric_accounts(only_b), metric_accounts(every)
            stop(only_b)
            stop(every)
        finally:
            only_b.kill()
            if every is not None:
                every.kill()
        calls = asked(emu)
        expected = truth(emu, ALIYUN)
        lost_keys = lost(emu, ALIYUN)

    print(
        f"\nreplicas: QuerySendDetails {dict(Counter(k[0] for k in calls.elements()))}; "
        f"metrics name {served_by_b} (brand_b only) and {served_by_all} (all)"
    )
    assert {k: r["status"] for k, r in sends(db).items()} == expected
    assert set(calls) <= set(expected) and lost_keys <= set(calls)
    assert max(calls.values()) == 1  # no send asked twice, by either replica
    keys = [(a, b, p) for a, b, p, _ in reports(db)]
    assert len(keys) == len(set(keys)) == 12  # every queued receipt stored once, per account
    assert served_by_b == {"brand_b"}
    assert "default" in served_by_all


def settled_in(db: Db, account: str) -> bool:
    return all(s["status"] != "pending" for s in db.sends() if s["account"] == account)


# --- 3. a single-account database upgraded in place, then consumed on ------------------------

BY_QUERY = ("860000000000001^0", "13800000001")  # pending, its receipt lost
BY_RECEIPT = ("860000000000002^0", "13800000002")  # pending, its receipt in the queue
OLD_RECEIPT = ("860000000000003^0", "13800000003")  # stored before the upgrade


@pytest.fixture(params=BACKENDS)
def db_at_0004(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of its own, migrated to 0004 (the schema before accounts) by the CLI."""
    backend: str = request.param
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'single-account.db'}"
    else:
        try:
            url = create_server_database(backend)
        except sa.exc.OperationalError as exc:
            unavailable(backend, exc)
    try:
        out = cli(url, "db", "upgrade", "--revision", "0004")
        assert out.returncode == 0, out.stderr
        yield url
    finally:
        if backend != "sqlite":
            drop_server_database(backend, url)


def write_single_account_rows(url: str, now: datetime) -> None:
    """Rows as a 0004 daemon wrote them (no account column): two pending sends, a receipt,
    a reply and a dead letter. Only the named columns are written, all of them 0004's."""
    long_ago, just_now = now - timedelta(minutes=10), now - timedelta(seconds=5)
    pending = [
        {
            "provider": "aliyun",
            "biz_id": b,
            "phone_number": p,
            "sent_at": t,
            "send_date": domain.provider_send_date(t),
            "status": "pending",
            "check_count": 0,
            "created_at": t,
            "updated_at": t,
        }
        for (b, p), t in ((BY_QUERY, long_ago), (BY_RECEIPT, just_now))
    ]
    db = Db(url)
    try:
        with db.engine.begin() as conn:
            conn.execute(SEND.insert(), pending)
            conn.execute(
                REPORT.insert().values(
                    biz_id=OLD_RECEIPT[0],
                    phone_number=OLD_RECEIPT[1],
                    success=True,
                    send_time=long_ago,
                    report_time=long_ago,
                    err_code="DELIVERED",
                    received_at=long_ago,
                    channel="mns",
                    mns_message_id="old-1",
                )
            )
            conn.execute(
                INBOUND.insert().values(
                    phone_number="13800000009",
                    content="TD",
                    send_time=long_ago,
                    dest_code="1",
                    sequence_id="1",
                    received_at=long_ago,
                    channel="mns",
                )
            )
            conn.execute(
                DEAD.insert().values(
                    queue="Alicom-Queue-1-SmsReport",
                    mns_message_id="dead-1",
                    raw_body=b"{",
                    error="not JSON",
                    first_seen=long_ago,
                    last_seen=long_ago,
                    seen_count=1,
                )
            )
    finally:
        db.close()


def old_receipt(now: datetime) -> dict[str, object]:
    """The stored receipt, delivered again (the queue may redeliver across an upgrade)."""
    when = (now - timedelta(minutes=10)).astimezone(domain.CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")
    return {
        "phone_number": OLD_RECEIPT[1],
        "success": True,
        "biz_id": OLD_RECEIPT[0],
        "out_id": "",
        "send_time": when,
        "report_time": when,
        "err_code": "DELIVERED",
        "err_msg": "用户接收成功",
        "sms_size": "1",
    }


def accounts_of(db: Db) -> dict[str, set[str]]:
    with db.engine.connect() as conn:
        return {
            t.name: set(conn.execute(sa.select(t.c.account)).scalars())
            for t in (SEND, REPORT, INBOUND, DEAD)
        }


@pytest.mark.timeout(120)
def test_a_single_account_database_upgrades_in_place_and_is_consumed_on(
    db_at_0004: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    write_single_account_rows(db_at_0004, now)
    out = cli(db_at_0004, "db", "upgrade")
    db = Db(db_at_0004)
    try:
        head = migrate.head_revision(db.engine)
        assert (out.returncode, out.stdout.strip()) == (0, f"upgraded 0004 -> {head}"), out.stderr
        assert accounts_of(db) == {
            t: {"default"} for t in ("sms_send", "sms_report", "sms_inbound", "dead_letter")
        }
        (old_id,) = [r["id"] for r in reports_with_ids(db)]
        with Emulator(profile="default") as emu:
            seed(emu, "default", [(*BY_QUERY, "failed", "lost")], now - timedelta(minutes=10))
            seed(emu, "default", [(*BY_RECEIPT, "delivered", "queue")], now - timedelta(seconds=5))
            emu.enqueue_report(old_receipt(now))
            # The single-account settings of before (flat RECEIPTD_ALIYUN_*), unchanged.
            env = daemon_env(
                emu,
                db_at_0004,
                free_port(),
                RECEIPTD_COMPENSATOR_INTERVAL="2",
                RECEIPTD_COMPENSATOR_GRACE="60",
            )
            daemon = Daemon(env, tmp_path / "receiptd.log")
            try:
                daemon.wait_until(
                    lambda: settled(db) and sum(emu.queue_depth("report").values()) == 0, 60
                )
                stop(daemon)
            finally:
                daemon.kill()
            calls = emu.calls("QuerySendDetails")
        rows = sends(db)
        stored = reports_with_ids(db)
        final = accounts_of(db)
    finally:
        db.close()
    assert {k[1:]: (r["status"], r["settled_by"]) for k, r in rows.items()} == {
        BY_QUERY: ("failed", "query"),
        BY_RECEIPT: ("delivered", "receipt"),
    }
    assert [(c.account, c.params.get("BizId")) for c in calls] == [("default", BY_QUERY[0])]
    # The receipt stored before the upgrade is the same row; the new one is default's too.
    assert sorted((r["biz_id"], r["account"]) for r in stored) == [
        (BY_RECEIPT[0], "default"),
        (OLD_RECEIPT[0], "default"),
    ]
    assert old_id in {r["id"] for r in stored}
    assert final == {t: {"default"} for t in final}


def reports_with_ids(db: Db) -> list[dict[str, Any]]:
    with db.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(REPORT))]
