"""`receiptd report [--since 7d] [--by day|provider|account|template|sign|code] [--json]
[--account ID]`: delivered / failed / expired shares, receipts versus queries and delivery
times per group, from the window's rows only (docs/report.md)."""

from __future__ import annotations

import json
from datetime import timedelta

import click

from receiptd import reporting
from receiptd.cli import common
from receiptd.clock import utc_now
from receiptd.db import report as _report


def _window(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[str, timedelta]:
    try:
        return value, reporting.parse_window(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("report")
@click.option(
    "--since",
    "window",
    default="7d",
    show_default=True,
    callback=_window,
    help="The window: 90m, 1h, 7d, 30d, 2w (sends settled in it, pending ones sent in it).",
)
@click.option(
    "--by",
    type=click.Choice(reporting.BY),
    default="day",
    show_default=True,
    help="Group by the provider's calendar day of the send, provider, account, template, "
    "sign, or the error code of failed sends.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object a group.")
@common.account_option("Only this account's sends and receipts (default: every account).")
@click.pass_context
def report(
    ctx: click.Context,
    window: tuple[str, timedelta],
    by: str,
    as_json: bool,
    account: str | None,
) -> None:
    """Delivery outcomes per group: shares, how sends settled, delivery time p50/p90."""
    s = common.settings(ctx)
    now = utc_now()
    span = _report.Window(now - window[1], now, account)
    with common.store_session(s) as store:
        reading = common.guarded(lambda: store.run(lambda conn: _report.read(conn, by, span)))
    found = reporting.groups(by, reading.tallies, reading.receipts, s.timezone)
    if as_json:
        click.echo(json.dumps(reporting.as_json(by, found), sort_keys=True))
        return
    timed = len(reading.receipts)
    for line in reporting.caption(span.since, window[0], timed, reading.sampled):
        click.echo(line)
    total = reporting.overall(reading.tallies, reading.receipts)
    for line in reporting.table(by, found, total):
        click.echo(line)
