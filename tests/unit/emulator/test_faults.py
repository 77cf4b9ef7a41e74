"""Fault injection and QPS limits (receiptd_emulator.faults), pure parts."""

from __future__ import annotations

import pytest

from receiptd_emulator.faults import FaultKind, Faults, FaultSpec, QpsLimiter


def test_fault_spec_validation() -> None:
    with pytest.raises(ValueError):
        FaultSpec(error_rate=1.5)
    with pytest.raises(ValueError):
        FaultSpec(error_rate=0.6, reset_rate=0.6)


def test_fault_decisions_are_reproducible_with_a_seed() -> None:
    def draws() -> list[FaultKind]:
        faults = Faults()
        faults.set("all", FaultSpec(error_rate=0.2, throttle_rate=0.2, reset_rate=0.2, seed=5))
        return [faults.decide("mns").kind for _ in range(200)]

    first = draws()
    assert first == draws()
    assert {FaultKind.ERROR, FaultKind.THROTTLE, FaultKind.NONE} <= set(first)
    assert Faults().decide("mns").kind is FaultKind.NONE
    with pytest.raises(ValueError):
        Faults().set("nope", FaultSpec())


def test_qps_limiter_refills() -> None:
    now = [0.0]
    limiter = QpsLimiter(clock=lambda: now[0])
    limiter.set_limit("A", 2)
    assert [limiter.allow("A") for _ in range(3)] == [True, True, False]
    now[0] += 0.5
    assert limiter.allow("A") and not limiter.allow("A")
    assert limiter.allow("B")
    limiter.set_limit("A", None)
    assert all(limiter.allow("A") for _ in range(10))


def test_qps_limits_hold_per_account() -> None:
    now = [0.0]
    limiter = QpsLimiter(clock=lambda: now[0])
    limiter.set_limit("A", 1)
    assert [limiter.allow("A", "x"), limiter.allow("A", "x")] == [True, False]
    assert limiter.allow("A", "y") and not limiter.allow("A", "y")
    now[0] = 1.0
    assert limiter.allow("A", "x")
    limiter.set_limit("A", 1)  # a new limit starts every account's bucket afresh
    assert limiter.allow("A", "y") and limiter.limits() == {"A": 1.0}
