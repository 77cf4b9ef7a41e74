"""`receiptd run`: the daemon."""

from __future__ import annotations

import sys

import click
from sqlalchemy.exc import SQLAlchemyError

from receiptd import config, ports
from receiptd.cli import common
from receiptd.daemon.health import Health
from receiptd.daemon.signals import on_stop_signals
from receiptd.db import migrate
from receiptd.db.store import SqlStore
from receiptd.logs import get_logger
from receiptd.wiring import daemon

log = get_logger(__name__)


@click.command("run")
@click.option(
    "--migrate", "migrate_first", is_flag=True, help="Upgrade the schema before starting."
)
@click.pass_context
def run(ctx: click.Context, migrate_first: bool) -> None:
    """Run the daemon: consumers, compensator, and the health/metrics endpoint."""
    settings = common.settings(ctx)
    if not (settings.aliyun_configured or settings.huawei_configured or settings.push_addr):
        common.fail(
            "invalid setting aliyun_access_key_id: no provider is configured, the daemon would "
            "do nothing (set aliyun_access_key_id, huawei_access_key_id or push_addr)",
            common.EXIT_CONFIG,
        )
    store, sends = common.stores(settings)
    _prepare_database(store, migrate_first or settings.migrate_on_start)
    try:
        service, ready = daemon.service(settings, store, sends, Health())
    except config.ConfigError as exc:
        common.fail(str(exc), common.EXIT_CONFIG)
    except daemon.CannotListen as exc:
        common.fail(str(exc), 1)
    log.info(
        "service_starting",
        mode="token" if settings.token_mode else "direct",
        http_addr=settings.http_addr,
        report_queue=settings.report_queue,
        push_addr=settings.push_addr,
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
