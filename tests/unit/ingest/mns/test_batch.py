"""One received batch (receiptd.ingest.mns.batch): decoding, commit then delete, poison, outages."""

from __future__ import annotations

import base64
import json
import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from receiptd import domain, ports, receipt_shapes
from receiptd.ingest.mns import batch
from receiptd.testing.queues import InMemoryQueue, InMemorySink

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
NO_WAIT = batch.Backoff(base=0.0, cap=0.0)


def body(fields: dict[str, Any]) -> str:
    """How Alicom puts a body on the queue: base64 of the JSON object."""
    return base64.b64encode(json.dumps(fields, ensure_ascii=False).encode()).decode()


def report(biz: str, phone: str = "13800000001") -> str:
    return body(
        {"biz_id": biz, "phone_number": phone, "success": True,
         "send_time": "2026-11-25 16:00:00"}
    )  # fmt: skip


def reply(seq: str) -> str:
    return body(
        {"phone_number": "13800000001", "content": "TD", "send_time": "2026-11-25 16:00:00",
         "sequence_id": seq, "dest_code": "1234"}
    )  # fmt: skip


def message(text: str, message_id: str = "M1", dequeue: int = 1) -> ports.QueueMessage:
    return ports.QueueMessage(message_id, f"{message_id}:h", text, dequeue)


def decode(*messages: ports.QueueMessage, **kwargs: Any) -> ports.Batch:
    return batch.decode_batch(
        list(messages), domain.MessageType.REPORT, "q", domain.CHINA_TZ, **kwargs
    )


# --- decode_batch --------------------------------------------------------------------------


def test_good_bodies_become_typed_records_of_the_queue_kind() -> None:
    reports = decode(message(report("b1"), "M1"), message(report("b2"), "M2"))
    assert [(r.message_id, r.report.biz_id) for r in reports.reports] == [
        ("M1", "b1"),
        ("M2", "b2"),
    ]
    assert (reports.inbound, reports.dead) == ([], [])
    replies = batch.decode_batch(
        [message(reply("s1"))], domain.MessageType.UP, "q", domain.CHINA_TZ
    )
    assert [r.reply.sequence_id for r in replies.inbound] == ["s1"]
    assert replies.reports == []


def test_a_rejected_body_is_dead_lettered_with_its_exact_bytes_and_the_parser_reason() -> None:
    out = decode(message("not base64 at all ✗", "M9"), message(report("b1"), "M1"))
    assert [r.message_id for r in out.reports] == ["M1"]
    (dead,) = out.dead
    assert (dead.queue, dead.message_id) == ("q", "M9")
    assert dead.raw_body == "not base64 at all ✗".encode()
    assert "base64" in dead.error


def test_a_decoder_crash_is_a_dead_letter_not_an_exception(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def crash(_raw: str, _tz: object) -> domain.SmsReport:
        raise ZeroDivisionError("defect")

    monkeypatch.setattr(receipt_shapes, "parse_receipt", crash)
    (dead,) = decode(message(report("b1"))).dead
    assert dead.error.startswith("decoder crashed: ZeroDivisionError")


def test_a_message_delivered_too_often_is_quarantined_unread() -> None:
    out = decode(
        message("garbage", "M1", dequeue=6),
        message(report("b2"), "M2", dequeue=5),
        max_dequeue=5,
    )
    assert [r.message_id for r in out.reports] == ["M2"]  # at the bound: still read
    (dead,) = out.dead
    assert dead.message_id == "M1" and dead.error.startswith("quarantined unread")


def test_max_dequeue_zero_means_no_bound() -> None:
    out = decode(message(report("b1"), dequeue=1000), max_dequeue=0)
    assert len(out.reports) == 1 and out.dead == []


# --- Backoff, ConsumeStats -----------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() -> None:
    backoff = batch.Backoff(base=1.0, cap=8.0)
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (10, 8.0), (10**6, 8.0)]:
        for _ in range(50):
            assert ceiling / 2 <= backoff.delay(attempt) <= ceiling


def test_stats_add_every_field() -> None:
    total = batch.ConsumeStats(received=1, errors=2)
    total.add(batch.ConsumeStats(received=3, stored=4, deleted=5, errors=1))
    assert total == batch.ConsumeStats(received=4, stored=4, deleted=5, errors=3)


# --- BatchWriter ---------------------------------------------------------------------------


def received(queue: InMemoryQueue, *bodies: str) -> list[ports.QueueMessage]:
    queue.send_many(bodies)
    return queue.receive(16, 0)


def context(queue: InMemoryQueue, messages: list[ports.QueueMessage]) -> batch.BatchContext:
    return batch.BatchContext(
        "consumer-report-0", queue, messages, threading.Event(), batch.ConsumeStats()
    )


def writer(sink: ports.ReceiptSink) -> batch.BatchWriter:
    return batch.BatchWriter(sink, "report", lambda: NOW, NO_WAIT)


def process(sink: ports.ReceiptSink, queue: InMemoryQueue, *bodies: str) -> batch.BatchContext:
    messages = received(queue, *bodies)
    ctx = context(queue, messages)
    decoded = batch.decode_batch(messages, domain.MessageType.REPORT, queue.name, domain.CHINA_TZ)
    writer(sink).process(decoded, ctx)
    return ctx


def test_commits_then_deletes_and_counts_duplicates_and_dead_letters() -> None:
    queue, sink = InMemoryQueue("q"), InMemorySink()
    sink.reports[("default", "b0", "13800000001")] = ports.ReportRecord(
        "old", domain.parse_report(report("b0"))
    )
    ctx = process(sink, queue, report("b0"), report("b1"), "garbage")
    assert queue.depth() == 0 and sink.writes == 1
    stats = ctx.stats
    assert (stats.stored, stats.duplicates, stats.dead_letters) == (1, 1, 1)
    assert (stats.deleted, stats.delete_failures, stats.batches) == (3, 0, 1)


def test_a_refused_message_alone_is_dead_lettered_with_the_error_and_the_rest_stored() -> None:
    queue, sink = InMemoryQueue("q"), InMemorySink()
    queue.send_many([report("b1"), report("b2")])
    messages = queue.receive(16, 0)
    sink.refuse = {messages[1].message_id}
    ctx = context(queue, messages)
    writer(sink).process(
        batch.decode_batch(messages, domain.MessageType.REPORT, "q", domain.CHINA_TZ), ctx
    )
    assert [r.report.biz_id for r in sink.reports.values()] == ["b1"]
    (dead,) = sink.dead.values()
    assert dead.message_id == messages[1].message_id
    assert dead.raw_body == report("b2").encode()
    assert "refused" in dead.error
    assert queue.depth() == 0  # both committed (one as a dead letter), so both deleted


def test_an_outage_retries_the_same_batch_until_the_store_is_back() -> None:
    queue = InMemoryQueue("q")

    class FlakySink(InMemorySink):
        def write_batch(self, b: ports.Batch, now: datetime) -> ports.BatchResult:
            self.unavailable = self.failed_writes < 2
            return super().write_batch(b, now)

    sink = FlakySink()
    ctx = process(sink, queue, report("b1"))
    assert sink.failed_writes == 2 and len(sink.reports) == 1
    assert ctx.stats.errors == 2 and queue.depth() == 0


def test_stop_during_an_outage_abandons_the_batch_undeleted() -> None:
    queue, sink = InMemoryQueue("q"), InMemorySink(unavailable=True)
    messages = received(queue, report("b1"))
    ctx = context(queue, messages)
    ctx.stop.set()
    writer(sink).process(
        batch.decode_batch(messages, domain.MessageType.REPORT, "q", domain.CHINA_TZ), ctx
    )
    assert queue.depth() == 1 and queue.deleted == []
    assert ctx.stats.batches == 0 and sink.reports == {}


def test_a_failing_delete_is_retried_then_counted_not_raised() -> None:
    queue, sink = InMemoryQueue("q"), InMemorySink()
    queue.fail_next_delete(ports.QueueError("down"), ports.QueueError("down"))
    ctx = process(sink, queue, report("b1"))
    assert ctx.stats.deleted == 1 and ctx.stats.errors == 2  # third attempt went through

    queue.fail_next_delete(*[ports.QueueError("down")] * batch.BatchWriter.DELETE_ATTEMPTS)
    ctx = process(sink, queue, report("b2"))
    assert (ctx.stats.deleted, ctx.stats.delete_failures) == (0, 1)
    assert ctx.stats.batches == 1  # stored: a redelivery is a harmless duplicate
    assert len(sink.reports) == 2


def test_a_stale_handle_is_a_delete_failure() -> None:
    queue, sink = InMemoryQueue("q"), InMemorySink()
    messages = received(queue, report("b1"))
    queue.expire_visibility()  # the visibility timeout passed while the batch was written
    ctx = context(queue, messages)
    writer(sink).process(
        batch.decode_batch(messages, domain.MessageType.REPORT, "q", domain.CHINA_TZ), ctx
    )
    assert (ctx.stats.deleted, ctx.stats.delete_failures) == (0, 1)
    assert queue.depth() == 1
