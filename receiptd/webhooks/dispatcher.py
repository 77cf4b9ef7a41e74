"""Webhook delivery: POST outbox events to each endpoint, signed the Standard Webhooks way.

One worker thread per endpoint claims due deliveries in batches from the outbox
(``ports.EventOutbox``: SQL in :mod:`receiptd.db.deliveries`, an in-memory twin in
:mod:`receiptd.testing`), POSTs them with at most ``concurrency`` requests in flight,
and records each outcome: 2xx is delivered; anything else (another status, a timeout, a
refused connection) is tried again after an exponential backoff with jitter, until the
delivery has been failing for the retry period; then it is dead (``receiptd events replay``
brings it back). Delivery is at-least-once: a crash between a POST and its record repeats
the POST once the claim's lease ends, under the same ``webhook-id`` and body, so receivers
de-duplicate by ``webhook-id`` (docs/webhooks.md).

A down or slow endpoint delays only its own deliveries: consumers and readiness never wait
for webhooks (the events are already committed in the outbox).
"""

from __future__ import annotations

import functools
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import standardwebhooks
import urllib3

from receiptd import __version__, errors, events, metrics, ports
from receiptd.clock import Clock, utc_now
from receiptd.config.values import WebhookEndpoint
from receiptd.logs import get_logger

log = get_logger(__name__)
BACKLOG_REFRESH = 5.0
PRUNE_BATCH = 1000
DEAD = events.DeliveryStatus.DEAD


@dataclass(frozen=True, slots=True)
class Policy:
    """Retries, backoff, polling and batch size; built by ``receiptd.wiring`` from
    ``settings.parts.webhooks`` (the defaults are the settings')."""

    retry_period: float
    backoff_initial: float
    backoff_max: float
    poll_interval: float
    batch_size: int


@dataclass(frozen=True, slots=True)
class Response:
    status_code: int | None  # None: no HTTP answer (timeout, refused, reset)
    error: str | None = None


class Sender:
    """POSTs an event body to one endpoint with the ``webhook-id``, ``webhook-timestamp`` and
    ``webhook-signature`` headers (signed by the ``standardwebhooks`` library). Redirects are
    not followed: a 3xx is a failed attempt like any other non-2xx answer."""

    def __init__(self, endpoint: WebhookEndpoint) -> None:
        self.url = endpoint.url
        self._signer = standardwebhooks.Webhook(endpoint.secret.get_secret_value())
        # One connection pool for the endpoint's host (a PoolManager would parse the URL and
        # look the pool up on every request); keep-alive connections, one per request slot.
        parsed = urllib3.util.parse_url(endpoint.url)
        self._target = parsed.request_uri
        self._pool = urllib3.connection_from_url(
            endpoint.url,
            maxsize=endpoint.concurrency,
            block=True,
            retries=False,
            timeout=urllib3.Timeout(total=endpoint.timeout),
        )

    def post(self, event_id: str, body: str) -> Response:
        # The signature's timestamp is wall-clock time: receivers check it against theirs.
        now = utc_now()
        headers = {
            "content-type": "application/json",
            "user-agent": f"receiptd/{__version__}",
            "webhook-id": event_id,
            "webhook-timestamp": str(math.floor(now.timestamp())),
            "webhook-signature": self._signer.sign(event_id, now, body),
        }
        try:
            response = self._pool.urlopen(
                "POST", self._target, body=body.encode("utf-8"), headers=headers, redirect=False
            )
        # Everything a receiver can do to an attempt: urllib3 wraps an answer cut short, a
        # reset, bytes that are not HTTP and timeouts in its HTTPError (ProtocolError,
        # ReadTimeoutError); OSError covers the rest. A failed attempt, retried on backoff
        # (tests/integration/test_misbehaving_peers.py).
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            return Response(None, errors.describe(exc, cause="reason", limit=300))
        code = int(response.status)
        return Response(code, None if events.is_success(code) else f"HTTP {code}")

    def close(self) -> None:
        self._pool.close()


class EndpointWorker:
    """Claims, POSTs and records one endpoint's deliveries; ``run_once`` is one batch."""

    def __init__(
        self,
        endpoint: WebhookEndpoint,
        outbox: ports.EventOutbox,
        policy: Policy,
        health: ports.LoopHealth,
        *,
        post: Callable[[str, str], Response] | None = None,
        clock: Clock = utc_now,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.endpoint = endpoint
        self.name = endpoint.name
        self.loop_name = f"webhooks.{endpoint.name}"
        self._outbox = outbox
        self._policy = policy
        self._health = health
        self._sender = Sender(endpoint) if post is None else None
        self._post = post or self._sender.post  # type: ignore[union-attr]
        self._clock = clock
        self._rand = rand
        self._pool = ThreadPoolExecutor(endpoint.concurrency, f"webhook-{endpoint.name}")
        self.stopping = threading.Event()
        self._retry_period = endpoint.retry_period or policy.retry_period
        per_thread = math.ceil(policy.batch_size / endpoint.concurrency)
        # A claim outlives its batch's worst case (every request timing out) by one more
        # timeout plus 5 s for the database; then a dead worker's claims are due again.
        self._lease = timedelta(seconds=(per_thread + 1) * endpoint.timeout + 5)

    def run_once(self) -> int:
        """Claim one batch of due deliveries, POST them, record the outcomes. Returns the
        number claimed."""
        now = self._clock()
        claimed = self._outbox.claim(self.name, now, self._policy.batch_size, self._lease)
        if not claimed:
            return 0
        responses = list(self._pool.map(self._attempt, claimed))
        done = self._clock()
        attempts = [
            self._decide(c, r, done)
            for c, r in zip(claimed, responses, strict=True)
            if r is not None
        ]
        skipped = [c.delivery_id for c, r in zip(claimed, responses, strict=True) if r is None]
        self._outbox.record(attempts, done)
        self._outbox.release(skipped, done)
        self._count(claimed, attempts, done)
        return len(claimed)

    def _attempt(self, claimed: ports.ClaimedDelivery) -> Response | None:
        if self.stopping.is_set():
            return None  # not sent: released for the next worker at once
        response = self._post(claimed.event_id, claimed.body)
        self._health.heartbeat(self.loop_name)
        return response

    def _decide(
        self, claimed: ports.ClaimedDelivery, response: Response, now: datetime
    ) -> ports.DeliveryAttempt:
        if events.is_success(response.status_code):
            result = events.DeliveryStatus.DELIVERED
            return ports.DeliveryAttempt(claimed.delivery_id, result, response.status_code, None)
        p = self._policy
        if events.gives_up(claimed.pending_since, now, self._retry_period):
            result, next_at = events.DeliveryStatus.DEAD, None
        else:
            delay = events.retry_delay(
                claimed.attempts + 1, p.backoff_initial, p.backoff_max, self._rand
            )
            result, next_at = events.DeliveryStatus.PENDING, now + timedelta(seconds=delay)
        return ports.DeliveryAttempt(
            claimed.delivery_id, result, response.status_code, response.error, next_at
        )

    def _count(
        self,
        claimed: Sequence[ports.ClaimedDelivery],
        attempts: Sequence[ports.DeliveryAttempt],
        now: datetime,
    ) -> None:
        by_id = {c.delivery_id: c for c in claimed}
        dead = [a for a in attempts if a.result is DEAD]
        if dead:  # one line per batch, whatever the number of dead deliveries
            log.warning(
                "webhooks_dead",
                endpoint=self.name,
                events=len(dead),
                event_ids=[by_id[a.delivery_id].event_id for a in dead[:5]],
                error=dead[0].error,
            )
        for a in attempts:
            c = by_id[a.delivery_id]
            if a.result is events.DeliveryStatus.DELIVERED:
                metrics.EVENTS.labels(c.account, c.event_type, "delivered").inc()
                metrics.EVENT_DELIVERY_SECONDS.labels(self.name).observe(
                    max((now - c.created_at).total_seconds(), 0.0)
                )
            elif a.result is DEAD:
                metrics.EVENTS.labels(c.account, c.event_type, "dead").inc()
            else:
                metrics.EVENTS.labels(c.account, c.event_type, "failed").inc()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._sender is not None:
            self._sender.close()


class Dispatcher:
    """The daemon's webhook component (a service Loop): one thread per endpoint plus one
    that refreshes the backlog gauges."""

    def __init__(
        self,
        workers: Sequence[EndpointWorker],
        outbox: ports.EventOutbox,
        health: ports.LoopHealth,
        policy: Policy,
        clock: Clock = utc_now,
    ) -> None:
        self.workers = list(workers)
        self._outbox = outbox
        self._health = health
        self._policy = policy
        self._clock = clock
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._failed: BaseException | None = None

    @property
    def failed(self) -> BaseException | None:
        return self._failed

    def start(self) -> None:
        targets = [(f"webhook-{w.name}", functools.partial(self._serve, w)) for w in self.workers]
        targets.append(("webhook-backlog", functools.partial(self._refresh_backlog)))
        for name, target in targets:
            thread = threading.Thread(target=self._guard(target), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("webhooks_started", endpoints=[w.name for w in self.workers])

    def stop(self) -> None:
        self._stop.set()
        for worker in self.workers:
            worker.stopping.set()

    def join(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = any(t.is_alive() for t in self._threads)
        if not alive:
            for worker in self.workers:
                worker.close()
        return not alive

    def _guard(self, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except Exception as exc:  # a defect: the service exits 1 and says why
                log.exception("webhooks_died", error=repr(exc))
                self._failed = exc

        return run

    def _serve(self, worker: EndpointWorker) -> None:
        failures = 0
        while not self._stop.is_set():
            self._health.heartbeat(worker.loop_name)
            try:
                claimed = worker.run_once()
            except ports.StoreError as exc:
                failures += 1
                self._health.error(worker.loop_name, str(exc))
                log.warning("webhooks_store_error", endpoint=worker.name, error=str(exc))
                self._stop.wait(min(30.0, 0.5 * 2 ** min(failures, 6)))
                continue
            failures = 0
            self._health.success(worker.loop_name)
            if claimed < self._policy.batch_size:
                self._stop.wait(self._policy.poll_interval)

    def _refresh_backlog(self) -> None:
        while not self._stop.is_set():
            try:
                refresh_backlog(self._outbox, [w.name for w in self.workers], self._clock())
            except ports.StoreError as exc:
                log.warning("webhooks_backlog_unavailable", error=str(exc))
            self._stop.wait(BACKLOG_REFRESH)


def refresh_backlog(outbox: ports.EventOutbox, endpoints: Sequence[str], now: datetime) -> None:
    """Set ``receiptd_events_pending`` and the oldest pending age for every endpoint."""
    backlog = outbox.backlog()
    for name in endpoints:
        entry = backlog.get(name, ports.DeliveryBacklog(0, None))
        metrics.EVENTS_PENDING.labels(name).set(entry.pending)
        age = 0.0 if entry.oldest is None else max((now - entry.oldest).total_seconds(), 0.0)
        metrics.EVENTS_OLDEST_PENDING.labels(name).set(age)


class EventPruner:
    """Deletes events older than the retention that no endpoint waits for, in bounded
    batches (one short transaction each), heartbeating between them."""

    def __init__(
        self,
        outbox: ports.EventOutbox,
        retention_days: float,
        health: ports.LoopHealth,
        clock: Clock = utc_now,
        batch: int = PRUNE_BATCH,
    ) -> None:
        self._outbox = outbox
        self._retention = timedelta(days=retention_days)
        self._health = health
        self._clock = clock
        self._batch = batch
        self._stop = threading.Event()

    def run(self) -> int:
        self._stop.clear()
        before = self._clock() - self._retention
        total = 0
        while not self._stop.is_set():
            deleted = self._outbox.prune(before, self._batch)
            total += deleted
            self._health.heartbeat("job.events_prune")
            if deleted < self._batch:
                break
        if total:
            log.info("events_pruned", events=total, before=events.utc_text(before))
        return total

    def stop(self) -> None:
        self._stop.set()
