"""The core objects built from Settings: stores, consumers, the compensator."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from receiptd import config, domain, ports
from receiptd.compensation.cycle import AccountLookup, Compensator
from receiptd.daemon.health import Health
from receiptd.db import outbox, retention
from receiptd.db.engine import create_db_engine
from receiptd.db.sends import SendStore
from receiptd.db.store import SqlStore
from receiptd.ingest.mns.consumer import Consumer

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from receiptd.db.prune import Pruner
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
    routes = tuple(
        outbox.Route(e.name, frozenset(e.events), frozenset(e.accounts)) for e in part.endpoints
    )
    return outbox.Outbox(routes, show_phone_numbers=part.show_phone_numbers, notify=part.notify)


def consumers(
    settings: config.Settings,
    sink: ports.ReceiptSink,
    health: Health,
    kinds: Sequence[domain.MessageType] = (domain.MessageType.REPORT, domain.MessageType.UP),
    account: config.AliyunAccount | None = None,
) -> list[Consumer]:
    """One consumer per queue kind of one Aliyun account (the default one without it) with
    the account's threads (at least one: a kind asked for explicitly always gets a thread)."""
    account = account or settings.parts.aliyun
    part = settings.parts.consumer
    return [
        Consumer(
            kind,
            providers.queue_factory(settings, kind, account),
            sink,
            health,
            threads=max(_threads(account, kind), 1),
            batch_size=part.batch_size,
            wait_seconds=part.wait_seconds,
            tz=account.timezone,
            max_dequeue=part.max_dequeue,
            account=account.name,
        )
        for kind in kinds
    ]


def queue_kinds(account: config.AliyunAccount) -> list[domain.MessageType]:
    """The queue kinds an account has: SmsReport always; SmsUp on the China site; the
    GlobeSmsReport queue where one is configured (docs/international.md)."""
    kinds = [domain.MessageType.REPORT]
    if account.site == "cn":
        kinds.append(domain.MessageType.UP)
    if account.globe_queue:
        kinds.append(domain.MessageType.GLOBE_REPORT)
    return kinds


def _threads(account: config.AliyunAccount, kind: domain.MessageType) -> int:
    if kind is domain.MessageType.GLOBE_REPORT:  # consumed only where a queue is configured
        return account.globe_threads if account.globe_queue else 0
    return account.report_threads if kind is domain.MessageType.REPORT else account.up_threads


def daemon_consumers(
    settings: config.Settings, sink: ports.ReceiptSink, health: Health
) -> list[Consumer]:
    """The daemon's consumers: per Aliyun account this replica serves, the kinds with threads
    configured."""
    return [
        consumer
        for account in settings.parts.served_accounts
        if isinstance(account, config.AliyunAccount)
        for consumer in consumers(
            settings,
            sink,
            health,
            [kind for kind in queue_kinds(account) if _threads(account, kind)],
            account,
        )
    ]


def consumes(settings: config.Settings) -> bool:
    """Whether an Aliyun account this replica serves has a queue with threads."""
    return any(
        _threads(account, kind)
        for account in settings.parts.served_accounts
        if isinstance(account, config.AliyunAccount)
        for kind in queue_kinds(account)
    )


def compensator(
    settings: config.Settings,
    sends: ports.SendStore,
    grace: float | None = None,
    heartbeat: Callable[[], None] | None = None,
    accounts: Sequence[config.Account] | None = None,
) -> Compensator | None:
    """The compensator of the accounts this replica serves (``accounts`` narrows them), or
    None when there is none.

    Each account is asked with its own keys and its own rate limiter (provider limits are per
    account); rate, batch, grace and backoff come from the settings: a still-pending send is
    checked again after one interval, doubling per check, capped. Raises config.ConfigError
    when an account is configured but unusable.
    """
    parts = settings.parts
    served = parts.served_accounts if accounts is None else tuple(accounts)
    if not served:
        return None
    part = parts.compensator
    return Compensator(
        sends,
        [_account_lookup(account) for account in served],
        providers.rate_limiter(served[0].rate_limit),  # each account has its own; unused
        grace=timedelta(seconds=part.grace if grace is None else grace),
        batch_size=part.batch_size,
        base_backoff=part.interval,
        max_backoff=part.max_backoff,
        replica=replica_name(),
        heartbeat=heartbeat or ports.nothing,
        horizons=compensator_horizons(settings),
    )


def _account_lookup(account: config.Account) -> AccountLookup:
    return AccountLookup(
        providers.account_lookup(account),
        account.name,
        providers.rate_limiter(account.rate_limit),
        account.horizon,
    )


def compensator_horizons(settings: config.Settings) -> dict[domain.Provider, timedelta]:
    """The status horizon per provider: its default account's (``compensator_horizon_<provider>``
    when set, else ``compensator_horizon``; zero means none: ask up to the query window).
    Every account's own horizon (``accounts.<id>.compensator_horizon``) overrides it."""
    parts = settings.parts
    return {domain.Provider(a.provider): a.horizon for a in (parts.aliyun, parts.huawei)}


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
