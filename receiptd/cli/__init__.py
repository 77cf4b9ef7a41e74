"""The ``receiptd`` command line. Each command lives in its own module of this package."""

from __future__ import annotations

from pathlib import Path

import click

from receiptd import __version__
from receiptd.cli import (
    compensate,
    config_cmd,
    consume,
    db_cmd,
    dead_letters,
    demo,
    emulator,
    run,
    send,
    status,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="TOML settings file (default: $RECEIPTD_CONFIG; environment variables override it).",
)
@click.version_option(__version__, prog_name="receiptd")
@click.pass_context
def main(ctx: click.Context, config_file: Path | None) -> None:
    """receiptd: SMS delivery receipts into your database, every send settled."""
    ctx.obj = {"config_file": config_file}


for _module in (config_cmd, db_cmd, consume, compensate, send, status, dead_letters, run, demo):
    for _command in _module.commands:
        main.add_command(_command)
main.add_command(emulator.command)
