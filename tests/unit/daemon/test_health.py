"""Health as data (receiptd.daemon.health): heartbeats, idle loops, staleness."""

from __future__ import annotations

from receiptd import metrics
from receiptd.daemon.health import Health


def clocked() -> tuple[Health, list[float]]:
    """A registry on a clock the test moves: ``now[0] += seconds``."""
    now = [100.0]
    return Health(lambda: now[0]), now


def test_a_loop_is_stale_once_its_heartbeat_is_older_than_the_threshold() -> None:
    health, now = clocked()
    health.register("consumer")
    health.register("compensator")
    now[0] += 30
    health.heartbeat("compensator")
    now[0] += 31
    assert health.stale_loops(60) == ["consumer"]
    assert metrics.HEARTBEAT_AGE.labels("consumer")._value.get() == 61
    assert metrics.HEARTBEAT_AGE.labels("compensator")._value.get() == 31


def test_an_idle_loop_is_never_stale_until_it_heartbeats_again() -> None:
    health, now = clocked()
    health.idle("prune")
    now[0] += 10_000
    assert health.stale_loops(60) == []
    assert metrics.HEARTBEAT_AGE.labels("prune")._value.get() == 0
    health.heartbeat("prune")
    now[0] += 61
    assert health.stale_loops(60) == ["prune"]


def test_success_clears_the_last_error_and_every_report_counts_as_a_heartbeat() -> None:
    health, now = clocked()
    health.error("webhooks", "refused")  # an unregistered loop is registered by its report
    state = health.snapshot()["webhooks"]
    assert (state.last_error, state.last_success, state.last_heartbeat) == ("refused", None, 100.0)
    now[0] = 105.0
    health.success("webhooks")
    state = health.snapshot()["webhooks"]
    assert (state.last_error, state.last_success, state.last_heartbeat) == (None, 105.0, 105.0)


def test_a_snapshot_is_a_copy() -> None:
    health, _ = clocked()
    health.register("consumer")
    health.snapshot()["consumer"].last_error = "changed outside"
    assert health.snapshot()["consumer"].last_error is None
