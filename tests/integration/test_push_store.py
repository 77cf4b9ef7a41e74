"""Pushed receipts in the store on every backend: channel columns, Huawei settlement."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from receiptd import domain, ports
from receiptd.db.models import REPORT, SEND
from receiptd.db.sends import SendStore
from receiptd.db.store import SqlStore

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
