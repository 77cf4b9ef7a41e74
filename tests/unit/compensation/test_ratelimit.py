"""The token bucket, driven by a fake clock: rate, burst and thread safety."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiptd.compensation.ratelimit import Stoppable, Stopped, TokenBucket, default_burst


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def admitted_times(bucket: TokenBucket, fake: FakeTime, n: int) -> list[float]:
    times = []
    for _ in range(n):
        bucket.acquire()
        times.append(fake.now)
    return times


def max_in_window(times: list[float], window: float) -> int:
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_burst_passes_at_once_then_paced_at_rate() -> None:
    fake = FakeTime()
    bucket = TokenBucket(10, burst=3, clock=fake.clock, sleep=fake.sleep)
    times = admitted_times(bucket, fake, 6)
    assert times[:3] == [100.0, 100.0, 100.0]
    assert times[3:] == pytest.approx([100.1, 100.2, 100.3])


def test_idle_time_refills_no_more_than_burst() -> None:
    fake = FakeTime()
    bucket = TokenBucket(5, burst=2, clock=fake.clock, sleep=fake.sleep)
    admitted_times(bucket, fake, 2)
    fake.now += 60.0
    start = fake.now
    times = admitted_times(bucket, fake, 4)
    assert times == pytest.approx([start, start, start + 0.2, start + 0.4])


@given(
    rate=st.floats(min_value=1, max_value=5000),
    burst=st.integers(min_value=1, max_value=50),
    gaps=st.lists(st.floats(min_value=0, max_value=0.5), min_size=1, max_size=200),
)
def test_no_window_of_one_second_exceeds_rate_plus_burst(rate, burst, gaps) -> None:
    fake = FakeTime()
    bucket = TokenBucket(rate, burst=burst, clock=fake.clock, sleep=fake.sleep)
    times = []
    for gap in gaps:
        fake.now += gap
        bucket.acquire()
        times.append(fake.now)
    assert max_in_window(times, 1.0) <= rate + burst


def test_threads_share_the_bucket() -> None:
    lock = threading.Lock()
    fake = FakeTime()

    def sleep(seconds: float) -> None:
        with lock:
            fake.sleeps.append(seconds)

    bucket = TokenBucket(100, burst=1, clock=fake.clock, sleep=sleep)
    threads = [
        threading.Thread(target=lambda: [bucket.acquire() for _ in range(50)]) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bucket.acquired == 200
    # With the clock frozen every slot is reserved exactly once: waits 0, 0.01, ..., 1.99.
    assert sorted(round(s, 6) for s in fake.sleeps) == [round(i / 100, 6) for i in range(1, 200)]


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (10, 0)])
def test_invalid_settings(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)


@pytest.mark.parametrize(("rate", "burst"), [(1, 1), (50, 5), (2000, 200)])
def test_default_burst(rate: float, burst: int) -> None:
    assert default_burst(rate) == burst


def test_a_stop_while_waiting_for_a_slot_lets_no_call_out() -> None:
    """The stop (SIGTERM) lands while a caller sleeps for its slot: it gets Stopped, not one
    more call; before the stop, calls pass and are reported."""
    stopping = threading.Event()
    fake = FakeTime()

    def stopped_during_the_wait(seconds: float) -> None:
        stopping.set()
        fake.sleep(seconds)

    bucket = TokenBucket(rate=20, burst=1, clock=fake.clock, sleep=stopped_during_the_wait)
    calls: list[float] = []
    limiter = Stoppable(bucket, stopping, on_call=lambda: calls.append(fake.now))
    limiter.acquire()  # the burst: at once, no wait
    assert len(calls) == 1 and not stopping.is_set()
    with pytest.raises(Stopped):  # waited 50 ms for its slot, the stop came meanwhile
        limiter.acquire()
    assert fake.sleeps == [pytest.approx(0.05)] and len(calls) == 1
    with pytest.raises(Stopped):  # and every later one, at once
        limiter.acquire()
    assert len(fake.sleeps) == 1
