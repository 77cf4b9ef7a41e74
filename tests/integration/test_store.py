"""The store on every backend: idempotent writes, monotonic settling, verbatim Unicode."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from receiptd import domain, ports
from receiptd.db.models import DEAD, INBOUND, REPORT, SEND
from receiptd.db.sends import SendStore
from receiptd.db.store import SqlStore
from tests.consuming import until_idle

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def report(biz: str, phone: str, success: bool = True, **kw: object) -> ports.ReportRecord:
    return ports.ReportRecord(
        message_id=f"m-{biz}-{phone}",
        report=domain.SmsReport(
            biz_id=biz,
            phone_number=phone,
            success=success,
            send_time=NOW - timedelta(minutes=1),
            err_code="DELIVERED" if success else "MK:0001",
            **kw,  # type: ignore[arg-type]
        ),
    )


def send(biz: str, phone: str, minutes_ago: int = 10) -> ports.NewSend:
    return ports.NewSend(
        provider=domain.Provider.ALIYUN,
        biz_id=biz,
        phone_number=phone,
        sent_at=NOW - timedelta(minutes=minutes_ago),
        out_id=f"o-{biz}",
        template_code="SMS_1",
        sign_name="签名",
    )


def rows(engine: sa.Engine, table: sa.Table) -> list[sa.Row[object]]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(table).order_by(table.c.id)))


def test_batch_write_is_idempotent(engine: sa.Engine) -> None:
    store = SqlStore(engine)
    batch = ports.Batch(reports=[report("b1", "13800000001"), report("b1", "13800000001")])
    first = store.write_batch(batch, NOW)
    second = store.write_batch(batch, NOW)
    assert (first.reports_new, second.reports_new) == (1, 0)
    assert len(rows(engine, REPORT)) == 1


def test_receipt_settles_send_and_never_regresses(engine: sa.Engine) -> None:
    store = SqlStore(engine)
    sends = SendStore(store)
    sends.register([send("b1", "13800000001")], NOW)
    store.write_batch(ports.Batch(reports=[report("b1", "13800000001", success=False)]), NOW)
    later = report("b1", "13800000001", success=True)
    store.write_batch(ports.Batch(reports=[ports.ReportRecord("other-msg", later.report)]), NOW)
    (row,) = rows(engine, SEND)
    assert (row.status, row.settled_by, row.err_code) == ("failed", "receipt", "MK:0001")


def test_receipt_before_registration_is_linked(engine: sa.Engine) -> None:
    store = SqlStore(engine)
    store.write_batch(ports.Batch(reports=[report("b2", "13800000002")]), NOW)
    inserted = SendStore(store).register(
        [send("b2", "13800000002"), send("b2", "13800000003")], NOW
    )
    assert inserted == 2
    statuses = {r.phone_number: r.status for r in rows(engine, SEND)}
    assert statuses == {"13800000002": "delivered", "13800000003": "pending"}


def test_registration_is_idempotent(engine: sa.Engine) -> None:
    sends = SendStore(SqlStore(engine))
    assert sends.register([send("b3", "13800000001")], NOW) == 1
    assert sends.register([send("b3", "13800000001")], NOW) == 0


def test_dead_letter_counts_redeliveries_and_keeps_bytes(engine: sa.Engine) -> None:
    store = SqlStore(engine)
    hostile = "'; DROP TABLE sms_send; -- \x01\x7f 𝄞😀 " + "界" * 20000  # > 64 KB in UTF-8
    dead = ports.DeadRecord("Alicom-Queue-1-SmsReport", "msg-1", hostile.encode(), "not base64")
    assert store.write_batch(ports.Batch(dead=[dead]), NOW).dead_new == 1
    assert store.write_batch(ports.Batch(dead=[dead]), NOW + timedelta(seconds=5)).dead_new == 0
    (row,) = rows(engine, DEAD)
    assert row.raw_body == hostile.encode()
    assert row.seen_count == 2
    assert row.last_seen == NOW + timedelta(seconds=5)


def test_inbound_unicode_stored_verbatim(engine: sa.Engine) -> None:
    store = SqlStore(engine)
    content = "退订 🙂 \\ ' \" \t\n" + "𠀀" * 100
    reply = domain.SmsUp("13800000009", content, NOW, "1234", "seq-1")
    record = ports.InboundRecord("m-up-1", reply)
    assert store.write_batch(ports.Batch(inbound=[record, record]), NOW).inbound_new == 1
    (row,) = rows(engine, INBOUND)
    assert row.content == content
    assert row.send_time == NOW


def test_claims_are_exclusive_and_settle_backs_off(engine: sa.Engine) -> None:
    store = SqlStore(engine)
    sends = SendStore(store)
    sends.register([send(f"c{i}", "13800000001", minutes_ago=30) for i in range(5)], NOW)
    first = sends.claim_due(domain.Provider.ALIYUN, NOW, timedelta(minutes=5), limit=3)
    second = sends.claim_due(domain.Provider.ALIYUN, NOW, timedelta(minutes=5), limit=10)
    assert len(first) == 3
    assert len(second) == 2
    assert not {p.id for p in first} & {p.id for p in second}
    settled = sends.settle(
        [ports.Settlement(first[0].id, domain.SendStatus.DELIVERED, err_code="DELIVERED")],
        first,
        NOW,
        base_backoff=60,
        max_backoff=600,
    )
    assert settled == 1
    by_id = {r.id: r for r in rows(engine, SEND)}
    assert by_id[first[0].id].settled_by == "query"
    assert by_id[first[1].id].next_check_at == NOW + timedelta(seconds=60)
    assert by_id[first[1].id].claimed_by is None
    # The backed-off sends are not due now; the other replica's claim is still held.
    assert sends.claim_due(domain.Provider.ALIYUN, NOW, timedelta(minutes=5), limit=10) == []


def test_expire_outside_window(engine: sa.Engine) -> None:
    sends = SendStore(SqlStore(engine))
    sends.register([send("old", "13800000001", minutes_ago=31 * 24 * 60)], NOW)
    sends.register([send("new", "13800000001", minutes_ago=60)], NOW)
    oldest = (NOW - timedelta(days=30)).astimezone(domain.CHINA_TZ).date()
    assert sends.expire_outside_window(domain.Provider.ALIYUN, oldest, NOW) == 1
    summary = sends.summary()
    assert summary.counts == {
        ("aliyun", "default", "expired"): 1,
        ("aliyun", "default", "pending"): 1,
    }
    assert summary.oldest_pending["aliyun", "default"] == NOW - timedelta(minutes=60)


def test_prefixed_mainland_numbers_match_their_receipts(engine: sa.Engine) -> None:
    """+86/0086/86 forms are registered as the 11 digits receipts carry."""
    store = SqlStore(engine)
    prefixed = [send("p1", n) for n in ("+8613800001111", "008613800002222", "8613800003333")]
    SendStore(store).register(prefixed, NOW)
    reports = [report("p1", n) for n in ("13800001111", "13800002222", "13800003333")]
    store.write_batch(ports.Batch(reports=reports), NOW)
    assert {(r.phone_number, r.status) for r in rows(engine, SEND)} == {
        ("13800001111", "delivered"),
        ("13800002222", "delivered"),
        ("13800003333", "delivered"),
    }


def test_receipt_settlement_is_counted_by_path(engine: sa.Engine) -> None:
    """receiptd_sends_settled_total{provider="aliyun",account="default",path="receipt"}
    counts what receipts settled (the compensator counts the query and window paths)."""
    from receiptd import metrics
    from receiptd.daemon.health import Health
    from receiptd.ingest.mns.consumer import Consumer
    from receiptd.testing.queues import InMemoryQueue

    labels = {"provider": "aliyun", "account": "default", "path": "receipt"}
    before = metrics.REGISTRY.get_sample_value("receiptd_sends_settled_total", labels) or 0.0
    store = SqlStore(engine)
    SendStore(store).register([send("m1", "13800000001"), send("m1", "13800000002")], NOW)
    queue = InMemoryQueue()
    for phone in ("13800000001", "13800000001", "13800000009"):  # a duplicate, an unknown send
        queue.send(
            domain.encode_body(
                {
                    "biz_id": "m1",
                    "phone_number": phone,
                    "success": True,
                    "send_time": "2026-11-25 16:00:00",
                }
            )
        )
    consumer = Consumer(
        domain.MessageType.REPORT,
        lambda: queue,
        store,
        Health(),
        threads=1,
        batch_size=16,
        wait_seconds=0,
    )
    until_idle(consumer)
    after = metrics.REGISTRY.get_sample_value("receiptd_sends_settled_total", labels)
    assert after == before + 1


def test_expired_gives_way_to_the_providers_verdict(engine: sa.Engine) -> None:
    """expired (receiptd's verdict) moves to delivered/failed on a receipt or a query result;
    delivered/failed never move; a second expiry does not touch a settled send."""
    store = SqlStore(engine)
    sends = SendStore(store)
    sends.register([send(b, "13800000001", minutes_ago=60) for b in ("r", "q", "d")], NOW)
    ids = {r.biz_id: r.id for r in rows(engine, SEND)}
    expire = [
        ports.Settlement(ids[b], domain.SendStatus.EXPIRED, domain.SettledBy.HORIZON)
        for b in ("r", "q")
    ]
    delivered = ports.Settlement(ids["d"], domain.SendStatus.DELIVERED, err_code="DELIVERED")
    assert sends.settle([*expire, delivered], [], NOW, 60, 600) == 3
    assert sends.settle(expire, [], NOW, 60, 600) == 0  # expired stays expired

    store.write_batch(ports.Batch(reports=[report("r", "13800000001", success=False)]), NOW)
    late = ports.Settlement(ids["q"], domain.SendStatus.DELIVERED, err_code="DELIVERED")
    overturn_delivered = ports.Settlement(ids["d"], domain.SendStatus.FAILED, err_code="X")
    assert sends.settle([late, overturn_delivered], [], NOW, 60, 600) == 1
    by_biz = {r.biz_id: (r.status, r.settled_by) for r in rows(engine, SEND)}
    assert by_biz == {
        "r": ("failed", "receipt"),
        "q": ("delivered", "query"),
        "d": ("delivered", "query"),
    }
