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
    parts = settings.parts
    if not (parts.configured_accounts or parts.push.addr):
        common.fail(
            "invalid setting aliyun_access_key_id: no provider is configured, the daemon would "
            "do nothing (set aliyun_access_key_id, huawei_access_key_id or push_addr)",
            common.EXIT_CONFIG,
        )
    store, sends = common.stores(settings)
    _prepare_database(store, migrate_first or parts.daemon.migrate_on_start)
    try:
        service, ready = daemon.service(settings, store, sends, Health())
    except config.ConfigError as exc:
        common.fail(str(exc), common.EXIT_CONFIG)
    except daemon.CannotListen as exc:
        common.fail(str(exc), 1)
    log.info(
        "service_starting",
        mode="token" if parts.aliyun.token_mode else "direct",
        http_addr=parts.daemon.http_addr,
        report_queue=parts.aliyun.report_queue,
        push_addr=parts.push.addr,
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
