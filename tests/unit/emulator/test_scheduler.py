"""The emulator's scheduler (receiptd_emulator.scheduler) on a manual clock."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from receiptd_emulator.clock import ManualClock
from receiptd_emulator.scheduler import Scheduler


def test_scheduler_runs_callbacks_in_time_order() -> None:
    """On a ManualClock: the order is the due times', however slowly ``at`` is called (on a
    real clock a loaded machine could reach the second due time before the third ``at``)."""
    clock = ManualClock(1_000.0)
    scheduler = Scheduler(clock)
    scheduler.start()
    ran: list[int] = []
    steps = [threading.Event() for _ in range(3)]

    def step(n: int) -> Callable[[], None]:
        return lambda: (ran.append(n), steps[n].set())

    scheduler.at(1_002.0, step(2))
    scheduler.at(1_001.0, step(1))
    scheduler.at(999.0, step(0))
    assert steps[0].wait(10) and ran == [0]  # due already: runs at once
    clock.advance(1.5)
    assert steps[1].wait(10) and ran == [0, 1]
    clock.advance(0.5)
    assert steps[2].wait(10)
    scheduler.stop()
    scheduler.stop()  # idempotent
    assert ran == [0, 1, 2]


def test_a_failing_callback_is_counted_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock(1_000.0)
    scheduler = Scheduler(clock)
    scheduler.start()
    done = threading.Event()

    def broken() -> None:
        raise RuntimeError("an emulator defect")

    scheduler.at(1_001.0, broken)
    scheduler.at(1_002.0, done.set)
    clock.advance(5)
    assert done.wait(10)
    scheduler.stop()
    assert scheduler.failures == 1
    assert "emulator scheduled callback failed" in caplog.text
