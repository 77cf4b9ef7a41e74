"""`receiptd db upgrade|current`: schema migrations shipped inside the package."""

from __future__ import annotations

import click
from sqlalchemy.exc import SQLAlchemyError

from receiptd.cli import common
from receiptd.db import migrate
from receiptd.db.engine import create_db_engine
from receiptd.db.store import describe_error


@click.group("db")
def db_group() -> None:
    """Database schema migrations."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@click.pass_context
def upgrade(ctx: click.Context, revision: str) -> None:
    """Migrate the database to a revision (idempotent: an up-to-date database is untouched)."""
    settings = common.settings(ctx)
    engine = create_db_engine(settings.parts.database.url)
    try:
        before = migrate.current_revision(engine)
        migrate.upgrade(engine, revision)
        after = migrate.current_revision(engine)
    except SQLAlchemyError as exc:
        common.fail(f"database error: {describe_error(exc)}", common.EXIT_DATABASE)
    finally:
        engine.dispose()
    if before == after:
        click.echo(f"already at {after}")
    else:
        click.echo(f"upgraded {before or '<empty>'} -> {after}")


@db_group.command("current")
@click.pass_context
def current(ctx: click.Context) -> None:
    """Print the database's schema revision and whether it is the head."""
    settings = common.settings(ctx)
    engine = create_db_engine(settings.parts.database.url)
    try:
        rev = migrate.current_revision(engine)
        head = migrate.head_revision(engine)
    except SQLAlchemyError as exc:
        common.fail(f"database error: {describe_error(exc)}", common.EXIT_DATABASE)
    finally:
        engine.dispose()
    click.echo(f"{rev or '<empty>'}{' (head)' if rev == head else f' (head is {head})'}")
