"""The SQL event outbox's own part (receiptd.db.outbox) on every database: routing events to
endpoints, replies' events, and what ``receiptd events`` lists and replays. Claiming and
recording deliveries is the port's (tests/integration/test_event_outbox_contract.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from receiptd import events
from receiptd.db import outbox
from receiptd.db.models import DELIVERY, EVENT, INBOUND

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
APP = outbox.Route("app")
REPLIES = outbox.Route("replies", frozenset({"reply.received"}))
BRAND_A = outbox.Route("brand_a_app", accounts=frozenset({"brand_a"}))


def event(
    event_id: str,
    kind: events.EventType = events.EventType.SEND_DELIVERED,
    at: datetime = NOW,
    account: str = "default",
) -> events.Event:
    return events.Event(event_id, kind, at, json.dumps({"id": event_id}), account=account)


def deliveries(engine: sa.Engine) -> list[tuple[str, str, str, int]]:
    query = sa.select(
        DELIVERY.c.event_id, DELIVERY.c.endpoint, DELIVERY.c.status, DELIVERY.c.attempts
    )
    with engine.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(query))  # type: ignore[misc]


def test_a_route_wants_its_types_or_everything_when_it_names_none() -> None:
    assert APP.wants("send.failed", "default") and APP.wants("reply.received", "default")
    assert REPLIES.wants("reply.received", "default") and not REPLIES.wants(
        "send.failed", "default"
    )


def test_a_route_naming_accounts_wants_only_their_events() -> None:
    assert BRAND_A.wants("send.failed", "brand_a") and BRAND_A.wants("reply.received", "brand_a")
    assert not BRAND_A.wants("send.failed", "default")
    both = outbox.Route("x", frozenset({"send.failed"}), frozenset({"brand_a", "brand_b"}))
    assert both.wants("send.failed", "brand_b")
    assert not both.wants("send.delivered", "brand_b") and not both.wants("send.failed", "c")
    assert APP.wants("send.failed", "brand_b")  # no accounts named: every account


def test_emit_writes_the_events_and_one_delivery_per_interested_endpoint(engine: sa.Engine) -> None:
    box = outbox.Outbox((APP, REPLIES), notify=True)  # NOTIFY on PostgreSQL, nothing elsewhere
    with engine.begin() as conn:
        box.emit(conn, [event("e1"), event("e2", events.EventType.REPLY_RECEIVED)], NOW)
        box.emit(conn, [], NOW)
    assert deliveries(engine) == [
        ("e1", "app", "pending", 0),
        ("e2", "app", "pending", 0),
        ("e2", "replies", "pending", 0),
    ]
    with engine.connect() as conn:
        assert outbox.payload(conn, "e2") == '{"id": "e2"}'
        assert outbox.payload(conn, "missing") is None


def test_an_event_no_endpoint_wants_is_kept_and_listed_bare(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        outbox.Outbox((REPLIES,)).emit(conn, [event("e1")], NOW)
    with engine.connect() as conn:
        (view,) = outbox.deliveries(conn)
        assert (view.event_id, view.type, view.endpoint, view.status) == (
            "e1",
            "send.delivered",
            None,
            None,
        )
        assert outbox.deliveries(conn, endpoint="replies") == []
        assert outbox.deliveries(conn, status="pending") == []


def test_deliveries_are_listed_newest_first_and_filtered(engine: sa.Engine) -> None:
    box = outbox.Outbox((APP, outbox.Route("other")))
    with engine.begin() as conn:
        box.emit(conn, [event("old", at=NOW - timedelta(hours=3))], NOW)
        box.emit(conn, [event("new")], NOW)
        conn.execute(
            DELIVERY.update()
            .where(DELIVERY.c.event_id == "old", DELIVERY.c.endpoint == "other")
            .values(status="dead", attempts=7)
        )
    with engine.connect() as conn:
        listed = [(v.event_id, v.endpoint) for v in outbox.deliveries(conn)]
        assert listed == [("new", "app"), ("new", "other"), ("old", "app"), ("old", "other")]
        assert [v.event_id for v in outbox.deliveries(conn, since=NOW - timedelta(hours=1))] == [
            "new",
            "new",
        ]
        (dead,) = outbox.deliveries(conn, status="dead")
        assert (dead.event_id, dead.endpoint, dead.attempts) == ("old", "other", 7)
        assert [v.endpoint for v in outbox.deliveries(conn, event_id="old", endpoint="app")] == [
            "app"
        ]
        assert len(outbox.deliveries(conn, limit=3)) == 3


def test_replay_starts_over_and_gives_a_new_endpoint_its_first_delivery(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        outbox.Outbox((APP,)).emit(
            conn, [event("e1"), event("e2", events.EventType.REPLY_RECEIVED)], NOW
        )
        conn.execute(DELIVERY.update().values(status="dead", attempts=9, last_error="gone"))
    later = NOW + timedelta(hours=1)
    with engine.begin() as conn:
        assert outbox.replay(conn, [APP, REPLIES], later, event_ids=["e1", "e2"]) == 3
    assert deliveries(engine) == [
        ("e1", "app", "pending", 0),
        ("e2", "app", "pending", 0),
        ("e2", "replies", "pending", 0),  # only the type it wants
    ]
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(DELIVERY.c.next_attempt_at, DELIVERY.c.pending_since, DELIVERY.c.last_error)
        )
        assert {tuple(r) for r in rows} == {(later, later, None)}


def test_replay_since_touches_only_newer_events(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        outbox.Outbox(()).emit(conn, [event("old", at=NOW - timedelta(days=2)), event("new")], NOW)
        assert outbox.replay(conn, [APP], NOW, since=NOW - timedelta(days=1)) == 1
    assert deliveries(engine) == [("new", "app", "pending", 0)]


def test_replay_gives_each_endpoint_only_the_accounts_it_wants(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        outbox.Outbox(()).emit(
            conn, [event("a1", account="brand_a"), event("b1", account="brand_b"), event("d1")], NOW
        )
        assert outbox.replay(conn, [APP, BRAND_A], NOW, since=NOW) == 4
    assert deliveries(engine) == [
        ("a1", "app", "pending", 0),
        ("a1", "brand_a_app", "pending", 0),
        ("b1", "app", "pending", 0),
        ("d1", "app", "pending", 0),
    ]
    with engine.begin() as conn:  # named events too: an account's event it does not want stays
        assert outbox.replay(conn, [BRAND_A], NOW, event_ids=["b1", "d1"]) == 0


def test_deliveries_are_listed_per_account(engine: sa.Engine) -> None:
    box = outbox.Outbox((APP, BRAND_A))
    with engine.begin() as conn:
        box.emit(conn, [event("a1", account="brand_a"), event("d1")], NOW)
    with engine.connect() as conn:
        listed = [(v.event_id, v.account, v.endpoint) for v in outbox.deliveries(conn)]
        assert sorted(listed) == [
            ("a1", "brand_a", "app"),
            ("a1", "brand_a", "brand_a_app"),
            ("d1", "default", "app"),
        ]
        assert [(v.event_id, v.endpoint) for v in outbox.deliveries(conn, account="default")] == [
            ("d1", "app")
        ]
        assert outbox.deliveries(conn, account="brand_b") == []


def test_replies_stored_emits_one_reply_event_per_row_masked_by_default(engine: sa.Engine) -> None:
    row = {
        "mns_message_id": "M1",
        "phone_number": "13812345678",
        "content": "TD",
        "send_time": NOW,
        "dest_code": "1234",
        "sequence_id": "9",
        "received_at": NOW,
    }
    with engine.begin() as conn:
        (inbound_id,) = conn.execute(INBOUND.insert().returning(INBOUND.c.id), [row]).scalars()
        outbox.replies_stored(conn, [inbound_id], NOW, None)  # no webhooks: nothing
        outbox.replies_stored(conn, [], NOW, outbox.Outbox((APP,)))
        assert conn.execute(sa.select(sa.func.count()).select_from(EVENT)).scalar() == 0
        outbox.replies_stored(conn, [inbound_id], NOW, outbox.Outbox((APP,)))
        (stored,) = conn.execute(sa.select(EVENT)).mappings()
    assert (stored["type"], stored["inbound_id"], stored["account"]) == (
        "reply.received",
        inbound_id,
        "default",  # a row stored without one is the default account's
    )
    data = json.loads(stored["payload"])["data"]
    assert (data["phone_number"], data["content"], data["account"]) == (
        "138****5678",
        "TD",
        "default",
    )
