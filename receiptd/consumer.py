"""The receipt consumer: N worker threads per queue kind, each receive → batch → repeat.

Each worker thread owns its queue adapter (the MNS SDK connection is not thread-safe) and runs
one loop; what happens to a received batch (decode, one transaction, delete after commit,
isolation of poison, retry of the same batch while the store is unavailable) lives in
``receiptd.batch``. docs/consumer.md has the long form.

* Receive errors back off with jitter; an auth error retries at once with a fresh token.
* Stop: ``stop()`` sets one event; a worker finishes its batch (commit, delete) and exits. A
  long poll is not interrupted, so stop latency is at most ``wait_seconds`` plus one batch.
* A worker that dies for good (QueueNotFound, an unexpected error) is recorded in
  ``failures`` and health: the service must exit non-zero.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo

from receiptd import domain, metrics, ports
from receiptd.batch import Backoff, BatchContext, BatchWriter, ConsumeStats, decode_batch
from receiptd.health import Health
from receiptd.logs import get_logger

__all__ = ["Backoff", "ConsumeStats", "Consumer", "QueueFactory", "decode_batch", "utc_now"]

log = get_logger(__name__)
DEFAULT_BACKOFF = Backoff()  # frozen: one shared default
QueueFactory = Callable[[], ports.ReceiptQueue]
_LABEL = {domain.MessageType.REPORT: "report", domain.MessageType.UP: "up"}


def utc_now() -> datetime:
    return datetime.now(UTC)


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
        backoff: Backoff = DEFAULT_BACKOFF,
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
        self._polled = False

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
            ctx = BatchContext(self.name, self.queue, received, self.c._stop, self.stats)
            self.c._writer.process(batch, ctx)
            self.c._health.success(self.name)

    def _receive(self, queue: ports.ReceiptQueue) -> list[ports.QueueMessage] | None:
        # The first poll does not wait: readiness ("each queue polled once") comes at once
        # instead of after a whole long poll on an empty queue.
        wait = self.c._wait if self._polled else 0
        try:
            messages = queue.receive(self.c._batch_size, wait)
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
        self._polled = True
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
