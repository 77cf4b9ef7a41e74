"""``Settings``: the flat fields (the public contract) and the parts built from them.

Every field's environment name is ``RECEIPTD_`` + its upper-case name, its TOML key is its
name (``[aliyun] access_key_id`` flattens to ``aliyun_access_key_id``), and a bad value is
reported under that name. The fields are declared in sections, one per part of
:mod:`receiptd.config.parts`; the code reads the parts (``settings.parts``), not the fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from receiptd import roles as _roles
from receiptd.config import accounts as _accounts
from receiptd.config import parts as _parts
from receiptd.config.account_keys import AccountKeys
from receiptd.config.sources import ENV_PREFIX, DictSource
from receiptd.config.values import (
    Endpoint,
    GlobeSendRate,
    Horizon,
    LogFormat,
    LogLevel,
    PushToken,
    QueryMessageRate,
    RateLimit,
    RequestTimeout,
    Site,
    ThreadCount,
    WebhookEndpoint,
    check_account_ids,
    check_webhook_secret,
    check_webhook_url,
    parse_networks,
    split_host_port,
    split_ids,
    split_urls,
)

SUPPORTED_DATABASES = ("sqlite", "postgresql", "mysql", "mariadb")


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
    _account_data: ClassVar[Mapping[str, Any]] = {}  # every layer's [accounts.<id>], merged

    # --- parts.database ---------------------------------------------------------------------
    database_url: str = "sqlite:///receiptd.db"

    # --- parts.logging ----------------------------------------------------------------------
    log_format: LogFormat = "auto"
    log_level: LogLevel = "INFO"
    log_show_phone_numbers: bool = False

    # --- parts.daemon -----------------------------------------------------------------------
    http_addr: str = "127.0.0.1:9400"
    status_api_token: SecretStr | None = None
    heartbeat_timeout: float = Field(120.0, gt=0)
    shutdown_timeout: float = Field(10.0, gt=0, le=600)
    migrate_on_start: bool = False

    # --- parts.consumer (MNS ingestion; the thread counts are per account) -------------------
    consumer_batch_size: int = Field(16, ge=1, le=16)
    # The one long poll a queue holds while idle (the other workers sleep; a stop closes it
    # at once): 20 s is 180 receive requests an hour per queue per replica.
    consumer_wait_seconds: int = Field(20, ge=0, le=30)
    consumer_socket_timeout: float = Field(45.0, gt=0, le=300)
    # A message MNS delivered more often than this without receiptd storing or dead-lettering
    # it is dead-lettered unread (each such delivery ended in a crash): no crash loop.
    consumer_max_dequeue: int = Field(5, ge=1, le=1000)

    # --- parts.compensator (the rate limit and horizon are per account) ---------------------
    compensator_enabled: bool = True
    compensator_interval: float = Field(600.0, gt=0)
    compensator_grace: float = Field(300.0, ge=0)
    compensator_batch_size: int = Field(5000, ge=1, le=1_000_000)
    compensator_max_backoff: float = Field(6 * 3600.0, gt=0)

    # --- parts.push: the HTTP push listener (receipts pushed by Alibaba and KooMessage; off
    # unless push_addr; the token is per account) --------------------------------------------
    push_addr: str | None = None
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

    # --- parts.webhooks: events in the outbox, POSTed signed (Standard Webhooks) to each
    # endpoint. Events are written only while at least one endpoint is configured. ----------
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

    # --- parts.retention (receiptd.db.retention; docs/operations.md) ----------------------------
    retention_days: int = Field(90, ge=0, le=36500)  # 0 = keep forever
    retention_days_sms_send: int | None = Field(None, ge=0, le=36500)  # settled sends only
    retention_days_sms_report: int | None = Field(None, ge=0, le=36500)
    retention_days_sms_inbound: int | None = Field(None, ge=0, le=36500)
    retention_days_dead_letter: int | None = Field(None, ge=0, le=36500)
    retention_days_compensator_run: int | None = Field(None, ge=0, le=36500)
    prune_enabled: bool = True  # the daily prune job inside `receiptd run`
    prune_interval: float = Field(86400.0, ge=60)
    prune_batch_size: int = Field(5000, ge=1, le=100_000)

    # --- parts.accounts: the provider accounts (receiptd.config.accounts) --------------------
    aliyun_access_key_id: str = ""
    aliyun_access_key_secret: SecretStr = SecretStr("")
    aliyun_security_token: SecretStr = SecretStr("")  # direct mode with STS keys only
    aliyun_queue_prefix: str = ""
    aliyun_report_queue: str = ""
    aliyun_up_queue: str = ""
    aliyun_mns_endpoint: Endpoint | None = None
    # Token mode reads the Alicom-owned queues at the provider's fixed endpoint.
    aliyun_alicom_mns_endpoint: Endpoint = "https://1943695596114318.mns.cn-hangzhou.aliyuncs.com"
    aliyun_dysms_endpoint: Endpoint = "https://dysmsapi.aliyuncs.com"
    aliyun_dybase_endpoint: Endpoint = "https://dybaseapi.aliyuncs.com"
    aliyun_region: str = "cn-hangzhou"
    aliyun_request_timeout: RequestTimeout = 10.0  # KooMessage's calls too
    # International sends (docs/international.md). ``intl`` changes the endpoint and region
    # defaults above to the international site's (receiptd.config.accounts.SITE_DEFAULTS).
    aliyun_site: Site = "cn"
    aliyun_globe_queue: str = ""
    aliyun_globe_reports: bool = False  # consume <queue_prefix>GlobeSmsReport
    aliyun_query_message_rate_limit: QueryMessageRate = 50.0
    aliyun_send_rate_limit: GlobeSendRate = 100.0  # SendMessageToGlobe calls per second
    provider_timezone: str = "Asia/Shanghai"

    huawei_access_key_id: str = ""
    huawei_secret_access_key: SecretStr = SecretStr("")
    huawei_project_id: str = ""
    huawei_endpoint: Endpoint = "https://koomessage.myhuaweicloud.cn"

    consumer_report_threads: ThreadCount = 8
    consumer_up_threads: ThreadCount = 1
    consumer_globe_threads: ThreadCount = 1  # when a GlobeSmsReport queue is configured
    compensator_rate_limit: RateLimit = 50.0
    # Seconds a pending send is asked about (72 h: docs/providers/aliyun-sms.md); 0 = up to
    # the query window.
    compensator_horizon: Horizon = 72 * 3600.0
    compensator_horizon_aliyun: Horizon | None = None  # None: compensator_horizon
    compensator_horizon_huawei: Horizon | None = None
    push_token: PushToken | None = None

    # The named accounts, [accounts.<id>] (receiptd.config.account_keys; RECEIPTD_ACCOUNT_<ID>_*
    # by receiptd.config.account_sources), and the accounts this replica serves (empty: all).
    accounts: dict[str, AccountKeys] = Field(default_factory=dict)
    serve_accounts: str = ""  # comma-separated ids; `default`: the flat settings' accounts
    # What `receiptd run` does (receiptd.daemon.roles): comma-separated roles or groups;
    # empty: every configured role.
    roles: str = ""

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
            DictSource(settings_cls, cls._account_data),
            DictSource(settings_cls, cls._secret_data),
            DictSource(settings_cls, cls._toml_data),
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

    @field_validator("push_addr")
    @classmethod
    def _check_push_addr(cls, value: str | None) -> str | None:
        if value:
            split_host_port(value)
        return value or None

    @field_validator("accounts", mode="before")
    @classmethod
    def _check_account_ids(cls, value: object) -> object:
        for name in value if isinstance(value, Mapping) else ():
            _accounts.check_id(name)
        return value

    @field_validator("serve_accounts", mode="before")
    @classmethod
    def _join_serve_accounts(cls, value: object) -> object:
        """TOML may list them: ``serve_accounts = ["a", "b"]``."""
        return ",".join(map(str, value)) if isinstance(value, list | tuple) else value

    @field_validator("roles", mode="before")
    @classmethod
    def _join_roles(cls, value: object) -> object:
        """TOML may list them: ``roles = ["consumer", "push"]``."""
        return ",".join(map(str, value)) if isinstance(value, list | tuple) else value

    @field_validator("roles")
    @classmethod
    def _check_roles(cls, value: str) -> str:
        _roles.parse(value)
        return value

    @field_validator("serve_accounts")
    @classmethod
    def _check_serve_accounts(cls, value: str) -> str:
        check_account_ids(split_ids(value))
        return value

    @model_validator(mode="after")
    def _check_accounts(self) -> Settings:
        _accounts.check(self)
        return self

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
        for url in split_urls(value):
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
        names = [e.name for e in _parts.webhook_endpoints(self)]
        if len(names) != len(set(names)):
            raise ValueError("webhook_endpoints: endpoint names must be unique")
        return self

    def __hash__(self) -> int:
        """Frozen settings stay hashable: the ``accounts`` table hashes as its sorted items."""
        return hash(
            tuple(
                tuple(sorted(value.items())) if isinstance(value, dict) else value
                for value in self.__dict__.values()
            )
        )

    @property
    def parts(self) -> _parts.Parts:
        """The settings as the flows read them: one frozen part per flow, and the accounts."""
        return _parts.parts(self)

    # The properties below predate the parts and stay for compatibility; each is a part's.

    @property
    def webhooks(self) -> list[WebhookEndpoint]:
        """Every configured endpoint (``parts.webhooks.endpoints``)."""
        return list(_parts.webhook_endpoints(self))

    @property
    def report_queue(self) -> str:
        return _accounts.aliyun(self).report_queue

    @property
    def up_queue(self) -> str:
        return _accounts.aliyun(self).up_queue

    @property
    def token_mode(self) -> bool:
        """Without an MNS endpoint receiptd asks Dybaseapi for temporary queue tokens."""
        return _accounts.aliyun(self).token_mode

    @property
    def aliyun_configured(self) -> bool:
        return _accounts.aliyun(self).configured

    @property
    def huawei_configured(self) -> bool:
        return _accounts.huawei(self).configured

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
            elif name == "accounts":
                value = {key: _accounts.masked(keys) for key, keys in value.items()}
            out[name] = value
        return out
