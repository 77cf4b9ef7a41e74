"""receiptd_receipt_lag_seconds on the MNS path (receiptd.ingest.mns.batch): EnqueueTime to
the commit of the batch, observed after the commit and only then, on a controlled clock."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime, timedelta

import pytest
import structlog

from receiptd import domain, metrics, ports
from receiptd.ingest.mns import batch
from receiptd.testing.queues import InMemoryQueue, InMemorySink
from tests.unit.ingest.mns.test_batch import NO_WAIT, report

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
COMMIT_TAKES = timedelta(seconds=3)


class Clock:
    """A clock the test moves; the sink below moves it by COMMIT_TAKES per write."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class SlowSink(InMemorySink):
    """Each write takes COMMIT_TAKES of the clock; remembers the lag count seen inside it."""

    def __init__(self, clock: Clock, account: str, unavailable: bool = False) -> None:
        super().__init__(unavailable=unavailable)
        self.clock, self.account = clock, account
        self.counts_during_writes: list[float] = []

    def write_batch(self, b: ports.Batch, now: datetime) -> ports.BatchResult:
        self.counts_during_writes.append(lag(self.account)[0])
        result = super().write_batch(b, now)
        self.clock.now += COMMIT_TAKES
        return result


def lag(account: str) -> tuple[float, float]:
    """(count, sum) of the account's MNS lag histogram."""
    labels = {"channel": "mns", "account": account}
    count = metrics.REGISTRY.get_sample_value("receiptd_receipt_lag_seconds_count", labels)
    total = metrics.REGISTRY.get_sample_value("receiptd_receipt_lag_seconds_sum", labels)
    return count or 0.0, total or 0.0


def under_zero_point_05(account: str) -> float:
    labels = {"channel": "mns", "account": account, "le": "0.05"}
    value = metrics.REGISTRY.get_sample_value("receiptd_receipt_lag_seconds_bucket", labels)
    return value or 0.0


def run(
    sink: SlowSink, clock: Clock, bodies: list[tuple[str, datetime | None]]
) -> batch.BatchContext:
    """Receive ``bodies`` (each with its EnqueueTime) and process them as one batch."""
    queue = InMemoryQueue("q")
    queue.send_many([text for text, _ in bodies])
    received = queue.receive(16, 0)
    messages = [
        dataclasses.replace(m, enqueued_at=enqueued)
        for m, (_, enqueued) in zip(received, bodies, strict=True)
    ]
    ctx = batch.BatchContext("consumer.lag.report.0", queue, messages, threading.Event(),
                             batch.ConsumeStats())  # fmt: skip
    decoded = batch.decode_batch(
        messages, domain.MessageType.REPORT, "q", domain.CHINA_TZ, account=sink.account
    )
    batch.BatchWriter(sink, "report", clock, NO_WAIT, sink.account).process(decoded, ctx)
    return ctx


def test_stored_and_duplicate_messages_are_observed_from_enqueue_to_the_commit() -> None:
    clock = Clock(T0)
    sink = SlowSink(clock, "lag_stored")
    run(sink, clock, [(report("b0"), T0)])  # b0 is stored once: a duplicate below
    before = lag("lag_stored")
    ctx = run(
        sink,
        clock,
        [
            (report("b0"), T0 - timedelta(seconds=10)),  # duplicate: counted too
            (report("b1"), T0 - timedelta(seconds=2)),
            ("garbage", T0 - timedelta(seconds=1)),  # a dead letter is no receipt: not counted
        ],
    )
    assert (ctx.stats.stored, ctx.stats.duplicates, ctx.stats.dead_letters) == (1, 1, 1)
    count, total = lag("lag_stored")
    # The commit ended at T0 + 2 * COMMIT_TAKES (two writes so far): the lag runs to there.
    commit = T0 + 2 * COMMIT_TAKES - T0
    assert count - before[0] == 2
    expected = (commit.total_seconds() + 10) + (commit.total_seconds() + 2)
    assert total - before[1] == pytest.approx(expected)


def test_observed_after_the_commit_never_before_nor_when_it_does_not_happen() -> None:
    clock = Clock(T0)
    sink = SlowSink(clock, "lag_order")
    before = lag("lag_order")[0]
    run(sink, clock, [(report("b1"), T0)])
    assert sink.counts_during_writes == [before]  # nothing observed while the write ran
    assert lag("lag_order")[0] == before + 1

    down = SlowSink(clock, "lag_order", unavailable=True)
    ctx = batch.BatchContext("loop", InMemoryQueue("q"), [], threading.Event(),
                             batch.ConsumeStats())  # fmt: skip
    ctx.stop.set()  # stop during the outage: the batch is abandoned, never committed
    record = ports.ReportRecord("M9", domain.parse_report(report("b9")), account="lag_order")
    batch.BatchWriter(down, "report", clock, NO_WAIT, "lag_order").process(
        ports.Batch(reports=[record]), ctx
    )
    assert lag("lag_order")[0] == before + 1


def test_a_refused_message_is_dead_lettered_and_only_the_stored_one_observed() -> None:
    clock = Clock(T0)
    sink = SlowSink(clock, "lag_isolating")
    queue = InMemoryQueue("q")
    queue.send_many([report("b1"), report("b2")])
    messages = [dataclasses.replace(m, enqueued_at=T0) for m in queue.receive(16, 0)]
    sink.refuse = {messages[1].message_id}
    before = lag("lag_isolating")[0]
    ctx = batch.BatchContext("loop", queue, messages, threading.Event(), batch.ConsumeStats())
    decoded = batch.decode_batch(
        messages, domain.MessageType.REPORT, "q", domain.CHINA_TZ, account="lag_isolating"
    )
    batch.BatchWriter(sink, "report", clock, NO_WAIT, "lag_isolating").process(decoded, ctx)
    assert ctx.stats.dead_letters == 1
    assert lag("lag_isolating")[0] == before + 1


def test_clock_skew_counts_as_zero_and_an_unknown_enqueue_time_is_skipped() -> None:
    clock = Clock(T0)
    sink = SlowSink(clock, "lag_skew")
    ahead = T0 + timedelta(minutes=5)  # the provider's clock ahead of ours
    (count, total), fastest = lag("lag_skew"), under_zero_point_05("lag_skew")
    run(sink, clock, [(report("b1"), ahead), (report("b2"), None)])
    assert lag("lag_skew") == (count + 1, total)  # observed once, as 0 s
    assert under_zero_point_05("lag_skew") == fastest + 1


def test_a_metric_defect_is_logged_and_the_batch_still_committed_and_deleted() -> None:
    clock = Clock(T0)
    sink = SlowSink(clock, "lag_naive")
    naive = datetime(2026, 11, 25, 8, 0)  # noqa: DTZ001 - the defect under test
    before = lag("lag_naive")[0]
    with structlog.testing.capture_logs() as logs:
        ctx = run(sink, clock, [(report("b1"), naive)])
    assert ctx.stats.stored == 1 and ctx.stats.deleted == 1
    (failed,) = [e for e in logs if e["event"] == "metric_failed"]
    assert failed["metric"] == "receiptd_receipt_lag_seconds"
    assert lag("lag_naive")[0] == before
