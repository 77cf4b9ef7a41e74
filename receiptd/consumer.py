"""The receipt consumer: receive → decode → one transaction → delete, per queue kind.

Each worker thread owns its queue adapter (the MNS SDK connection is not thread-safe) and runs
one loop. The guarantees and the reasons for them (docs/consumer.md has the long form):

* A message is deleted only after the transaction holding its rows committed; writes are
  idempotent, so a redelivery (crash, stale handle, failed delete) changes nothing.
* A body the domain parser rejects becomes a dead letter with its raw bytes, in the same
  transaction; a message the database refuses alone is dead-lettered with the error text.
* StoreUnavailable: nothing is deleted; the worker retries *the same batch* with backoff. It
  does not receive more (that would only raise DequeueCount on messages it cannot store). If a
  handle went stale meanwhile, its delete fails after commit and the redelivery is a duplicate.
  On stop during an outage the batch is abandoned undeleted (MNS redelivers it).
* Stop: ``stop()`` sets one event; a worker finishes its batch (commit, delete) and exits. A
  long poll is not interrupted, so stop latency is at most ``wait_seconds`` plus one batch.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime, tzinfo

from receiptd import domain, metrics, ports
from receiptd.health import Health
from receiptd.logs import get_logger

log = get_logger(__name__)
QueueFactory = Callable[[], ports.ReceiptQueue]
_LABEL = {domain.MessageType.REPORT: "report", domain.MessageType.UP: "up"}


def utc_now() -> datetime:
    return datetime.now(UTC)


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
    """Exponential backoff with jitter: ``base`` doubling to ``cap``, each delay in [d/2, d]."""

    base: float = 0.5
    cap: float = 30.0

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap, self.base * 2 ** min(attempt, 30))
        return float(ceiling / 2 + random.uniform(0, ceiling / 2))


class Consumer:
    """N worker threads consuming one queue kind into one sink.

    ``failed`` is the exception of the first worker that died for good (an error escaping
    every retry, or QueueNotFound, a configuration error), ``failures`` all of them: the
    service must exit non-zero then.
    """

    def __init__(
        self,
        kind: domain.MessageType,
        queue_factory: QueueFactory,
        sink: ports.ReceiptSink,
        health: Health,
        *,
        threads: int,
        batch_size: int,
        wait_seconds: int,
        tz: tzinfo = domain.CHINA_TZ,
        clock: Callable[[], datetime] = utc_now,
        backoff: Backoff = Backoff(),
    ) -> None:
        self.kind = kind
        self.label = _LABEL[kind]
        self._factory = queue_factory
        self._writer = BatchWriter(sink, self.label, clock, backoff)
        self._health = health
        self._threads_wanted = threads
        self._batch_size = batch_size
        self._wait = wait_seconds
        self._tz = tz
        self._backoff = backoff
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.stats = ConsumeStats()
        self.failures: list[BaseException] = []

    # --- lifecycle -----------------------------------------------------------------------

    def start(self, until_idle: bool = False) -> None:
        if self._threads:
            raise RuntimeError("consumer already started")
        for i in range(self._threads_wanted):
            name = f"consumer.{self.label}.{i}"
            self._health.register(name)
            thread = threading.Thread(
                target=self._run_worker, args=(name, until_idle), name=name, daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        """Ask every worker to exit after its current batch; idempotent, never blocks."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds in total; True when every worker has exited."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining)
        return not any(t.is_alive() for t in self._threads)

    def run_until_idle(self) -> ConsumeStats:
        """Consume until each worker's receive comes back empty, then stop; returns the stats.

        Messages in flight elsewhere (or whose handle expired) reappear only after their
        visibility timeout, so "idle" means "nothing visible now", not "queue empty".
        """
        self.start(until_idle=True)
        self.join()
        self.stop()
        return self.stats

    @property
    def failed(self) -> BaseException | None:
        with self._lock:
            return self.failures[0] if self.failures else None

    @property
    def alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    # --- one worker ----------------------------------------------------------------------

    def _run_worker(self, name: str, until_idle: bool) -> None:
        worker = _Worker(self, name)
        try:
            worker.run(until_idle)
        except BaseException as exc:  # a loop that dies for good must be visible
            log.exception("consumer_loop_died", loop=name, error=repr(exc))
            self._health.error(name, f"died: {exc!r}")
            with self._lock:
                self.failures.append(exc)
        finally:
            with self._lock:
                self.stats.add(worker.stats)
            worker.close()


class _Worker:
    """One thread's loop; errors are recovered here, everything else lives in BatchWriter."""

    def __init__(self, consumer: Consumer, name: str) -> None:
        self.c = consumer
        self.name = name
        self.stats = ConsumeStats()
        self.queue: ports.ReceiptQueue | None = None
        self._failures = 0

    def run(self, until_idle: bool) -> None:
        self.queue = self.c._factory()
        while not self.c._stop.is_set():
            received = self._receive(self.queue)
            if received is None:
                continue  # an error was handled by backing off
            if not received:
                self.c._health.success(self.name)
                if until_idle:
                    return
                continue
            batch = decode_batch(received, self.c.kind, self.queue.name, self.c._tz)
            ctx = _BatchContext(self.name, self.queue, received, self.c._stop, self.stats)
            self.c._writer.process(batch, ctx)
            self.c._health.success(self.name)

    def _receive(self, queue: ports.ReceiptQueue) -> list[ports.QueueMessage] | None:
        try:
            messages = queue.receive(self.c._batch_size, self.c._wait)
        except ports.QueueNotFound:
            raise  # configuration error: let the loop die and the service exit non-zero
        except ports.QueueAuthError as exc:
            # The adapter already dropped the refused token: the first retry goes at once.
            self._error("auth", exc, immediate=self._failures == 0)
            return None
        except ports.QueueError as exc:
            self._error("queue", exc)
            return None
        self._failures = 0
        self.stats.received += len(messages)
        self.c._health.heartbeat(self.name)
        return messages

    def _error(self, kind: str, exc: Exception, immediate: bool = False) -> None:
        self.stats.errors += 1
        metrics.LOOP_ERRORS.labels(self.name, kind).inc()
        self.c._health.error(self.name, f"{kind}: {exc}")
        delay = 0.0 if immediate else self.c._backoff.delay(self._failures)
        self._failures += 1
        log.warning(
            "consumer_receive_failed", loop=self.name, kind=kind, error=str(exc), retry_in=delay
        )
        if delay:
            self.c._stop.wait(delay)

    def close(self) -> None:
        if self.queue is not None:
            try:
                self.queue.close()
            except Exception as exc:  # closing must never mask the loop's own outcome
                log.warning("consumer_close_failed", loop=self.name, error=str(exc))


# --- one batch: decode, commit, delete ------------------------------------------------------


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
class _BatchContext:
    loop: str
    queue: ports.ReceiptQueue
    messages: list[ports.QueueMessage]
    stop: threading.Event
    stats: ConsumeStats


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

    def process(self, batch: ports.Batch, ctx: _BatchContext) -> None:
        started = time.monotonic()
        committed = self._commit(batch, ctx)
        if committed is None:
            return  # abandoned on stop during an outage: nothing deleted, MNS redelivers
        handles = [m.receipt_handle for m in ctx.messages if m.message_id in committed]
        self._delete(handles, ctx)
        ctx.stats.batches += 1
        metrics.BATCH_DURATION.labels(self.label).observe(time.monotonic() - started)

    def _commit(self, batch: ports.Batch, ctx: _BatchContext) -> set[str] | None:
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
        self, batch: ports.Batch, ctx: _BatchContext, exc: ports.StoreWriteError
    ) -> set[str] | None:
        """The database refused the batch while reachable: one message per transaction."""
        if len(batch) == 1:
            return self._refused(batch, ctx, exc)
        log.warning("batch_isolating", loop=ctx.loop, messages=len(batch), error=str(exc))
        done: set[str] = set()
        for single in _singles(batch):
            ids = self._commit(single, ctx)
            if ids is None:
                return done  # stopping mid-way: delete exactly what was committed
            done |= ids
        return done

    def _refused(
        self, single: ports.Batch, ctx: _BatchContext, exc: ports.StoreWriteError
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
        metrics.MESSAGES.labels(self.label, "stored").inc(stored)
        metrics.MESSAGES.labels(self.label, "duplicate").inc(duplicates)
        metrics.MESSAGES.labels(self.label, "dead_letter").inc(len(batch.dead))
        metrics.DEAD_LETTERS.labels(self.label).inc(len(batch.dead))

    def _delete(self, handles: list[str], ctx: _BatchContext) -> None:
        """Best effort after commit: a failed delete only means a harmless redelivery."""
        if not handles:
            return
        failures = self._try_delete(handles, ctx)
        for failure in failures:
            log.warning("delete_failed", loop=ctx.loop, code=failure.code, error=failure.message)
        ctx.stats.deleted += len(handles) - len(failures)
        ctx.stats.delete_failures += len(failures)
        metrics.DELETE_FAILURES.labels(self.label).inc(len(failures))
        metrics.MESSAGES.labels(self.label, "delete_failed").inc(len(failures))

    def _try_delete(self, handles: list[str], ctx: _BatchContext) -> list[ports.DeleteFailure]:
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


def _singles(batch: ports.Batch) -> list[ports.Batch]:
    return [
        *(ports.Batch(reports=[r]) for r in batch.reports),
        *(ports.Batch(inbound=[r]) for r in batch.inbound),
        *(ports.Batch(dead=[d]) for d in batch.dead),
    ]
