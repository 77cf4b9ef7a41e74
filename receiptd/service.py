"""The daemon: consumer threads, the scheduled compensator and the ops HTTP server.

Shutdown order (``stop()`` is idempotent; ``run()`` performs it once):
1. tell systemd STOPPING=1 and stop the watchdog;
2. consumers stop receiving and finish their in-flight batch (commit, then delete);
3. the scheduler stops (a running compensation cycle finishes its current provider call);
4. the HTTP server closes (probes answer until here, so orchestrators see the drain);
5. the engine is disposed; one summary log line.
Everything after step 1 shares one deadline: ``shutdown_timeout``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from apscheduler.schedulers.background import BackgroundScheduler

from receiptd.health import Health
from receiptd.http import OpsServer
from receiptd.logs import get_logger
from receiptd.notify import Notifier

log = get_logger(__name__)


class Loop(Protocol):
    """What the service needs of a consumer."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def join(self, timeout: float) -> bool: ...

    @property
    def failed(self) -> BaseException | None: ...


@dataclass
class ServiceParts:
    consumers: Sequence[Loop]
    compensate: Callable[[], Any] | None
    stop_compensator: Callable[[], None] | None
    compensator_interval: float
    server: OpsServer
    health: Health
    notifier: Notifier
    heartbeat_timeout: float
    shutdown_timeout: float
    dispose: Callable[[], None] = field(default=lambda: None)


class Service:
    def __init__(self, parts: ServiceParts) -> None:
        self.parts = parts
        self._stop = threading.Event()
        self._scheduler: BackgroundScheduler | None = None

    def stop(self) -> None:
        """Request a drain (idempotent, callable from a signal handler)."""
        self._stop.set()

    def run(self, on_ready: Callable[[], bool]) -> int:
        """Start everything, block until stopped or a loop died; return the exit code."""
        p = self.parts
        p.server.start()
        for consumer in p.consumers:
            consumer.start()
        self._start_scheduler()
        p.notifier.start_watchdog(lambda: not p.health.stale_loops(p.heartbeat_timeout))
        exit_code = self._supervise(on_ready)
        self._shutdown()
        return exit_code

    def _start_scheduler(self) -> None:
        p = self.parts
        if p.compensate is None:
            return
        # misfire_grace_time: APScheduler's 1 s default silently skips late runs.
        self._scheduler = BackgroundScheduler(
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": max(1, int(p.compensator_interval)),
            },
            timezone="UTC",
        )
        self._scheduler.add_job(
            _guarded(p.compensate),
            "interval",
            seconds=p.compensator_interval,
            id="compensator",
            next_run_time=None,
        )
        self._scheduler.start()
        # First cycle soon after start, not one interval later.
        self._scheduler.modify_job("compensator", next_run_time=_soon(5.0))

    def _supervise(self, on_ready: Callable[[], bool]) -> int:
        p = self.parts
        announced = False
        while not self._stop.wait(0.2):
            dead = [c.failed for c in p.consumers if c.failed is not None]
            if dead:
                log.error("loop_died", error=str(dead[0]))
                return 1
            if not announced and on_ready():
                p.notifier.ready("consuming")
                log.info("service_ready")
                announced = True
        return 0

    def _shutdown(self) -> None:
        p = self.parts
        started = time.monotonic()
        deadline = started + p.shutdown_timeout
        p.notifier.stopping()
        p.notifier.stop_watchdog()
        for consumer in p.consumers:
            consumer.stop()
        drained = all(c.join(max(0.0, deadline - time.monotonic())) for c in p.consumers)
        if p.stop_compensator is not None:
            p.stop_compensator()  # a running cycle makes no further call and releases its claims
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        p.server.close(timeout=max(0.5, deadline - time.monotonic()))
        p.dispose()
        log.info("service_stopped", drained=drained, seconds=round(time.monotonic() - started, 3))


def _guarded(job: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        try:
            job()
        except Exception:  # a failed cycle is logged and retried next interval
            log.exception("compensator_cycle_failed")

    return run


def _soon(seconds: float) -> Any:
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC) + timedelta(seconds=seconds)
