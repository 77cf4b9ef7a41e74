"""Helpers every command shares: settings, logging, database, exit codes."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn, TypeVar

import click

from receiptd import config, logs, ports, wiring
from receiptd.db import migrate

if TYPE_CHECKING:
    from receiptd.compensation.cycle import Compensator
    from receiptd.db.sends import SendStore
    from receiptd.db.store import SqlStore

T = TypeVar("T")

# Documented exit codes (README "Exit codes").
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_DATABASE = 3
EXIT_PROVIDER = 4


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    click.echo(f"receiptd: {message}", err=True)
    sys.exit(code)


def settings(ctx: click.Context) -> config.Settings:
    """The settings, loaded once per process; an invalid value exits 2 naming the key."""
    obj = ctx.find_root().obj
    if "settings" not in obj:
        try:
            obj["settings"] = config.load_settings(obj.get("config_file"))
        except config.ConfigError as exc:
            fail(str(exc), EXIT_CONFIG)
        configure_logs(obj["settings"])
    result: config.Settings = obj["settings"]
    return result


def configure_logs(s: config.Settings) -> None:
    """receiptd's logging as the settings say, to stderr, its secrets masked."""
    part = s.parts.logging
    logs.configure(
        level=part.level,
        fmt=part.format,
        secrets=secret_values(s),
        mask_phones=not part.show_phone_numbers,
        stream=sys.stderr,
    )


def secret_values(s: config.Settings) -> list[str]:
    """Every configured secret value, for the log redactor."""
    from sqlalchemy.engine import make_url

    parts = s.parts
    # An account's secrets include its push token: waitress logs the push URLs' paths.
    values = [secret.get_secret_value() for a in parts.accounts for secret in a.secrets]
    if parts.daemon.status_api_token is not None:
        values.append(parts.daemon.status_api_token.get_secret_value())
    values += [e.secret.get_secret_value() for e in parts.webhooks.endpoints]
    password = make_url(parts.database.url).password
    if password:
        values.append(str(password))
    return [v for v in values if v]


def stores(s: config.Settings) -> tuple[SqlStore, SendStore]:
    return wiring.stores(s)


def ready_stores(s: config.Settings) -> tuple[SqlStore, SendStore]:
    """The stores of a command that reads or writes the tables: exit 3 (``EXIT_DATABASE``)
    with what to do unless the database answers and its schema is at the head revision
    (instead of a traceback naming a missing table)."""
    store, sends = stores(s)
    try:
        check_database(store)
    except SystemExit:
        store.engine.dispose()
        raise
    return store, sends


def check_database(store: SqlStore) -> None:
    """Exit 3 unless the database answers and its schema is at the head revision."""
    try:
        store.ping()
        current = migrate.is_up_to_date(store.engine)
    except Exception as exc:  # StoreUnavailable, or a driver error alembic lets through
        fail(f"database unreachable: {exc}", EXIT_DATABASE)
    if not current:
        fail("database schema is not up to date: run 'receiptd db upgrade'", EXIT_DATABASE)


def compensator(
    s: config.Settings,
    sends: SendStore,
    grace: float | None = None,
    accounts: Sequence[config.Account] | None = None,
) -> Compensator | None:
    """The compensator of ``accounts`` (default: the served ones; None without any); an
    account configured but unusable (e.g. Huawei without its SDK) exits 2 naming it."""
    try:
        return wiring.compensator(s, sends, grace, accounts=accounts)
    except config.ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)


def account_option(help_text: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """``--account ID``: a provider account id (``[a-z0-9_]{1,32}``; checked, not looked up)."""
    return click.option(
        "--account", "account", default=None, callback=_check_account_id, help=help_text
    )


def _check_account_id(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> str | None:
    try:
        return None if value is None else config.check_account_id(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def configured_accounts(
    s: config.Settings, name: str, provider: str | None = None
) -> tuple[config.Account, ...]:
    """The configured accounts named ``name`` (of ``provider``; ``default`` names one per
    provider); none exits 2 naming it and the accounts there are."""
    found = tuple(
        a for a in s.parts.configured_accounts if a.name == name and provider in (None, a.provider)
    )
    if not found:
        known = ", ".join(
            sorted({a.name for a in s.parts.configured_accounts if provider in (None, a.provider)})
        )
        which = f"{provider} account" if provider else "account"
        fail(f"unknown {which} {name!r} (configured: {known or 'none'})", EXIT_CONFIG)
    return found


@contextmanager
def store_session(s: config.Settings) -> Iterator[SqlStore]:
    """The receipt store for one command, its engine disposed afterwards."""
    store, _ = stores(s)
    try:
        yield store
    finally:
        store.engine.dispose()


def guarded(work: Callable[[], T]) -> T:
    """``work()``; an unreachable database exits 3 with the reason."""
    try:
        return work()
    except ports.StoreUnavailable as exc:
        fail(f"database unreachable: {exc}", EXIT_DATABASE)
