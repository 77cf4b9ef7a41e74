"""`receiptd config check`: validate and print the effective settings, secrets masked."""

from __future__ import annotations

import json

import click

from receiptd.cli import common


@click.group("config")
def config_group() -> None:
    """Inspect settings."""


@config_group.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of key = value lines.")
@click.pass_context
def check(ctx: click.Context, as_json: bool) -> None:
    """Validate every setting and print the effective values (secrets masked)."""
    settings = common.settings(ctx)
    values = settings.masked()
    account = settings.parts.aliyun
    values["report_queue"] = account.report_queue
    values["up_queue"] = account.up_queue
    values["mode"] = "token" if account.token_mode else "direct"
    if as_json:
        click.echo(json.dumps(values, indent=2, default=str))
        return
    for key, value in values.items():
        click.echo(f"{key} = {json.dumps(value, default=str, ensure_ascii=False)}")
    click.echo("# settings OK", err=True)
