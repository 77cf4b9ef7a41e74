"""Builds the core objects from Settings: the one place that joins the core to its adapters.

Used by the CLI commands (`run`, `consume`, `compensate`) and the demo, so each is wired the
same way.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from receiptd import compensator as compensation
from receiptd import config, domain, ports, retention
from receiptd.consumer import Consumer
from receiptd.db.sends import SendStore
from receiptd.health import Health

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from receiptd.db.prune import Pruner
    from receiptd.service import Job
from receiptd.ratelimit import TokenBucket, default_burst


def replica_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def consumers(
    settings: config.Settings,
    sink: ports.ReceiptSink,
    health: Health,
    kinds: Sequence[domain.MessageType] = (domain.MessageType.REPORT, domain.MessageType.UP),
) -> list[Consumer]:
    """One consumer per queue kind with the configured threads (at least one: a kind asked
    for explicitly always gets a thread)."""
    from receiptd.providers.aliyun import mns

    threads = {
        domain.MessageType.REPORT: settings.consumer_report_threads,
        domain.MessageType.UP: settings.consumer_up_threads,
    }
    return [
        Consumer(
            kind,
            mns.queue_factory(settings, kind),
            sink,
            health,
            threads=max(threads[kind], 1),
            batch_size=settings.consumer_batch_size,
            wait_seconds=settings.consumer_wait_seconds,
            tz=settings.timezone,
        )
        for kind in kinds
    ]


def daemon_consumers(
    settings: config.Settings, sink: ports.ReceiptSink, health: Health
) -> list[Consumer]:
    """The daemon's consumers: the kinds with threads configured, when Aliyun is."""
    if not settings.aliyun_configured:
        return []
    kinds = [
        kind
        for kind, n in (
            (domain.MessageType.REPORT, settings.consumer_report_threads),
            (domain.MessageType.UP, settings.consumer_up_threads),
        )
        if n
    ]
    return consumers(settings, sink, health, kinds)


def compensator(
    settings: config.Settings, sends: SendStore, grace: float | None = None
) -> compensation.Compensator | None:
    """The configured compensator, or None when no provider is configured.

    Raises config.ConfigError when a provider is configured but unusable.
    """
    rate = settings.compensator_rate_limit
    comp = compensation.from_settings(
        settings,
        sends,
        TokenBucket(rate, default_burst(rate)),
        replica=replica_name(),
        grace=None if grace is None else timedelta(seconds=grace),
        horizons=compensator_horizons(settings),
    )
    return comp if comp.lookups else None


def compensator_horizons(settings: config.Settings) -> dict[domain.Provider, timedelta]:
    """The status horizon per provider: ``compensator_horizon_<provider>`` when set, else
    ``compensator_horizon``; zero means none (ask up to the provider's query window)."""
    horizons = {}
    for provider in domain.Provider:
        own = getattr(settings, f"compensator_horizon_{provider.value}", None)
        seconds = settings.compensator_horizon if own is None else own
        horizons[provider] = timedelta(seconds=seconds)
    return horizons


# --- retention (receiptd prune, the daily prune job) -------------------------------------------


def retention_cutoffs(
    settings: config.Settings, now: datetime, tables: Sequence[str] = retention.TABLES
) -> list[retention.Cutoff]:
    """Per table: ``retention_days_<table>`` when set, else ``retention_days``."""
    overrides = {t: getattr(settings, f"retention_days_{t}", None) for t in retention.TABLES}
    days = retention.days_per_table(settings.retention_days, overrides)
    return retention.cutoffs(days, now, tuple(tables))


def pruner(settings: config.Settings, engine: Engine, health: Health | None = None) -> Pruner:
    from receiptd.db.prune import Pruner

    beat = (lambda: health.heartbeat("job.prune")) if health is not None else (lambda: None)
    return Pruner(engine, settings.prune_batch_size, heartbeat=beat)


def prune_job(settings: config.Settings, engine: Engine, health: Health) -> Job | None:
    """The daily prune inside `receiptd run` (None when prune_enabled is off)."""
    from receiptd.service import Job

    if not settings.prune_enabled:
        return None
    prune = pruner(settings, engine, health)

    def run() -> None:
        prune.run(retention_cutoffs(settings, datetime.now(UTC)))

    return Job("prune", run, settings.prune_interval, stop=prune.stop)
