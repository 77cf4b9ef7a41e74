"""One received batch: decode the bodies, commit them in one transaction, then delete.

The consumer loop (``receiptd.ingest.mns.consumer``) receives; everything that happens to a
batch after that lives here. The guarantees (docs/consumer.md has the long form):

* A message is deleted only after the transaction holding its rows committed; writes are
  idempotent, so a redelivery (crash, stale handle, failed delete) changes nothing.
* A body the domain parser rejects (or crashes on) becomes a dead letter with its raw bytes,
  in the same transaction; a message the database refuses (or the store crashes on) alone is
  dead-lettered with the error text; a message delivered more than ``max_dequeue`` times is
  dead-lettered unread (``receiptd.ingest.poison``).
* StoreUnavailable: nothing is deleted; the same batch is retried with backoff. On stop
  during an outage the batch is abandoned undeleted (MNS redelivers it).
* After each commit, every receipt and reply it held (stored or duplicate) is observed in
  ``receiptd_receipt_lag_seconds``: its MNS EnqueueTime to the commit (``observe_lag``, which
  the push listener shares).
"""

from __future__ import annotations

import functools
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from datetime import datetime, tzinfo

from receiptd import domain, metrics, ports, receipt_shapes
from receiptd.ingest import poison
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


DEFAULT_MAX_DEQUEUE = 5  # settings.consumer_max_dequeue


def decode_batch(
    messages: list[ports.QueueMessage],
    kind: domain.MessageType,
    queue: str,
    tz: tzinfo,
    max_dequeue: int = DEFAULT_MAX_DEQUEUE,
    account: str = domain.DEFAULT_ACCOUNT,
) -> ports.Batch:
    """Typed records for the good bodies, dead records (raw bytes + reason) for the rest.

    Nothing a body holds can make this raise: a body the parser rejects (``BodyError``) and a
    body it crashed on (any other exception: a receiptd defect, logged as ``body_crashed``)
    are both dead-lettered. A message MNS has delivered more than ``max_dequeue`` times
    (0: no bound) without receiptd storing or dead-lettering it is quarantined before
    decoding: whatever killed the process on it before cannot kill it again. Every record
    is ``account``'s: the queue is that account's.
    """
    reports: list[ports.ReportRecord] = []
    inbound: list[ports.InboundRecord] = []
    dead: list[ports.DeadRecord] = []
    label = kind.label
    for m in messages:
        if max_dequeue and m.dequeue_count > max_dequeue:
            dead.append(poison.quarantine(m, queue, label, max_dequeue, account))
            continue
        try:
            if kind.is_receipt:  # any of the three receipt shapes, on either report queue
                report = receipt_shapes.parse_receipt(m.body, tz)
                reports.append(ports.ReportRecord(m.message_id, report, account=account))
            else:
                reply = domain.parse_up(m.body, tz)
                inbound.append(ports.InboundRecord(m.message_id, reply, account=account))
        except domain.BodyError as exc:
            dead.append(poison.dead_message(queue, m, str(exc), account))
        except Exception as exc:  # a defect of receiptd's decoder: surfaced, never fatal
            poison.report_crash("decode", domain.Channel.MNS, queue, m.message_id, exc)
            dead.append(poison.dead_message(queue, m, f"decoder crashed: {exc!r}", account))
    return ports.Batch(reports, inbound, dead)


@dataclass
class BatchContext:
    """Where a batch came from: the worker's loop name, queue, messages, stop event, stats."""

    loop: str
    queue: ports.ReceiptQueue
    messages: list[ports.QueueMessage]
    stop: threading.Event
    stats: ConsumeStats

    @functools.cached_property
    def enqueued(self) -> dict[str, datetime | None]:
        """Each message's MNS EnqueueTime, by message id (for the receipt lag)."""
        return {m.message_id: m.enqueued_at for m in self.messages}


def observe_lag(
    channel: domain.Channel,
    account: str,
    arrivals: Iterable[datetime | None],
    committed: datetime,
) -> None:
    """``receiptd_receipt_lag_seconds``: one observation per record of a commit that
    succeeded, from its arrival (MNS EnqueueTime; a push: the request's arrival) to
    ``committed``. An unknown arrival (None) is skipped; clock skew between the provider and
    this host can make the lag negative: it counts as 0. Never raises: a metric must not fail
    a committed batch (STYLE "Health is data"); a defect here is logged as ``metric_failed``.
    """
    try:
        child = metrics.RECEIPT_LAG.labels(channel.value, account)
        for arrived in arrivals:
            if arrived is not None:
                child.observe(max(0.0, (committed - arrived).total_seconds()))
    except Exception as exc:  # e.g. a naive arrival time from an adapter: surfaced, not fatal
        log.warning("metric_failed", metric="receiptd_receipt_lag_seconds", error=repr(exc))


class _Meters:
    """The metric children of one account's queue label, looked up once (``labels()`` takes
    a lock and a dict lookup per call; a batch records several of them)."""

    def __init__(self, label: str, account: str) -> None:
        self.stored = metrics.MESSAGES.labels(account, label, "stored")
        self.duplicate = metrics.MESSAGES.labels(account, label, "duplicate")
        self.dead_letter = metrics.MESSAGES.labels(account, label, "dead_letter")
        self.delete_failed = metrics.MESSAGES.labels(account, label, "delete_failed")
        self.duration = metrics.BATCH_DURATION.labels(account, label)
        # Receipts are Aliyun's (KooMessage has no queue): sends they settled, by path.
        self.settled = metrics.SETTLED.labels(domain.Provider.ALIYUN.value, account, "receipt")
        self.channel = ChannelMeters(domain.Channel.MNS, label, account)


class ChannelMeters:
    """``receiptd_receipts{account,channel,type,outcome}``: the MNS and push paths count
    alike."""

    def __init__(
        self, channel: domain.Channel, label: str, account: str = domain.DEFAULT_ACCOUNT
    ) -> None:
        self.stored = metrics.RECEIPTS.labels(account, channel.value, label, "stored")
        self.duplicate = metrics.RECEIPTS.labels(account, channel.value, label, "duplicate")
        self.dead_letter = metrics.RECEIPTS.labels(account, channel.value, label, "dead_letter")

    def count(self, stored: int, duplicates: int, dead: int) -> None:
        self.stored.inc(stored)
        self.duplicate.inc(duplicates)
        self.dead_letter.inc(dead)


class BatchWriter:
    """Commits a batch (retrying, isolating poison) and deletes what was committed."""

    DELETE_ATTEMPTS = 3
    AUTH_RETRIES = 3  # immediate retries with a refreshed token, before attempts count

    def __init__(
        self,
        sink: ports.ReceiptSink,
        label: str,
        clock: Callable[[], datetime],
        backoff: Backoff,
        account: str = domain.DEFAULT_ACCOUNT,
    ) -> None:
        self.sink = sink
        self.label = label
        self.account = account
        self.clock = clock
        self.backoff = backoff
        self._meters = _Meters(label, account)

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
                return self._write(batch, ctx)
            except ports.StoreUnavailable as exc:
                error = exc
            if ctx.stop.is_set():
                log.warning("batch_abandoned", loop=ctx.loop, messages=len(batch))
                return None
            ctx.stats.errors += 1
            metrics.LOOP_ERRORS.labels(ctx.loop, "database").inc()
            delay = self.backoff.delay(attempt)
            attempt += 1
            log.warning("batch_write_failed", loop=ctx.loop, error=str(error), retry_in=delay)
            ctx.stop.wait(delay)

    def _write(self, batch: ports.Batch, ctx: BatchContext) -> set[str]:
        """One transaction; when the database refuses it while reachable (or the store raises
        anything else: a defect), one message per transaction. StoreUnavailable propagates."""
        writes = poison.Writes(
            self.sink,
            self.clock,
            functools.partial(self._dead_letter, ctx),
            lambda single, result: self._count(single, result, ctx),
            ctx.loop,
            domain.Channel.MNS,
        )
        return poison.write_isolating(
            writes,
            batch,
            lambda error: log.warning(
                "batch_isolating", loop=ctx.loop, messages=len(batch), error=error
            ),
        )

    def _dead_letter(self, ctx: BatchContext, single: ports.Batch, reason: str) -> ports.DeadRecord:
        """A message the database refuses alone: its body's exact bytes, with the reason."""
        message_id = next(iter(poison.ids(single)))
        message = next(m for m in ctx.messages if m.message_id == message_id)
        return poison.dead_message(ctx.queue.name, message, reason, self.account)

    def _count(self, batch: ports.Batch, result: ports.BatchResult, ctx: BatchContext) -> None:
        """After each commit (the batch's, or one record's while isolating)."""
        stored = result.reports_new + result.inbound_new
        duplicates = len(batch.reports) + len(batch.inbound) - stored
        stats = ctx.stats
        stats.stored += stored
        stats.duplicates += duplicates
        stats.dead_letters += len(batch.dead)
        self._meters.stored.inc(stored)
        self._meters.duplicate.inc(duplicates)
        self._meters.dead_letter.inc(len(batch.dead))
        self._meters.settled.inc(result.sends_settled)
        self._meters.channel.count(stored, duplicates, len(batch.dead))
        ids = [r.message_id for r in batch.reports] + [r.message_id for r in batch.inbound]
        arrivals = [ctx.enqueued.get(i) for i in ids]  # stored or duplicate, not dead letters
        observe_lag(domain.Channel.MNS, self.account, arrivals, self.clock())

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
        attempt = auth_errors = 0
        while True:
            try:
                return ctx.queue.delete(handles)
            except ports.QueueError as exc:
                ctx.stats.errors += 1
                metrics.LOOP_ERRORS.labels(ctx.loop, "queue").inc()
                last = exc
            # An auth error has already dropped the token: the next try uses a fresh one at
            # once, without a backoff (another thread's report may have met an older token
            # first, so a few are allowed before they count as failed attempts).
            if isinstance(last, ports.QueueAuthError) and auth_errors < self.AUTH_RETRIES:
                auth_errors += 1
                continue
            attempt += 1
            if attempt >= self.DELETE_ATTEMPTS:
                break
            ctx.stop.wait(min(self.backoff.delay(attempt - 1), 2.0))
        return [ports.DeleteFailure(h, type(last).__name__, str(last)) for h in handles]
