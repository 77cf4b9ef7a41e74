"""Events and webhooks on every backend: one event per committed change, delivered to a real
HTTP receiver that verifies each signature, recorded when the receiver is down or failing,
replayed once dead, claimed by concurrent workers without loss.

The dispatcher's own rules (backoff, the retry period, bounded concurrency, gauges, prune
batches) are unit tests on the in-memory outbox: tests/unit/webhooks/test_dispatcher.py."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, timedelta

import pytest
import sqlalchemy as sa
import structlog
from pydantic import SecretStr

from receiptd import config, domain, metrics, ports
from receiptd.daemon.health import Health
from receiptd.db import outbox, settle
from receiptd.db.deliveries import SqlEventOutbox
from receiptd.db.models import DELIVERY, EVENT, SEND
from receiptd.db.sends import SendStore
from receiptd.db.store import SqlStore
from receiptd.testing.receiver import Receiver
from receiptd.webhooks import dispatcher as webhooks
from receiptd.wiring import daemon
from tests.integration.test_store import NOW, report, send

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
POLICY = webhooks.Policy(
    retry_period=3600, backoff_initial=10, backoff_max=600, poll_interval=0.5, batch_size=50
)
DEFAULT_POLICY = daemon.webhook_policy(config.Settings())  # the settings' defaults


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> object:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def endpoint(url: str, name: str = "app", **kw: object) -> config.WebhookEndpoint:
    return config.WebhookEndpoint(name=name, url=url, secret=SecretStr(SECRET), **kw)  # type: ignore[arg-type]


def events_outbox(*names: str, show: bool = False, **types: frozenset[str]) -> outbox.Outbox:
    routes = tuple(outbox.Route(n, types.get(n, frozenset())) for n in names or ("app",))
    return outbox.Outbox(routes, show_phone_numbers=show, notify=True)


def event_rows(engine: sa.Engine) -> list[dict[str, object]]:
    with engine.connect() as conn:
        return [json.loads(r.payload) for r in conn.execute(sa.select(EVENT))]


def delivery_rows(engine: sa.Engine) -> list[sa.Row[object]]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(DELIVERY).order_by(DELIVERY.c.id)))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(SECRET) as r:
        yield r


def worker(store: SqlStore, url: str, clock: Clock, **kw: object) -> webhooks.EndpointWorker:
    return webhooks.EndpointWorker(
        endpoint(url, **kw), SqlEventOutbox(store), POLICY, Health(), clock=clock, rand=lambda: 0.5
    )


def settled_world(engine: sa.Engine, out: outbox.Outbox | None = None) -> SqlStore:
    """Two registered sends: one delivered, one failed by receipts; one reply stored."""
    store = SqlStore(engine, out or events_outbox())
    SendStore(store).register([send("b1", "13800000001"), send("b1", "13800000002")], NOW)
    reply = ports.InboundRecord(
        "up-1", domain.SmsUp("13800000009", "退订 TD", NOW - timedelta(minutes=1), "1234", "s-1")
    )
    batch = ports.Batch(
        reports=[report("b1", "13800000001"), report("b1", "13800000002", success=False)],
        inbound=[reply],
    )
    result = store.write_batch(batch, NOW)
    assert (result.sends_settled, result.inbound_new) == (2, 1)
    return store


# --- emission -------------------------------------------------------------------------------


def test_events_exactly_for_committed_changes(engine: sa.Engine) -> None:
    store = settled_world(engine)
    again = ports.Batch(reports=[report("b1", "13800000001"), report("b1", "13800000002")])
    assert store.write_batch(again, NOW).sends_settled == 0  # final statuses never change
    payloads = event_rows(engine)
    assert sorted(p["type"] for p in payloads) == [
        "reply.received",
        "send.delivered",
        "send.failed",
    ]
    failed = next(p for p in payloads if p["type"] == "send.failed")
    assert failed["data"] == {
        "provider": "aliyun",
        "account": "default",  # whose send: the single-account settings' account
        "biz_id": "b1",
        "matched_by": "biz_id",  # a SendSms BizId (international sends: a MessageId)
        "phone_number": "138****0002",  # masked by default
        "out_id": "o-b1",
        "task_id": None,
        "status": "failed",
        "err_code": "MK:0001",
        "err_msg": None,
        "sent_at": "2026-11-25T07:50:00Z",
        "settled_at": "2026-11-25T08:00:00Z",
        "settled_by": "receipt",
    }
    reply = next(p for p in payloads if p["type"] == "reply.received")
    assert (reply["data"]["content"], reply["data"]["account"]) == ("退订 TD", "default")
    assert len(delivery_rows(engine)) == 3


def test_no_event_when_the_transaction_rolls_back(engine: sa.Engine) -> None:
    store = SqlStore(engine, events_outbox())
    sends = SendStore(store)
    sends.register([send("b2", "13800000001")], NOW)
    with engine.connect() as conn:
        send_id = conn.execute(sa.select(SEND.c.id)).scalar_one()
    change = settle.SendChange(send_id, domain.SendStatus.DELIVERED, domain.SettledBy.QUERY)

    def settle_then_fail(conn: sa.Connection) -> None:
        assert settle.settle_sends(conn, [change], NOW, store.events) == 1
        raise ports.StoreWriteError("the rest of the batch failed")

    with pytest.raises(ports.StoreWriteError):
        store.run(settle_then_fail)
    assert event_rows(engine) == []
    with engine.connect() as conn:
        assert conn.execute(sa.select(SEND.c.status)).scalar_one() == "pending"


def test_every_settle_path_emits(engine: sa.Engine) -> None:
    """Compensator (query), window expiry, and registration settling from a stored receipt."""
    store = SqlStore(engine, events_outbox(show=True))
    sends = SendStore(store)
    store.write_batch(ports.Batch(reports=[report("early", "13800000005")]), NOW)
    sends.register([send("early", "13800000005"), send("q", "13800000006")], NOW)
    sends.register([send("old", "13800000007", minutes_ago=60 * 24 * 40)], NOW)
    with engine.connect() as conn:
        ids = {r.biz_id: r.id for r in conn.execute(sa.select(SEND))}
    settlement = ports.Settlement(ids["q"], domain.SendStatus.FAILED, err_code="E1", err_msg="x")
    pending = sends.claim_due(domain.Provider.ALIYUN, NOW, timedelta(0), 10)
    assert sends.settle([settlement], pending, NOW, 300, 3600) == 1
    assert sends.expire_outside_window(domain.Provider.ALIYUN, date(2026, 11, 1), NOW) == 1
    by_biz = {p["data"]["biz_id"]: p for p in event_rows(engine)}
    assert {b: (p["type"], p["data"]["settled_by"]) for b, p in by_biz.items()} == {
        "early": ("send.delivered", "receipt"),
        "q": ("send.failed", "query"),
        "old": ("send.expired", "window"),
    }
    assert by_biz["q"]["data"]["phone_number"] == "13800000006"  # events_show_phone_numbers


def test_endpoint_filters_and_fan_out(engine: sa.Engine) -> None:
    out = events_outbox("all", "failures", failures=frozenset({"send.failed"}))
    settled_world(engine, out)
    by_endpoint: dict[str, int] = {}
    for row in delivery_rows(engine):
        by_endpoint[row.endpoint] = by_endpoint.get(row.endpoint, 0) + 1
    assert by_endpoint == {"all": 3, "failures": 1}


def test_events_carry_their_account_to_the_endpoints_that_want_it(
    engine: sa.Engine, receiver: Receiver
) -> None:
    """[[webhook.endpoints]] accounts = ["brand_a"] gets brand_a's sends and replies only; an
    endpoint naming no accounts gets every account's; the attempts are counted per account."""
    routes = (outbox.Route("all"), outbox.Route("brand_a", accounts=frozenset({"brand_a"})))
    store = SqlStore(engine, outbox.Outbox(routes))
    # The same (biz_id, phone_number) in two accounts: two sends, two events.
    brand_a = replace(send("b1", "13800000001"), account="brand_a")
    SendStore(store).register([send("b1", "13800000001"), brand_a], NOW)
    reply = ports.InboundRecord(
        "up-a",
        domain.SmsUp("13800000009", "TD", NOW - timedelta(minutes=1), "1234", "s-1"),
        account="brand_a",
    )
    receipts = [
        report("b1", "13800000001"),
        replace(report("b1", "13800000001"), account="brand_a"),
    ]
    assert store.write_batch(ports.Batch(reports=receipts, inbound=[reply]), NOW).sends_settled == 2
    accounts = sorted((p["type"], p["data"]["account"]) for p in event_rows(engine))
    assert accounts == [
        ("reply.received", "brand_a"),
        ("send.delivered", "brand_a"),
        ("send.delivered", "default"),
    ]
    with engine.connect() as conn:
        assert {v.account for v in outbox.deliveries(conn, endpoint="all")} == {
            "brand_a",
            "default",
        }
    labels = ("brand_a", "send.delivered", "delivered")
    before = metrics.EVENTS.labels(*labels)._value.get()
    assert worker(store, receiver.url, Clock(), name="brand_a").run_once() == 2
    assert {e["data"]["account"] for e in receiver.events.values()} == {"brand_a"}
    assert receiver.by_type() == {"send.delivered": 1, "reply.received": 1}
    assert metrics.EVENTS.labels(*labels)._value.get() == before + 1


# --- delivery -------------------------------------------------------------------------------


def test_delivered_signed_and_verified(engine: sa.Engine, receiver: Receiver) -> None:
    store = settled_world(engine)
    clock = Clock()
    w = worker(store, receiver.url, clock)
    before = metrics.EVENTS.labels("default", "send.delivered", "delivered")._value.get()
    assert w.run_once() == 3
    assert w.run_once() == 0
    assert receiver.rejected == 0 and receiver.unique() == 3 and receiver.duplicates() == 0
    assert receiver.by_type() == {"send.delivered": 1, "send.failed": 1, "reply.received": 1}
    assert set(receiver.events) == {p["id"] for p in event_rows(engine)}  # webhook-id = id
    assert {r.status for r in delivery_rows(engine)} == {"delivered"}
    assert (
        metrics.EVENTS.labels("default", "send.delivered", "delivered")._value.get() == before + 1
    )


def test_wrong_secret_is_rejected_by_the_receiver(engine: sa.Engine) -> None:
    store = settled_world(engine)
    with Receiver("whsec_" + "QUJD" * 8) as other:
        w = worker(store, other.url, Clock())
        w.run_once()
        assert other.rejected == 3 and other.unique() == 0
    assert {r.status for r in delivery_rows(engine)} == {"pending"}


def test_receiver_down_recorded_then_all_delivered(engine: sa.Engine) -> None:
    store = settled_world(engine)
    clock = Clock()
    receiver = Receiver(SECRET).start()
    receiver.stop()  # the port is known, nobody listens
    w = worker(store, receiver.url, clock)
    assert w.run_once() == 3
    rows = delivery_rows(engine)
    assert {(r.status, r.attempts) for r in rows} == {("pending", 1)}
    assert all(r.last_error and "Connection" in r.last_error for r in rows)
    receiver.start()
    try:
        clock.advance(60)  # past the first backoff
        assert w.run_once() == 3
        assert receiver.unique() == 3 and receiver.duplicates() == 0
    finally:
        receiver.close()
    assert {(r.status, r.attempts) for r in delivery_rows(engine)} == {("delivered", 2)}


def test_dead_deliveries_are_kept_and_replayed(engine: sa.Engine) -> None:
    store = settled_world(engine)
    clock = Clock()
    with Receiver(SECRET, status=500) as failing, structlog.testing.capture_logs() as logs:
        w = worker(store, failing.url, clock)
        tries = 0
        while {r.status for r in delivery_rows(engine)} != {"dead"}:
            w.run_once()
            tries += 1
            clock.advance(POLICY.backoff_max)
            assert tries < 20
        # 10, 20, ... 600 s: six tries under the backoff cap, then every 600 s to 3600 s
        assert 6 <= tries <= 12
    # One event for dead deliveries, one line per batch (docs/webhooks.md, docs/operations.md).
    (dead,) = [e for e in logs if "dead" in e["event"]]
    assert (dead["event"], dead["endpoint"], dead["events"]) == ("webhooks_dead", "app", 3)
    assert len(dead["event_ids"]) == 3 and dead["error"] == "HTTP 500"
    rows = delivery_rows(engine)
    assert {r.status for r in rows} == {"dead"}
    assert all(r.last_status_code == 500 and r.last_error == "HTTP 500" for r in rows)
    with engine.connect() as conn:  # dead deliveries are kept; replay brings them back
        assert outbox.replay(conn, [outbox.Route("app")], clock.now, since=NOW) == 3
        conn.commit()
    with Receiver(SECRET) as ok:
        assert worker(store, ok.url, clock).run_once() == 3
        assert ok.unique() == 3


def test_concurrent_workers_share_without_loss_or_duplicates(engine: sa.Engine) -> None:
    """Four workers (as four replicas would) drain one endpoint: each event exactly once."""
    store = SqlStore(engine, events_outbox())
    n = 120
    SendStore(store).register([send(f"m{i}", "13800000001") for i in range(n)], NOW)
    for start in range(0, n, 16):
        batch = [report(f"m{i}", "13800000001") for i in range(start, min(n, start + 16))]
        store.write_batch(ports.Batch(reports=batch), NOW)
    clock = Clock()
    with Receiver(SECRET) as r:
        workers = [
            webhooks.EndpointWorker(
                endpoint(r.url),
                SqlEventOutbox(store),
                replace(DEFAULT_POLICY, batch_size=7),
                Health(),
                clock=clock,
            )
            for _ in range(4)
        ]

        def drain(w: webhooks.EndpointWorker) -> None:
            while w.run_once():
                pass

        threads = [threading.Thread(target=drain, args=(w,)) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert r.unique() == n and r.duplicates() == 0 and r.rejected == 0
    assert {row.status for row in delivery_rows(engine)} == {"delivered"}
