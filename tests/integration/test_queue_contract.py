"""One contract, two queues: the in-memory twin and the MNS adapter against the emulator."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from receiptd import domain, ports, wiring
from receiptd.testing.emulated import emulator_settings
from receiptd.testing.queues import InMemoryQueue
from receiptd_emulator.emulator import Emulator


@dataclass
class Harness:
    queue: ports.ReceiptQueue
    send: Callable[[str], str]
    make_stale: Callable[[str], None]  # the handle stops being valid (visibility changed)
    redeliver: Callable[[], None]  # every in-flight message's visibility timeout passes now


@pytest.fixture(params=["memory", "mns-token", "mns-direct"])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    if request.param == "memory":
        memory = InMemoryQueue("Alicom-Queue-0-SmsReport")
        yield Harness(memory, memory.send, memory.expire_visibility, memory.expire_visibility)
        return
    with Emulator(profile="default") as emu:
        settings = emulator_settings(emu.info, token_mode=request.param == "mns-token")
        queue = wiring.queue_factory(settings, domain.MessageType.REPORT)()
        backing = emu.mns.queue(emu.info.report_queue)
        yield Harness(
            queue,
            lambda body: emu.enqueue("report", body),
            lambda handle: backing.change_visibility(handle, 30) and None,
            lambda: backing.expire_inflight() and None,
        )
        queue.close()


def test_empty_queue_is_an_empty_list(harness: Harness) -> None:
    assert harness.queue.receive(16, 0) == []


def test_bodies_come_back_verbatim_and_delete_removes_them(harness: Harness) -> None:
    bodies = [domain.encode_body({"n": i, "text": "退订"}) for i in range(3)] + ["not base64!"]
    ids = [harness.send(b) for b in bodies]
    got = harness.queue.receive(16, 1)
    assert sorted(m.message_id for m in got) == sorted(ids)
    assert sorted(m.body for m in got) == sorted(bodies)
    assert all(m.dequeue_count == 1 for m in got)
    assert harness.queue.delete([m.receipt_handle for m in got]) == []
    assert harness.queue.receive(16, 0) == []


def test_dequeue_count_counts_deliveries(harness: Harness) -> None:
    """What quarantine (consumer_max_dequeue) reads: every delivery of a message not deleted
    raises its DequeueCount by one; the id and body stay, the old handle goes stale."""
    message_id = harness.send("poison?")
    seen = []
    for _ in range(3):
        (got,) = harness.queue.receive(16, 1)
        seen.append((got.message_id, got.body, got.dequeue_count))
        harness.redeliver()
    assert seen == [(message_id, "poison?", n) for n in (1, 2, 3)]
    (last,) = harness.queue.receive(16, 1)
    assert harness.queue.delete([got.receipt_handle])[0].receipt_handle == got.receipt_handle
    assert harness.queue.delete([last.receipt_handle]) == []


def test_receive_respects_max_messages(harness: Harness) -> None:
    for i in range(5):
        harness.send(f"body-{i}")
    assert len(harness.queue.receive(2, 0)) == 2


def test_stale_handle_is_a_delete_failure_not_an_exception(harness: Harness) -> None:
    harness.send("one")
    harness.send("two")
    first, second = harness.queue.receive(16, 1)
    harness.make_stale(first.receipt_handle)
    failures = harness.queue.delete([first.receipt_handle, second.receipt_handle])
    assert [f.receipt_handle for f in failures] == [first.receipt_handle]
    assert failures[0].code
