"""`receiptd config check`: validate and print the effective settings, secrets masked."""

from __future__ import annotations

import json

import click

from receiptd import config
from receiptd.cli import common


@click.group("config")
def config_group() -> None:
    """Inspect settings."""


@config_group.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of key = value lines.")
@click.pass_context
def check(ctx: click.Context, as_json: bool) -> None:
    """Validate every setting and print the effective values (secrets masked), then every
    account: its provider, whether it is configured and served here, queues and endpoints."""
    settings = common.settings(ctx)
    values = settings.masked()
    parts = settings.parts
    account = parts.aliyun
    values["report_queue"] = account.report_queue
    values["up_queue"] = account.up_queue
    values["mode"] = "token" if account.token_mode else "direct"
    listed = [config.describe_account(a, served=a in parts.served_accounts) for a in parts.accounts]
    if as_json:
        click.echo(json.dumps({**values, "effective_accounts": listed}, indent=2, default=str))
        return
    for key, value in values.items():
        click.echo(f"{key} = {_shown(value)}")
    for entry in listed:  # one line per account: `account = {"name": "default", …}`
        click.echo(f"account = {_shown(entry)}")
    click.echo("# settings OK", err=True)


def _shown(value: object) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)
