"""Settings: one immutable object, read once at start-up.

Layers, lowest precedence first: defaults < TOML file (``--config`` / ``RECEIPTD_CONFIG``) <
systemd credentials (``$CREDENTIALS_DIRECTORY/<setting>``) < ``RECEIPTD_<SETTING>_FILE`` <
``RECEIPTD_<SETTING>`` environment variables. No other module reads a ``RECEIPTD_*`` variable
(``receiptd.daemon.sd_notify`` reads systemd's own ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC``).
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

ENV_PREFIX = "RECEIPTD_"
CONFIG_ENV = "RECEIPTD_CONFIG"
SUPPORTED_DATABASES = ("sqlite", "postgresql", "mysql", "mariadb")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
LogFormat = Literal["auto", "json", "console"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class ConfigError(Exception):
    """A setting is invalid; the message names the key and the reason (exit code 2)."""


# --- Webhooks (event outbox + Standard Webhooks dispatcher) ---------------------------------
WEBHOOK_EVENT_TYPES = ("send.delivered", "send.failed", "send.expired", "reply.received")


class WebhookEndpoint(BaseModel):
    """One endpoint of ``[[webhook.endpoints]]``: its own URL, secret, events and limits."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    url: str
    secret: SecretStr
    events: tuple[str, ...] = ()  # empty: every event type
    timeout: float = Field(10.0, gt=0, le=120)
    concurrency: int = Field(4, ge=1, le=64)
    retry_period: float | None = Field(None, gt=0)  # default: webhook_retry_period

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return check_webhook_url(value)

    @field_validator("secret")
    @classmethod
    def _check_secret(cls, value: SecretStr) -> SecretStr:
        check_webhook_secret(value.get_secret_value())
        return value

    @field_validator("events")
    @classmethod
    def _check_events(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(WEBHOOK_EVENT_TYPES))
        if unknown:
            raise ValueError(f"unknown event type(s) {unknown}; known: {list(WEBHOOK_EVENT_TYPES)}")
        return value


def check_webhook_url(value: str) -> str:
    if not value.startswith(("http://", "https://")) or len(value) > 2048:
        raise ValueError("a webhook URL must start with http:// or https://")
    return value


def check_webhook_secret(value: str) -> None:
    """A Standard Webhooks secret: ``whsec_`` + base64 of at least 24 random bytes."""
    import base64
    import binascii

    body = value.removeprefix("whsec_")
    try:
        key = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not value.startswith("whsec_") or len(key) < 24:
        raise ValueError("expected whsec_<base64 of 24 to 64 random bytes>")


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
    # A message MNS delivered more often than this without receiptd storing or dead-lettering
    # it is dead-lettered unread (each such delivery ended in a crash): no crash loop.
    consumer_max_dequeue: int = Field(5, ge=1, le=1000)

    compensator_enabled: bool = True
    compensator_interval: float = Field(600.0, gt=0)
    compensator_grace: float = Field(300.0, ge=0)
    compensator_rate_limit: float = Field(50.0, gt=0, le=5000)
    compensator_batch_size: int = Field(5000, ge=1, le=1_000_000)
    compensator_max_backoff: float = Field(6 * 3600.0, gt=0)

    # HTTP push listener (receipts pushed by Alibaba and KooMessage; off unless push_addr).
    push_addr: str | None = None
    push_token: SecretStr | None = None
    push_allow_cidrs: str = ""  # comma-separated networks; empty: any source
    push_trusted_proxies: str = ""  # comma-separated; X-Forwarded-For is read only from these
    push_threads: int = Field(8, ge=1, le=64)
    push_max_body: int = Field(1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    push_max_elements: int = Field(5000, ge=1, le=100_000)
    push_channel_timeout: float = Field(30.0, gt=0, le=600)  # a kept-alive connection, idle
    # What one client can hold of the listener (receiptd.web.connections; docs/push.md).
    push_max_connections: int = Field(1024, ge=16, le=65536)  # then the longest-waiting goes
    push_max_connections_per_source: int = Field(32, ge=0, le=65536)  # 0: unbounded
    push_header_timeout: float = Field(10.0, gt=0, le=600)  # from the connect / first byte
    push_body_timeout: float = Field(30.0, gt=0, le=600)  # from the end of the headers

    # Status horizon and retention (receiptd.compensation.horizon, receiptd.db.retention;
    # docs/operations.md). Seconds a pending send is asked about (72 h:
    # docs/providers/aliyun-sms.md); 0 = up to the query window.
    compensator_horizon: float = Field(72 * 3600.0, ge=0)
    compensator_horizon_aliyun: float | None = Field(None, ge=0)  # None: compensator_horizon
    compensator_horizon_huawei: float | None = Field(None, ge=0)
    retention_days: int = Field(90, ge=0, le=36500)  # 0 = keep forever
    retention_days_sms_send: int | None = Field(None, ge=0, le=36500)  # settled sends only
    retention_days_sms_report: int | None = Field(None, ge=0, le=36500)
    retention_days_sms_inbound: int | None = Field(None, ge=0, le=36500)
    retention_days_dead_letter: int | None = Field(None, ge=0, le=36500)
    retention_days_compensator_run: int | None = Field(None, ge=0, le=36500)
    prune_enabled: bool = True  # the daily prune job inside `receiptd run`
    prune_interval: float = Field(86400.0, ge=60)
    prune_batch_size: int = Field(5000, ge=1, le=100_000)

    heartbeat_timeout: float = Field(120.0, gt=0)
    shutdown_timeout: float = Field(10.0, gt=0, le=600)
    migrate_on_start: bool = False

    # Webhooks: events in the outbox, POSTed signed (Standard Webhooks) to each endpoint.
    # Events are written only while at least one endpoint is configured.
    webhook_urls: str = ""  # comma-separated; all signed with webhook_secret
    webhook_secret: SecretStr = SecretStr("")
    webhook_endpoints: tuple[WebhookEndpoint, ...] = ()  # TOML [[webhook.endpoints]]
    webhook_timeout: float = Field(10.0, gt=0, le=120)  # for webhook_urls
    webhook_concurrency: int = Field(4, ge=1, le=64)  # requests in flight per endpoint
    webhook_retry_period: float = Field(86400.0, gt=0)  # then a delivery is dead
    webhook_backoff_initial: float = Field(5.0, gt=0)
    webhook_backoff_max: float = Field(3600.0, gt=0)
    webhook_poll_interval: float = Field(0.5, gt=0, le=60)  # idle endpoint: look again after
    webhook_batch_size: int = Field(64, ge=1, le=1000)  # deliveries claimed at once
    events_show_phone_numbers: bool = False  # full numbers in event payloads
    events_retention_days: float = Field(7.0, gt=0)  # then delivered/dead events are pruned
    events_notify: bool = False  # PostgreSQL: NOTIFY receiptd_events '<event id>' on commit

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

    @field_validator("push_addr")
    @classmethod
    def _check_push_addr(cls, value: str | None) -> str | None:
        if value:
            split_host_port(value)
        return value or None

    @field_validator("push_token")
    @classmethod
    def _check_push_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value():
            token = value.get_secret_value()
            if len(token) < 16 or not PUSH_TOKEN_CHARS.fullmatch(token):
                raise ValueError("must be at least 16 characters of A-Z a-z 0-9 - _ . ~")
        return value

    @field_validator("push_allow_cidrs", "push_trusted_proxies")
    @classmethod
    def _check_networks(cls, value: str) -> str:
        parse_networks(value)
        return value

    @model_validator(mode="after")
    def _check_push(self) -> Settings:
        token = self.push_token.get_secret_value() if self.push_token else ""
        if self.push_addr and not token:
            raise ValueError("push_token is required when push_addr is set")
        return self

    @model_validator(mode="after")
    def _check_push_connections(self) -> Settings:
        if self.push_max_connections_per_source > self.push_max_connections:
            raise ValueError("push_max_connections_per_source must not exceed push_max_connections")
        return self

    @model_validator(mode="after")
    def _check_socket_timeout(self) -> Settings:
        if self.consumer_socket_timeout <= self.consumer_wait_seconds:
            raise ValueError(
                "consumer_socket_timeout must exceed consumer_wait_seconds "
                "(a long poll would otherwise time out)"
            )
        return self

    @field_validator("webhook_urls")
    @classmethod
    def _check_webhook_urls(cls, value: str) -> str:
        for url in _split_urls(value):
            check_webhook_url(url)
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _check_webhook_secret(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value():
            check_webhook_secret(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _check_webhooks(self) -> Settings:
        if self.webhook_urls.strip() and not self.webhook_secret.get_secret_value():
            raise ValueError("webhook_secret is required with webhook_urls")
        names = [e.name for e in self.webhooks]
        if len(names) != len(set(names)):
            raise ValueError("webhook_endpoints: endpoint names must be unique")
        return self

    @property
    def webhooks(self) -> list[WebhookEndpoint]:
        """Every configured endpoint. One from ``webhook_urls`` is named after its URL
        (``url-`` + 12 hex digits of its SHA-256), so reordering the list keeps its history."""
        import hashlib

        listed = [
            WebhookEndpoint(
                name="url-" + hashlib.sha256(url.encode()).hexdigest()[:12],
                url=url,
                secret=self.webhook_secret,
                timeout=self.webhook_timeout,
                concurrency=self.webhook_concurrency,
            )
            for url in _split_urls(self.webhook_urls)
        ]
        return listed + list(self.webhook_endpoints)

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
            elif name == "webhook_endpoints":
                value = [{**e.model_dump(), "secret": "**********"} for e in value]
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


PUSH_TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~-]+")


def parse_networks(value: str) -> tuple[IPNetwork, ...]:
    """``10.0.0.0/8, 192.0.2.7`` to networks, or ValueError naming the bad entry."""
    out = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or network") from None
    return tuple(out)


def in_networks(address: str, networks: tuple[IPNetwork, ...]) -> bool:
    """Whether ``address`` (an IP address as text) is in one of ``networks``."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def _split_urls(value: str) -> list[str]:
    return [u.strip() for u in value.split(",") if u.strip()]


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
    except SettingsError as exc:  # e.g. a list setting whose environment value is not JSON
        field = re.search(r'field "(\w+)"', str(exc))
        key = field.group(1) if field else "settings"
        raise ConfigError(f"invalid setting {key}: not valid JSON") from None
    return settings
