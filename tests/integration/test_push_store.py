"""Pushed receipts in the store on every backend: channel columns, Huawei settlement, and
pushes per account (each account's path settles that account's send, its dead letters are
its own)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from receiptd import domain, ports
from receiptd.db.models import DEAD, REPORT, SEND
from receiptd.db.sends import SendStore
from receiptd.db.store import SqlStore
from receiptd.ingest.push import listener as push
from receiptd.ingest.push import routes
from tests.unit.ingest.push.test_formats import REPORT_OLD
from tests.unit.ingest.push.test_listener import call, js

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def huawei(task: str, flag: str, msg_id: str, success: bool = True) -> ports.ReportRecord:
    report = domain.SmsReport(
        biz_id=task,
        phone_number=flag,
        success=success,
        send_time=NOW - timedelta(minutes=1),
        err_code=None if success else "fail",
        provider=domain.Provider.HUAWEI,
        message_id=msg_id,
    )
    return ports.ReportRecord(f"push/{task}", report, domain.Channel.PUSH)


def new_send(
    provider: domain.Provider, biz: str, phone: str, out_id: str | None = None
) -> ports.NewSend:
    return ports.NewSend(provider, biz, phone, NOW - timedelta(minutes=5), out_id=out_id)


def statuses(engine: sa.Engine) -> dict[tuple[str, str], tuple[str, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(SEND.c.provider, SEND.c.biz_id, SEND.c.status, SEND.c.settled_by)
        )
        return {(r[0], r[1]): (r[2], r[3]) for r in rows}


def test_huawei_receipts_settle_huawei_sends_only(engine: sa.Engine) -> None:
    store = SqlStore(engine)
    sends = SendStore(store, domain.CHINA_TZ)
    sends.register(
        [
            new_send(domain.Provider.HUAWEI, "t1", "131"),
            new_send(domain.Provider.HUAWEI, "t2", "131", out_id="msg-other"),
            new_send(domain.Provider.HUAWEI, "t3", "131", out_id="msg-t3"),
            new_send(domain.Provider.ALIYUN, "t4", "131"),  # same key, other provider
        ],
        NOW,
    )
    batch = ports.Batch(
        reports=[
            huawei("t1", "131", "msg-t1"),
            huawei("t2", "131", "msg-t2"),  # not the msg_id the send was registered with
            huawei("t3", "131", "msg-t3", success=False),
            huawei("t4", "131", "msg-t4"),
        ]
    )
    result = store.write_batch(batch, NOW)
    assert result.sends_settled == 2
    assert statuses(engine) == {
        ("huawei", "t1"): ("delivered", "receipt"),
        ("huawei", "t2"): ("pending", None),
        ("huawei", "t3"): ("failed", "receipt"),
        ("aliyun", "t4"): ("pending", None),
    }
    # A later, contradicting receipt changes nothing: a final status never regresses.
    store.write_batch(ports.Batch(reports=[huawei("t3", "131", "msg-t3")]), NOW)
    assert statuses(engine)["huawei", "t3"] == ("failed", "receipt")
    with engine.connect() as conn:
        row = conn.execute(sa.select(REPORT).where(REPORT.c.biz_id == "t1")).one()
    assert (row.channel, row.provider, row.message_id, row.mns_message_id) == (
        "push",
        "huawei",
        "msg-t1",
        None,
    )


def test_mns_rows_keep_their_message_id_and_channel(engine: sa.Engine) -> None:
    store = SqlStore(engine)
    report = domain.SmsReport("b1", "13800000001", True, NOW, sign_name="签名")
    store.write_batch(ports.Batch(reports=[ports.ReportRecord("mns-1", report)]), NOW)
    pushed = ports.ReportRecord("req/0", report, domain.Channel.PUSH)
    assert store.write_batch(ports.Batch(reports=[pushed]), NOW).reports_new == 0
    with engine.connect() as conn:
        row = conn.execute(sa.select(REPORT)).one()
    assert (row.channel, row.mns_message_id, row.provider, row.sign_name) == (
        "mns",
        "mns-1",
        "aliyun",
        "签名",
    )


# --- per account --------------------------------------------------------------------------------

TOKEN, TOKEN_A, TOKEN_B = (
    "default-token-0123456789",
    "brand-a-token-01234567",
    "brand-b-tok-0123456789",
)


def account_app(store: SqlStore) -> push.PushApp:
    accounts = (
        *routes.default_accounts(TOKEN),
        routes.PushAccount("brand_a", "aliyun", TOKEN_A),
        routes.PushAccount("brand_b", "aliyun", TOKEN_B),
    )
    return push.PushApp(store, push.PushConfig(accounts), clock=lambda: NOW)


def test_the_same_send_pushed_for_two_accounts_settles_each_accounts_own(
    engine: sa.Engine,
) -> None:
    store = SqlStore(engine)
    biz, phone = REPORT_OLD["biz_id"], REPORT_OLD["phone_number"]
    SendStore(store, domain.CHINA_TZ).register(
        [
            ports.NewSend(domain.Provider.ALIYUN, biz, phone, NOW, account=name)
            for name in ("brand_a", "brand_b", "default")
        ],
        NOW,
    )
    app = account_app(store)
    failed = {**REPORT_OLD, "success": False, "err_code": "DELIVRD-NOT", "err_msg": "no"}
    assert call(app, f"/push/{TOKEN_A}/brand_a/aliyun/SmsReport", js([REPORT_OLD]))[0] == 200
    assert call(app, f"/push/{TOKEN_B}/brand_b/aliyun/SmsReport", js([failed]))[0] == 200
    # brand_a's token on brand_b's path, and a named token on the default path: nothing.
    for path in (f"/push/{TOKEN_A}/brand_b/aliyun/SmsReport", f"/push/{TOKEN_A}/aliyun/SmsReport"):
        assert call(app, path, js([failed]))[0] == 404
    with engine.connect() as conn:
        sends = conn.execute(sa.select(SEND.c.account, SEND.c.status, SEND.c.settled_by))
        reports = conn.execute(sa.select(REPORT.c.account, REPORT.c.success, REPORT.c.channel))
        assert sorted(tuple(r) for r in sends) == [
            ("brand_a", "delivered", "receipt"),
            ("brand_b", "failed", "receipt"),
            ("default", "pending", None),
        ]
        assert sorted(tuple(r) for r in reports) == [
            ("brand_a", True, "push"),
            ("brand_b", False, "push"),
        ]


def test_pushed_dead_letters_are_kept_per_account(engine: sa.Engine) -> None:
    store = SqlStore(engine)
    app = account_app(store)
    bad = js([{**REPORT_OLD, "success": "yes"}])
    for path in (
        f"/push/{TOKEN_A}/brand_a/aliyun/SmsReport",
        f"/push/{TOKEN_A}/brand_a/aliyun/SmsReport",  # the provider's retry: counted up
        f"/push/{TOKEN_B}/brand_b/aliyun/SmsReport",
        f"/push/{TOKEN}/aliyun/SmsReport",
    ):
        assert call(app, path, bad)[0] == 200
    assert call(app, f"/push/{TOKEN_B}/brand_b/aliyun/SmsUp", b"not json")[0] == 400
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(DEAD.c.account, DEAD.c.queue, DEAD.c.seen_count, DEAD.c.mns_message_id)
        ).all()
    assert sorted(tuple(r[:3]) for r in rows) == [
        ("brand_a", "push:aliyun/SmsReport", 2),
        ("brand_b", "push:aliyun/SmsReport", 1),
        ("brand_b", "push:aliyun/SmsUp", 1),
        ("default", "push:aliyun/SmsReport", 1),
    ]
    assert len({r[3] for r in rows if r[1] == "push:aliyun/SmsReport"}) == 1  # one element
