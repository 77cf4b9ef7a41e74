"""Provider truth at scale, the scheduler, and the dispatcher (faults, limits, call log)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

import pytest

from receiptd_emulator import Emulator, FaultSpec, SeedSend
from receiptd_emulator.calls import CallLog
from receiptd_emulator.clock import ManualClock
from receiptd_emulator.faults import Faults, QpsLimiter
from receiptd_emulator.http_types import Request, Response
from receiptd_emulator.router import Router, path_route
from receiptd_emulator.scheduler import Scheduler
from receiptd_emulator.server import Dispatcher

CST = dt.timezone(dt.timedelta(hours=8))


def test_seed_100k_sends_and_query_by_phone_and_date() -> None:
    now = dt.datetime.now(dt.UTC)
    emu = Emulator()  # not started: seeding and queries need no server
    try:
        seeds = [
            SeedSend(
                f"138{i % 1000:08d}",
                "阿里云短信测试",
                "SMS_154950909",
                f"o{i}",
                now - dt.timedelta(seconds=i),
                receipt="lost",
            )
            for i in range(100_000)
        ]
        biz_ids = emu.seed_sends(seeds)
        assert len(set(biz_ids)) == 100_000
        day = now.astimezone(CST).strftime("%Y%m%d")
        matches = emu.sms_records.query("13800000007", day)
        expected = {f"o{i}" for i in range(7, 100_000, 1000)}
        # Sends of the last ~28 hours can span two China days; the index keeps them apart.
        assert {m.out_id for m in matches} <= expected
        assert all(m.send_date == day for m in matches)
        assert len(emu.records()) == 100_000
    finally:
        emu.stop()


def test_seed_validation() -> None:
    emu = Emulator()
    try:
        with pytest.raises(ValueError):
            emu.seed_sends([SeedSend("1", "s", "t", outcome="maybe")])
        with pytest.raises(ValueError):
            emu.seed_sends([SeedSend("1", "s", "t", receipt="eaten")])
        with pytest.raises(ValueError):
            emu.seed_sends([SeedSend("1", "s", "t", send_time=dt.datetime(2024, 1, 1))])  # noqa: DTZ001
    finally:
        emu.stop()


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


def _dispatcher() -> tuple[Dispatcher, Faults, QpsLimiter, CallLog]:
    def ok(request: Request, api: str) -> Response:
        return Response(200, b"ok")

    def fault(kind: object, request: Request, api: str) -> Response:
        return Response(503, b"", outcome=f"fault:{kind}")

    router = Router()
    router.add(path_route("Ping", "dysms", "GET", "/ping", ok, fault))
    faults, limiter, calls = Faults(), QpsLimiter(), CallLog()
    return Dispatcher(router, faults, limiter, calls), faults, limiter, calls


def test_dispatcher_records_calls_and_applies_faults_and_limits() -> None:
    dispatcher, faults, limiter, calls = _dispatcher()
    assert dispatcher.handle(Request("GET", "/ping?x=1", {})).status == 200
    assert dispatcher.handle(Request("GET", "/nowhere", {})).status == 404
    (call,) = calls.calls("Ping")
    assert (call.params, call.outcome, call.fault) == ({"x": "1"}, "OK", "none")
    faults.set("dysms", FaultSpec(error_rate=1.0))
    assert dispatcher.handle(Request("GET", "/ping", {})).status == 503
    faults.set("dysms", FaultSpec(reset_rate=1.0, seed=2))
    assert dispatcher.handle(Request("GET", "/ping", {})).reset
    faults.set("dysms", FaultSpec())
    limiter.set_limit("Ping", 1)
    statuses = [dispatcher.handle(Request("GET", "/ping", {})).status for _ in range(3)]
    assert statuses[0] == 200 and 503 in statuses
    seen = [c.fault for c in calls.calls()]
    assert seen[:2] == ["none", "error"]
    assert seen[2] in ("reset_before", "reset_after")
