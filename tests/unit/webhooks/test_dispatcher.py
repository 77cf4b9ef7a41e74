"""The webhook dispatcher on the in-memory outbox: no database, no socket.

Backoff and the retry period, bounded concurrency, a stopping worker handing its claims back,
the backlog gauges, prune batches, a store outage. What the SQL outbox and a real HTTP
receiver add is proven in tests/integration/test_webhooks.py and the contract suite
tests/integration/test_event_outbox_contract.py.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

from pydantic import SecretStr

from receiptd import config, events, metrics
from receiptd.daemon.health import Health
from receiptd.testing import InMemoryEventOutbox
from receiptd.webhooks import dispatcher as webhooks

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
POLICY = webhooks.Policy(
    retry_period=3600, backoff_initial=10, backoff_max=600, poll_interval=0.5, batch_size=50
)
TYPES = (events.EventType.SEND_DELIVERED, events.EventType.SEND_FAILED)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Endpoint:
    """A fake POST: answers with ``status`` (None: no HTTP answer) and counts what it saw."""

    def __init__(self, status: int | None = 200, delay: float = 0.0) -> None:
        self.status = status
        self.delay = delay
        self.posted: list[str] = []
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()

    def __call__(self, event_id: str, body: str) -> webhooks.Response:
        with self._lock:
            self.posted.append(event_id)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        time.sleep(self.delay)
        with self._lock:
            self.in_flight -= 1
        if self.status is None:
            return webhooks.Response(None, "ConnectionRefusedError: [Errno 111] refused")
        ok = events.is_success(self.status)
        return webhooks.Response(self.status, None if ok else f"HTTP {self.status}")


def outbox_with(n: int, created_at: datetime = NOW) -> InMemoryEventOutbox:
    box = InMemoryEventOutbox()
    box.publish(
        [events.Event(f"e{i}", TYPES[i % 2], created_at, f'{{"id": "e{i}"}}') for i in range(n)],
        created_at,
    )
    return box


def worker(
    box: InMemoryEventOutbox, post: Endpoint, clock: Clock, **kw: object
) -> webhooks.EndpointWorker:
    hook = config.WebhookEndpoint(
        name="app",
        url="https://app.example/hooks",
        secret=SecretStr(SECRET),
        **kw,  # type: ignore[arg-type]
    )
    return webhooks.EndpointWorker(
        hook, box, POLICY, Health(), post=post, clock=clock, rand=lambda: 0.5
    )


def statuses(box: InMemoryEventOutbox) -> set[str]:
    return {r.status.value for r in box.rows.values()}


def test_delivered_once_and_counted() -> None:
    box, post = outbox_with(3), Endpoint(204)
    w = worker(box, post, Clock())
    before = metrics.EVENTS.labels("default", "send.delivered", "delivered")._value.get()
    assert w.run_once() == 3
    assert w.run_once() == 0
    assert sorted(post.posted) == ["e0", "e1", "e2"]
    assert statuses(box) == {"delivered"}
    assert (
        metrics.EVENTS.labels("default", "send.delivered", "delivered")._value.get() == before + 2
    )


def test_attempts_are_counted_under_their_events_account() -> None:
    box = InMemoryEventOutbox()
    sent = events.EventType.SEND_DELIVERED
    box.publish(
        [
            events.Event("a1", sent, NOW, "{}", account="brand_a"),
            events.Event("a2", sent, NOW, "{}", account="brand_a"),
            events.Event("b1", sent, NOW, "{}", account="brand_b"),
        ],
        NOW,
    )

    def counted(account: str) -> float:
        return float(metrics.EVENTS.labels(account, "send.delivered", "failed")._value.get())

    before = {a: counted(a) for a in ("brand_a", "brand_b", "default")}
    assert worker(box, Endpoint(503), Clock()).run_once() == 3
    after = {a: counted(a) - n for a, n in before.items()}
    assert after == {"brand_a": 2, "brand_b": 1, "default": 0}


def test_unreachable_endpoint_backs_off_and_shows_in_the_backlog() -> None:
    box, clock = outbox_with(3), Clock()
    down = Endpoint(None)
    w = worker(box, down, clock)
    assert w.run_once() == 3
    assert {(r.status.value, r.attempts) for r in box.rows.values()} == {("pending", 1)}
    assert all(r.last_error and "Connection" in r.last_error for r in box.rows.values())
    clock.advance(60)
    webhooks.refresh_backlog(box, ["app"], clock.now)
    assert metrics.EVENTS_PENDING.labels("app")._value.get() == 3
    assert metrics.EVENTS_OLDEST_PENDING.labels("app")._value.get() == 60
    assert w.run_once() == 3  # backoff 10 s (jitter 0.5: 7.5 s) has passed: tried again
    clock.advance(5)
    assert w.run_once() == 0  # next try not due yet (second backoff: 15 s)
    down.status = 200
    clock.advance(30)
    assert w.run_once() == 3
    assert sorted(down.posted) == ["e0", "e0", "e0", "e1", "e1", "e1", "e2", "e2", "e2"]
    webhooks.refresh_backlog(box, ["app"], clock.now)
    assert metrics.EVENTS_PENDING.labels("app")._value.get() == 0
    assert metrics.EVENTS_OLDEST_PENDING.labels("app")._value.get() == 0


def test_500_forever_is_dead_after_the_retry_period() -> None:
    box, clock = outbox_with(3), Clock()
    w = worker(box, Endpoint(500), clock)
    before = metrics.EVENTS.labels("default", "send.failed", "dead")._value.get()
    tries = 0
    while statuses(box) != {"dead"}:
        w.run_once()
        tries += 1
        clock.advance(POLICY.backoff_max)
        assert tries < 20
    # 10, 20, ... 600 s: six tries under the backoff cap, then every 600 s to 3600 s
    assert 6 <= tries <= 12
    rows = box.rows.values()
    assert all(r.last_status_code == 500 and r.last_error == "HTTP 500" for r in rows)
    assert metrics.EVENTS.labels("default", "send.failed", "dead")._value.get() == before + 1


def test_bounded_concurrency_per_endpoint() -> None:
    box, slow = outbox_with(12), Endpoint(200, delay=0.1)
    w = worker(box, slow, Clock(), concurrency=3)
    assert w.run_once() == 12
    assert len(set(slow.posted)) == 12
    assert 2 <= slow.max_in_flight <= 3


def test_a_stopping_worker_hands_its_claims_back() -> None:
    box, post, clock = outbox_with(3), Endpoint(200), Clock()
    w = worker(box, post, clock)
    w.stopping.set()
    assert w.run_once() == 3  # claimed, none sent
    assert post.posted == []
    assert {(r.status.value, r.attempts, r.next_attempt_at) for r in box.rows.values()} == {
        ("pending", 0, NOW)
    }
    assert worker(box, post, clock).run_once() == 3  # due again at once, not at the lease's end


def test_prune_in_batches_keeps_what_an_endpoint_still_waits_for() -> None:
    box, clock = outbox_with(3, NOW - timedelta(days=8)), Clock()
    clock.now -= timedelta(days=8)
    assert worker(box, Endpoint(200), clock).run_once() == 3
    box.publish([events.Event("late", TYPES[0], NOW - timedelta(days=8), "{}")], NOW)
    pruner = webhooks.EventPruner(box, 7, Health(), clock=lambda: NOW, batch=2)
    assert pruner.run() == 3
    assert list(box.events) == ["late"]
    assert len(box.rows) == 1


def test_a_store_outage_backs_the_worker_off_and_shows_in_health() -> None:
    box, health = outbox_with(1), Health()
    box.unavailable = True
    hook = config.WebhookEndpoint(name="app", url="https://app.example/h", secret=SecretStr(SECRET))
    w = webhooks.EndpointWorker(hook, box, POLICY, health, post=Endpoint(200))
    dispatcher = webhooks.Dispatcher([w], box, health, POLICY)

    def last_error() -> str | None:
        state = health.snapshot().get(w.loop_name)
        return None if state is None else state.last_error

    dispatcher.start()
    try:
        deadline = time.monotonic() + 5
        while last_error() is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        dispatcher.stop()
        assert dispatcher.join(5)
    assert "unavailable" in str(last_error())
    assert dispatcher.failed is None  # an outage is waited out, not a defect
    assert statuses(box) == {"pending"}


def test_events_stay_pure() -> None:
    assert events.retry_delay(1, 10, 600, lambda: 0.0) == 5
    assert events.retry_delay(3, 10, 600, lambda: 1.0) == 40
    assert events.retry_delay(30, 10, 600, lambda: 1.0) == 600
    assert events.gives_up(NOW, NOW + timedelta(hours=24), 86400)
    assert not events.gives_up(NOW, NOW + timedelta(hours=23), 86400)
