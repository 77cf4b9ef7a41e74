"""The parts of the settings: one frozen object per flow, built from the flat fields.

The flat fields of :class:`receiptd.config.Settings` are the public contract (environment
names, TOML keys, error messages); the parts are what the code reads. Each flow's wiring takes
its part (``settings.parts.consumer``, ``settings.parts.push`` …) and the provider accounts
(``settings.parts.accounts``) and builds that flow's own parameter objects from them, so no
flow sees ``Settings``. Every flat field feeds exactly one part (a unit test holds this).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from pydantic import SecretStr

from receiptd import roles as _roles
from receiptd.config import accounts as _accounts
from receiptd.config.accounts import Account, AliyunAccount, HuaweiAccount
from receiptd.config.values import (
    ConfigError,
    IPNetwork,
    LogFormat,
    LogLevel,
    WebhookEndpoint,
    parse_networks,
    split_ids,
    split_urls,
)

if TYPE_CHECKING:
    from receiptd.config.settings import Settings


@dataclass(frozen=True, slots=True, kw_only=True)
class DatabasePart:
    url: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggingPart:
    """Every command's logging (``log_*``)."""

    format: LogFormat
    level: LogLevel
    show_phone_numbers: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class DaemonPart:
    """``receiptd run`` itself: the ops server, supervision and the stop budget."""

    http_addr: str
    status_api_token: SecretStr | None
    heartbeat_timeout: float
    shutdown_timeout: float
    migrate_on_start: bool
    roles: tuple[str, ...]  # the roles named (``roles``); empty: every configured role


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsumerPart:
    """MNS ingestion (``consumer_*`` but the per-account thread counts)."""

    batch_size: int
    wait_seconds: int
    socket_timeout: float
    max_dequeue: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CompensatorPart:
    """The compensation cycle (``compensator_*`` but the per-account rate limit and horizon)."""

    enabled: bool
    interval: float
    grace: float
    batch_size: int
    max_backoff: float


@dataclass(frozen=True, slots=True, kw_only=True)
class PushPart:
    """The HTTP push listener (``push_*`` but the per-account token); off without ``addr``."""

    addr: str | None
    allow: tuple[IPNetwork, ...]  # empty: any source
    trusted_proxies: tuple[IPNetwork, ...]
    threads: int
    max_body: int
    max_elements: int
    channel_timeout: float
    max_connections: int
    max_connections_per_source: int
    header_timeout: float
    body_timeout: float


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhooksPart:
    """The event outbox and the webhook dispatcher (``webhook_*``, ``events_*``)."""

    endpoints: tuple[WebhookEndpoint, ...]  # from webhook_urls, then [[webhook.endpoints]]
    retry_period: float
    backoff_initial: float
    backoff_max: float
    poll_interval: float
    batch_size: int
    show_phone_numbers: bool
    retention_days: float
    notify: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class RetentionPart:
    """Retention per table and the prune job (``retention_days*``, ``prune_*``)."""

    days: int  # 0: keep forever
    overrides: Mapping[str, int | None]  # table -> retention_days_<table>; None: ``days``
    prune_enabled: bool
    prune_interval: float
    prune_batch_size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Parts:
    """Every part of the settings; ``accounts`` holds the provider accounts (the two
    ``default`` ones first, then the named ones by id) and ``serve`` the ids this replica
    serves (``serve_accounts``; empty: every account)."""

    database: DatabasePart
    logging: LoggingPart
    daemon: DaemonPart
    consumer: ConsumerPart
    compensator: CompensatorPart
    push: PushPart
    webhooks: WebhooksPart
    retention: RetentionPart
    accounts: tuple[Account, ...]
    serve: tuple[str, ...]

    @property
    def aliyun(self) -> AliyunAccount:
        """The ``default`` Aliyun account (the flat ``aliyun_*`` settings)."""
        return next(a for a in self.accounts if isinstance(a, AliyunAccount))

    @property
    def huawei(self) -> HuaweiAccount:
        """The ``default`` Huawei account (the flat ``huawei_*`` settings)."""
        return next(a for a in self.accounts if isinstance(a, HuaweiAccount))

    @property
    def configured_accounts(self) -> tuple[Account, ...]:
        """The accounts with an access key, served here or not (sends, the status API and
        pushes may name any of them)."""
        return tuple(a for a in self.accounts if a.configured)

    @property
    def served_accounts(self) -> tuple[Account, ...]:
        """The configured accounts this replica consumes and compensates."""
        return tuple(a for a in self.configured_accounts if self.serves(a.name))

    def serves(self, name: str) -> bool:
        """Whether this replica serves the account ``name`` (``serve_accounts``)."""
        return not self.serve or name in self.serve

    def account(self, name: str, provider: str | None = None) -> Account:
        """The account ``name`` (of ``provider``; ``default`` without one: the Aliyun one),
        configured or not; ConfigError if there is none."""
        found = (a for a in self.accounts if a.name == name)
        match = next((a for a in found if provider in (None, a.provider)), None)
        if match is None:
            which = f"{provider} account" if provider else "account"
            raise ConfigError(f"unknown {which} {name!r}; known: {self.account_names}")
        return match

    @property
    def account_names(self) -> list[str]:
        """Every account id, ``default`` once."""
        return list(dict.fromkeys(a.name for a in self.accounts))


def parts(flat: Settings) -> Parts:
    return Parts(
        database=DatabasePart(url=flat.database_url),
        logging=LoggingPart(
            format=flat.log_format,
            level=flat.log_level,
            show_phone_numbers=flat.log_show_phone_numbers,
        ),
        daemon=DaemonPart(
            http_addr=flat.http_addr,
            status_api_token=flat.status_api_token,
            heartbeat_timeout=flat.heartbeat_timeout,
            shutdown_timeout=flat.shutdown_timeout,
            migrate_on_start=flat.migrate_on_start,
            roles=_roles.parse(flat.roles),
        ),
        consumer=ConsumerPart(
            batch_size=flat.consumer_batch_size,
            wait_seconds=flat.consumer_wait_seconds,
            socket_timeout=flat.consumer_socket_timeout,
            max_dequeue=flat.consumer_max_dequeue,
        ),
        compensator=CompensatorPart(
            enabled=flat.compensator_enabled,
            interval=flat.compensator_interval,
            grace=flat.compensator_grace,
            batch_size=flat.compensator_batch_size,
            max_backoff=flat.compensator_max_backoff,
        ),
        push=push(flat),
        webhooks=webhooks(flat),
        retention=retention(flat),
        accounts=_accounts.accounts(flat),
        serve=split_ids(flat.serve_accounts),
    )


def push(flat: Settings) -> PushPart:
    return PushPart(
        addr=flat.push_addr,
        allow=parse_networks(flat.push_allow_cidrs),
        trusted_proxies=parse_networks(flat.push_trusted_proxies),
        threads=flat.push_threads,
        max_body=flat.push_max_body,
        max_elements=flat.push_max_elements,
        channel_timeout=flat.push_channel_timeout,
        max_connections=flat.push_max_connections,
        max_connections_per_source=flat.push_max_connections_per_source,
        header_timeout=flat.push_header_timeout,
        body_timeout=flat.push_body_timeout,
    )


def webhooks(flat: Settings) -> WebhooksPart:
    return WebhooksPart(
        endpoints=webhook_endpoints(flat),
        retry_period=flat.webhook_retry_period,
        backoff_initial=flat.webhook_backoff_initial,
        backoff_max=flat.webhook_backoff_max,
        poll_interval=flat.webhook_poll_interval,
        batch_size=flat.webhook_batch_size,
        show_phone_numbers=flat.events_show_phone_numbers,
        retention_days=flat.events_retention_days,
        notify=flat.events_notify,
    )


def webhook_endpoints(flat: Settings) -> tuple[WebhookEndpoint, ...]:
    """Every configured endpoint. One from ``webhook_urls`` is named after its URL
    (``url-`` + 12 hex digits of its SHA-256), so reordering the list keeps its history."""
    listed = tuple(
        WebhookEndpoint(
            name="url-" + hashlib.sha256(url.encode()).hexdigest()[:12],
            url=url,
            secret=flat.webhook_secret,
            timeout=flat.webhook_timeout,
            concurrency=flat.webhook_concurrency,
        )
        for url in split_urls(flat.webhook_urls)
    )
    return listed + flat.webhook_endpoints


def retention(flat: Settings) -> RetentionPart:
    overrides = {
        "sms_send": flat.retention_days_sms_send,
        "sms_report": flat.retention_days_sms_report,
        "sms_inbound": flat.retention_days_sms_inbound,
        "dead_letter": flat.retention_days_dead_letter,
        "compensator_run": flat.retention_days_compensator_run,
    }
    return RetentionPart(
        days=flat.retention_days,
        overrides=MappingProxyType(overrides),
        prune_enabled=flat.prune_enabled,
        prune_interval=flat.prune_interval,
        prune_batch_size=flat.prune_batch_size,
    )
