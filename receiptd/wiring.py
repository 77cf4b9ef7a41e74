"""Builds the core objects from Settings: the one place that joins the core to its adapters.

Used by the CLI commands (`run`, `consume`, `compensate`) and the demo, so each is wired the
same way.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from datetime import timedelta

from receiptd import compensator as compensation
from receiptd import config, domain, ports
from receiptd.consumer import Consumer
from receiptd.db import outbox
from receiptd.db.sends import SendStore
from receiptd.health import Health
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
    )
    return comp if comp.lookups else None


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
