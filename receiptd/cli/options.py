"""The ``--config`` option every command accepts, before or after its name.

``receiptd --config F run`` and ``receiptd run --config F`` (and ``receiptd db --config F
upgrade``, ``receiptd db upgrade --config F``) mean the same. Precedence, highest first: the
``--config`` given last on the command line (the innermost command's own wins over the
group's, as a repeated option's last value does), then ``RECEIPTD_CONFIG``
(``config.load_settings`` reads it when no file is given).
"""

from __future__ import annotations

from pathlib import Path

import click

PARAM_NAME = "config_file"
HELP = (
    "TOML settings file (default: $RECEIPTD_CONFIG; environment variables override it). "
    "Accepted before or after the command name; the last one given wins."
)


def _remember(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    # The root context's obj holds the file common.settings() loads; a later (inner) --config
    # replaces an earlier (outer) one. Settings are loaded only after all parsing is done.
    if value is not None:
        root = ctx.find_root()
        if root.obj is None:
            root.obj = {}
        root.obj[PARAM_NAME] = value


def config_option() -> click.Option:
    return click.Option(
        ["--config", PARAM_NAME],
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        expose_value=False,
        callback=_remember,
        help=HELP,
    )


def accept_config(command: click.Command) -> click.Command:
    """Add ``--config`` to a command and, for a group, to each of its subcommands (once)."""
    if not any(param.name == PARAM_NAME for param in command.params):
        command.params.append(config_option())
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            accept_config(sub)
    return command
