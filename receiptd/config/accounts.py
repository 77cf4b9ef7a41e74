"""The provider accounts: everything receiptd holds for one account at one provider.

An account is the unit the next step multiplies (several Aliyun or Huawei accounts, each
with its own keys, queues, threads, rate limit, horizon and push token). Today there is one
account per provider, named ``default``, built from the flat ``aliyun_*`` / ``huawei_*``
settings and the provider settings every account shares (``provider_timezone``,
``consumer_*_threads``, ``compensator_rate_limit``, ``compensator_horizon[_<provider>]``,
``push_token``). Both accounts always exist; ``configured`` says whether its access key is
set (an unconfigured account still names the push token and time zone of its pushes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

from pydantic import SecretStr

if TYPE_CHECKING:
    from receiptd.config.settings import Settings

DEFAULT_ACCOUNT = "default"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderAccount:
    """What every provider account has besides its keys and endpoints."""

    name: str = DEFAULT_ACCOUNT
    access_key_id: str
    request_timeout: float  # seconds per API call
    timezone: ZoneInfo  # the provider's clock: receipt times, send dates
    rate_limit: float  # status queries per second (the compensator)
    horizon: timedelta  # how long a pending send is asked about; 0: the query window
    push_token: SecretStr | None  # the path token of its HTTP pushes

    @property
    def configured(self) -> bool:
        return bool(self.access_key_id)

    @property
    def secrets(self) -> tuple[SecretStr, ...]:
        """Every secret of the account (for the log redactor)."""
        token = (self.push_token,) if self.push_token is not None else ()
        return (*self.key_secrets, *token)

    @property
    def key_secrets(self) -> tuple[SecretStr, ...]:
        return ()


@dataclass(frozen=True, slots=True, kw_only=True)
class AliyunAccount(ProviderAccount):
    """An Alibaba Cloud SMS account: OpenAPI keys, its MNS receipt queues, its threads."""

    provider: Literal["aliyun"] = field(default="aliyun", init=False)
    access_key_secret: SecretStr
    security_token: SecretStr  # direct mode with STS keys only
    report_queue: str
    up_queue: str
    mns_endpoint: str | None  # None: token mode (Alicom-owned queues)
    alicom_mns_endpoint: str
    dysms_endpoint: str
    dybase_endpoint: str
    region: str
    report_threads: int  # consumer threads on the SmsReport queue; 0: none in the daemon
    up_threads: int

    @property
    def key_secrets(self) -> tuple[SecretStr, ...]:
        return self.access_key_secret, self.security_token

    @property
    def token_mode(self) -> bool:
        """Without an MNS endpoint receiptd asks Dybaseapi for temporary queue tokens."""
        return self.mns_endpoint is None


@dataclass(frozen=True, slots=True, kw_only=True)
class HuaweiAccount(ProviderAccount):
    """A Huawei Cloud KooMessage account: AK/SK, project, endpoint. Its ``request_timeout``
    is today the ``aliyun_request_timeout`` setting, shared."""

    provider: Literal["huawei"] = field(default="huawei", init=False)
    secret_access_key: SecretStr
    project_id: str
    endpoint: str

    @property
    def key_secrets(self) -> tuple[SecretStr, ...]:
        return (self.secret_access_key,)


Account = AliyunAccount | HuaweiAccount


def accounts(flat: Settings) -> tuple[Account, ...]:
    """Every provider account of ``flat``: today the ``default`` one of each provider."""
    return aliyun(flat), huawei(flat)


def aliyun(flat: Settings) -> AliyunAccount:
    return AliyunAccount(
        access_key_id=flat.aliyun_access_key_id,
        access_key_secret=flat.aliyun_access_key_secret,
        security_token=flat.aliyun_security_token,
        report_queue=flat.aliyun_report_queue or f"{flat.aliyun_queue_prefix}SmsReport",
        up_queue=flat.aliyun_up_queue or f"{flat.aliyun_queue_prefix}SmsUp",
        mns_endpoint=flat.aliyun_mns_endpoint,
        alicom_mns_endpoint=flat.aliyun_alicom_mns_endpoint,
        dysms_endpoint=flat.aliyun_dysms_endpoint,
        dybase_endpoint=flat.aliyun_dybase_endpoint,
        region=flat.aliyun_region,
        request_timeout=flat.aliyun_request_timeout,
        timezone=ZoneInfo(flat.provider_timezone),
        report_threads=flat.consumer_report_threads,
        up_threads=flat.consumer_up_threads,
        rate_limit=flat.compensator_rate_limit,
        horizon=horizon(flat.compensator_horizon_aliyun, flat.compensator_horizon),
        push_token=flat.push_token,
    )


def huawei(flat: Settings) -> HuaweiAccount:
    return HuaweiAccount(
        access_key_id=flat.huawei_access_key_id,
        secret_access_key=flat.huawei_secret_access_key,
        project_id=flat.huawei_project_id,
        endpoint=flat.huawei_endpoint,
        request_timeout=flat.aliyun_request_timeout,
        timezone=ZoneInfo(flat.provider_timezone),
        rate_limit=flat.compensator_rate_limit,
        horizon=horizon(flat.compensator_horizon_huawei, flat.compensator_horizon),
        push_token=flat.push_token,
    )


def horizon(own: float | None, shared: float) -> timedelta:
    """An account's status horizon: its provider's own setting when set, else the shared one."""
    return timedelta(seconds=shared if own is None else own)
