"""The core objects built from Settings: stores, consumers, the compensator."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from receiptd import config, domain, ports
from receiptd.compensation.cycle import Compensator
from receiptd.daemon.health import Health
from receiptd.db import outbox, retention
from receiptd.db.engine import create_db_engine
from receiptd.db.sends import SendStore
from receiptd.db.store import SqlStore
from receiptd.ingest.mns.consumer import Consumer

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from receiptd.db.prune import Pruner
from receiptd.compensation.ratelimit import TokenBucket, default_burst
from receiptd.wiring import providers


def replica_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def stores(settings: config.Settings) -> tuple[SqlStore, SendStore]:
    """The receipt store and the send registry over one new engine; with webhooks configured
    every change they commit writes its events (``event_outbox``) in the same transaction."""
    store = SqlStore(create_db_engine(settings.database_url), event_outbox(settings))
    return store, SendStore(store, settings.timezone)


def event_outbox(settings: config.Settings) -> outbox.Outbox | None:
    """Where settled sends and stored replies write their events: None (no events) unless a
    webhook endpoint is configured."""
    endpoints = settings.webhooks
    if not endpoints:
        return None
    routes = tuple(outbox.Route(e.name, frozenset(e.events)) for e in endpoints)
    return outbox.Outbox(
        routes,
        show_phone_numbers=settings.events_show_phone_numbers,
        notify=settings.events_notify,
    )


def consumers(
    settings: config.Settings,
    sink: ports.ReceiptSink,
    health: Health,
    kinds: Sequence[domain.MessageType] = (domain.MessageType.REPORT, domain.MessageType.UP),
) -> list[Consumer]:
    """One consumer per queue kind with the configured threads (at least one: a kind asked
    for explicitly always gets a thread)."""
    threads = {
        domain.MessageType.REPORT: settings.consumer_report_threads,
        domain.MessageType.UP: settings.consumer_up_threads,
    }
    return [
        Consumer(
            kind,
            providers.queue_factory(settings, kind),
            sink,
            health,
            threads=max(threads[kind], 1),
            batch_size=settings.consumer_batch_size,
            wait_seconds=settings.consumer_wait_seconds,
            tz=settings.timezone,
            max_dequeue=settings.consumer_max_dequeue,
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
    settings: config.Settings,
    sends: ports.SendStore,
    grace: float | None = None,
    heartbeat: Callable[[], None] | None = None,
) -> Compensator | None:
    """The configured compensator, or None when no provider is configured.

    Rate, batch, grace and backoff come from the settings: a still-pending send is checked
    again after one interval, doubling per check, capped. Raises config.ConfigError when a
    provider is configured but unusable.
    """
    lookups = providers.status_lookups(settings)
    if not lookups:
        return None
    rate = settings.compensator_rate_limit
    return Compensator(
        sends,
        lookups,
        TokenBucket(rate, default_burst(rate)),
        grace=timedelta(seconds=settings.compensator_grace if grace is None else grace),
        batch_size=settings.compensator_batch_size,
        base_backoff=settings.compensator_interval,
        max_backoff=settings.compensator_max_backoff,
        replica=replica_name(),
        heartbeat=heartbeat or ports.nothing,
        horizons=compensator_horizons(settings),
    )


def compensator_horizons(settings: config.Settings) -> dict[domain.Provider, timedelta]:
    """The status horizon per provider: ``compensator_horizon_<provider>`` when set, else
    ``compensator_horizon``; zero means none (ask up to the provider's query window).

    Each override is named, not looked up by a computed name: a renamed setting fails type
    checking, and a provider added without one fails here (KeyError) instead of silently
    taking the default."""
    overrides = {
        domain.Provider.ALIYUN: settings.compensator_horizon_aliyun,
        domain.Provider.HUAWEI: settings.compensator_horizon_huawei,
    }
    horizons = {}
    for provider in domain.Provider:
        own = overrides[provider]
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
