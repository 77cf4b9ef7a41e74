"""The courier: bodies due now go at once, later ones by the scheduler, push mode takes its
queue's bodies, and a missing queue drops them with a warning."""

from __future__ import annotations

import logging

import pytest

from receiptd_emulator.clock import ManualClock
from receiptd_emulator.credentials import CredentialStore
from receiptd_emulator.delivery import Courier
from receiptd_emulator.mns import MnsService
from receiptd_emulator.scheduler import Scheduler


def courier() -> tuple[Courier, MnsService, ManualClock, Scheduler]:
    clock = ManualClock(1000.0)
    mns = MnsService(CredentialStore())
    mns.create_queue("q")
    scheduler = Scheduler(clock)
    return Courier(mns, scheduler, clock), mns, clock, scheduler


def test_due_now_at_once_later_by_the_scheduler() -> None:
    target, mns, clock, scheduler = courier()
    scheduler.start()
    try:
        target.route("q", [(999.0, "a"), (1000.0, "b"), (1010.0, "c")])
        assert mns.queue("q").depth()["visible"] == 2
        assert scheduler.pending() == 1
        clock.advance(10)
        assert scheduler.wait_idle(5)
        assert mns.queue("q").depth()["visible"] == 3
    finally:
        scheduler.stop()


def test_push_mode_takes_the_bodies() -> None:
    target, mns, _, _ = courier()
    taken: list[tuple[str, list[str]]] = []

    def divert(queue: str, bodies: list[str]) -> bool:
        taken.append((queue, bodies))
        return True

    target.divert = divert
    target.route("q", [(0.0, "a")])
    assert taken == [("q", ["a"])]
    assert mns.queue("q").depth()["visible"] == 0


def test_a_missing_queue_drops_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    target, _, _, _ = courier()
    with caplog.at_level(logging.WARNING):
        target.enqueue("gone", ["a"])
    assert "gone" in caplog.text
