"""`receiptd prune`: delete what the retention settings allow (the daemon does it daily)."""

from __future__ import annotations

import sys

import click

from receiptd import ports, wiring
from receiptd.cli import common
from receiptd.clock import utc_now
from receiptd.db import retention


@click.command("prune")
@click.option(
    "--dry-run", is_flag=True, help="Print per table what would be deleted; delete nothing."
)
@click.option(
    "--table",
    "tables",
    multiple=True,
    type=click.Choice(retention.TABLES),
    help="Only this table (repeatable; default: every table).",
)
@click.pass_context
def prune(ctx: click.Context, dry_run: bool, tables: tuple[str, ...]) -> None:
    """Delete receipts, replies, dead letters, settled sends and runs older than their
    retention (retention_days, retention_days_<table>; 0 keeps forever). Pending sends are
    never deleted."""
    settings = common.settings(ctx)
    cutoffs = wiring.retention_cutoffs(settings, utc_now(), tables or retention.TABLES)
    store, _ = common.ready_stores(settings)
    try:  # every exit disposes of the engine (the schema check opened a connection)
        pruner = wiring.pruner(settings, store.engine)
        counts = pruner.count(cutoffs)
        if dry_run:
            _print(cutoffs, counts, "would delete")
            return
        with click.progressbar(
            length=sum(counts.values()), label="pruning", file=sys.stderr
        ) as bar:
            result = pruner.run(cutoffs, progress=bar.update)
    except ports.StoreUnavailable as exc:
        common.fail(f"database unreachable: {exc}", common.EXIT_DATABASE)
    except ports.StoreWriteError as exc:
        common.fail(f"database refused a delete: {exc}", common.EXIT_DATABASE)
    finally:
        store.engine.dispose()
    if result.skipped:
        common.fail("another replica is pruning now; nothing deleted", common.EXIT_FAILURE)
    _print(cutoffs, result.deleted, "deleted")


def _print(cutoffs: list[retention.Cutoff], counts: dict[str, int], verb: str) -> None:
    for cut in cutoffs:
        table = cut.rule.table
        if cut.before is None:
            click.echo(f"{table:16} kept forever (retention 0)")
            continue
        click.echo(
            f"{table:16} {verb} {counts.get(table, 0):>12,} rows "
            f"({cut.rule.column} before {cut.before:%Y-%m-%d %H:%M:%S} UTC, {cut.days} days)"
        )
