"""MNS queue semantics on a fake clock: visibility, handles, delays, counts, a state machine."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, rule

from receiptd_emulator.mns_queue import MnsError, MnsQueue, QueueMeta


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def queue(clock: Clock) -> MnsQueue:
    return MnsQueue("q", QueueMeta(visibility_timeout=30), clock)


def code(call: object) -> str:
    with pytest.raises(MnsError) as error:
        call()  # type: ignore[operator]
    return error.value.code


def test_receive_hides_until_visibility_timeout(queue: MnsQueue, clock: Clock) -> None:
    sent = queue.send("a")
    (got,) = queue.receive(16, 0)
    assert (got.message_id, got.dequeue_count) == (sent.message_id, 1)
    assert got.next_visible_ms == int((clock.now + 30) * 1000)
    assert queue.receive(16, 0) == []
    clock.now += 30
    (again,) = queue.receive(16, 0)
    assert again.dequeue_count == 2
    assert again.first_dequeue_ms == got.first_dequeue_ms
    assert again.receipt_handle != got.receipt_handle


def test_handle_invalid_after_next_visible_time_even_if_not_redelivered(
    queue: MnsQueue, clock: Clock
) -> None:
    queue.send("a")
    (got,) = queue.receive(1, 0)
    clock.now += 30
    assert code(lambda: queue.delete(got.receipt_handle)) == "ReceiptHandleError"


def test_handle_invalid_after_rereceive_and_message_not_exist_after_delete(
    queue: MnsQueue, clock: Clock
) -> None:
    queue.send("a")
    (first,) = queue.receive(1, 0)
    clock.now += 31
    (second,) = queue.receive(1, 0)
    assert code(lambda: queue.delete(first.receipt_handle)) == "ReceiptHandleError"
    queue.delete(second.receipt_handle)
    assert code(lambda: queue.delete(second.receipt_handle)) == "MessageNotExist"


@pytest.mark.parametrize("handle", ["", "garbage", "1-", "1-AAAA", "1-!!!!", "2-" + "A" * 28])
def test_forged_handles(queue: MnsQueue, handle: str) -> None:
    assert code(lambda: queue.delete(handle)) == "ReceiptHandleError"


def test_handle_of_another_queue_is_not_valid_here(queue: MnsQueue, clock: Clock) -> None:
    other = MnsQueue("other", QueueMeta(), clock)
    other.send("x")
    queue.send("y")
    (foreign,) = other.receive(1, 0)
    assert code(lambda: queue.delete(foreign.receipt_handle)) == "ReceiptHandleError"


def test_change_visibility(queue: MnsQueue, clock: Clock) -> None:
    queue.send("a")
    (got,) = queue.receive(1, 0)
    changed = queue.change_visibility(got.receipt_handle, 5)
    assert changed.next_visible_ms == int((clock.now + 5) * 1000)
    assert code(lambda: queue.change_visibility(got.receipt_handle, 5)) == "ReceiptHandleError"
    clock.now += 5
    assert queue.receive(1, 0)[0].dequeue_count == 2


def test_delays_and_counts(queue: MnsQueue, clock: Clock) -> None:
    queue.send("now")
    queue.send("later", delay=10)
    assert queue.depth() == {"visible": 1, "inflight": 0, "delayed": 1}
    queue.receive(16, 0)
    assert queue.depth() == {"visible": 0, "inflight": 1, "delayed": 1}
    clock.now += 10
    assert queue.depth() == {"visible": 1, "inflight": 1, "delayed": 0}
    assert [m.body for m in queue.peek(16)] == ["later"]


def test_queue_default_delay_applies(clock: Clock) -> None:
    queue = MnsQueue("d", QueueMeta(delay_seconds=3), clock)
    queue.send("x")
    assert queue.depth()["delayed"] == 1
    queue.send("y", delay=0)
    assert queue.depth()["visible"] == 1


def test_delete_many_deletes_what_it_can(queue: MnsQueue) -> None:
    for body in "abc":
        queue.send(body)
    handles = [m.receipt_handle for m in queue.receive(16, 0)]
    failed = queue.delete_many([handles[0], "bad", handles[1], handles[0]])
    assert [(h, e.code) for h, e in failed] == [
        ("bad", "ReceiptHandleError"),
        (handles[0], "MessageNotExist"),
    ]
    assert queue.depth() == {"visible": 0, "inflight": 1, "delayed": 0}


def test_retention_drops_old_messages(clock: Clock) -> None:
    queue = MnsQueue("r", QueueMeta(message_retention_period=60), clock)
    queue.send("old")
    clock.now += 61
    assert queue.receive(16, 0) == []
    assert queue.depth() == {"visible": 0, "inflight": 0, "delayed": 0}


def test_body_md5_is_upper_hex(queue: MnsQueue) -> None:
    assert queue.send("hello").body_md5 == "5D41402ABC4B2A76B9719D911017C592"


def test_closed_queue(queue: MnsQueue) -> None:
    queue.close()
    assert code(lambda: queue.receive(1, 5)) == "QueueNotExist"


class QueueMachine(RuleBasedStateMachine):
    """Whatever the interleaving, every sent message is exactly once: visible, in flight,
    delayed or deleted; counts add up; and only the newest handle of a message works."""

    handles = Bundle("handles")

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.queue = MnsQueue("m", QueueMeta(visibility_timeout=10), self.clock)
        self.sent = 0
        self.deleted = 0

    @rule(delay=st.sampled_from([0, 0, 5]))
    def send(self, delay: int) -> None:
        self.queue.send("x", delay=delay)
        self.sent += 1

    @rule(target=handles, count=st.integers(1, 16))
    def receive(self, count: int) -> object:
        return multiple(*[m.receipt_handle for m in self.queue.receive(count, 0)])

    @rule(handle=handles)
    def delete(self, handle: str) -> None:
        try:
            self.queue.delete(handle)
            self.deleted += 1
        except MnsError as error:
            assert error.code in ("ReceiptHandleError", "MessageNotExist")

    @rule(seconds=st.sampled_from([1, 5, 10]))
    def tick(self, seconds: int) -> None:
        self.clock.now += seconds

    @invariant()
    def conserved(self) -> None:
        depth = self.queue.depth()
        assert min(depth.values()) >= 0
        assert sum(depth.values()) == self.sent - self.deleted


QueueMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestQueueMachine = QueueMachine.TestCase


def test_expire_inflight_redelivers_now_with_the_next_dequeue_count(
    queue: MnsQueue, clock: Clock
) -> None:
    """The test control behind redelivery tests: the visibility timeout ends now."""
    queue.send("a")
    (first,) = queue.receive(16, 0)
    assert queue.receive(16, 0) == []
    assert queue.expire_inflight() == 1
    (again,) = queue.receive(16, 0)
    assert (again.message_id, again.dequeue_count) == (first.message_id, 2)
    assert again.first_dequeue_ms == first.first_dequeue_ms
    assert code(lambda: queue.delete(first.receipt_handle)) == "ReceiptHandleError"
    assert queue.expire_inflight() == 1
    clock.now += 30  # the voided deadlines of earlier deliveries promote nothing twice
    assert [m.dequeue_count for m in queue.receive(16, 0)] == [3]
    assert queue.depth() == {"visible": 0, "inflight": 1, "delayed": 0}
