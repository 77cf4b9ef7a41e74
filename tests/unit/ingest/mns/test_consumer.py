"""The consumer loop over the in-memory twins: ordering, poison, outages, stop."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from receiptd import domain, ports
from receiptd.daemon.health import Health
from receiptd.ingest.mns.consumer import Backoff, Consumer
from receiptd.testing.queues import InMemoryQueue, InMemorySink
from receiptd.wiring.daemon import queues_check
from tests.consuming import until_idle

UP = domain.MessageType.UP
NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
FAST = Backoff(base=0.001, cap=0.002)


def report_body(biz: str, phone: str = "13800000001", success: bool = True) -> str:
    return domain.encode_body(
        {"biz_id": biz, "phone_number": phone, "success": success,
         "send_time": "2026-11-25 16:00:00"}
    )  # fmt: skip


def consumer(
    queue: InMemoryQueue,
    sink: ports.ReceiptSink,
    health: Health | None = None,
    threads: int = 1,
    kind: domain.MessageType = domain.MessageType.REPORT,
) -> Consumer:
    return Consumer(
        kind,
        lambda: queue,
        sink,
        health or Health(),
        threads=threads,
        batch_size=16,
        wait_seconds=0,
        tz=domain.CHINA_TZ,
        clock=lambda: NOW,
        backoff=FAST,
    )


def test_stores_then_deletes_everything_and_counts_duplicates() -> None:
    queue, sink = InMemoryQueue(), InMemorySink()
    for i in range(40):
        queue.send(report_body(f"b{i % 30}"))
    stats = until_idle(consumer(queue, sink, threads=3))
    assert len(sink.reports) == 30
    assert queue.depth() == 0
    assert (stats.received, stats.stored, stats.duplicates) == (40, 30, 10)
    assert stats.deleted == 40


def test_readiness_waits_for_every_loop_of_every_consumer_not_only_those_started() -> None:
    # The ops port answers /readyz while the service is still starting its loops: a check
    # that saw only the loops started so far passed with the up queue never polled (the
    # long-poll-cap system test then counted its first receives as idle polling).
    health = Health()
    reports = consumer(InMemoryQueue(), InMemorySink(), health, threads=2)
    replies = consumer(InMemoryQueue(), InMemorySink(), health, threads=3, kind=UP)
    ready = queues_check(health)
    assert not ready()[0]
    reports.start(until_idle=True)
    assert reports.join(5)
    assert ready() == (False, "failing: consumer.up.0, consumer.up.1, consumer.up.2")
    replies.start(until_idle=True)
    assert replies.join(5)
    assert ready() == (True, "polled")


def test_malformed_body_is_dead_lettered_with_raw_body_and_deleted() -> None:
    queue, sink = InMemoryQueue("q-report"), InMemorySink()
    good = queue.send(report_body("b1"))
    bad = queue.send("not base64 at all!")
    stats = until_idle(consumer(queue, sink))
    assert [r.message_id for r in sink.reports.values()] == [good]
    dead = sink.dead[("default", "q-report", bad)]
    assert dead.raw_body == b"not base64 at all!"
    assert "base64" in dead.error
    assert stats.dead_letters == 1
    assert queue.depth() == 0


def test_up_messages_become_inbound_rows() -> None:
    queue, sink = InMemoryQueue(), InMemorySink()
    queue.send(
        domain.encode_body(
            {
                "phone_number": "13800000001",
                "content": "退订",
                "send_time": "20261125160000",
                "dest_code": "01",
                "sequence_id": "7",
            }
        )
    )
    until_idle(consumer(queue, sink, kind=domain.MessageType.UP))
    [reply] = sink.inbound.values()
    assert reply.reply.content == "退订"
    assert reply.reply.send_time == datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


class FlakySink(InMemorySink):
    """Unavailable for the first ``outage`` writes; records what the queue held meanwhile."""

    def __init__(self, queue: InMemoryQueue, outage: int) -> None:
        super().__init__(unavailable=True)
        self.queue = queue
        self.outage = outage
        self.deleted_during_outage: list[int] = []

    def write_batch(self, batch: ports.Batch, now: datetime) -> ports.BatchResult:
        if self.unavailable:
            self.deleted_during_outage.append(len(self.queue.deleted))
            self.outage -= 1
            if self.outage <= 0:
                self.unavailable = False
        return super().write_batch(batch, now)


def test_store_outage_deletes_nothing_then_stores_everything() -> None:
    queue = InMemoryQueue()
    for i in range(20):
        queue.send(report_body(f"b{i}"))
    sink = FlakySink(queue, outage=5)
    stats = until_idle(consumer(queue, sink))
    assert sink.deleted_during_outage == [0, 0, 0, 0, 0]
    assert len(sink.reports) == 20
    assert queue.depth() == 0
    assert stats.errors == 4  # the fifth attempt found the store back


def test_refused_message_is_isolated_and_dead_lettered_alone() -> None:
    queue = InMemoryQueue("q")
    ids = [queue.send(report_body(f"b{i}")) for i in range(5)]
    sink = InMemorySink(refuse={ids[2]})
    stats = until_idle(consumer(queue, sink))
    assert {r.message_id for r in sink.reports.values()} == set(ids) - {ids[2]}
    assert "store refused" in sink.dead[("default", "q", ids[2])].error
    assert sink.dead[("default", "q", ids[2])].raw_body == report_body("b2").encode()
    assert queue.depth() == 0
    assert stats.dead_letters == 1


def test_stale_handles_are_counted_and_redelivery_is_harmless() -> None:
    queue, sink = InMemoryQueue(), InMemorySink()
    queue.send(report_body("b1"))

    class ExpiringSink(InMemorySink):
        def write_batch(self, batch: ports.Batch, now: datetime) -> ports.BatchResult:
            result = super().write_batch(batch, now)
            if self.writes == 1:
                queue.expire_visibility()  # the commit took longer than the visibility timeout
            return result

    expiring = ExpiringSink()
    stats = until_idle(consumer(queue, expiring))
    assert (stats.delete_failures, stats.stored, stats.duplicates) == (1, 1, 1)
    assert len(expiring.reports) == 1
    assert queue.depth() == 0
    del sink


def test_queue_errors_back_off_and_auth_errors_retry() -> None:
    queue, sink = InMemoryQueue(), InMemorySink()
    queue.send(report_body("b1"))
    queue.fail_next_receive(ports.QueueAuthError("expired"), ports.QueueError("500"))
    queue.fail_next_delete(ports.QueueError("reset"))
    health = Health()
    stats = until_idle(consumer(queue, sink, health))
    assert len(sink.reports) == 1
    assert queue.depth() == 0
    assert stats.errors == 3
    state = health.snapshot()["consumer.report.0"]
    assert state.last_success is not None and state.last_error is None


def test_queue_not_found_kills_the_loop_visibly() -> None:
    queue, sink = InMemoryQueue(), InMemorySink()
    queue.fail_next_receive(ports.QueueNotFound("no such queue"))
    health = Health()
    c = consumer(queue, sink, health)
    until_idle(c)
    assert isinstance(c.failed, ports.QueueNotFound)
    assert "died" in str(health.snapshot()["consumer.report.0"].last_error)


def test_stop_is_idempotent_and_finishes_the_current_batch() -> None:
    queue = InMemoryQueue()
    for i in range(3):
        queue.send(report_body(f"b{i}"))
    entered, release = threading.Event(), threading.Event()

    class SlowSink(InMemorySink):
        def write_batch(self, batch: ports.Batch, now: datetime) -> ports.BatchResult:
            entered.set()
            release.wait()
            return super().write_batch(batch, now)

    sink = SlowSink()
    c = consumer(queue, sink)
    c.start()
    assert entered.wait(5)
    c.stop()
    c.stop()
    release.set()
    assert c.join(5)
    assert len(sink.reports) == 3  # the in-flight batch was committed ...
    assert queue.depth() == 0  # ... and deleted before the thread exited
    assert c.failed is None


def test_stop_during_outage_abandons_batch_undeleted() -> None:
    queue = InMemoryQueue()
    queue.send(report_body("b1"))
    sink = InMemorySink(unavailable=True)
    c = consumer(queue, sink)
    c.start()
    while sink.failed_writes < 2:
        threading.Event().wait(0.001)
    c.stop()
    assert c.join(5)
    assert queue.deleted == []
    assert not sink.reports


@pytest.mark.parametrize("threads", [1, 4])
def test_many_threads_store_each_receipt_once(threads: int) -> None:
    queue, sink = InMemoryQueue(), InMemorySink()
    for i in range(500):
        queue.send(report_body(f"b{i}", phone=str(13800000000 + i % 7)))
    stats = until_idle(consumer(queue, sink, threads=threads))
    assert len(sink.reports) == 500
    assert stats.stored == 500
    assert queue.depth() == 0


# --- until idle: "drain what is visible", the verdict of issue 20 (docs/consumer.md) -------


def test_until_idle_leaves_messages_another_consumer_holds_for_the_next_run() -> None:
    """Messages in flight with another consumer are invisible: a run drains the rest and ends
    instead of waiting out their visibility timeout; they are not lost, the next run after
    the timeout takes them."""
    queue, sink = InMemoryQueue(), InMemorySink()
    queue.send_many([report_body(f"b{i}") for i in range(40)])
    held = queue.receive(16, 0)  # another consumer (or a stopped one's abandoned poll)
    first = until_idle(consumer(queue, sink, threads=4))
    assert (first.received, first.stored, first.deleted) == (24, 24, 24)
    assert queue.depth() == 16 and not {m.message_id for m in held} & set(queue.deleted)
    queue.expire_visibility()  # the holder never deleted them: the visibility timeout passes
    second = until_idle(consumer(queue, sink, threads=4))
    assert (second.received, second.stored) == (16, 16)
    assert queue.depth() == 0 and len(sink.reports) == 40


class WatchedQueue(InMemoryQueue):
    """Sets ``came_back_empty`` when a receive returns nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.came_back_empty = threading.Event()

    def receive(self, max_messages: int, wait_seconds: int) -> list[ports.QueueMessage]:
        messages = super().receive(max_messages, wait_seconds)
        if not messages:
            self.came_back_empty.set()
        return messages


def test_until_idle_one_workers_empty_receive_does_not_end_a_run_another_still_works_in() -> None:
    """Worker A holds the only batch; worker B's receive comes back empty (everything is in
    flight with A) and B stops. Messages that arrive while A commits are still this run's: A
    receives again after its batch and the run ends only when A, too, finds nothing."""
    queue = WatchedQueue()
    queue.send_many([report_body(f"a{i}") for i in range(16)])
    late = [report_body(f"late{i}") for i in range(16)]

    class BlockingSink(InMemorySink):
        def write_batch(self, batch: ports.Batch, now: datetime) -> ports.BatchResult:
            if self.writes == 0:  # A's batch: B has found the queue empty meanwhile
                assert queue.came_back_empty.wait(5)
                queue.send_many(late)
            return super().write_batch(batch, now)

    sink = BlockingSink()
    stats = until_idle(consumer(queue, sink, threads=2))
    assert (stats.received, stats.stored, stats.deleted) == (32, 32, 32)
    assert queue.depth() == 0 and len(sink.reports) == 32
