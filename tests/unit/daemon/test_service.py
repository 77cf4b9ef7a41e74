"""The service's supervision of loops and jobs, without sockets: fake server, fake notifier."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable

import pytest

from receiptd import ports
from receiptd.daemon.health import Health
from receiptd.daemon.sd_notify import Notifier
from receiptd.daemon.service import Job, Service, ServiceParts


class FakeServer:
    def __init__(self) -> None:
        self.closed = False

    def start(self) -> None:
        return None

    def close(self, timeout: float = 5.0) -> None:
        self.closed = True


def parts(*jobs: Job, health: Health | None = None, dispose=lambda: None) -> ServiceParts:
    return ServiceParts(
        loops=[],
        jobs=list(jobs),
        server=FakeServer(),
        health=health or Health(),
        notifier=Notifier({}),
        heartbeat_timeout=0.5,
        shutdown_timeout=2.0,
        dispose=dispose,
    )


def run_in_thread(service: Service) -> tuple[threading.Thread, list[int]]:
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(service.run(lambda: True)))
    thread.start()
    return thread, codes


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition not met"
        time.sleep(0.01)


def test_what_start_up_built_is_frozen_out_of_the_collectors_sight() -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    service = Service(parts())
    thread, codes = run_in_thread(service)
    try:
        wait_for(lambda: gc.get_freeze_count() > 0)
    finally:
        service.stop()
        thread.join(10)
    assert codes == [0]


def test_a_job_that_raises_a_defect_stops_the_daemon_with_exit_1() -> None:
    def broken() -> None:
        raise KeyError("a bug")

    service = Service(parts(Job("broken", broken, interval=60, first_run_in=0)))
    thread, codes = run_in_thread(service)
    thread.join(10)
    assert codes == [1]


def test_a_database_outage_in_a_job_is_retried_not_fatal() -> None:
    runs: list[int] = []

    def outage() -> None:
        runs.append(1)
        raise ports.StoreUnavailable("connection refused")

    service = Service(parts(Job("outage", outage, interval=0.05, first_run_in=0)))
    thread, codes = run_in_thread(service)
    wait_for(lambda: len(runs) >= 3)
    service.stop()
    thread.join(10)
    assert codes == [0]


def test_a_hung_job_is_stale_in_health_and_stops_the_daemon() -> None:
    release = threading.Event()
    health = Health()
    service = Service(parts(Job("hangs", release.wait, interval=60, first_run_in=0), health=health))
    thread, codes = run_in_thread(service)
    wait_for(lambda: "job.hangs" in health.stale_loops(0.5))
    thread.join(10)
    release.set()
    assert codes == [1]


class Ticks:
    """A monotonic clock the test moves (Health's clock)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_long_job_that_heartbeats_is_not_hung() -> None:
    """1.5 s of the job's time, three heartbeat timeouts, a beat every 0.1 s of it: on Health's
    own clock, so a loaded machine pausing the job thread cannot make it look hung."""
    ticks = Ticks()
    health = Health(clock=ticks)
    done = threading.Event()

    def long_job() -> None:
        for _ in range(15):
            health.heartbeat("job.long")
            ticks.now += 0.1
        done.set()

    service = Service(parts(Job("long", long_job, interval=60, first_run_in=0), health=health))
    thread, codes = run_in_thread(service)
    assert done.wait(10)
    assert health.stale_loops(0.5) == []  # idle between runs: never stale
    service.stop()
    thread.join(10)
    assert codes == [0]


@pytest.mark.parametrize("finishes", [True, False])
def test_stop_awaits_a_running_job_before_disposing_the_engine(finishes: bool) -> None:
    order: list[str] = []
    stopping = threading.Event()
    started = threading.Event()
    released = threading.Event()

    def cycle() -> None:
        started.set()
        if finishes:
            stopping.wait(10)
            time.sleep(0.2)  # the cycle's last settle, after the stop
        else:
            released.wait(30)  # ignores stop: outlives the 2 s drain bound, however slow
        order.append("cycle ended")

    job = Job("compensator", cycle, interval=60, stop=stopping.set, first_run_in=0)
    service = Service(parts(job, dispose=lambda: order.append("disposed")))
    thread, codes = run_in_thread(service)
    assert started.wait(10)
    service.stop()
    thread.join(10)
    snapshot = list(order)  # before the hung cycle is let go
    released.set()
    assert codes == [0]
    assert snapshot == (["cycle ended", "disposed"] if finishes else [])
