"""One received batch: decode the bodies, commit them in one transaction, then delete.

The consumer loop (``receiptd.consumer``) receives; everything that happens to a batch after
that lives here. The guarantees (docs/consumer.md has the long form):

* A message is deleted only after the transaction holding its rows committed; writes are
  idempotent, so a redelivery (crash, stale handle, failed delete) changes nothing.
* A body the domain parser rejects becomes a dead letter with its raw bytes, in the same
  transaction; a message the database refuses alone is dead-lettered with the error text.
* StoreUnavailable: nothing is deleted; the same batch is retried with backoff. On stop
  during an outage the batch is abandoned undeleted (MNS redelivers it).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime, tzinfo

from receiptd import domain, metrics, ports
from receiptd.logs import get_logger

log = get_logger(__name__)


@dataclass
class ConsumeStats:
    """Counts over a consumer's lifetime (all threads)."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    deleted: int = 0
    delete_failures: int = 0
    batches: int = 0
    errors: int = 0

    def add(self, other: ConsumeStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter: ``base`` doubling to ``cap``, each delay in [d/2, d].

    The cap is short on purpose: a retry is one cheap round trip, and the cap bounds how long
    after the database (or MNS) comes back the held batch is written: the recovery time.
    """

    base: float = 0.25
    cap: float = 2.0

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap, self.base * 2 ** min(attempt, 30))
        return float(ceiling / 2 + random.uniform(0, ceiling / 2))


def decode_batch(
    messages: list[ports.QueueMessage], kind: domain.MessageType, queue: str, tz: tzinfo
) -> ports.Batch:
    """Typed records for the good bodies, dead records (raw bytes + reason) for the rest."""
    reports: list[ports.ReportRecord] = []
    inbound: list[ports.InboundRecord] = []
    dead: list[ports.DeadRecord] = []
    for m in messages:
        try:
            if kind is domain.MessageType.REPORT:
                reports.append(ports.ReportRecord(m.message_id, domain.parse_report(m.body, tz)))
            else:
                inbound.append(ports.InboundRecord(m.message_id, domain.parse_up(m.body, tz)))
        except domain.BodyError as exc:
            dead.append(ports.DeadRecord(queue, m.message_id, m.body.encode(), str(exc)))
    return ports.Batch(reports, inbound, dead)


@dataclass
class BatchContext:
    """Where a batch came from: the worker's loop name, queue, messages, stop event, stats."""

    loop: str
    queue: ports.ReceiptQueue
    messages: list[ports.QueueMessage]
    stop: threading.Event
    stats: ConsumeStats


class _Meters:
    """The metric children of one queue label, looked up once (``labels()`` takes a lock and
    a dict lookup per call; a batch records several of them)."""

    def __init__(self, label: str) -> None:
        self.stored = metrics.MESSAGES.labels(label, "stored")
        self.duplicate = metrics.MESSAGES.labels(label, "duplicate")
        self.dead_letter = metrics.MESSAGES.labels(label, "dead_letter")
        self.delete_failed = metrics.MESSAGES.labels(label, "delete_failed")
        self.duration = metrics.BATCH_DURATION.labels(label)
        # Receipts are Aliyun's (KooMessage has no queue): sends they settled, by path.
        self.settled = metrics.SETTLED.labels(domain.Provider.ALIYUN.value, "receipt")
        self.channel = ChannelMeters(domain.Channel.MNS, label)


class ChannelMeters:
    """``receiptd_receipts{channel,type,outcome}``: the MNS and push paths count alike."""

    def __init__(self, channel: domain.Channel, label: str) -> None:
        self.stored = metrics.RECEIPTS.labels(channel.value, label, "stored")
        self.duplicate = metrics.RECEIPTS.labels(channel.value, label, "duplicate")
        self.dead_letter = metrics.RECEIPTS.labels(channel.value, label, "dead_letter")

    def count(self, stored: int, duplicates: int, dead: int) -> None:
        self.stored.inc(stored)
        self.duplicate.inc(duplicates)
        self.dead_letter.inc(dead)


class BatchWriter:
    """Commits a batch (retrying, isolating poison) and deletes what was committed."""

    DELETE_ATTEMPTS = 3

    def __init__(
        self,
        sink: ports.ReceiptSink,
        label: str,
        clock: Callable[[], datetime],
        backoff: Backoff,
    ) -> None:
        self.sink = sink
        self.label = label
        self.clock = clock
        self.backoff = backoff
        self._meters = _Meters(label)

    def process(self, batch: ports.Batch, ctx: BatchContext) -> None:
        started = time.monotonic()
        committed = self._commit(batch, ctx)
        if committed is None:
            return  # abandoned on stop during an outage: nothing deleted, MNS redelivers
        handles = [m.receipt_handle for m in ctx.messages if m.message_id in committed]
        self._delete(handles, ctx)
        ctx.stats.batches += 1
        self._meters.duration.observe(time.monotonic() - started)

    def _commit(self, batch: ports.Batch, ctx: BatchContext) -> set[str] | None:
        """Message ids committed; None when abandoned (stop requested while unavailable)."""
        attempt = 0
        while True:
            try:
                result = self.sink.write_batch(batch, self.clock())
            except ports.StoreWriteError as exc:
                if self._reachable():
                    return self._isolate(batch, ctx, exc)
                error: Exception = exc
            except ports.StoreUnavailable as exc:
                error = exc
            else:
                self._count(batch, result, ctx.stats)
                return _ids(batch)
            if ctx.stop.is_set():
                log.warning("batch_abandoned", loop=ctx.loop, messages=len(batch))
                return None
            ctx.stats.errors += 1
            metrics.LOOP_ERRORS.labels(ctx.loop, "database").inc()
            delay = self.backoff.delay(attempt)
            attempt += 1
            log.warning("batch_write_failed", loop=ctx.loop, error=str(error), retry_in=delay)
            ctx.stop.wait(delay)

    def _reachable(self) -> bool:
        try:
            self.sink.ping()
        except ports.StoreUnavailable:
            return False
        return True

    def _isolate(
        self, batch: ports.Batch, ctx: BatchContext, exc: ports.StoreWriteError
    ) -> set[str] | None:
        """The database refused the batch while reachable: one message per transaction."""
        if len(batch) == 1:
            return self._refused(batch, ctx, exc)
        log.warning("batch_isolating", loop=ctx.loop, messages=len(batch), error=str(exc))
        done: set[str] = set()
        for single in singles(batch):
            ids = self._commit(single, ctx)
            if ids is None:
                return done  # stopping mid-way: delete exactly what was committed
            done |= ids
        return done

    def _refused(
        self, single: ports.Batch, ctx: BatchContext, exc: ports.StoreWriteError
    ) -> set[str]:
        """A message the database refuses alone becomes a dead letter with the error text."""
        message_id = next(iter(_ids(single)))
        if single.dead:  # even its dead letter is refused: leave it for redelivery
            log.error("message_unstorable", loop=ctx.loop, message_id=message_id, error=str(exc))
            return set()
        body = next(m.body for m in ctx.messages if m.message_id == message_id)
        dead = ports.DeadRecord(ctx.queue.name, message_id, body.encode(), f"store refused: {exc}")
        return self._commit(ports.Batch(dead=[dead]), ctx) or set()

    def _count(self, batch: ports.Batch, result: ports.BatchResult, stats: ConsumeStats) -> None:
        stored = result.reports_new + result.inbound_new
        duplicates = len(batch.reports) + len(batch.inbound) - stored
        stats.stored += stored
        stats.duplicates += duplicates
        stats.dead_letters += len(batch.dead)
        self._meters.stored.inc(stored)
        self._meters.duplicate.inc(duplicates)
        self._meters.dead_letter.inc(len(batch.dead))
        self._meters.settled.inc(result.sends_settled)
        self._meters.channel.count(stored, duplicates, len(batch.dead))

    def _delete(self, handles: list[str], ctx: BatchContext) -> None:
        """Best effort after commit: a failed delete only means a harmless redelivery."""
        if not handles:
            return
        failures = self._try_delete(handles, ctx)
        for failure in failures:
            log.warning("delete_failed", loop=ctx.loop, code=failure.code, error=failure.message)
        ctx.stats.deleted += len(handles) - len(failures)
        ctx.stats.delete_failures += len(failures)
        self._meters.delete_failed.inc(len(failures))

    def _try_delete(self, handles: list[str], ctx: BatchContext) -> list[ports.DeleteFailure]:
        for attempt in range(self.DELETE_ATTEMPTS):
            try:
                return ctx.queue.delete(handles)
            except ports.QueueError as exc:
                ctx.stats.errors += 1
                metrics.LOOP_ERRORS.labels(ctx.loop, "queue").inc()
                last = exc
                if attempt + 1 < self.DELETE_ATTEMPTS:
                    ctx.stop.wait(min(self.backoff.delay(attempt), 2.0))
        return [ports.DeleteFailure(h, type(last).__name__, str(last)) for h in handles]


def _ids(batch: ports.Batch) -> set[str]:
    ids = {r.message_id for r in batch.reports} | {r.message_id for r in batch.inbound}
    return ids | {d.message_id for d in batch.dead}


def singles(batch: ports.Batch) -> list[ports.Batch]:
    return [
        *(ports.Batch(reports=[r]) for r in batch.reports),
        *(ports.Batch(inbound=[r]) for r in batch.inbound),
        *(ports.Batch(dead=[d]) for d in batch.dead),
    ]
