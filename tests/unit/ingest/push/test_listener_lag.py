"""receiptd_receipt_lag_seconds on the push path (receiptd.ingest.push.listener): a request's
arrival to the commit that holds it, observed after that commit only, on a controlled clock."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from receiptd import metrics, ports
from receiptd.ingest.push import listener as push
from receiptd.ingest.push import routes
from receiptd.testing.queues import InMemorySink
from tests.unit.ingest.push.test_formats import REPORT_OLD, UP
from tests.unit.ingest.push.test_listener import TOKEN, call, js

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
REPORTS = f"/push/{TOKEN}/aliyun/SmsReport"


class Clock:
    """A clock the test moves; ``called`` is set whenever someone reads it."""

    def __init__(self) -> None:
        self.now = T0
        self.called = threading.Event()

    def __call__(self) -> datetime:
        self.called.set()
        return self.now


class SlowSink(InMemorySink):
    """Each write takes ``takes`` of the clock; ``hold`` (when set) blocks the first write
    until released; remembers the lag count seen inside each write."""

    def __init__(self, clock: Clock, takes: timedelta, unavailable: bool = False) -> None:
        super().__init__(unavailable=unavailable)
        self.clock, self.takes = clock, takes
        self.counts_during_writes: list[float] = []
        self.entered, self.release = threading.Event(), threading.Event()
        self.hold = False

    def write_batch(self, b: ports.Batch, now: datetime) -> ports.BatchResult:
        self.counts_during_writes.append(lag()[0])
        if self.hold and not self.entered.is_set():
            self.entered.set()
            self.release.wait(10)
        result = super().write_batch(b, now)
        self.clock.now += self.takes
        return result


def lag() -> tuple[float, float]:
    """(count, sum) of the default account's push lag histogram."""
    labels = {"channel": "push", "account": "default"}
    count = metrics.REGISTRY.get_sample_value("receiptd_receipt_lag_seconds_count", labels)
    total = metrics.REGISTRY.get_sample_value("receiptd_receipt_lag_seconds_sum", labels)
    return count or 0.0, total or 0.0


def make(sink: InMemorySink, clock: Clock) -> push.PushApp:
    return push.PushApp(sink, push.PushConfig(routes.default_accounts(TOKEN)), clock)


def test_each_receipt_of_a_request_is_observed_from_its_arrival_to_the_commit() -> None:
    clock = Clock()
    sink = SlowSink(clock, timedelta(seconds=2))
    app = make(sink, clock)
    before = lag()
    other = {**REPORT_OLD, "biz_id": "900000000000002^0"}
    assert call(app, REPORTS, js([REPORT_OLD, other, 7]))[0] == 200  # 7: a dead letter
    assert sink.counts_during_writes == [before[0]]  # nothing observed before the commit
    count, total = lag()
    assert count - before[0] == 2
    assert total - before[1] == pytest.approx(4.0)  # two receipts, 2 s each
    # A duplicate is observed too; a reply as well.
    assert call(app, REPORTS, js([REPORT_OLD]))[0] == 200
    assert call(app, f"/push/{TOKEN}/aliyun/SmsUp", js([UP]))[0] == 200
    assert lag()[0] - before[0] == 4


def test_nothing_is_observed_when_the_commit_fails_or_the_body_is_refused() -> None:
    clock = Clock()
    app = make(SlowSink(clock, timedelta(seconds=1), unavailable=True), clock)
    before = lag()
    assert call(app, REPORTS, js([REPORT_OLD]))[0] == 503
    app = make(SlowSink(clock, timedelta(seconds=1)), clock)
    assert call(app, REPORTS, b"not json")[0] == 400  # kept as a dead letter, no receipt
    assert lag() == before


def test_a_request_waiting_for_a_group_commit_counts_the_wait() -> None:
    """The second request arrives while the first one's transaction runs: its lag runs from
    its own arrival to the end of the commit that holds it."""
    clock = Clock()
    sink = SlowSink(clock, timedelta(0))
    sink.hold = True
    app = make(sink, clock)
    before = lag()
    first = threading.Thread(target=call, args=(app, REPORTS, js([REPORT_OLD])))
    first.start()
    assert sink.entered.wait(10)  # the first request's transaction is under way (at T0)
    clock.now = T0 + timedelta(seconds=1)
    clock.called.clear()  # the first request is held in its write: it reads no clock now
    other = {**REPORT_OLD, "biz_id": "900000000000003^0"}
    second = threading.Thread(target=call, args=(app, REPORTS, js([other])))
    second.start()
    assert clock.called.wait(10)  # the second request has read its arrival time (T0 + 1 s)
    clock.now = T0 + timedelta(seconds=5)  # the first transaction ends 5 s after T0
    sink.release.set()
    first.join(10)
    second.join(10)
    count, total = lag()
    assert count - before[0] == 2
    assert total - before[1] == pytest.approx(5.0 + 4.0)
