"""`receiptd events`: list, show and replay the events in the outbox and their deliveries."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import click

from receiptd import wiring
from receiptd.cli import common
from receiptd.clock import utc_now
from receiptd.config import Settings
from receiptd.db import outbox

_AGO = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(value: str, now: datetime) -> datetime:
    """``30m``, ``2h``, ``7d`` ago, or an ISO 8601 time (UTC when it has no zone)."""
    match = _AGO.fullmatch(value.strip())
    if match:
        return now - timedelta(seconds=float(match.group(1)) * _UNIT[match.group(2)])
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            "expected a duration ago (30m, 2h, 7d) or an ISO time (2026-11-30T08:00:00Z)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Since(click.ParamType[datetime]):
    name = "since"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        return parse_since(str(value), utc_now())


SINCE = click.option("--since", type=Since(), default=None, help="30m, 2h, 7d, or an ISO time.")


def _line(d: outbox.DeliveryView) -> str:
    head = f"{d.event_id}\t{d.type}\t{d.account}\t{d.created_at.isoformat()}"
    if d.endpoint is None:
        return f"{head}\t-\tno endpoint"
    last = f"\tlast={d.last_status_code or d.last_error}" if d.attempts else ""
    return f"{head}\t{d.endpoint}\t{d.status}\tattempts={d.attempts}{last}"


@click.group("events")
def events_group() -> None:
    """Events (a send settled, a reply stored) and their webhook deliveries."""


@events_group.command("list")
@SINCE
@click.option("--endpoint", default=None, help="Only this endpoint's deliveries.")
@click.option(
    "--status", type=click.Choice(["pending", "delivered", "dead"]), default=None, help="Filter."
)
@click.option("--limit", default=100, show_default=True)
@common.account_option("Only this account's events.")
@click.pass_context
def list_cmd(
    ctx: click.Context,
    since: datetime | None,
    endpoint: str | None,
    status: str | None,
    limit: int,
    account: str | None,
) -> None:
    """One line per event and endpoint: id, type, account, created, endpoint, status,
    attempts."""
    settings = common.settings(ctx)
    name = _endpoint_name(settings, endpoint, strict=False) if endpoint else None
    with common.store_session(settings) as store:
        rows = common.guarded(
            lambda: store.run(
                lambda c: outbox.deliveries(c, since, name, status, limit=limit, account=account)
            )
        )
    for row in rows:
        click.echo(_line(row))
    if not rows:
        click.echo("no events")


@events_group.command("show")
@click.argument("event_id")
@click.pass_context
def show_cmd(ctx: click.Context, event_id: str) -> None:
    """One event: its deliveries, then the JSON body every delivery POSTs."""
    with common.store_session(common.settings(ctx)) as store:
        body = common.guarded(lambda: store.run(lambda c: outbox.payload(c, event_id)))
        rows = common.guarded(lambda: store.run(lambda c: outbox.deliveries(c, event_id=event_id)))
    if body is None:
        common.fail(f"no event {event_id}")
    for row in rows:
        click.echo(_line(row))
        if row.last_error:
            click.echo(f"\tlast_error={row.last_error}")
    click.echo(json.dumps(json.loads(body), indent=2, ensure_ascii=False))


@events_group.command("replay")
@click.argument("event_ids", nargs=-1)
@SINCE
@click.option("--endpoint", "endpoints", multiple=True, help="Only to this endpoint (repeatable).")
@click.pass_context
def replay_cmd(
    ctx: click.Context,
    event_ids: tuple[str, ...],
    since: datetime | None,
    endpoints: tuple[str, ...],
) -> None:
    """Deliver events again (dead, delivered or to an endpoint added since) from the first
    attempt; the running daemon picks them up. Receivers de-duplicate by webhook-id."""
    if not event_ids and since is None:
        common.fail("give event IDs or --since", common.EXIT_CONFIG)
    settings = common.settings(ctx)
    configured = wiring.event_outbox(settings)
    if configured is None:
        common.fail("no webhook endpoint is configured (webhook_urls or webhook_endpoints)", 2)
    names = {_endpoint_name(settings, e) for e in endpoints}
    routes = [r for r in configured.routes if not names or r.endpoint in names]
    now = utc_now()
    with common.store_session(settings) as store:
        n = common.guarded(
            lambda: store.run(lambda c: outbox.replay(c, routes, now, event_ids, since))
        )
    click.echo(f"scheduled={n} endpoints={','.join(r.endpoint for r in routes)}")


def _endpoint_name(settings: Settings, given: str, strict: bool = True) -> str:
    """An endpoint by name, or by its URL (endpoints from webhook_urls are named by hash).
    Not strict: a name no longer configured still lists its history."""
    endpoints = settings.parts.webhooks.endpoints
    for endpoint in endpoints:
        if given in (endpoint.name, endpoint.url):
            return endpoint.name
    if not strict:
        return given
    known = ", ".join(e.name for e in endpoints) or "none configured"
    common.fail(f"unknown endpoint {given!r} (known: {known})", common.EXIT_CONFIG)
