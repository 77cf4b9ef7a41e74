"""`receiptd run`: the daemon."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime

import click
from sqlalchemy.exc import SQLAlchemyError

from receiptd import config, ports, webhooks, wiring
from receiptd.cli import common
from receiptd.db import migrate
from receiptd.db.sends import SendStore
from receiptd.db.store import SqlStore
from receiptd.health import Health
from receiptd.http import Check, OpsApp, OpsServer, Probes, run_check
from receiptd.logs import get_logger
from receiptd.notify import Notifier
from receiptd.service import Job, Service, ServiceParts
from receiptd.signals import on_stop_signals

log = get_logger(__name__)


@click.command("run")
@click.option(
    "--migrate", "migrate_first", is_flag=True, help="Upgrade the schema before starting."
)
@click.pass_context
def run(ctx: click.Context, migrate_first: bool) -> None:
    """Run the daemon: consumers, compensator, and the health/metrics endpoint."""
    settings = common.settings(ctx)
    if not (settings.aliyun_configured or settings.huawei_configured):
        common.fail(
            "invalid setting aliyun_access_key_id: no provider is configured, the daemon would "
            "do nothing (set aliyun_access_key_id, or huawei_access_key_id)",
            common.EXIT_CONFIG,
        )
    store, sends = common.stores(settings)
    _prepare_database(store, migrate_first or settings.migrate_on_start)
    health = Health()
    try:
        service, ready = _build(settings, store, sends, health)
    except OSError as exc:
        common.fail(f"cannot listen on http_addr {settings.http_addr}: {exc.strerror}", 1)
    log.info(
        "service_starting",
        mode="token" if settings.token_mode else "direct",
        http_addr=settings.http_addr,
        report_queue=settings.report_queue,
    )
    with on_stop_signals(service.stop):
        code = service.run(ready)
    sys.exit(code)


def _prepare_database(store: SqlStore, migrate_first: bool) -> None:
    try:
        store.ping()
        if migrate_first:
            migrate.upgrade(store.engine)
        if not migrate.is_up_to_date(store.engine):
            common.fail(
                "database schema is not at the head revision; run `receiptd db upgrade` "
                "or start with --migrate",
                common.EXIT_DATABASE,
            )
    except (ports.StoreUnavailable, SQLAlchemyError) as exc:
        common.fail(f"database unreachable: {exc}", common.EXIT_DATABASE)


def _build(
    settings: config.Settings, store: SqlStore, sends: SendStore, health: Health
) -> tuple[Service, Callable[[], bool]]:
    comp = common.compensator(settings, sends) if settings.compensator_enabled else None
    readiness = {"database": _database_check(store), "queues": _queues_check(health)}
    token = settings.status_api_token
    app = OpsApp(
        Probes({"loops": _liveness_check(health, settings.heartbeat_timeout)}, readiness),
        status_token=token.get_secret_value() if token else None,
        lookup=sends.by_biz_id,
        register=lambda new: sends.register(new, datetime.now(UTC)),
        show_phone_numbers=settings.log_show_phone_numbers,
    )
    host, port = config.split_host_port(settings.http_addr)
    jobs = (
        [Job("compensator", comp.run_once, settings.compensator_interval, stop=comp.stop)]
        if comp
        else []
    )
    dispatchers, webhook_jobs = webhooks.daemon_parts(settings, store, health)
    parts = ServiceParts(
        loops=[*wiring.daemon_consumers(settings, store, health), *dispatchers],
        jobs=[*jobs, *webhook_jobs],
        server=OpsServer(app, host, port),
        health=health,
        notifier=Notifier(),
        heartbeat_timeout=settings.heartbeat_timeout,
        shutdown_timeout=settings.shutdown_timeout,
        dispose=store.engine.dispose,
    )

    def ready() -> bool:
        return all(run_check(check)[0] for check in readiness.values())

    return Service(parts), ready


def _database_check(store: SqlStore) -> Check:
    def check() -> tuple[bool, str]:
        store.ping()
        return True, "reachable"

    return check


def _queues_check(health: Health) -> Check:
    def check() -> tuple[bool, str]:
        loops = {n: s for n, s in health.snapshot().items() if n.startswith("consumer.")}
        if not loops:
            return True, "no queues configured"
        failing = [n for n, s in loops.items() if s.last_error or s.last_success is None]
        return (not failing, "failing: " + ", ".join(sorted(failing)) if failing else "polled")

    return check


def _liveness_check(health: Health, threshold: float) -> Check:
    def check() -> tuple[bool, str]:
        stale = health.stale_loops(threshold)
        return (not stale, f"stale: {', '.join(stale)}" if stale else "heartbeating")

    return check
