"""The receipt consumer: an adaptive crew of worker threads per queue kind.

Each worker thread owns its queue adapter (the MNS SDK connection is not thread-safe); what
happens to a received batch (decode, one transaction, delete after commit, isolation of
poison, retry of the same batch while the store is unavailable) lives in
``receiptd.ingest.mns.batch``. docs/consumer.md has the long form.

* While the queue is idle exactly one worker (the leader) holds a long poll; the others sleep.
  A receive that returns messages wakes one more worker (up to ``threads``); a helper whose
  receive (no wait) comes back empty goes back to sleep. Each worker polls once at start
  (no wait), so a backlog is drained at full speed at once and readiness comes at once.
* A long poll answered empty much sooner than its wait is a refusal (the MNS long-poll cap):
  the leader backs off with jitter (``receiptd.ingest.mns.polling``).
* Receive errors back off with jitter; an auth error retries at once with a fresh token.
  Whatever MNS or Dybaseapi can do to a call (an answer cut short, a reset, garbage, a
  timeout) reaches a worker as ``ports.QueueError`` from its adapter, so only a defect
  escapes the loop's ``except`` (tests/integration/test_misbehaving_peers.py).
* Stop: ``stop()`` sets one event, wakes the sleepers and cuts an idle long poll short by
  closing its connection (``ReceiptQueue.abort``); a worker with a batch in hand finishes it
  (commit, delete) and exits.
* Nothing a message holds kills a worker: every body is stored or dead-lettered
  (``receiptd.ingest.mns.batch``, ``receiptd.ingest.poison``), and a message delivered more than
  ``max_dequeue`` times is dead-lettered unread.
* A worker that dies for good (QueueNotFound, an unexpected error outside any one body) is
  recorded in ``failures`` and health: the service must exit non-zero.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from receiptd import domain, metrics, ports
from receiptd.clock import utc_now
from receiptd.ingest.mns.batch import (
    DEFAULT_MAX_DEQUEUE,
    Backoff,
    BatchContext,
    BatchWriter,
    ConsumeStats,
    decode_batch,
)
from receiptd.ingest.mns.polling import Crew, RefusalBackoff, RefusalTracker
from receiptd.logs import get_logger

__all__ = ["Backoff", "ConsumeStats", "Consumer", "QueueFactory", "decode_batch"]

log = get_logger(__name__)
DEFAULT_BACKOFF = Backoff()  # frozen: one shared default
QueueFactory = Callable[[], ports.ReceiptQueue]
LOOP_ERROR_KINDS = ("queue", "database", "auth")  # receiptd_loop_errors_total{kind}


def loop_prefix(account: str, kind: domain.MessageType) -> str:
    """The loop names of one account's consumer: ``consumer.report`` for the default
    account (as before accounts), ``consumer.<account>.report`` for another."""
    if account == domain.DEFAULT_ACCOUNT:
        return f"consumer.{kind.label}"
    return f"consumer.{account}.{kind.label}"


@dataclass
class Crewing:
    """What every worker of one consumer shares; built by ``Consumer``, read by workers."""

    kind: domain.MessageType
    label: str
    account: str
    factory: QueueFactory
    writer: BatchWriter
    health: ports.LoopHealth
    batch_size: int
    wait: int
    tz: tzinfo
    backoff: Backoff
    refusal: RefusalBackoff
    monotonic: Callable[[], float]
    max_dequeue: int
    stop: threading.Event = field(default_factory=threading.Event)
    crew: Crew = field(default_factory=Crew)


class Consumer:
    """Up to ``threads`` workers consuming one queue kind into one sink.

    ``failed`` is the exception of the first worker that died for good (an error escaping
    every retry, or QueueNotFound, a configuration error), ``failures`` all of them: the
    service must exit non-zero then.
    """

    def __init__(
        self,
        kind: domain.MessageType,
        queue_factory: QueueFactory,
        sink: ports.ReceiptSink,
        health: ports.LoopHealth,
        *,
        threads: int,
        batch_size: int,
        wait_seconds: int,
        tz: tzinfo = domain.CHINA_TZ,
        clock: Callable[[], datetime] = utc_now,
        backoff: Backoff = DEFAULT_BACKOFF,
        refusal: RefusalBackoff | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        max_dequeue: int = DEFAULT_MAX_DEQUEUE,
        account: str = domain.DEFAULT_ACCOUNT,
    ) -> None:
        self.kind = kind
        self.label = kind.label
        self.account = account
        # The series exists from the start (0), as receiptd_mns_polls_refused does: a panel
        # or rate over it needs a sample before the first abandoned poll (at a stop).
        metrics.POLLS_ABANDONED.labels(account, self.label)
        self.shared = Crewing(
            kind=kind,
            label=self.label,
            account=account,
            factory=queue_factory,
            writer=BatchWriter(sink, self.label, clock, backoff, account),
            health=health,
            batch_size=batch_size,
            wait=wait_seconds,
            tz=tz,
            backoff=backoff,
            refusal=refusal or RefusalBackoff.for_wait(wait_seconds),
            monotonic=monotonic,
            max_dequeue=max_dequeue,
        )
        # Every worker's loop is known to the health registry from here, before any starts:
        # readiness ("every consumer loop has polled once", wiring.daemon.queues_check) is
        # asked by the ops port, which answers while the loops are still being started, and
        # must not pass on the loops that happen to be running already.
        self._names = [f"{loop_prefix(account, kind)}.{i}" for i in range(threads)]
        for name in self._names:
            health.register(name)
        self._threads: list[threading.Thread] = []
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self.stats = ConsumeStats()
        self.failures: list[BaseException] = []

    # --- lifecycle -----------------------------------------------------------------------

    def start(self, until_idle: bool = False) -> None:
        """Start the workers. ``until_idle``: each exits once a receive of its own comes back
        empty (``receiptd consume --until-idle``; ``join()`` then returns).

        A worker with a batch in hand receives again after it, so one worker's empty receive
        does not end the run while another still works. Messages in flight with another
        consumer reappear only after their visibility timeout, so "idle" means "nothing
        visible now", not "queue empty": they are the next run's (docs/consumer.md, "Until
        idle"; tests/unit/test_consumer.py pins both).
        """
        if self._threads:
            raise RuntimeError("consumer already started")
        for i, name in enumerate(self._names):
            worker = _Worker(self.shared, name, leader=i == 0)
            thread = threading.Thread(
                target=self._run_worker, args=(worker, until_idle), name=name, daemon=True
            )
            self._workers.append(worker)
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        """Ask every worker to exit after its current batch; idempotent, never blocks.

        An idle long poll is not waited for: its connection is closed (counted in
        ``receiptd_mns_polls_abandoned_total``).
        """
        first = not self.shared.stop.is_set()
        self.shared.stop.set()
        self.shared.crew.stop()
        if first:
            for worker in self._workers:
                worker.abandon_poll()

    def join(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds in total; True when every worker has exited."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining)
        return not any(t.is_alive() for t in self._threads)

    @property
    def failed(self) -> BaseException | None:
        with self._lock:
            return self.failures[0] if self.failures else None

    @property
    def alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    @property
    def asleep(self) -> int:
        """Workers sleeping until a receive finds messages (for tests and the bench)."""
        return self.shared.crew.asleep

    # --- one worker ----------------------------------------------------------------------

    def _run_worker(self, worker: _Worker, until_idle: bool) -> None:
        try:
            worker.run(until_idle)
        except BaseException as exc:  # a loop that dies for good must be visible
            log.exception("consumer_loop_died", loop=worker.name, error=repr(exc))
            self.shared.health.error(worker.name, f"died: {exc!r}")
            with self._lock:
                self.failures.append(exc)
        finally:
            with self._lock:
                self.stats.add(worker.stats)
            worker.close()


class _Worker:
    """One thread's loop; errors are recovered here, everything else lives in BatchWriter."""

    def __init__(self, shared: Crewing, name: str, leader: bool) -> None:
        self.s = shared
        self.name = name
        self.leader = leader
        self.stats = ConsumeStats()
        self.queue: ports.ReceiptQueue | None = None
        self._failures = 0
        self._polled = False
        self._in_long_poll = threading.Lock()  # held while a long poll is under way
        self._refusals = RefusalTracker(
            shared.label, shared.refusal, shared.monotonic, shared.account
        )
        # Each error kind's series exists from the start (0): a rate over it has data before
        # the first error and sees that first one (a series born at 1 shows no increase).
        for kind in LOOP_ERROR_KINDS:
            metrics.LOOP_ERRORS.labels(name, kind)

    def run(self, until_idle: bool) -> None:
        self.queue = self.s.factory()
        stop = self.s.stop
        while not stop.is_set():
            received = self._receive(self.queue)
            if received is None:
                continue  # an error or a refusal was handled by pausing
            self.s.health.success(self.name)
            if received:
                self.s.crew.wake_one()
                self._process(self.queue, received)
            elif until_idle or (not self.leader and not self._rest()):
                return  # idle (helper: stopped while asleep)

    def _process(self, queue: ports.ReceiptQueue, received: list[ports.QueueMessage]) -> None:
        batch = decode_batch(
            received, self.s.kind, queue.name, self.s.tz, self.s.max_dequeue, self.s.account
        )
        ctx = BatchContext(self.name, queue, received, self.s.stop, self.stats)
        self.s.writer.process(batch, ctx)
        self.s.health.success(self.name)

    def _rest(self) -> bool:
        """A helper found the queue empty: sleep until woken (True) or stopped (False)."""
        self.s.health.idle(self.name)
        return self.s.crew.sleep()

    def _wait(self) -> int:
        # Only the leader long-polls, and not on its first poll: readiness ("each queue
        # polled once") comes at once instead of after a whole long poll on an empty queue.
        return self.s.wait if self.leader and self._polled else 0

    def _receive(self, queue: ports.ReceiptQueue) -> list[ports.QueueMessage] | None:
        wait = self._wait()
        started = self.s.monotonic()
        try:
            messages = self._poll(queue, wait)
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
        self.s.health.heartbeat(self.name)
        if self.s.stop.is_set():
            return messages  # a poll a stop cut short is not a refusal
        pause = self._refusals.observe(wait, self.s.monotonic() - started, not messages)
        if pause:
            self.s.stop.wait(pause)
            return None
        return messages

    def _poll(self, queue: ports.ReceiptQueue, wait: int) -> list[ports.QueueMessage]:
        if not wait:
            return queue.receive(self.s.batch_size, 0)
        with self._in_long_poll:
            if self.s.stop.is_set():
                return []
            return queue.receive(self.s.batch_size, wait)

    def abandon_poll(self) -> None:
        """Called by ``Consumer.stop`` from another thread: cut a long poll under way short."""
        queue = self.queue
        if queue is None or self._in_long_poll.acquire(blocking=False):
            if queue is not None:
                self._in_long_poll.release()
            return  # no long poll under way; the stop event keeps a new one from starting
        metrics.POLLS_ABANDONED.labels(self.s.account, self.s.label).inc()
        queue.abort()

    def _error(self, kind: str, exc: Exception, immediate: bool = False) -> None:
        if self.s.stop.is_set():
            return  # e.g. the long poll a stop cut short: not an error worth a backoff
        self.stats.errors += 1
        metrics.LOOP_ERRORS.labels(self.name, kind).inc()
        self.s.health.error(self.name, f"{kind}: {exc}")
        delay = 0.0 if immediate else self.s.backoff.delay(self._failures)
        self._failures += 1
        log.warning(
            "consumer_receive_failed", loop=self.name, kind=kind, error=str(exc), retry_in=delay
        )
        if delay:
            self.s.stop.wait(delay)

    def close(self) -> None:
        if self.queue is not None:
            try:
                self.queue.close()
            except Exception as exc:  # closing must never mask the loop's own outcome
                log.warning("consumer_close_failed", loop=self.name, error=str(exc))
