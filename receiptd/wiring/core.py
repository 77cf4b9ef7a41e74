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
    parts = settings.parts
    store = SqlStore(create_db_engine(parts.database.url), event_outbox(settings))
    # Send dates are the provider's calendar days (today every account shares one zone).
    return store, SendStore(store, parts.aliyun.timezone)


def event_outbox(settings: config.Settings) -> outbox.Outbox | None:
    """Where settled sends and stored replies write their events: None (no events) unless a
    webhook endpoint is configured."""
    part = settings.parts.webhooks
    if not part.endpoints:
        return None
    routes = tuple(outbox.Route(e.name, frozenset(e.events)) for e in part.endpoints)
    return outbox.Outbox(routes, show_phone_numbers=part.show_phone_numbers, notify=part.notify)


def consumers(
    settings: config.Settings,
    sink: ports.ReceiptSink,
    health: Health,
    kinds: Sequence[domain.MessageType] = (domain.MessageType.REPORT, domain.MessageType.UP),
) -> list[Consumer]:
    """One consumer per queue kind with the configured threads (at least one: a kind asked
    for explicitly always gets a thread)."""
    account, part = settings.parts.aliyun, settings.parts.consumer
    return [
        Consumer(
            kind,
            providers.queue_factory(settings, kind),
            sink,
            health,
            threads=max(_threads(account, kind), 1),
            batch_size=part.batch_size,
            wait_seconds=part.wait_seconds,
            tz=account.timezone,
            max_dequeue=part.max_dequeue,
        )
        for kind in kinds
    ]


def _threads(account: config.AliyunAccount, kind: domain.MessageType) -> int:
    return account.report_threads if kind is domain.MessageType.REPORT else account.up_threads


def daemon_consumers(
    settings: config.Settings, sink: ports.ReceiptSink, health: Health
) -> list[Consumer]:
    """The daemon's consumers: the kinds with threads configured, when Aliyun is."""
    account = settings.parts.aliyun
    if not account.configured:
        return []
    kinds = [kind for kind in domain.MessageType if _threads(account, kind)]
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
    parts = settings.parts
    lookups = providers.status_lookups(settings)
    if not lookups:
        return None
    # One limiter for every lookup: the strictest configured account's rate (today every
    # account shares compensator_rate_limit).
    rate = min(account.rate_limit for account in parts.configured_accounts)
    part = parts.compensator
    return Compensator(
        sends,
        lookups,
        TokenBucket(rate, default_burst(rate)),
        grace=timedelta(seconds=part.grace if grace is None else grace),
        batch_size=part.batch_size,
        base_backoff=part.interval,
        max_backoff=part.max_backoff,
        replica=replica_name(),
        heartbeat=heartbeat or ports.nothing,
        horizons=compensator_horizons(settings),
    )


def compensator_horizons(settings: config.Settings) -> dict[domain.Provider, timedelta]:
    """The status horizon per provider: its account's (``compensator_horizon_<provider>``
    when set, else ``compensator_horizon``; zero means none: ask up to the query window)."""
    return {domain.Provider(a.provider): a.horizon for a in settings.parts.accounts}


# --- retention (receiptd prune, the daily prune job) -------------------------------------------


def retention_cutoffs(
    settings: config.Settings, now: datetime, tables: Sequence[str] = retention.TABLES
) -> list[retention.Cutoff]:
    """Per table: ``retention_days_<table>`` when set, else ``retention_days``."""
    part = settings.parts.retention
    days = retention.days_per_table(part.days, part.overrides)
    return retention.cutoffs(days, now, tuple(tables))


def pruner(settings: config.Settings, engine: Engine, health: Health | None = None) -> Pruner:
    from receiptd.db.prune import Pruner

    beat = (lambda: health.heartbeat("job.prune")) if health is not None else (lambda: None)
    return Pruner(engine, settings.parts.retention.prune_batch_size, heartbeat=beat)
