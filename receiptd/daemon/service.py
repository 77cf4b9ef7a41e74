"""The daemon: background loops, supervised periodic jobs and the ops HTTP server.

Shutdown order (``stop()`` is idempotent; ``run()`` performs it once):
1. tell systemd STOPPING=1 and stop the watchdog;
2. loops and jobs are told to stop: consumers stop receiving and finish their in-flight batch
   (commit, then delete); a running compensation cycle makes no further provider call and
   releases its claims;
3. loops are joined in the order given (consumers first), the scheduler stops starting runs,
   and a running job is awaited;
4. the HTTP server closes (probes answer until here, so orchestrators see the drain);
5. the engine is disposed (nothing uses it any more); one summary log line.
Everything after step 1 shares one deadline: ``shutdown_timeout``.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from apscheduler.schedulers.background import BackgroundScheduler

from receiptd import ports
from receiptd.clock import utc_now
from receiptd.daemon.health import Health
from receiptd.daemon.sd_notify import Notifier
from receiptd.logs import get_logger

log = get_logger(__name__)
# A job failing with one of these is retried at its next run (the database or a provider is
# away for a while); anything else is a defect, and the daemon exits so its supervisor sees it.
RETRYABLE = (ports.StoreError,)


class Loop(Protocol):
    """A background component the service starts, supervises and stops (a consumer, a
    listener, a dispatcher)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def join(self, timeout: float) -> bool: ...

    @property
    def failed(self) -> BaseException | None: ...


class Server(Protocol):
    """The ops HTTP server: probes answer until ``close``."""

    def start(self) -> None: ...

    def close(self, timeout: float = 5.0) -> None: ...


@dataclass(frozen=True)
class Job:
    """A periodic job: ``run`` every ``interval`` seconds, one run at a time, the first
    ``first_run_in`` seconds after start. ``stop`` makes a running ``run`` return soon."""

    name: str
    run: Callable[[], Any]
    interval: float
    stop: Callable[[], None] = ports.nothing
    first_run_in: float = 5.0


@dataclass
class ServiceParts:
    loops: Sequence[Loop]
    jobs: Sequence[Job]
    server: Server
    health: Health
    notifier: Notifier
    heartbeat_timeout: float
    shutdown_timeout: float
    dispose: Callable[[], None] = field(default=ports.nothing)
    roles: tuple[str, ...] = ()  # what the loops and jobs are for (receiptd.roles)


class SupervisedJob:
    """Runs one job's cycles for the scheduler and tells the supervisor how it is doing.

    While a run is under way the job must heartbeat (``Health.heartbeat(loop_name)``) within
    the heartbeat timeout or it counts as hung; between runs it is idle, never stale.
    ``failed`` holds a defect (an exception outside ``RETRYABLE``); ``wait_idle`` lets the
    shutdown await a running cycle.
    """

    def __init__(self, job: Job, health: Health) -> None:
        self.job = job
        self.loop_name = f"job.{job.name}"
        self._health = health
        self._idle = threading.Event()
        self._idle.set()
        health.idle(self.loop_name)
        self.failed: BaseException | None = None

    def __call__(self) -> None:
        self._idle.clear()
        self._health.heartbeat(self.loop_name)
        try:
            self.job.run()
            self._health.success(self.loop_name)
        except RETRYABLE as exc:
            log.warning("job_failed", job=self.job.name, error=str(exc), retry="next interval")
            self._health.error(self.loop_name, str(exc))
        except Exception as exc:
            log.exception("job_died", job=self.job.name, error=repr(exc))
            self._health.error(self.loop_name, f"died: {exc!r}")
            self.failed = exc
        finally:
            self._health.idle(self.loop_name)
            self._idle.set()

    def wait_idle(self, timeout: float) -> bool:
        return self._idle.wait(max(0.0, timeout))


class Service:
    def __init__(self, parts: ServiceParts) -> None:
        self.parts = parts
        self._stop = threading.Event()
        self._scheduler: BackgroundScheduler | None = None
        self.jobs = [SupervisedJob(job, parts.health) for job in parts.jobs]

    @property
    def roles(self) -> tuple[str, ...]:
        return self.parts.roles

    def stop(self) -> None:
        """Request a drain (idempotent, callable from a signal handler)."""
        self._stop.set()

    def run(self, on_ready: Callable[[], bool]) -> int:
        """Start everything, block until stopped or a component died; return the exit code."""
        p = self.parts
        freeze_start_up_objects()
        p.server.start()
        for loop in p.loops:
            loop.start()
        self._start_scheduler()
        p.notifier.start_watchdog(lambda: self._trouble() is None)
        exit_code = self._supervise(on_ready)
        self._shutdown()
        return exit_code

    def _start_scheduler(self) -> None:
        if not self.jobs:
            return
        # coalesce + max_instances 1: a late or slow job runs once, never twice at a time;
        # misfire_grace_time: APScheduler's 1 s default silently skips late runs.
        self._scheduler = BackgroundScheduler(
            job_defaults={"coalesce": True, "max_instances": 1}, timezone="UTC"
        )
        for supervised in self.jobs:
            job = supervised.job
            self._scheduler.add_job(
                supervised,
                "interval",
                seconds=job.interval,
                id=job.name,
                misfire_grace_time=max(1, int(job.interval)),
                # The first run soon after start, not one interval later.
                next_run_time=utc_now() + timedelta(seconds=job.first_run_in),
            )
        self._scheduler.start()

    def _trouble(self) -> str | None:
        """Why the daemon must not go on (a dead loop, a dead or hung job), or None."""
        p = self.parts
        dead = [loop.failed for loop in p.loops if loop.failed is not None]
        if dead:
            return f"loop died: {dead[0]!r}"
        for job in self.jobs:
            if job.failed is not None:
                return f"job {job.job.name} died: {job.failed!r}"
        stale = p.health.stale_loops(p.heartbeat_timeout)
        hung = [job.job.name for job in self.jobs if job.loop_name in stale]
        if hung:
            return f"job {hung[0]} hung: no progress for {p.heartbeat_timeout:g} s"
        return f"stale: {', '.join(stale)}" if stale else None

    def _supervise(self, on_ready: Callable[[], bool]) -> int:
        p = self.parts
        announced = False
        while not self._stop.wait(0.2):
            trouble = self._trouble()
            if trouble is not None and not trouble.startswith("stale"):
                log.error("loop_died", error=trouble)
                return 1
            if not announced and on_ready():
                p.notifier.ready("consuming")
                log.info("service_ready", roles=list(p.roles))
                announced = True
        return 0

    def _shutdown(self) -> None:
        p = self.parts
        started = time.monotonic()
        deadline = started + p.shutdown_timeout
        p.notifier.stopping()
        p.notifier.stop_watchdog()
        for loop in p.loops:
            loop.stop()
        for job in self.jobs:  # told now, awaited after the loops: no call starts meanwhile
            job.job.stop()
        drained = all(loop.join(max(0.0, deadline - time.monotonic())) for loop in p.loops)
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)  # no new runs; a running one is awaited below
        drained = all(j.wait_idle(deadline - time.monotonic()) for j in self.jobs) and drained
        p.server.close(timeout=max(0.5, deadline - time.monotonic()))
        if drained:
            p.dispose()
        else:  # a job still holds connections: disposing now would fail it with odd errors
            log.warning("service_not_drained", seconds=p.shutdown_timeout)
        log.info("service_stopped", drained=drained, seconds=round(time.monotonic() - started, 3))


def freeze_start_up_objects() -> None:
    """Everything built before the loops start (modules, the SDKs' clients, SQLAlchemy's
    metadata and compiled statements, the wiring) lives as long as the process: moved out of
    the collector's sight (``gc.freeze``), a full collection no longer walks it. Those walks
    were the claim's tail: 5 full collections in 30 claims of 5,000, each adding ~70 ms;
    p99 166 → 87 ms (docs/scale.md, "Issue 26: the claim at 10 M rows, and the collector")."""
    gc.freeze()
