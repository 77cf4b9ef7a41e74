"""One contract, two event outboxes: ``InMemoryEventOutbox`` and the SQL one on every database.

The webhook dispatcher's unit tests (tests/unit/webhooks/test_dispatcher.py) run on the
in-memory twin; this suite is what makes that honest.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from receiptd import events, ports
from receiptd.db.deliveries import SqlEventOutbox
from receiptd.db.engine import create_db_engine
from receiptd.db.models import DELIVERY
from receiptd.db.outbox import Outbox, Route
from receiptd.db.store import SqlStore
from receiptd.testing import InMemoryEventOutbox
from tests.conftest import BACKENDS, emptied_database

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)
ENDPOINTS = ("app", "other")
# An endpoint subscribed to one account ([[webhook.endpoints]] accounts = ["brand_a"]): it
# gets none of the "default" account's events the other tests publish.
BRAND_A = Route("brand_a_app", accounts=frozenset({"brand_a"}))
ROUTES = (*(Route(e) for e in ENDPOINTS), BRAND_A)
DELIVERED, DEAD, PENDING = (
    events.DeliveryStatus.DELIVERED,
    events.DeliveryStatus.DEAD,
    events.DeliveryStatus.PENDING,
)


@dataclass
class Harness:
    outbox: ports.EventOutbox
    publish: Callable[[Sequence[events.Event], datetime], None]  # what settling writes
    row: Callable[[str, str], dict[str, Any]]  # (event id, endpoint) → the delivery's columns


COLUMNS = (
    "status",
    "attempts",
    "last_status_code",
    "last_error",
    "delivered_at",
    "next_attempt_at",
)


def _memory() -> Harness:
    memory = InMemoryEventOutbox(ROUTES)

    def row(event_id: str, endpoint: str) -> dict[str, Any]:
        found = memory.delivery(event_id, endpoint)
        return {k: getattr(found, k) for k in COLUMNS}

    return Harness(memory, memory.publish, row)


def _sql(engine: sa.Engine) -> Harness:
    store = SqlStore(engine)
    writer = Outbox(ROUTES)

    def publish(new: Sequence[events.Event], now: datetime) -> None:
        store.run(lambda conn: writer.emit(conn, new, now))

    def row(event_id: str, endpoint: str) -> dict[str, Any]:
        query = sa.select(*(DELIVERY.c[k] for k in COLUMNS)).where(
            DELIVERY.c.event_id == event_id, DELIVERY.c.endpoint == endpoint
        )
        with engine.connect() as conn:
            return dict(conn.execute(query).mappings().one())

    return Harness(SqlEventOutbox(store), publish, row)


@pytest.fixture(params=["memory", *BACKENDS])
def box(
    request: pytest.FixtureRequest,
    database_urls: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Harness]:
    if request.param == "memory":
        yield _memory()
        return
    engine = create_db_engine(emptied_database(request.param, database_urls, tmp_path_factory))
    yield _sql(engine)
    engine.dispose()


def event(name: str, created_at: datetime = NOW, account: str = "default") -> events.Event:
    data = {"account": account, "text": "退订 TD 🙂"}
    body = json.dumps({"id": name, "type": "send.delivered", "data": data})
    return events.Event(name, events.EventType.SEND_DELIVERED, created_at, body, account=account)


def publish(box: Harness, *names: str, at: datetime = NOW, account: str = "default") -> None:
    box.publish([event(n, at, account) for n in names], at)


def claimed_ids(claimed: Sequence[ports.ClaimedDelivery]) -> list[str]:
    return [c.event_id for c in claimed]


def finish(box: Harness, endpoint: str, now: datetime, result: events.DeliveryStatus) -> None:
    """Claim every due delivery of the endpoint and record ``result`` for each."""
    claimed = box.outbox.claim(endpoint, now, 100, LEASE)
    box.outbox.record(
        [ports.DeliveryAttempt(c.delivery_id, result, 200, None) for c in claimed], now
    )


def test_claim_takes_due_deliveries_of_one_endpoint_earliest_first(box: Harness) -> None:
    publish(box, "e1", at=NOW - timedelta(minutes=3))
    publish(box, "e2", at=NOW - timedelta(minutes=2))
    publish(box, "e3", at=NOW - timedelta(minutes=1))
    publish(box, "later", at=NOW + timedelta(minutes=1))  # not due yet
    first = box.outbox.claim("app", NOW, 2, LEASE)
    assert claimed_ids(first) == ["e1", "e2"]
    c = first[0]
    assert (c.event_type, c.attempts, c.account) == ("send.delivered", 0, "default")
    assert c.created_at == c.pending_since == NOW - timedelta(minutes=3)
    assert json.loads(c.body)["data"]["text"] == "退订 TD 🙂"  # the stored bytes, verbatim
    assert claimed_ids(box.outbox.claim("app", NOW, 2, LEASE)) == ["e3"]
    assert box.outbox.claim("app", NOW, 2, LEASE) == []
    assert claimed_ids(box.outbox.claim("other", NOW, 10, LEASE)) == ["e1", "e2", "e3"]


def test_a_claim_is_a_lease(box: Harness) -> None:
    publish(box, "e1")
    (held,) = box.outbox.claim("app", NOW, 10, LEASE)
    assert box.outbox.claim("app", NOW + LEASE - timedelta(seconds=1), 10, LEASE) == []
    (again,) = box.outbox.claim("app", NOW + LEASE, 10, LEASE)  # the claimant died: due again
    assert (again.delivery_id, again.attempts) == (held.delivery_id, 0)


def test_record_stores_each_outcome(box: Harness) -> None:
    publish(box, "ok", "retry", "dead")
    by_id = {c.event_id: c.delivery_id for c in box.outbox.claim("app", NOW, 10, LEASE)}
    later = NOW + timedelta(seconds=2)
    box.outbox.record(
        [
            ports.DeliveryAttempt(by_id["ok"], DELIVERED, 204, None),
            ports.DeliveryAttempt(
                by_id["retry"], PENDING, 500, "HTTP 500", later + timedelta(seconds=10)
            ),
            ports.DeliveryAttempt(by_id["dead"], DEAD, None, "x" * 600),
        ],
        later,
    )
    assert box.row("ok", "app") == {
        "status": "delivered",
        "attempts": 1,
        "last_status_code": 204,
        "last_error": None,
        "delivered_at": later,
        "next_attempt_at": later,
    }
    retry = box.row("retry", "app")
    assert (retry["status"], retry["last_status_code"], retry["last_error"]) == (
        "pending",
        500,
        "HTTP 500",
    )
    assert retry["next_attempt_at"] == later + timedelta(seconds=10)
    dead = box.row("dead", "app")
    assert (dead["status"], dead["last_error"], dead["delivered_at"]) == ("dead", "x" * 512, None)
    assert box.outbox.claim("app", later + timedelta(seconds=9), 10, LEASE) == []
    (retried,) = box.outbox.claim("app", later + timedelta(seconds=10), 10, LEASE)
    assert (retried.event_id, retried.attempts) == ("retry", 1)
    assert box.row("ok", "other")["status"] == "pending"  # each endpoint on its own


def test_record_leaves_a_finished_delivery_alone(box: Harness) -> None:
    publish(box, "e1")
    (c,) = box.outbox.claim("app", NOW, 10, LEASE)
    box.outbox.record([ports.DeliveryAttempt(c.delivery_id, DELIVERED, 200, None)], NOW)
    late = ports.DeliveryAttempt(c.delivery_id, PENDING, 500, "HTTP 500", NOW)
    box.outbox.record([late], NOW + timedelta(seconds=1))
    row = box.row("e1", "app")
    assert (row["status"], row["attempts"], row["last_status_code"]) == ("delivered", 1, 200)
    box.outbox.record([], NOW)  # nothing to store: nothing happens


def test_release_hands_unattempted_claims_back_at_once(box: Harness) -> None:
    publish(box, "e1", "e2")
    claimed = box.outbox.claim("app", NOW, 10, timedelta(hours=1))
    box.outbox.release([c.delivery_id for c in claimed], NOW + timedelta(seconds=1))
    again = box.outbox.claim("app", NOW + timedelta(seconds=1), 10, LEASE)
    assert claimed_ids(again) == ["e1", "e2"] and {c.attempts for c in again} == {0}
    box.outbox.record([ports.DeliveryAttempt(again[0].delivery_id, DELIVERED, 200, None)], NOW)
    box.outbox.release([c.delivery_id for c in again], NOW)  # a delivered one stays delivered
    assert box.row("e1", "app")["status"] == "delivered"
    box.outbox.release([], NOW)


def test_backlog_counts_pending_deliveries_per_endpoint(box: Harness) -> None:
    assert box.outbox.backlog() == {}
    publish(box, "e1", at=NOW - timedelta(minutes=5))
    publish(box, "e2")
    finish(box, "other", NOW, DELIVERED)
    assert box.outbox.backlog() == {"app": ports.DeliveryBacklog(2, NOW - timedelta(minutes=5))}
    finish(box, "app", NOW, DEAD)
    assert box.outbox.backlog() == {}


def test_prune_deletes_only_old_events_nobody_waits_for(box: Harness) -> None:
    old = NOW - timedelta(days=10)
    publish(box, "old-1", "old-2", "old-3", at=old)
    for endpoint in ENDPOINTS:
        finish(box, endpoint, old, DELIVERED)
    publish(box, "old-waiting", at=old)
    finish(box, "app", old, DEAD)  # "other" still waits for it
    publish(box, "young")
    finish(box, "app", NOW, DELIVERED)
    before = NOW - timedelta(days=7)
    assert box.outbox.prune(before, 2) == 2
    assert box.outbox.prune(before, 2) == 1
    assert box.outbox.prune(before, 2) == 0
    assert claimed_ids(box.outbox.claim("other", NOW, 10, LEASE)) == ["old-waiting", "young"]
    assert box.row("young", "app")["status"] == "delivered"


def test_an_endpoint_naming_accounts_gets_only_their_events(box: Harness) -> None:
    publish(box, "a1", account="brand_a")
    publish(box, "b1", account="brand_b")
    publish(box, "d1")
    (only,) = box.outbox.claim(BRAND_A.endpoint, NOW, 10, LEASE)
    assert (only.event_id, only.account) == ("a1", "brand_a")
    everything = box.outbox.claim("app", NOW, 10, LEASE)  # no accounts named: all of them
    assert {c.event_id: c.account for c in everything} == {
        "a1": "brand_a",
        "b1": "brand_b",
        "d1": "default",
    }
    assert json.loads(everything[0].body)["data"]["account"] == "brand_a"
    assert box.outbox.backlog() == {
        "app": ports.DeliveryBacklog(3, NOW),
        "other": ports.DeliveryBacklog(3, NOW),
        BRAND_A.endpoint: ports.DeliveryBacklog(1, NOW),
    }
