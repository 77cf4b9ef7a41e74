"""Fault injection per API group and per-account QPS limits.

Decisions are drawn from one seeded `random.Random` per group, so a run with a seed injects the
same sequence of faults into the same sequence of calls of that group.
"""

from __future__ import annotations

import enum
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

#: API groups; every route belongs to one. "all" in `Faults.set` means every group.
GROUPS: tuple[str, ...] = ("mns", "dysms", "dybase", "koomessage")


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """Fault rates for one API group (each rate is a probability per request).

    error_rate: answer 5xx (MNS `InternalError` 500, POP `ServiceUnavailable` 503).
    throttle_rate: answer the group's throttling error (POP `Throttling.User` 400).
    reset_rate: drop the connection without an answer; half of these come *after* the request
        took effect, as on a real network, so a client cannot assume a reset call did nothing.
    latency / latency_rate: add `latency` seconds to that share of requests.
    seed: seeds this group's decisions (None: unseeded).
    """

    error_rate: float = 0.0
    throttle_rate: float = 0.0
    reset_rate: float = 0.0
    latency: float = 0.0
    latency_rate: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        rates = (self.error_rate, self.throttle_rate, self.reset_rate, self.latency_rate)
        if any(not 0.0 <= rate <= 1.0 for rate in rates):
            raise ValueError("fault rates must be between 0 and 1")
        if self.error_rate + self.throttle_rate + self.reset_rate > 1.0:
            raise ValueError("error_rate + throttle_rate + reset_rate must not exceed 1")
        if self.latency < 0:
            raise ValueError("latency must be >= 0")

    @property
    def active(self) -> bool:
        return self.error_rate + self.throttle_rate + self.reset_rate > 0 or (
            self.latency > 0 and self.latency_rate > 0
        )


class FaultKind(enum.Enum):
    NONE = "none"
    ERROR = "error"
    THROTTLE = "throttle"
    RESET_BEFORE = "reset_before"
    RESET_AFTER = "reset_after"


@dataclass(frozen=True, slots=True)
class FaultDecision:
    kind: FaultKind = FaultKind.NONE
    delay: float = 0.0


NO_FAULT = FaultDecision()


class Faults:
    """The current FaultSpec of every group, and the draws against it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._specs: dict[str, tuple[FaultSpec, random.Random]] = {}

    def set(self, group: str, spec: FaultSpec) -> None:
        groups = GROUPS if group == "all" else (group,)
        for name in groups:
            if name not in GROUPS:
                raise ValueError(f"unknown API group {name!r}; expected one of {GROUPS} or 'all'")
        with self._lock:
            for name in groups:
                self._specs[name] = (spec, random.Random(spec.seed))

    def spec(self, group: str) -> FaultSpec:
        with self._lock:
            entry = self._specs.get(group)
        return entry[0] if entry else FaultSpec()

    def decide(self, group: str) -> FaultDecision:
        entry = self._specs.get(group)
        if entry is None or not entry[0].active:
            return NO_FAULT  # the hot path: no lock, no draw
        spec, rng = entry
        with self._lock:
            delay = spec.latency if rng.random() < spec.latency_rate else 0.0
            draw = rng.random()
            after = rng.random() < 0.5
        return FaultDecision(_kind_for(spec, draw, after), delay)


def _kind_for(spec: FaultSpec, draw: float, after: bool) -> FaultKind:
    if draw < spec.error_rate:
        return FaultKind.ERROR
    if draw < spec.error_rate + spec.throttle_rate:
        return FaultKind.THROTTLE
    if draw < spec.error_rate + spec.throttle_rate + spec.reset_rate:
        return FaultKind.RESET_AFTER if after else FaultKind.RESET_BEFORE
    return FaultKind.NONE


class QpsLimiter:
    """Per-API token buckets (capacity = one second's worth), one per account, like Alibaba's
    per-account gateway limits: one account's traffic never spends another's allowance."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._qps: dict[str, float] = {}  # api -> limit
        self._buckets: dict[tuple[str, str], list[float]] = {}  # (api, account) -> [tokens, t]

    def set_limit(self, api: str, qps: float | None) -> None:
        with self._lock:
            if qps is not None and qps <= 0:
                raise ValueError("qps must be > 0 (use None to remove a limit)")
            self._buckets = {k: b for k, b in self._buckets.items() if k[0] != api}
            if qps is None:
                self._qps.pop(api, None)
            else:
                self._qps[api] = float(qps)

    def limits(self) -> dict[str, float]:
        with self._lock:
            return dict(self._qps)

    def allow(self, api: str, account: str = "") -> bool:
        if api not in self._qps:
            return True
        with self._lock:
            qps = self._qps.get(api)
            if qps is None:
                return True
            now = self._clock()
            bucket = self._buckets.setdefault((api, account), [qps, now])
            tokens = min(qps, bucket[0] + (now - bucket[1]) * qps)
            allowed = tokens >= 1.0
            bucket[0] = tokens - 1.0 if allowed else tokens
            bucket[1] = now
            return allowed
