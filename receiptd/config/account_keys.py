"""The keys of one named account (``[accounts.<id>]``), as given: one frozen model per provider.

Every key is a per-account setting of the flat ``aliyun_*`` / ``huawei_*`` fields without its
prefix (and the shared ``consumer_*_threads``, ``compensator_rate_limit``,
``compensator_horizon``, ``push_token``), validated with the same bounds
(:mod:`receiptd.config.values`). ``None`` is "not given": :mod:`receiptd.config.accounts`
fills what a named account inherits from the flat settings and refuses what it lacks.
A key of the other provider is an unknown setting (``extra="forbid"``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from receiptd.config.values import (
    Endpoint,
    GlobeSendRate,
    Horizon,
    PushToken,
    QueryMessageRate,
    RateLimit,
    RequestTimeout,
    Site,
    ThreadCount,
)


class _Keys(BaseModel):
    """The keys both providers' accounts have."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    access_key_id: str | None = None
    request_timeout: RequestTimeout | None = None
    compensator_rate_limit: RateLimit | None = None
    compensator_horizon: Horizon | None = None
    push_token: PushToken | None = None


class AliyunKeys(_Keys):
    """An Alibaba Cloud account: OpenAPI keys, receipt queues, endpoints, threads."""

    provider: Literal["aliyun"]
    access_key_secret: SecretStr | None = None
    security_token: SecretStr | None = None
    queue_prefix: str | None = None
    report_queue: str | None = None
    up_queue: str | None = None
    mns_endpoint: Endpoint | None = None
    alicom_mns_endpoint: Endpoint | None = None
    dysms_endpoint: Endpoint | None = None
    dybase_endpoint: Endpoint | None = None
    region: str | None = None
    consumer_report_threads: ThreadCount | None = None
    consumer_up_threads: ThreadCount | None = None
    # International sends (docs/international.md): which site, the China site's
    # GlobeSmsReport queue (by name, or ``<queue_prefix>GlobeSmsReport`` when enabled), and
    # the 2018-05-01 APIs' own rates.
    site: Site | None = None
    globe_queue: str | None = None
    globe_reports: bool | None = None
    consumer_globe_threads: ThreadCount | None = None
    query_message_rate_limit: QueryMessageRate | None = None
    send_rate_limit: GlobeSendRate | None = None


class HuaweiKeys(_Keys):
    """A Huawei Cloud KooMessage account: AK/SK, project, endpoint."""

    provider: Literal["huawei"]
    secret_access_key: SecretStr | None = None
    project_id: str | None = None
    endpoint: Endpoint | None = None


AccountKeys = Annotated[AliyunKeys | HuaweiKeys, Field(discriminator="provider")]
PROVIDERS = ("aliyun", "huawei")
# Every key some account may have: what an ``RECEIPTD_ACCOUNT_<ID>_<KEY>`` name may end with.
KNOWN_KEYS = frozenset(AliyunKeys.model_fields) | frozenset(HuaweiKeys.model_fields)
