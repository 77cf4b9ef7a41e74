"""Settings: one immutable object, read once at start-up.

Layers, lowest precedence first: defaults < TOML file (``--config`` / ``RECEIPTD_CONFIG``) <
systemd credentials (``$CREDENTIALS_DIRECTORY/<setting>``) < ``RECEIPTD_<SETTING>_FILE`` <
``RECEIPTD_<SETTING>`` environment variables. No other module reads ``os.environ``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

ENV_PREFIX = "RECEIPTD_"
CONFIG_ENV = "RECEIPTD_CONFIG"
SUPPORTED_DATABASES = ("sqlite", "postgresql", "mysql", "mariadb")

LogFormat = Literal["auto", "json", "console"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class ConfigError(Exception):
    """A setting is invalid; the message names the key and the reason (exit code 2)."""


class Settings(BaseSettings):
    """Every setting of receiptd. The environment name is ``RECEIPTD_`` + the upper-case name."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        extra="forbid",
        case_sensitive=False,
        allow_inf_nan=False,  # "inf" seconds would pass validation, then overflow timers
    )
    # Set by load_settings() on a per-call subclass so concurrent loads never share state.
    _toml_data: ClassVar[Mapping[str, Any]] = {}
    _secret_data: ClassVar[Mapping[str, str]] = {}

    database_url: str = "sqlite:///receiptd.db"

    aliyun_access_key_id: str = ""
    aliyun_access_key_secret: SecretStr = SecretStr("")
    aliyun_security_token: SecretStr = SecretStr("")  # direct mode with STS keys only
    aliyun_queue_prefix: str = ""
    aliyun_report_queue: str = ""
    aliyun_up_queue: str = ""
    aliyun_mns_endpoint: str | None = None
    # Token mode reads the Alicom-owned queues at the provider's fixed endpoint.
    aliyun_alicom_mns_endpoint: str = "https://1943695596114318.mns.cn-hangzhou.aliyuncs.com"
    aliyun_dysms_endpoint: str = "https://dysmsapi.aliyuncs.com"
    aliyun_dybase_endpoint: str = "https://dybaseapi.aliyuncs.com"
    aliyun_region: str = "cn-hangzhou"
    aliyun_request_timeout: float = Field(10.0, gt=0, le=120)
    provider_timezone: str = "Asia/Shanghai"

    huawei_access_key_id: str = ""
    huawei_secret_access_key: SecretStr = SecretStr("")
    huawei_project_id: str = ""
    huawei_endpoint: str = "https://koomessage.myhuaweicloud.cn"

    http_addr: str = "127.0.0.1:9400"
    status_api_token: SecretStr | None = None
    log_format: LogFormat = "auto"
    log_level: LogLevel = "INFO"
    log_show_phone_numbers: bool = False

    consumer_report_threads: int = Field(8, ge=0, le=64)  # MNS round trips, not CPU, bound it
    consumer_up_threads: int = Field(1, ge=0, le=64)
    consumer_batch_size: int = Field(16, ge=1, le=16)
    # The one long poll a queue holds while idle (the other workers sleep; a stop closes it
    # at once): 20 s is 180 receive requests an hour per queue per replica.
    consumer_wait_seconds: int = Field(20, ge=0, le=30)
    consumer_socket_timeout: float = Field(45.0, gt=0, le=300)

    compensator_enabled: bool = True
    compensator_interval: float = Field(600.0, gt=0)
    compensator_grace: float = Field(300.0, ge=0)
    compensator_rate_limit: float = Field(50.0, gt=0, le=5000)
    compensator_batch_size: int = Field(5000, ge=1, le=1_000_000)
    compensator_max_backoff: float = Field(6 * 3600.0, gt=0)

    heartbeat_timeout: float = Field(120.0, gt=0)
    shutdown_timeout: float = Field(10.0, gt=0, le=600)
    migrate_on_start: bool = False

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            _DictSource(settings_cls, cls._secret_data),
            _DictSource(settings_cls, cls._toml_data),
        )

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError(
                "not a database URL; expected e.g. sqlite:///receiptd.db, "
                "postgresql+psycopg://user@host/db or mysql+pymysql://user@host/db"
            ) from None
        if url.get_backend_name() not in SUPPORTED_DATABASES:
            raise ValueError(f"unsupported database {url.get_backend_name()!r}")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("provider_timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("http_addr")
    @classmethod
    def _check_http_addr(cls, value: str) -> str:
        split_host_port(value)
        return value

    @field_validator(
        "aliyun_mns_endpoint",
        "aliyun_alicom_mns_endpoint",
        "aliyun_dysms_endpoint",
        "aliyun_dybase_endpoint",
        "huawei_endpoint",
    )
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _check_socket_timeout(self) -> Settings:
        if self.consumer_socket_timeout <= self.consumer_wait_seconds:
            raise ValueError(
                "consumer_socket_timeout must exceed consumer_wait_seconds "
                "(a long poll would otherwise time out)"
            )
        return self

    @property
    def report_queue(self) -> str:
        return self.aliyun_report_queue or f"{self.aliyun_queue_prefix}SmsReport"

    @property
    def up_queue(self) -> str:
        return self.aliyun_up_queue or f"{self.aliyun_queue_prefix}SmsUp"

    @property
    def token_mode(self) -> bool:
        """Without an MNS endpoint receiptd asks Dybaseapi for temporary queue tokens."""
        return self.aliyun_mns_endpoint is None

    @property
    def aliyun_configured(self) -> bool:
        return bool(self.aliyun_access_key_id)

    @property
    def huawei_configured(self) -> bool:
        return bool(self.huawei_access_key_id)

    @property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(self.provider_timezone)

    def masked(self) -> dict[str, Any]:
        """The effective settings with secrets masked, for ``config check`` and start-up logs."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "**********" if value.get_secret_value() else ""
            elif name == "database_url":
                value = make_url(value).render_as_string(hide_password=True)
            out[name] = value
        return out


class _DictSource(PydanticBaseSettingsSource):
    """A settings layer from an already-read mapping (TOML file or secret files)."""

    def __init__(self, settings_cls: type[BaseSettings], data: Mapping[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = dict(data)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


def split_host_port(addr: str) -> tuple[str, int]:
    """``host:port`` (IPv6 as ``[::1]:9400``) to a tuple, or ValueError."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("expected host:port, e.g. 127.0.0.1:9400 or 0.0.0.0:9400")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - an empty host means all


def _flatten_toml(data: Mapping[str, Any]) -> dict[str, Any]:
    """``[aliyun] access_key_id = ...`` is the same as ``aliyun_access_key_id = ...``."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update({f"{key}_{sub}": sub_value for sub, sub_value in value.items()})
        else:
            flat[key] = value
    return flat


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return _flatten_toml(tomllib.load(fh))
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML: {exc}") from None


def _read_secret_files(environ: Mapping[str, str]) -> dict[str, str]:
    """Values from systemd credentials, then from ``RECEIPTD_<NAME>_FILE`` (which wins)."""
    values: dict[str, str] = {}
    cred_dir = environ.get("CREDENTIALS_DIRECTORY")
    for name in Settings.model_fields:
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
            "_toml_data": _read_toml(config_file) if config_file else {},
            "_secret_data": _read_secret_files(environ),
        },
    )
    try:
        settings: Settings = layered()
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
    return settings
