"""The provider adapters built from Settings: API clients, queue factories, status lookups.

Each adapter is built from one provider account (``settings.parts.accounts``): its keys,
endpoints and queues; an adapter never mixes two accounts' keys. Functions taking the
settings and no account serve the ``default`` account. A third provider adds its account model to
``receiptd.config.accounts`` and its lookup to :func:`account_lookup`; the compensator does
not change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from receiptd import config, domain, ports

if TYPE_CHECKING:
    from alibabacloud_dysmsapi20170525.client import Client as DysmsClient
    from alibabacloud_dysmsapi20180501.client import Client as GlobeClient

    from receiptd.providers.aliyun.credentials import OpenApiAccess
    from receiptd.providers.aliyun.token import DybaseTokenFetcher
    from receiptd.providers.huawei.koomessage import KooMessageAccess


def aliyun_access(account: config.AliyunAccount, endpoint: str) -> OpenApiAccess:
    """The account keys, region and timeout for one Alibaba Cloud OpenAPI endpoint."""
    from receiptd.providers.aliyun.credentials import OpenApiAccess

    return OpenApiAccess(
        endpoint=endpoint,
        access_key_id=account.access_key_id,
        access_key_secret=account.access_key_secret.get_secret_value(),
        region_id=account.region,
        timeout_seconds=account.request_timeout,
    )


def dysms_client(
    settings: config.Settings, account: config.AliyunAccount | None = None
) -> DysmsClient:
    """A Dysmsapi client (SendSms, QuerySendDetails) with an account's keys and timeouts
    (the default account's without one)."""
    return _dysms_client(account or settings.parts.aliyun)


def _dysms_client(account: config.AliyunAccount) -> DysmsClient:
    from receiptd.providers.aliyun import dysms

    return dysms.make_client(aliyun_access(account, account.dysms_endpoint))


def globe_client(
    settings: config.Settings, account: config.AliyunAccount | None = None
) -> GlobeClient:
    """A Dysmsapi 2018-05-01 client (SendMessageToGlobe, QueryMessage) with an account's keys,
    at its site's Dysmsapi endpoint (the default account's without one)."""
    return _globe_client(account or settings.parts.aliyun)


def _globe_client(account: config.AliyunAccount) -> GlobeClient:
    from receiptd.providers.aliyun import globe

    return globe.make_client(aliyun_access(account, account.dysms_endpoint))


def token_fetcher(
    settings: config.Settings, account: config.AliyunAccount | None = None
) -> DybaseTokenFetcher:
    """QueryTokenForMnsQueue over a Dybaseapi client with an account's keys, at its site's
    endpoint (the default account's without one)."""
    return _token_fetcher(account or settings.parts.aliyun)


def _token_fetcher(account: config.AliyunAccount) -> DybaseTokenFetcher:
    from receiptd.providers.aliyun import token

    access = aliyun_access(account, account.dybase_endpoint)
    # The international site's ExpireTime has no documented zone (docs/international.md).
    return token.DybaseTokenFetcher.connect(access, lifetime_only=account.site == "intl")


def queue_name(settings: config.Settings, kind: domain.MessageType) -> str:
    return _queue_name(settings.parts.aliyun, kind)


def _queue_name(account: config.AliyunAccount, kind: domain.MessageType) -> str:
    if kind is domain.MessageType.GLOBE_REPORT:
        return account.globe_queue
    return account.report_queue if kind is domain.MessageType.REPORT else account.up_queue


def queue_factory(
    settings: config.Settings,
    kind: domain.MessageType,
    account: config.AliyunAccount | None = None,
) -> Callable[[], ports.ReceiptQueue]:
    """A factory of per-thread MNS adapters for one account's queue kind, in token or direct
    mode (the default account's without one).

    Token mode shares one token cache between the threads of the kind (one token per account
    and message type); every adapter rebuilds its SDK Account when that token changes.
    """
    from receiptd.providers.aliyun import credentials, mns, token

    account = account or settings.parts.aliyun
    name = _queue_name(account, kind)
    source: credentials.CredentialSource
    if account.token_mode:
        endpoint = account.alicom_mns_endpoint
        source = token.TokenCache(_token_fetcher(account), kind, name, account=account.name)
    else:
        endpoint = str(account.mns_endpoint)
        source = credentials.StaticCredentials(
            credentials.MnsCredentials(
                account.access_key_id,
                account.access_key_secret.get_secret_value(),
                account.security_token.get_secret_value(),
            )
        )
    timeout = settings.parts.consumer.socket_timeout

    def make() -> ports.ReceiptQueue:
        return mns.MnsReceiptQueue(endpoint, name, source, timeout)

    return make


def status_lookups(settings: config.Settings) -> list[ports.StatusLookup]:
    """The status lookups of every provider account this replica serves, each with its
    account's keys (``serve_accounts``; all configured ones by default).

    Raises config.ConfigError when an account is configured but unusable (e.g. Huawei without
    the ``receiptd[huawei]`` extra): a daemon must not silently leave its sends unsettled.
    """
    return [account_lookup(account) for account in settings.parts.served_accounts]


def account_lookup(account: config.Account) -> ports.StatusLookup:
    """The status lookup of one provider account: an Alibaba account's sends by the id they
    are matched by, BizId sends with QuerySendDetails (China site only), MessageId sends with
    QueryMessage under its own rate limit (``query_message_rate_limit``)."""
    if isinstance(account, config.HuaweiAccount):
        return _koomessage_lookup(account)
    from receiptd.compensation.keyed import KeyedLookup
    from receiptd.providers.aliyun import dysms, globe

    by_key: dict[domain.SendKey, ports.StatusLookup] = {
        domain.SendKey.MESSAGE_ID: globe.QueryMessageLookup(
            _globe_client(account), tz=account.timezone, account=account.name
        )
    }
    if account.site == "cn":  # the international site has no QuerySendDetails
        by_key[domain.SendKey.BIZ_ID] = dysms.AliyunStatusLookup(
            _dysms_client(account),
            tz=account.timezone,
            concurrency=dysms.AliyunStatusLookup.concurrency_for(account.rate_limit),
            account=account.name,
        )
    limiter = rate_limiter(account.query_message_rate)
    return KeyedLookup(by_key, {domain.SendKey.MESSAGE_ID: limiter})


def rate_limiter(rate: float) -> ports.RateLimiter:
    """A token bucket of ``rate`` calls per second with its default burst."""
    from receiptd.compensation.ratelimit import TokenBucket, default_burst

    return TokenBucket(rate, default_burst(rate))


def huawei_lookup(settings: config.Settings) -> ports.StatusLookup:
    """The KooMessage lookup; ConfigError without a secret key or without the SDK extra."""
    return _koomessage_lookup(settings.parts.huawei)


def _koomessage_lookup(account: config.HuaweiAccount) -> ports.StatusLookup:
    from receiptd.providers.huawei import koomessage

    if not account.secret_access_key.get_secret_value():
        key = (
            "huawei_secret_access_key"
            if account.name == config.DEFAULT_ACCOUNT
            else f"accounts.{account.name}.secret_access_key"
        )
        raise config.ConfigError(f"invalid setting {key}: required when an access key is set")
    try:
        return koomessage.connect_lookup(
            koomessage_access(account), tz=account.timezone, account=account.name
        )
    except koomessage.HuaweiSdkMissing as exc:
        raise config.ConfigError(str(exc)) from None


def koomessage_access(account: config.HuaweiAccount) -> KooMessageAccess:
    """KooMessage's endpoint and AK/SK; calls share the Aliyun request timeout setting."""
    from receiptd.providers.huawei.koomessage import KooMessageAccess

    return KooMessageAccess(
        endpoint=account.endpoint,
        access_key_id=account.access_key_id,
        secret_access_key=account.secret_access_key.get_secret_value(),
        project_id=account.project_id,
        timeout_seconds=account.request_timeout,
    )
