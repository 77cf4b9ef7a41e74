"""`receiptd status [--json]`: sends by provider and status, oldest pending, last run."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click

from receiptd import ports
from receiptd.cli import common
from receiptd.clock import utc_now


def report(summary: ports.StatusSummary, now: datetime) -> dict[str, Any]:
    """The summary as plain data (what ``--json`` prints)."""
    counts: dict[str, dict[str, int]] = {}
    for (provider, status), n in sorted(summary.counts.items()):
        counts.setdefault(provider, {})[status] = n
    oldest = {
        provider: round((now - _aware(sent_at)).total_seconds())
        for provider, sent_at in sorted(summary.oldest_pending.items())
    }
    return {
        "sends": counts,
        "oldest_pending_seconds": oldest,
        "last_run_started": _iso(summary.last_run_started),
        "last_run_finished": _iso(summary.last_run_finished),
        "dead_letters": summary.dead_letters,
        "inbound": summary.inbound,
    }


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else _aware(moment).isoformat()


def _age(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Counts by status and provider, oldest pending send, last compensator run."""
    _, sends = common.stores(common.settings(ctx))
    try:
        data = report(sends.summary(), utc_now())
    except ports.StoreUnavailable as exc:
        common.fail(f"database unreachable: {exc}", common.EXIT_DATABASE)
    finally:
        sends.store.engine.dispose()
    if as_json:
        click.echo(json.dumps(data, sort_keys=True))
        return
    for provider, counts in data["sends"].items():
        parts = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
        click.echo(f"{provider}: {parts}")
    if not data["sends"]:
        click.echo("no sends registered")
    for provider, seconds in data["oldest_pending_seconds"].items():
        click.echo(f"{provider}: oldest pending {_age(seconds)} ago")
    finished = data["last_run_finished"] or "never finished"
    click.echo(f"last compensator run: {data['last_run_started'] or 'never'} ({finished})")
    click.echo(f"dead letters: {data['dead_letters']}  inbound: {data['inbound']}")
