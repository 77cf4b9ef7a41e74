"""International sends in `receiptd run` (issue 24): real daemons, real SDKs, the emulator.

One daemon serves a China-site account (``default``: SendSms sends keyed by BizId, and
SendMessageToGlobe sends whose receipts come on its GlobeSmsReport queue) and an
international-site account (``intl``: the emulator's second port, its own MNS and token
endpoint, PascalCase receipts). A 70 / 20 / 10 mix with every seventh receipt lost (~15 %)
and some duplicated: every send settles once, to the provider's outcome, by its receipt or by
one query (QueryMessage for MessageId sends, QuerySendDetails for BizId ones); duplicates
collapse; a ``kill -9`` in the middle loses nothing. Malformed and well-formed bodies of the
three shapes, on the queues and the international push, are stored or dead-lettered byte for
byte, and the daemon stays up.

The sends are made "now" with receipts due a second later; the compensator runs every 2 s
with an 8 s grace, so it asks only about sends whose receipt has not come by then (the lost
ones) and every answer it gets is final. The provider's truth is read once every receipt time
has passed. Waiting is on the database and the emulator, never a sleep.
"""

from __future__ import annotations

import base64
import json
import signal
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from receiptd.db.models import DEAD, REPORT
from receiptd.testing import emulated
from receiptd_emulator import Emulator, SeedGlobeSend, SeedSend
from tests.system.daemon import Daemon, free_port
from tests.system.reliability import Db
from tests.system.test_accounts import TOKEN, run_env, stop  # the same daemon settings

pytestmark = pytest.mark.system

PUSH_TOKEN = "intl-push-token-0123456789abcdef"
STATUS = {3: "delivered", 2: "failed"}  # QuerySendDetails SendStatus of a final send
GLOBE_STATUS = {"1": "delivered", "2": "failed"}  # QueryMessage Status of a final send
Key = tuple[str, str, str, str]  # (account, matched_by, id, number)
MAINLAND, CN_GLOBE, INTL = 28, 8, 4  # 70 % / 20 % / 10 %


def fate(i: int) -> str:
    """Every seventh receipt lost (~15 %), every fifth duplicated."""
    return "lost" if i % 7 == 3 else "duplicate" if i % 5 == 1 else "queue"


def outcome(i: int, globe: bool) -> str:
    return ("delivered", "failed", "expired")[i % 3] if globe else ("delivered", "failed")[i % 2]


def settings_file(path: Path, emu: Emulator) -> Path:
    """``default`` (China site, GlobeSmsReport queue too) and ``intl`` (international site)."""
    q = json.dumps
    default = emulated.account_keys(emu.info, emu.account())
    intl = emulated.account_keys(emu.info, emu.account("intl"))
    lines = ["[aliyun]"]
    lines += [f"{k} = {q(v)}" for k, v in default.items() if k != "provider"]
    lines += ["", "[accounts.intl]", f"push_token = {q(PUSH_TOKEN)}"]
    lines += [f"{k} = {q(v)}" for k, v in intl.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def seed(emu: Emulator, sent: datetime) -> list[dict[str, str]]:
    """The three kinds of sends; their registration records (``POST /v1/sends``)."""
    info = emu.account()
    biz_ids = emu.seed_sends(
        [
            SeedSend(
                f"1390000{i:04d}",
                info.sign_name,
                info.template_code,
                send_time=sent,
                outcome=outcome(i, False),
                receipt=fate(i),
                receipt_delay=1.0,
                biz_id=f"90000000000{i:04d}^0",
            )
            for i in range(MAINLAND)
        ]
    )
    records = [
        {"biz_id": b, "phone_number": f"1390000{i:04d}", "sent_at": sent.isoformat()}
        for i, b in enumerate(biz_ids)
    ]
    for account, first, count in (("default", MAINLAND, CN_GLOBE), ("intl", 100, INTL)):
        numbers = [f"852{first + i:08d}" for i in range(count)]
        ids = emu.seed_globe_sends(
            [
                SeedGlobeSend(
                    n,
                    send_time=sent,
                    outcome=outcome(first + i, True),
                    receipt=fate(first + i),
                    receipt_delay=1.0,
                    task_id=f"task-{first + i}",
                )
                for i, n in enumerate(numbers)
            ],
            account=None if account == "default" else account,
        )
        records += [
            {
                "message_id": m,
                "phone_number": f"+{n}",  # stored as the provider writes it: digits only
                "sent_at": sent.isoformat(),
                "account": account,
                "task_id": f"task-{first + i}",
            }
            for i, (m, n) in enumerate(zip(ids, numbers, strict=True))
        ]
    return records


def truth(emu: Emulator) -> dict[Key, str]:
    """Every send's final status as the provider knows it (every receipt time has passed)."""
    known = {
        ("default", "biz_id", r.biz_id, r.phone_number): STATUS.get(r.status, "pending")
        for r in emu.records()
    }
    for account in ("default", "intl"):
        for g in emu.globe_records(None if account == "default" else account):
            known[account, "message_id", g.message_id, g.to] = GLOBE_STATUS.get(g.status, "pending")
    return known


def lost(emu: Emulator) -> set[Key]:
    keys = {
        ("default", "biz_id", r.biz_id, r.phone_number)
        for r in emu.records()
        if r.receipt_fate == "lost"
    }
    for account in ("default", "intl"):
        for g in emu.globe_records(None if account == "default" else account):
            if g.receipt_fate == "lost":
                keys.add((account, "message_id", g.message_id, g.to))
    return keys


def sends(db: Db) -> dict[Key, dict[str, Any]]:
    return {(r["account"], r["matched_by"], r["biz_id"], r["phone_number"]): r for r in db.sends()}


def reports(db: Db) -> list[tuple[str, str, str, str, str | None, bool]]:
    with db.engine.connect() as conn:
        columns = (REPORT.c.account, REPORT.c.matched_by, REPORT.c.biz_id, REPORT.c.phone_number)
        query = sa.select(*columns, REPORT.c.shape, REPORT.c.success)
        return [tuple(r) for r in conn.execute(query)]


def settled(db: Db, expected: int) -> bool:
    rows = db.sends()
    return len(rows) == expected and all(r["status"] != "pending" for r in rows)


def register(daemon: Daemon, records: list[dict[str, str]]) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{daemon.port}/v1/sends",
        data=json.dumps(records).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - local
        assert json.loads(answer.read()) == {"received": len(records), "registered": len(records)}


def queries(emu: Emulator) -> Counter[Key]:
    """QueryMessage and QuerySendDetails calls by the send they asked about."""
    asked: Counter[Key] = Counter()
    for c in emu.calls("QuerySendDetails"):
        asked["default", "biz_id", str(c.params["BizId"]), str(c.params["PhoneNumber"])] += 1
    by_id = {k[2]: k for k in truth(emu) if k[1] == "message_id"}
    for c in emu.calls("QueryMessage"):
        asked[by_id.get(str(c.params["MessageId"]), ("?", "?", "?", "?"))] += 1
    return asked


@pytest.fixture
def db(db_url: str) -> Iterator[Db]:
    handle = Db(db_url)
    yield handle
    handle.close()


def check_settled_once(db: Db, emu: Emulator, truths: dict[Key, str], lost_keys: set[Key]) -> None:
    rows = sends(db)
    assert {k: r["status"] for k, r in rows.items()} == truths
    assert lost_keys and all(rows[k]["settled_by"] == "query" for k in lost_keys)
    assert all(r["settled_by"] == "receipt" for k, r in rows.items() if k not in lost_keys)
    shapes = {"biz_id": "sms_report"}
    stored = reports(db)
    # One row per receipt that came, duplicates collapsed, each in the shape it came in.
    assert len(stored) == len({r[:4] for r in stored}) == len(truths) - len(lost_keys)
    for account, key, ident, number, shape, success in stored:
        k = (account, key, ident, number)
        assert k in truths and k not in lost_keys, k
        assert success == (truths[k] == "delivered")
        want = shapes.get(key) or (
            "globe_sms_report" if account == "default" else "intl_sms_report"
        )
        assert shape == want, (k, shape)
    asked = queries(emu)
    # Each lost send asked exactly once, by the API its key calls for; no other send asked.
    assert set(asked) == lost_keys and set(asked.values()) == {1}, asked


@pytest.mark.timeout(180)
def test_both_sites_settle_every_send_once_by_receipt_or_query(
    db_url: str, db: Db, tmp_path: Path
) -> None:
    with Emulator(profile="default") as emu:
        emu.add_account("intl", site="intl")
        config = settings_file(tmp_path / "receiptd.toml", emu)
        daemon = Daemon(run_env(emu, db_url), tmp_path / "receiptd.log", "--config", str(config))
        try:
            daemon.wait_until(daemon.ready, timeout=30)
            records = seed(emu, datetime.now(UTC))
            register(daemon, records)
            lost_keys = lost(emu)
            daemon.wait_until(
                lambda: (
                    settled(db, len(records)) and len(reports(db)) == len(records) - len(lost_keys)
                ),
                90,
            )
            stop(daemon)
        finally:
            daemon.kill()
        truths = truth(emu)
        check_settled_once(db, emu, truths, lost_keys)
        tokens = Counter(
            (c.account, c.params.get("MessageType")) for c in emu.calls("QueryTokenForMnsQueue")
        )
    assert {k for k in tokens} >= {
        ("default", "SmsReport"),
        ("default", "GlobeSmsReport"),
        ("intl", "SmsReport"),
    }, tokens
    rows = sends(db)
    by = Counter(r["settled_by"] for r in rows.values())
    print(f"\ninternational: {len(rows)} sends, by {dict(by)}, lost {len(lost_keys)}")


@pytest.mark.timeout(180)
def test_a_kill_9_in_the_middle_loses_nothing(db_url: str, db: Db, tmp_path: Path) -> None:
    """SIGKILL while receipts are being consumed (the first daemon's compensator off, so no
    claim is left leased by the dead process: a lease is 15 minutes); the next daemon takes
    over: receipts the dead one had received but not deleted come back when MNS's visibility
    timeout ends, and may by then have been settled by a query instead. Either way each send is
    settled once, to the provider's outcome, every receipt stored once."""
    with Emulator(profile="default") as emu:
        emu.add_account("intl", site="intl")
        config = settings_file(tmp_path / "receiptd.toml", emu)
        env = run_env(emu, db_url)
        first = Daemon(
            {**env, "RECEIPTD_COMPENSATOR_ENABLED": "false"},
            tmp_path / "first.log",
            "--config",
            str(config),
        )
        try:
            first.wait_until(first.ready, timeout=30)
            records = seed(emu, datetime.now(UTC))
            register(first, records)
            first.wait_until(lambda: len(reports(db)) >= 5, 60)
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(10)
        finally:
            first.kill()
        lost_keys = lost(emu)
        second = Daemon(env, tmp_path / "second.log", "--config", str(config))
        try:
            second.wait_until(
                lambda: (
                    settled(db, len(records)) and len(reports(db)) == len(records) - len(lost_keys)
                ),
                120,
            )
            stop(second)
        finally:
            second.kill()
        truths = truth(emu)
        rows = sends(db)
        assert {k: r["status"] for k, r in rows.items()} == truths
        assert all(rows[k]["settled_by"] == "query" for k in lost_keys)
        assert {r["settled_by"] for r in rows.values()} <= {"receipt", "query"}
        stored = reports(db)
        assert len(stored) == len({r[:4] for r in stored}) == len(truths) - len(lost_keys)
        asked = queries(emu)
        assert set(asked) >= lost_keys and set(asked.values()) == {1}, asked  # once each


# --- bodies of the three shapes, well-formed and not, on every international channel --------

GOOD_GLOBE = {
    "to": "85299990001",
    "status": "1",
    "message_id": "77000000000001",
    "send_date": "2026-12-01 10:00:00",
    "receive_date": "2026-12-01 10:00:05",
    "error_code": "DELIVERED",
    "error_description": "ok",
}
GOOD_INTL = {
    "To": "85299990002",
    "Status": "6",
    "MessageId": "77000000000002",
    "TaskId": "t",
    "SmsSize": "1",
    "SendDate": "Tue, 01 Dec 2026 10:00:00 +0800",
    "ReceiveDate": "Tue, 01 Dec 2026 10:00:33 +0800",
    "ErrorCode": "EXPIRED",
    "ErrorDescription": "expired",
}
BROKEN: list[dict[str, Any] | str] = [
    {**GOOD_INTL, "Status": "3"},
    {**GOOD_INTL, "SendDate": "not a date"},
    {**GOOD_INTL, "MessageId": ""},
    # well-formed JSON, an integer past CPython's digit limit
    json.dumps({**GOOD_INTL, "To": 0}).replace('"To": 0', '"To": ' + "9" * 5000),
    {**GOOD_GLOBE, "status": "0"},
    {**GOOD_GLOBE, "send_date": "Tue, 01 Dec 2026 10:00:00 +9999"},
    {**GOOD_GLOBE, "to": ["852"]},
    {"PhoneNumber": "85200000000", "SendStatus": 3, "BizId": "x"},  # the old page's shape
    "[" * 40_000,  # nested past the recursion limit, inside MNS's 64 KiB
]


def b64(body: dict[str, Any] | str) -> str:
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    return base64.b64encode(text.encode()).decode()


@pytest.mark.timeout(120)
def test_good_and_broken_bodies_are_stored_or_dead_lettered_byte_exact(
    db_url: str, db: Db, tmp_path: Path
) -> None:
    with Emulator(profile="default") as emu:
        emu.add_account("intl", site="intl")
        config = settings_file(tmp_path / "receiptd.toml", emu)
        push_port = free_port()
        env = run_env(
            emu,
            db_url,
            RECEIPTD_PUSH_ADDR=f"127.0.0.1:{push_port}",
            RECEIPTD_PUSH_TOKEN="default-push-token-0123456789abcd",
        )
        daemon = Daemon(env, tmp_path / "receiptd.log", "--config", str(config))
        try:
            daemon.wait_until(daemon.ready, timeout=30)
            queued = {
                emu.enqueue("globe", b64(GOOD_GLOBE)): None,
                emu.enqueue("globe", b64(GOOD_INTL), account="intl"): None,
            }
            bodies: dict[str, bytes] = {}
            for i, body in enumerate(BROKEN):
                account = "intl" if i % 2 else None
                raw = b64(body)
                bodies[emu.enqueue("globe", raw, account=account)] = raw.encode()
            pushed = json.dumps([{**GOOD_INTL, "MessageId": "77000000000003"}, BROKEN[0]])
            status = post(push_port, "/push/" + PUSH_TOKEN + "/intl/aliyun/SmsReport", pushed)
            daemon.wait_until(lambda: len(db.dead_letters()) == len(BROKEN) + 1, 60)
            daemon.wait_until(lambda: len(reports(db)) == len(queued) + 1, 30)
            assert daemon.ready()
            stop(daemon)
        finally:
            daemon.kill()
    assert status == (200, {"code": 0, "msg": "接收成功"}), status  # after the commit
    dead = {d["mns_message_id"]: d for d in db.dead_letters()}
    for message_id, sent_bytes in bodies.items():
        assert dead[message_id]["raw_body"] == sent_bytes  # byte for byte
    (pushed_dead,) = [d for d in dead.values() if d["queue"].startswith("push:")]
    assert json.loads(pushed_dead["raw_body"]) == BROKEN[0]
    assert sorted((r[0], r[2], r[4]) for r in reports(db)) == [
        ("default", "77000000000001", "globe_sms_report"),
        ("intl", "77000000000002", "intl_sms_report"),
        ("intl", "77000000000003", "intl_sms_report"),
    ]
    with db.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(DEAD)).scalar_one() == len(dead)


def post(port: int, path: str, body: str) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - local
        return answer.status, json.loads(answer.read())
