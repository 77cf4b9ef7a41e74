"""The layers below the environment: the TOML file and the secret files.

Each is read into a flat mapping (``setting name -> value``) that :class:`DictSource` hands
to pydantic-settings; ``receiptd.config.loading`` stacks them.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from receiptd.config.values import ConfigError

ENV_PREFIX = "RECEIPTD_"


class DictSource(PydanticBaseSettingsSource):
    """A settings layer from an already-read mapping (TOML file or secret files)."""

    def __init__(self, settings_cls: type[BaseSettings], data: Mapping[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = dict(data)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


# Tables kept whole: one table per named account (``[accounts.<id>]``).
NESTED = frozenset({"accounts"})


def flatten_toml(data: Mapping[str, Any]) -> dict[str, Any]:
    """``[aliyun] access_key_id = ...`` is the same as ``aliyun_access_key_id = ...``
    (``[accounts.<id>]`` stays a table of tables)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key not in NESTED:
            flat.update({f"{key}_{sub}": sub_value for sub, sub_value in value.items()})
        else:
            flat[key] = value
    return flat


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return flatten_toml(tomllib.load(fh))
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML: {exc}") from None


def read_secret_files(environ: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
    """Values from systemd credentials, then from ``RECEIPTD_<NAME>_FILE`` (which wins)."""
    values: dict[str, str] = {}
    cred_dir = environ.get("CREDENTIALS_DIRECTORY")
    for name in names:
        candidates: list[tuple[Path, str | None]] = []
        if cred_dir:
            candidates.append((Path(cred_dir) / name, None))
        file_var = f"{ENV_PREFIX}{name.upper()}_FILE"
        if file_var in environ:
            candidates.append((Path(environ[file_var]), file_var))
        for path, var in candidates:
            if var is None and not path.is_file():
                continue
            try:
                values[name] = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"invalid setting {name}: {var}={path}: {exc.strerror}") from None
    return values
