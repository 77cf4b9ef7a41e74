"""`receiptd run`: the daemon."""

from __future__ import annotations

import sys
from typing import NoReturn

import click
from sqlalchemy.exc import SQLAlchemyError

from receiptd import config, ports, roles
from receiptd.cli import common
from receiptd.config.values import check_account_ids, split_ids
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
@click.option(
    "--accounts",
    "serve",
    default=None,
    metavar="ID[,ID...]",
    help="Consume and compensate only these accounts (overrides serve_accounts; "
    "`default`: the flat settings' accounts).",
)
@click.option(
    "--roles",
    "named_roles",
    default=None,
    metavar="ROLE[,ROLE...]",
    help="Run only these roles: consumer, push, webhooks, compensator, prune; `worker` is "
    "compensator,prune (overrides the roles setting; default: every configured role).",
)
@click.pass_context
def run(
    ctx: click.Context, migrate_first: bool, serve: str | None, named_roles: str | None
) -> None:
    """Run the daemon: consumers, push listener, webhooks, compensator, prune (its roles), and
    the health/metrics endpoint."""
    settings = common.settings(ctx)
    if serve is not None:
        settings = serving(settings, serve)
    if named_roles is not None:
        settings = with_roles(settings, named_roles)
    parts = settings.parts
    if not (parts.configured_accounts or parts.push.addr):
        common.fail(
            "invalid setting aliyun_access_key_id: no provider is configured, the daemon would "
            "do nothing (set aliyun_access_key_id, huawei_access_key_id or push_addr)",
            common.EXIT_CONFIG,
        )
    store, sends = common.stores(settings)
    try:  # a role that cannot run stops start-up before the database is asked
        daemon.active_roles(settings, store)
    except config.ConfigError as exc:
        _fail(store, str(exc), common.EXIT_CONFIG)
    _prepare_database(store, migrate_first or parts.daemon.migrate_on_start)
    try:
        service, ready = daemon.service(settings, store, sends, Health())
    except config.ConfigError as exc:
        _fail(store, str(exc), common.EXIT_CONFIG)
    except daemon.CannotListen as exc:
        _fail(store, str(exc), 1)
    log.info(
        "service_starting",
        mode="token" if parts.aliyun.token_mode else "direct",
        http_addr=parts.daemon.http_addr,
        report_queue=parts.aliyun.report_queue,
        push_addr=parts.push.addr,
        accounts=[f"{a.provider}/{a.name}" for a in parts.served_accounts],
        roles=list(service.roles),
    )
    with on_stop_signals(service.stop):
        code = service.run(ready)
    sys.exit(code)


def serving(settings: config.Settings, value: str) -> config.Settings:
    """The settings with ``serve_accounts`` replaced by ``value`` (``--accounts a,b``); an
    empty list, a malformed or an unknown id exits 2 naming it."""
    ids = split_ids(value)
    if not ids:
        common.fail("--accounts: give at least one account id", common.EXIT_CONFIG)
    try:
        check_account_ids(ids)
    except ValueError as exc:
        common.fail(f"--accounts: {exc}", common.EXIT_CONFIG)
    known = settings.parts.account_names
    unknown = [name for name in ids if name not in known]
    if unknown:
        common.fail(
            f"--accounts: unknown account(s) {', '.join(unknown)}; known: {', '.join(known)}",
            common.EXIT_CONFIG,
        )
    return settings.model_copy(update={"serve_accounts": ",".join(ids)})


def with_roles(settings: config.Settings, value: str) -> config.Settings:
    """The settings with ``roles`` replaced by ``value`` (``--roles consumer,push``); an
    empty list or an unknown role exits 2 naming it."""
    try:
        named = roles.parse(value)
    except ValueError as exc:
        common.fail(f"--roles: {exc}", common.EXIT_CONFIG)
    if not named:
        common.fail("--roles: give at least one role", common.EXIT_CONFIG)
    return settings.model_copy(update={"roles": ",".join(named)})


def _prepare_database(store: SqlStore, migrate_first: bool) -> None:
    try:
        store.ping()
        if migrate_first:
            migrate.upgrade(store.engine)
        up_to_date = migrate.is_up_to_date(store.engine)
    except (ports.StoreUnavailable, SQLAlchemyError) as exc:
        _fail(store, f"database unreachable: {exc}", common.EXIT_DATABASE)
    if not up_to_date:
        _fail(
            store,
            "database schema is not at the head revision; run `receiptd db upgrade` "
            "or start with --migrate",
            common.EXIT_DATABASE,
        )


def _fail(store: SqlStore, message: str, code: int) -> NoReturn:
    """Stop before the service started: the engine's connections closed first (a command
    run in-process, as the tests do, must not leave them to the garbage collector)."""
    store.engine.dispose()
    common.fail(message, code)
