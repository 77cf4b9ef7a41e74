"""Adaptive long polling: one long poll while idle, the crew wakes on messages, refusals back
off, a stop does not wait for an idle long poll. On the in-memory twins, controlled clocks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime

import pytest
import structlog

from receiptd import domain, metrics, ports
from receiptd.daemon.health import Health
from receiptd.ingest.mns.consumer import Backoff, Consumer
from receiptd.ingest.mns.polling import Crew, RefusalBackoff, RefusalTracker
from receiptd.testing.queues import InMemoryQueue, InMemorySink
from tests.unit.ingest.mns.test_consumer import NOW, report_body

FAST = Backoff(base=0.001, cap=0.002)


def sample(name: str, queue: str = "report") -> float:
    return metrics.REGISTRY.get_sample_value(name, {"account": "default", "queue": queue}) or 0.0


def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for another thread to reach a state (a condition, not a duration)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        threading.Event().wait(0.001)


class RecordingQueue(InMemoryQueue):
    """Records which thread got messages, and can refuse long polls (answer [] at once)."""

    def __init__(self) -> None:
        super().__init__()
        self.refusing = False
        self.refused = 0
        self.receivers: set[str] = set()
        self.second_receiver = threading.Event()

    def receive(self, max_messages: int, wait_seconds: int) -> list[ports.QueueMessage]:
        if self.refusing and wait_seconds > 0:
            self.receive_waits.append(wait_seconds)
            self.refused += 1
            return []
        got = super().receive(max_messages, wait_seconds)
        if got:
            self.receivers.add(threading.current_thread().name)
            if len(self.receivers) > 1:
                self.second_receiver.set()
        return got


def crew_consumer(
    queue: InMemoryQueue,
    sink: ports.ReceiptSink,
    *,
    threads: int = 4,
    wait: int = 30,
    refusal: RefusalBackoff | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> Consumer:
    return Consumer(
        domain.MessageType.REPORT,
        lambda: queue,
        sink,
        Health(),
        threads=threads,
        batch_size=16,
        wait_seconds=wait,
        clock=lambda: NOW,
        backoff=FAST,
        refusal=refusal,
        monotonic=monotonic,
    )


def test_idle_queue_holds_exactly_one_long_poll_and_stop_does_not_wait_for_it() -> None:
    queue, sink = RecordingQueue(), InMemorySink()
    c = crew_consumer(queue, sink, threads=4, wait=30)
    abandoned = sample("receiptd_mns_polls_abandoned_total")
    c.start()
    until(lambda: c.asleep == 3 and queue.receive_waits.count(30) == 1)
    # One first poll each without waiting (readiness), then only the leader long-polls.
    assert sorted(queue.receive_waits) == [0, 0, 0, 0, 30]
    started = time.monotonic()
    c.stop()
    assert c.join(5)
    assert time.monotonic() - started < 2  # not the 30 s of the idle long poll
    assert sample("receiptd_mns_polls_abandoned_total") == abandoned + 1
    assert c.failed is None


class HeldSink(InMemorySink):
    """Holds the first write until a second worker has received messages: the leader is busy,
    so only a woken helper can take the rest (no race with a leader that drains it all)."""

    def __init__(self, queue: RecordingQueue) -> None:
        super().__init__()
        self.queue = queue

    def write_batch(self, batch: ports.Batch, now: datetime) -> ports.BatchResult:
        assert self.queue.second_receiver.wait(5), "no helper received while the leader wrote"
        return super().write_batch(batch, now)


def test_messages_wake_the_crew_and_it_sleeps_again_when_drained() -> None:
    queue = RecordingQueue()
    sink = HeldSink(queue)
    c = crew_consumer(queue, sink, threads=4, wait=30)
    c.start()
    until(lambda: c.asleep == 3)
    queue.send_many([report_body(f"b{i}") for i in range(400)])
    until(lambda: queue.depth() == 0 and c.asleep == 3)
    assert len(sink.reports) == 400
    assert len(queue.receivers) > 1  # helpers joined the leader
    assert queue.receive_waits.count(30) >= 2  # the leader is back on its long poll
    c.stop()
    assert c.join(5)
    assert c.failed is None


def test_refused_long_polls_pause_and_count_without_spinning() -> None:
    queue, sink = RecordingQueue(), InMemorySink()
    queue.refusing = True
    refused = sample("receiptd_mns_polls_refused_total")
    c = crew_consumer(
        queue, sink, threads=3, wait=20, refusal=RefusalBackoff(base=0.01, cap=0.02),
        monotonic=lambda: 0.0,  # every answer comes "at once"
    )  # fmt: skip
    with structlog.testing.capture_logs() as logs:
        c.start()
        until(lambda: queue.refused >= 5)
        queue.refusing = False
        queue.send(report_body("b1"))
        until(lambda: len(sink.reports) == 1)
        c.stop()
        assert c.join(5)
    assert sample("receiptd_mns_polls_refused_total") - refused == queue.refused
    events = [e["event"] for e in logs]
    assert events.count("mns_polls_refused") == 1  # once per episode, not per request
    assert events.count("mns_polls_refused_ended") == 1
    assert c.asleep == 0 and c.failed is None


def test_refusal_tracker_on_a_controlled_clock() -> None:
    now = [100.0]
    tracker = RefusalTracker("up", RefusalBackoff(base=1.0, cap=20.0), lambda: now[0])
    before = sample("receiptd_mns_polls_refused_total", "up")
    assert tracker.observe(20, 20.0, empty=True) == 0.0  # a real empty long poll
    assert tracker.observe(20, 0.01, empty=False) == 0.0  # messages came early: fine
    assert tracker.observe(0, 0.0, empty=True) == 0.0  # no wait asked: just empty
    delays = [tracker.observe(20, 0.01, empty=True) for _ in range(8)]
    assert sample("receiptd_mns_polls_refused_total", "up") == before + 8
    assert all(0.5 <= d <= 20.0 for d in delays)
    assert delays[-1] >= 10.0  # grown to the cap's order (jitter in [cap/2, cap])
    now[0] += 60
    with structlog.testing.capture_logs() as logs:
        assert tracker.observe(20, 20.0, empty=True) == 0.0
    assert logs[0]["event"] == "mns_polls_refused_ended"
    assert logs[0]["refused"] == 8 and logs[0]["duration"] == 60.0
    assert sample("receiptd_mns_polls_refused_total", "up") == before + 8


@pytest.mark.parametrize("wait", [0, 1, 5, 30])
def test_refusal_backoff_cap_follows_the_wait(wait: int) -> None:
    backoff = RefusalBackoff.for_wait(wait)
    assert backoff.cap == max(1, wait)
    assert all(backoff.delay(n) <= backoff.cap for n in range(40))


def test_crew_wakes_one_sleeper_per_call_and_stop_releases_all() -> None:
    crew = Crew()
    woken: list[bool] = []
    sleepers = [threading.Thread(target=lambda: woken.append(crew.sleep())) for _ in range(3)]
    for t in sleepers:
        t.start()
    until(lambda: crew.asleep == 3)
    crew.wake_one()
    until(lambda: woken == [True])
    crew.stop()
    for t in sleepers:
        t.join(5)
    assert sorted(woken) == [False, False, True]
