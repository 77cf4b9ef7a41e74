"""`receiptd compensate --once [--account ID]`: one compensation cycle in the foreground (or its
plan), of every account this replica serves or of one."""

from __future__ import annotations

import sys
from collections import Counter

import click

from receiptd import domain, ports
from receiptd.cli import common
from receiptd.compensation import cycle as compensator
from receiptd.compensation import planning
from receiptd.db.sends import SendStore


@click.command("compensate")
@click.option("--once", is_flag=True, help="Run one cycle and exit (the daemon schedules cycles).")
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds a send is left to its receipt (default: compensator_grace).",
)
@click.option("--dry-run", is_flag=True, help="Print the call plan; claim and call nothing.")
@common.account_option(
    "Only this configured account (`default`: the flat settings' accounts; "
    "default: every account this replica serves)."
)
@click.pass_context
def compensate(
    ctx: click.Context, once: bool, grace: float | None, dry_run: bool, account: str | None
) -> None:
    """Look up pending sends whose receipts never came and settle them."""
    if not once and not dry_run:
        common.fail("use --once (the daemon 'receiptd run' schedules cycles)", common.EXIT_CONFIG)
    settings = common.settings(ctx)
    accounts = None if account is None else common.configured_accounts(settings, account)
    _, sends = common.ready_stores(settings)
    try:  # every exit disposes of the engine (the schema check opened a connection)
        comp = common.compensator(settings, sends, grace, accounts)
        if comp is None:
            common.fail("no provider is configured (set aliyun_access_key_id)", common.EXIT_CONFIG)
        if dry_run:
            _print_plan(comp.plan(), mask=not settings.parts.logging.show_phone_numbers)
        else:
            _run(comp, sends, account)
    except ports.StoreUnavailable as exc:
        common.fail(f"database unreachable: {exc}", common.EXIT_DATABASE)
    finally:
        sends.store.engine.dispose()


def _run(comp: compensator.Compensator, sends: SendStore, account: str | None) -> None:
    counts = sends.summary().counts.items()
    pending = sum(n for (_, a, status), n in counts if status == "pending" and account in (None, a))
    with click.progressbar(length=pending, label="compensating", file=sys.stderr) as bar:
        summary = comp.run_once(progress=bar.update)
    click.echo(f"claimed:       {summary.claimed}")
    click.echo(f"calls:         {_pairs(summary.calls)}")
    click.echo(f"settled:       {_pairs(summary.settled)}")
    click.echo(f"expired:       {summary.expired}")
    click.echo(f"still pending: {summary.still_pending}")
    for cycle in summary.providers:
        scope = f"{cycle.provider}/{cycle.account}"
        if len(summary.providers) > 1:
            click.echo(
                f"  {scope}: claimed={cycle.claimed} settled={sum(cycle.settled.values())} "
                f"still_pending={cycle.still_pending}"
            )
        if cycle.error:
            click.echo(f"{scope}: lookup error: {cycle.error}", err=True)


def _pairs(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none"


def _query_label(query: planning.PlannedQuery) -> str:
    if query.kind is planning.QueryKind.OUT_ID:
        return "OutId match"
    name = "MessageId" if query.kind is planning.QueryKind.MESSAGE_ID else "BizId"
    return f"{name}={query.biz_id}"


def _print_plan(plans: list[planning.ProviderPlan], *, mask: bool) -> None:
    for plan in plans:
        kinds = Counter(q.kind for q in plan.queries)
        by_message_id = kinds[planning.QueryKind.MESSAGE_ID]
        click.echo(
            f"{plan.provider}/{plan.account}: {plan.due} due, "
            f"{plan.expire} to expire without a call, {len(plan.queries)} queries "
            f"({kinds[planning.QueryKind.BIZ_ID]} by BizId, "
            f"{kinds[planning.QueryKind.OUT_ID]} by OutId group"
            + (f", {by_message_id} by MessageId)" if by_message_id else ")")
        )
        for query in plan.queries:
            phone = domain.mask_phone(query.phone_number) if mask else query.phone_number
            what = _query_label(query)
            day = query.send_date.strftime("%Y%m%d")
            click.echo(f"  {phone} SendDate={day} {what} ({len(query.sends)} send(s))")
