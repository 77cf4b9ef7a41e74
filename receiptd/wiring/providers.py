"""The provider adapters built from Settings: API clients, queue factories, status lookups.

A third provider adds its lookup to :func:`status_lookups`; the compensator does not change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from receiptd import config, domain, ports

if TYPE_CHECKING:
    from alibabacloud_dysmsapi20170525.client import Client as DysmsClient

    from receiptd.providers.aliyun.credentials import OpenApiAccess
    from receiptd.providers.aliyun.token import DybaseTokenFetcher
    from receiptd.providers.huawei.koomessage import KooMessageAccess


def aliyun_access(settings: config.Settings, endpoint: str) -> OpenApiAccess:
    """The account keys, region and timeout for one Alibaba Cloud OpenAPI endpoint."""
    from receiptd.providers.aliyun.credentials import OpenApiAccess

    return OpenApiAccess(
        endpoint=endpoint,
        access_key_id=settings.aliyun_access_key_id,
        access_key_secret=settings.aliyun_access_key_secret.get_secret_value(),
        region_id=settings.aliyun_region,
        timeout_seconds=settings.aliyun_request_timeout,
    )


def dysms_client(settings: config.Settings) -> DysmsClient:
    """A Dysmsapi client (SendSms, QuerySendDetails) with the configured keys and timeouts."""
    from receiptd.providers.aliyun import dysms

    return dysms.make_client(aliyun_access(settings, settings.aliyun_dysms_endpoint))


def token_fetcher(settings: config.Settings) -> DybaseTokenFetcher:
    """QueryTokenForMnsQueue over a Dybaseapi client with the configured keys."""
    from receiptd.providers.aliyun import token

    return token.DybaseTokenFetcher.connect(
        aliyun_access(settings, settings.aliyun_dybase_endpoint)
    )


def queue_name(settings: config.Settings, kind: domain.MessageType) -> str:
    return settings.report_queue if kind is domain.MessageType.REPORT else settings.up_queue


def queue_factory(
    settings: config.Settings, kind: domain.MessageType
) -> Callable[[], ports.ReceiptQueue]:
    """A factory of per-thread MNS adapters for one queue kind, in token or direct mode.

    Token mode shares one token cache between the threads of the kind (one token per message
    type); every adapter rebuilds its SDK Account when that token changes.
    """
    from receiptd.providers.aliyun import credentials, mns, token

    name = queue_name(settings, kind)
    source: credentials.CredentialSource
    if settings.token_mode:
        endpoint = settings.aliyun_alicom_mns_endpoint
        source = token.TokenCache(token_fetcher(settings), kind, name)
    else:
        endpoint = str(settings.aliyun_mns_endpoint)
        source = credentials.StaticCredentials(
            credentials.MnsCredentials(
                settings.aliyun_access_key_id,
                settings.aliyun_access_key_secret.get_secret_value(),
                settings.aliyun_security_token.get_secret_value(),
            )
        )
    timeout = settings.consumer_socket_timeout

    def make() -> ports.ReceiptQueue:
        return mns.MnsReceiptQueue(endpoint, name, source, timeout)

    return make


def status_lookups(settings: config.Settings) -> list[ports.StatusLookup]:
    """The status lookups of every configured provider.

    Raises config.ConfigError when a provider is configured but unusable (e.g. Huawei without
    the ``receiptd[huawei]`` extra): a daemon must not silently leave its sends unsettled.
    """
    lookups: list[ports.StatusLookup] = []
    if settings.aliyun_configured:
        from receiptd.providers.aliyun import dysms

        lookups.append(
            dysms.AliyunStatusLookup(
                dysms_client(settings),
                tz=settings.timezone,
                concurrency=dysms.AliyunStatusLookup.concurrency_for(
                    settings.compensator_rate_limit
                ),
            )
        )
    if settings.huawei_configured:
        lookups.append(huawei_lookup(settings))
    return lookups


def huawei_lookup(settings: config.Settings) -> ports.StatusLookup:
    """The KooMessage lookup; ConfigError without a secret key or without the SDK extra."""
    from receiptd.providers.huawei import koomessage

    if not settings.huawei_secret_access_key.get_secret_value():
        raise config.ConfigError(
            "invalid setting huawei_secret_access_key: required when huawei_access_key_id is set"
        )
    try:
        return koomessage.connect_lookup(koomessage_access(settings), tz=settings.timezone)
    except koomessage.HuaweiSdkMissing as exc:
        raise config.ConfigError(str(exc)) from None


def koomessage_access(settings: config.Settings) -> KooMessageAccess:
    """KooMessage's endpoint and AK/SK; calls share the Aliyun request timeout setting."""
    from receiptd.providers.huawei.koomessage import KooMessageAccess

    return KooMessageAccess(
        endpoint=settings.huawei_endpoint,
        access_key_id=settings.huawei_access_key_id,
        secret_access_key=settings.huawei_secret_access_key.get_secret_value(),
        project_id=settings.huawei_project_id,
        timeout_seconds=settings.aliyun_request_timeout,
    )
