"""`--config` before or after the command name, and its precedence over RECEIPTD_CONFIG."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from receiptd import cli


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    import os

    for key in list(os.environ):
        if key.startswith("RECEIPTD_") or key == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(key)
    made = {}
    for name, level in (("group", "WARNING"), ("command", "ERROR"), ("env", "CRITICAL")):
        made[name] = tmp_path / f"{name}.toml"
        made[name].write_text(f'log_level = "{level}"\n')
    return made


def log_level(args: list[str], env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(cli.main, args, env=env, prog_name="receiptd")
    assert result.exit_code == 0, result.output
    (line,) = [x for x in result.output.splitlines() if x.startswith("log_level = ")]
    return line.split('"')[1]


@pytest.mark.parametrize(
    "args",
    [
        ["--config", "{group}", "config", "check"],
        ["config", "--config", "{group}", "check"],
        ["config", "check", "--config", "{group}"],
    ],
)
def test_config_accepted_before_and_after_the_command(
    files: dict[str, Path], args: list[str]
) -> None:
    assert log_level([a.format(group=files["group"]) for a in args]) == "WARNING"


def test_precedence_command_over_group_over_environment(files: dict[str, Path]) -> None:
    env = {"RECEIPTD_CONFIG": str(files["env"])}
    assert log_level(["config", "check"], env) == "CRITICAL"
    assert log_level(["--config", str(files["group"]), "config", "check"], env) == "WARNING"
    both = ["--config", str(files["group"]), "config", "check", "--config", str(files["command"])]
    assert log_level(both, env) == "ERROR"


def test_every_command_accepts_config() -> None:
    def missing(group: click.Group, ctx: click.Context, path: str) -> list[str]:
        found = []
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None
            if not any("--config" in param.opts for param in command.params):
                found.append(f"{path} {name}")
            if isinstance(command, click.Group):
                found += missing(command, ctx, f"{path} {name}")
        return found

    assert missing(cli.main, click.Context(cli.main), "receiptd") == []


def test_run_with_config_after_the_command_reads_the_file(tmp_path: Path) -> None:
    # The shipped unit's original order (`run --config F`) reaches the settings: a bad value
    # in F exits 2 naming the key instead of "No such option".
    bad = tmp_path / "bad.toml"
    bad.write_text('log_level = "LOUD"\n')
    result = CliRunner().invoke(cli.main, ["run", "--config", str(bad)], prog_name="receiptd")
    assert result.exit_code == 2
    assert "log_level" in result.output
