"""What the event-outbox twin (receiptd.testing.outbox) adds to the contract suite
(tests/integration/test_event_outbox_contract.py): publish, per-endpoint rows, the outage switch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from receiptd import domain, events, ports
from receiptd.testing import InMemoryEventOutbox

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)


def event(event_id: str, at: datetime = NOW) -> events.Event:
    return events.Event(event_id, events.EventType.SEND_DELIVERED, at, f'{{"id": "{event_id}"}}')


def test_publish_writes_one_delivery_per_endpoint_due_now() -> None:
    outbox = InMemoryEventOutbox(endpoints=("app", "audit"))
    outbox.publish([event("e1")], NOW)
    for endpoint in ("app", "audit"):
        row = outbox.delivery("e1", endpoint)
        assert (row.status, row.attempts, row.next_attempt_at) == (
            domain.DeliveryStatus.PENDING,
            0,
            NOW,
        )
    (claimed,) = outbox.claim("audit", NOW, 10, LEASE)
    assert (claimed.event_id, claimed.event_type, claimed.body) == (
        "e1",
        "send.delivered",
        '{"id": "e1"}',
    )
    assert outbox.claim("audit", NOW, 10, LEASE) == []  # leased
    assert len(outbox.claim("app", NOW, 10, LEASE)) == 1  # each endpoint its own


def test_recording_an_attempt_keeps_at_most_512_characters_of_the_error() -> None:
    outbox = InMemoryEventOutbox()
    outbox.publish([event("e1")], NOW)
    (claimed,) = outbox.claim("app", NOW, 10, LEASE)
    retry = NOW + timedelta(minutes=1)
    attempt = ports.DeliveryAttempt(
        claimed.delivery_id, domain.DeliveryStatus.PENDING, 500, "x" * 600, retry
    )
    outbox.record([attempt], NOW)
    row = outbox.delivery("e1")
    assert (row.attempts, row.last_status_code, len(row.last_error or "")) == (1, 500, 512)
    assert row.next_attempt_at == retry and row.delivered_at is None
    assert outbox.backlog() == {"app": ports.DeliveryBacklog(1, NOW)}


def test_a_delivered_event_is_pruned_with_its_deliveries_a_waiting_one_is_not() -> None:
    outbox = InMemoryEventOutbox()
    outbox.publish([event("e1"), event("e2")], NOW)
    first, _ = outbox.claim("app", NOW, 10, LEASE)
    outbox.record(
        [ports.DeliveryAttempt(first.delivery_id, domain.DeliveryStatus.DELIVERED, 200, None)], NOW
    )
    assert outbox.delivery("e1").delivered_at == NOW
    assert outbox.prune(NOW + timedelta(days=1), 10) == 1
    assert set(outbox.events) == {"e2"}
    assert [r.event.id for r in outbox.rows.values()] == ["e2"]


def test_an_unavailable_outbox_fails_every_port_call() -> None:
    outbox = InMemoryEventOutbox()
    outbox.publish([event("e1")], NOW)
    outbox.unavailable = True
    calls = [
        lambda: outbox.claim("app", NOW, 10, LEASE),
        lambda: outbox.record([], NOW),
        lambda: outbox.release([1], NOW),
        outbox.backlog,
        lambda: outbox.prune(NOW, 10),
    ]
    for call in calls:
        with pytest.raises(ports.StoreUnavailable):
            call()
    outbox.unavailable = False
    assert len(outbox.claim("app", NOW, 10, LEASE)) == 1
