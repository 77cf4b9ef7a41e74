"""``load_settings``: every layer stacked into one :class:`Settings`, or a ConfigError."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import SettingsError

from receiptd.config import account_keys, account_sources, sources
from receiptd.config.settings import Settings
from receiptd.config.values import ConfigError

CONFIG_ENV = "RECEIPTD_CONFIG"


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem, naming the setting key and the reason, never a secret value.

    A named account's key reads ``accounts.<id>.<key>`` (pydantic puts the provider, the tag
    of the account's model, between the two: dropped). A check across settings names its
    deeper key first in its message (``accounts.<id>.<key>: required``): that key is used.
    """
    return "\n".join(
        f"invalid setting {key}: {reason}" for key, reason in map(_problem, exc.errors())
    )


def _problem(err: ErrorDetails) -> tuple[str, str]:
    loc = list(err["loc"])
    if len(loc) > 2 and loc[0] == "accounts" and loc[2] in account_keys.PROVIDERS:
        del loc[2]
    key = ".".join(str(part) for part in loc) or "settings"
    reason = err["msg"].removeprefix("Value error, ")
    deeper = _NAMED_KEY.match(reason)
    if deeper and (key == "settings" or deeper.group(1).startswith(f"{key}.")):
        key, reason = deeper.group(1), deeper.group(2)
    if err["type"] == "extra_forbidden":
        reason = "unknown setting"
    elif err["type"] == "union_tag_not_found":  # an account without provider
        key, reason = f"{key}.provider", "required"
    elif err["type"] == "union_tag_invalid":
        key, reason = f"{key}.provider", f"must be one of {list(account_keys.PROVIDERS)}"
    return key, reason


_NAMED_KEY = re.compile(r"([a-z0-9_]+(?:\.[A-Za-z0-9_-]+)*): (.*)", re.DOTALL)


def load_settings(
    config_file: Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Build the Settings from every layer, or raise ConfigError naming the bad key."""
    environ = os.environ if environ is None else environ
    if config_file is None and environ.get(CONFIG_ENV):
        config_file = Path(environ[CONFIG_ENV])
    toml = sources.read_toml(config_file) if config_file else {}
    named = account_sources.read_accounts(toml.pop("accounts", None), environ)
    layered = type(
        "Settings",
        (Settings,),
        {
            "_toml_data": toml,
            "_secret_data": sources.read_secret_files(environ, Settings.model_fields),
            "_account_data": {"accounts": named} if named else {},
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
