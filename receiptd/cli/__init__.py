"""The ``receiptd`` command line. Each command lives in its own module of this package.

Commands are imported only when invoked: the daemon and `consume` then carry no provider SDK
or library they do not use (resident memory is a benchmark target).
"""

from __future__ import annotations

import importlib

import click

from receiptd import __version__
from receiptd.cli import options

# command name -> "module:attribute"
COMMANDS = {
    "compensate": "receiptd.cli.compensate:compensate",
    "config": "receiptd.cli.config_cmd:config_group",
    "consume": "receiptd.cli.consume:consume",
    "db": "receiptd.cli.db_cmd:db_group",
    "dead-letters": "receiptd.cli.dead_letters:dead_letters",
    "demo": "receiptd.cli.demo:demo",
    "emulator": "receiptd.cli.emulator:command",
    "prune": "receiptd.cli.prune:prune",
    "report": "receiptd.cli.report:report",
    "events": "receiptd.cli.events:events_group",
    "run": "receiptd.cli.run:run",
    "send": "receiptd.cli.send:send",
    "sends": "receiptd.cli.send:sends_group",
    "status": "receiptd.cli.status:status",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use (click's documented pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return super().get_command(ctx, cmd_name)
        module_name, attribute = COMMANDS[cmd_name].split(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{COMMANDS[cmd_name]} is not a click command")
        return options.accept_config(command)


@options.accept_config
@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="receiptd")
@click.pass_context
def main(ctx: click.Context) -> None:
    """receiptd: SMS delivery receipts into your database, every send settled."""
    # --config (options.accept_config) may already have stored the file here.
    ctx.ensure_object(dict)
