"""What the queue twins (receiptd.testing.queues) add to the contract suite
(tests/integration/test_queue_contract.py): fault switches, counters, aborts, a refusing sink."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest

from receiptd import domain, ports
from receiptd.testing.queues import InMemoryQueue, InMemorySink

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def test_a_message_comes_back_after_its_visibility_timeout_with_a_new_handle() -> None:
    now = [0.0]
    queue = InMemoryQueue(visibility_timeout=30, clock=lambda: now[0])
    queue.send("a")
    (first,) = queue.receive(16, 0)
    assert queue.receive(16, 0) == []  # in flight: invisible
    now[0] = 30.0
    (again,) = queue.receive(16, 0)
    assert (again.message_id, again.dequeue_count) == (first.message_id, 2)
    assert again.receipt_handle != first.receipt_handle
    (stale,) = queue.delete([first.receipt_handle])
    assert stale.code == "ReceiptHandleError"
    assert queue.delete([again.receipt_handle]) == []
    assert queue.deleted == [first.message_id] and queue.depth() == 0


def test_expire_visibility_of_one_handle_leaves_the_others_in_flight() -> None:
    queue = InMemoryQueue()
    queue.send_many(["a", "b"])
    one, two = queue.receive(16, 0)
    queue.expire_visibility(one.receipt_handle)
    (back,) = queue.receive(16, 0)
    assert back.message_id == one.message_id
    assert queue.delete([two.receipt_handle]) == []


def test_injected_failures_are_raised_once_each_in_order() -> None:
    queue = InMemoryQueue()
    queue.fail_next_receive(ports.QueueAuthError("token"), ports.QueueError("down"))
    with pytest.raises(ports.QueueAuthError):
        queue.receive(16, 0)
    with pytest.raises(ports.QueueError):
        queue.receive(16, 0)
    assert queue.receive(16, 0) == []
    assert (queue.receive_calls, queue.receive_waits) == (3, [0, 0, 0])
    queue.send("a")
    (message,) = queue.receive(16, 0)
    queue.fail_next_delete(ports.QueueError("down"))
    with pytest.raises(ports.QueueError):
        queue.delete([message.receipt_handle])
    assert queue.delete([message.receipt_handle]) == []


def test_receive_takes_at_most_max_messages_oldest_first() -> None:
    queue = InMemoryQueue()
    ids = queue.send_many(["a", "b", "c"])
    assert [m.message_id for m in queue.receive(2, 0)] == ids[:2]
    assert [m.body for m in queue.receive(2, 0)] == ["c"]


def test_abort_ends_a_long_poll_under_way() -> None:
    queue = InMemoryQueue()
    got: list[list[ports.QueueMessage]] = []
    thread = threading.Thread(target=lambda: got.append(queue.receive(16, 30)))
    started = time.monotonic()
    thread.start()
    while queue.receive_calls == 0:
        time.sleep(0.001)
    queue.abort()
    thread.join(5)
    assert got == [[]] and time.monotonic() - started < 5
    assert queue.aborts == 1
    queue.send("a")
    assert len(queue.receive(16, 0)) == 1  # still usable afterwards


def test_a_long_poll_returns_as_soon_as_a_message_arrives() -> None:
    queue = InMemoryQueue()
    got: list[list[ports.QueueMessage]] = []
    thread = threading.Thread(target=lambda: got.append(queue.receive(16, 30)))
    thread.start()
    while queue.receive_calls == 0:
        time.sleep(0.001)
    queue.send("late")
    thread.join(5)
    assert [m.body for m in got[0]] == ["late"]


def report(message_id: str, biz: str) -> ports.ReportRecord:
    return ports.ReportRecord(message_id, domain.SmsReport(biz, "13800000001", True, NOW))


def test_the_sink_keys_records_like_the_schema() -> None:
    sink = InMemorySink()
    batch = ports.Batch(
        [report("M1", "b1"), report("M2", "b1")], dead=[ports.DeadRecord("q", "M3", b"x", "bad")]
    )
    assert sink.write_batch(batch, NOW) == ports.BatchResult(1, 0, 1)
    assert sink.write_batch(batch, NOW) == ports.BatchResult(0, 0, 0)
    assert sink.writes == 2


def test_an_unavailable_sink_writes_nothing_and_fails_its_ping() -> None:
    sink = InMemorySink(unavailable=True)
    with pytest.raises(ports.StoreUnavailable):
        sink.ping()
    with pytest.raises(ports.StoreUnavailable):
        sink.write_batch(ports.Batch([report("M1", "b1")]), NOW)
    assert (sink.failed_writes, sink.writes, sink.reports) == (1, 0, {})


def test_a_refused_message_fails_the_whole_write_but_dead_letters_always_fit() -> None:
    sink = InMemorySink(refuse={"M2"})
    with pytest.raises(ports.StoreWriteError, match="M2"):
        sink.write_batch(ports.Batch([report("M1", "b1"), report("M2", "b2")]), NOW)
    assert sink.reports == {}
    dead = ports.Batch(dead=[ports.DeadRecord("q", "M2", b"x", "refused")])
    assert sink.write_batch(dead, NOW).dead_new == 1
