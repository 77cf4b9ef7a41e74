"""``load_settings``: every layer stacked into one :class:`Settings`, or a ConfigError."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from pydantic import ValidationError
from pydantic_settings import SettingsError

from receiptd.config import sources
from receiptd.config.settings import Settings
from receiptd.config.values import ConfigError

CONFIG_ENV = "RECEIPTD_CONFIG"


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem, naming the setting key and the reason, never a secret value."""
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "settings"
        reason = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            reason = "unknown setting"
        lines.append(f"invalid setting {key}: {reason}")
    return "\n".join(lines)


def load_settings(
    config_file: Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Build the Settings from every layer, or raise ConfigError naming the bad key."""
    environ = os.environ if environ is None else environ
    if config_file is None and environ.get(CONFIG_ENV):
        config_file = Path(environ[CONFIG_ENV])
    layered = type(
        "Settings",
        (Settings,),
        {
            "_toml_data": sources.read_toml(config_file) if config_file else {},
            "_secret_data": sources.read_secret_files(environ, Settings.model_fields),
        },
    )
    try:
        settings: Settings = layered()
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
    except SettingsError as exc:  # e.g. a list setting whose environment value is not JSON
        field = re.search(r'field "(\w+)"', str(exc))
        key = field.group(1) if field else "settings"
        raise ConfigError(f"invalid setting {key}: not valid JSON") from None
    return settings
