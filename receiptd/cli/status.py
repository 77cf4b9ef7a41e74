"""`receiptd status [--json] [--account ID]`: sends by provider, account and status, oldest
pending, last run (the shape: receiptd.daemon.summary, docs/operations.md)."""

from __future__ import annotations

import json
from typing import Any

import click

from receiptd import ports
from receiptd.cli import common
from receiptd.clock import utc_now
from receiptd.daemon import summary as _summary


def _age(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def _pairs(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@common.account_option("Only this account's sends (default: every account, each shown).")
@click.pass_context
def status(ctx: click.Context, as_json: bool, account: str | None) -> None:
    """Counts by provider, account and status, oldest pending send, last compensator run."""
    _, sends = common.ready_stores(common.settings(ctx))
    try:
        data = _summary.report(sends.summary(), utc_now(), account)
    except ports.StoreUnavailable as exc:
        common.fail(f"database unreachable: {exc}", common.EXIT_DATABASE)
    finally:
        sends.store.engine.dispose()
    if as_json:
        click.echo(json.dumps(data, sort_keys=True))
        return
    for line in text_lines(data):
        click.echo(line)


def text_lines(data: dict[str, Any]) -> list[str]:
    """The report as ``receiptd status`` prints it: a line per provider (every account), then
    one per account of it, then the oldest pending send of each account."""
    lines = []
    for provider, counts in data["sends"].items():
        lines.append(f"{provider}: {_pairs(counts)}")
        lines += [
            f"  {provider}/{a['account']}: {_pairs(a['sends'])}"
            for a in data["accounts"]
            if a["provider"] == provider
        ]
    if not data["sends"]:
        lines.append("no sends registered")
    lines += [
        f"{a['provider']}/{a['account']}: oldest pending {_age(a['oldest_pending_seconds'])} ago"
        for a in data["accounts"]
        if a["oldest_pending_seconds"] is not None
    ]
    finished = data["last_run_finished"] or "never finished"
    lines.append(f"last compensator run: {data['last_run_started'] or 'never'} ({finished})")
    lines.append(f"dead letters: {data['dead_letters']}  inbound: {data['inbound']}")
    return lines
