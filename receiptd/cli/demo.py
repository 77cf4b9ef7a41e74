"""`receiptd demo`: the product end to end on embedded defaults (emulator + SQLite)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from receiptd import logs


@click.command("demo")
@click.option(
    "--database",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("receiptd-demo.db"),
    show_default=True,
    help="SQLite file to (re)create for the demo.",
)
@click.option(
    "--push",
    is_flag=True,
    help="Deliver receipts and replies by HTTP push to receiptd's push listener, not MNS.",
)
@click.option(
    "--webhook",
    is_flag=True,
    help="Also deliver events to a local webhook receiver and count what it got.",
)
@click.option(
    "--international",
    is_flag=True,
    help="Mainland, China-site international and international-site sends, settled together.",
)
def demo(database: Path, push: bool, webhook: bool, international: bool) -> None:
    """Send a few hundred SMS to the built-in emulator and settle every one of them."""
    from receiptd.demo import render, run_demo

    # The demo's own progress lines are the output; library logs stay at warnings.
    logs.configure(level="WARNING", fmt="console", stream=sys.stderr)
    if international:
        _international(database)
        return
    result = run_demo(
        database.resolve(), lambda line: click.echo(line, err=True), push=push, webhook=webhook
    )
    for line in render(result):
        click.echo(line)
    if not result.all_settled:
        click.echo("receiptd: demo deadline passed with sends still pending", err=True)
        sys.exit(1)
    if not result.events_match:
        click.echo("receiptd: the webhook receiver did not get one event per change", err=True)
        sys.exit(1)


def _international(database: Path) -> None:
    from receiptd.demo_international import render, run_international

    result = run_international(database.resolve(), lambda line: click.echo(line, err=True))
    for line in render(result):
        click.echo(line)
    if not result.all_settled:
        click.echo("receiptd: demo deadline passed with sends still pending", err=True)
        sys.exit(1)
