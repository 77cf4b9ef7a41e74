"""The provider accounts: everything receiptd holds for one account at one provider.

Each account has its own keys, queues, threads, rate limit, horizon and push token. The two
accounts named ``default`` (one per provider) are built from the flat ``aliyun_*`` /
``huawei_*`` settings and the provider settings they share (``provider_timezone``,
``consumer_*_threads``, ``compensator_rate_limit``, ``compensator_horizon[_<provider>]``,
``push_token``); both always exist, and ``configured`` says whether the access key is set (an
unconfigured account still names the push token and time zone of its pushes).

The named accounts (``[accounts.<id>]``, :mod:`receiptd.config.account_keys`) inherit from
the ``default`` account of their provider what a site shares (endpoints but ``mns_endpoint``,
region, timeouts, threads, rate limit, horizon, push token); keys, secrets, queues,
``mns_endpoint`` and ``project_id`` belong to one account and are never inherited:
an MNS endpoint names the account's own uid, so another account's would be wrong.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import SecretStr

from receiptd.config.account_keys import AccountKeys, HuaweiKeys
from receiptd.config.values import (
    ACCOUNT_ID,
    DEFAULT_ACCOUNT,
    RESERVED_ACCOUNT_IDS,
    Site,
    split_ids,
)

if TYPE_CHECKING:
    from receiptd.config.settings import Settings


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
    # International sends (docs/international.md).
    site: Site = "cn"
    globe_queue: str = ""  # the China site's GlobeSmsReport queue; "": not consumed
    globe_threads: int = 1  # consumer threads on globe_queue, when there is one
    query_message_rate: float = 50.0  # QueryMessage calls per second (the compensator)
    send_rate: float = 100.0  # SendMessageToGlobe calls per second (receiptd send)

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

# The flat field behind each key of the ``default`` accounts (compensator_horizon aside: its
# provider's own ``compensator_horizon_<provider>``, else the shared one).
_FLAT_FIELDS: Mapping[str, Mapping[str, str]] = {
    "aliyun": {
        **{
            key: f"aliyun_{key}"
            for key in (
                "access_key_id", "access_key_secret", "security_token", "queue_prefix",
                "report_queue", "up_queue", "mns_endpoint", "alicom_mns_endpoint",
                "dysms_endpoint", "dybase_endpoint", "region", "request_timeout",
                "site", "globe_queue", "globe_reports", "query_message_rate_limit",
                "send_rate_limit",
            )
        },
        **{
            key: key
            for key in ("consumer_report_threads", "consumer_up_threads", "consumer_globe_threads")
        },
        **{key: key for key in ("compensator_rate_limit", "push_token")},
    },
    "huawei": {
        **{key: f"huawei_{key}" for key in ("access_key_id", "secret_access_key")},
        **{key: f"huawei_{key}" for key in ("project_id", "endpoint")},
        "request_timeout": "aliyun_request_timeout",  # one setting for both providers today
        **{key: key for key in ("compensator_rate_limit", "push_token")},
    },
}  # fmt: skip
# What belongs to one account only: a named account never takes the default account's.
NOT_INHERITED = frozenset(
    {"access_key_id", "access_key_secret", "security_token", "secret_access_key", "project_id"}
    | {"queue_prefix", "report_queue", "up_queue", "mns_endpoint", "globe_queue", "globe_reports"}
)
# What a site sets: the endpoints and region of an account of that site that names none. A
# named account inherits these from the default account only when both are of one site.
SITE_DEFAULTS: Mapping[str, Mapping[str, str]] = {
    "cn": {
        "alicom_mns_endpoint": "https://1943695596114318.mns.cn-hangzhou.aliyuncs.com",
        "dysms_endpoint": "https://dysmsapi.aliyuncs.com",
        "dybase_endpoint": "https://dybaseapi.aliyuncs.com",
        "region": "cn-hangzhou",
    },
    # Alibaba's international receipt demos read MNS over plain http at this host ("do not
    # change"); docs/international.md, "Endpoints".
    "intl": {
        "alicom_mns_endpoint": "http://1493622401794734.mns.ap-southeast-1.aliyuncs.com",
        "dysms_endpoint": "https://dysmsapi.ap-southeast-1.aliyuncs.com",
        "dybase_endpoint": "https://dybaseapi.ap-southeast-1.aliyuncs.com",
        "region": "ap-southeast-1",
    },
}
# The China site's own channels: the international site documents no reply body and no
# GlobeSmsReport queue (docs/international.md, "Out of scope").
CN_ONLY = ("up_queue", "consumer_up_threads", "globe_queue", "globe_reports")


def accounts(flat: Settings) -> tuple[Account, ...]:
    """Every provider account of ``flat``: the two ``default`` ones, then the named ones by id."""
    named = (_build(name, flat, inherited(flat, given)) for name, given in named_keys(flat))
    return aliyun(flat), huawei(flat), *named


def aliyun(flat: Settings) -> AliyunAccount:
    """The ``default`` Aliyun account (the flat ``aliyun_*`` settings)."""
    return _aliyun(DEFAULT_ACCOUNT, flat, default_keys(flat, "aliyun"))


def huawei(flat: Settings) -> HuaweiAccount:
    """The ``default`` Huawei account (the flat ``huawei_*`` settings)."""
    return _huawei(DEFAULT_ACCOUNT, flat, default_keys(flat, "huawei"))


def named_keys(flat: Settings) -> list[tuple[str, AccountKeys]]:
    """The named accounts' keys as given, by id."""
    return sorted(flat.accounts.items())


def default_keys(flat: Settings, provider: str) -> dict[str, Any]:
    """Every key of ``provider``'s ``default`` account, from the flat settings."""
    keys = {key: getattr(flat, name) for key, name in _FLAT_FIELDS[provider].items()}
    own = getattr(flat, f"compensator_horizon_{provider}")
    keys["compensator_horizon"] = flat.compensator_horizon if own is None else own
    keys["provider"] = provider
    if provider == "aliyun":  # a site's defaults where the flat settings name no endpoint
        given = flat.model_fields_set
        site_keys = SITE_DEFAULTS[flat.aliyun_site].items()
        keys |= {key: value for key, value in site_keys if f"aliyun_{key}" not in given}
    return keys


def inherited(flat: Settings, given: AccountKeys) -> dict[str, Any]:
    """A named account's keys: what it gives, over what it inherits from its provider's
    ``default`` account (a site's endpoints only from a default account of the same site)."""
    base = default_keys(flat, given.provider)
    keys = {key: value for key, value in base.items() if key not in NOT_INHERITED}
    site = getattr(given, "site", None)
    if site is not None and site != base.get("site"):
        keys |= SITE_DEFAULTS[site]
    return {**keys, **given.model_dump(exclude_none=True)}


def _build(name: str, flat: Settings, keys: Mapping[str, Any]) -> Account:
    return (_huawei if keys["provider"] == "huawei" else _aliyun)(name, flat, keys)


def _common(name: str, flat: Settings, keys: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of :class:`ProviderAccount`."""
    return {
        "name": name,
        "access_key_id": keys.get("access_key_id", ""),
        "request_timeout": keys["request_timeout"],
        "timezone": ZoneInfo(flat.provider_timezone),
        "rate_limit": keys["compensator_rate_limit"],
        "horizon": timedelta(seconds=keys["compensator_horizon"]),
        "push_token": keys.get("push_token"),
    }


def _aliyun(name: str, flat: Settings, keys: Mapping[str, Any]) -> AliyunAccount:
    prefix = keys.get("queue_prefix", "")
    intl = keys["site"] == "intl"
    globe = keys.get("globe_queue") or (
        f"{prefix}GlobeSmsReport" if keys.get("globe_reports") else ""
    )
    return AliyunAccount(
        **_common(name, flat, keys),
        access_key_secret=keys.get("access_key_secret", SecretStr("")),
        security_token=keys.get("security_token", SecretStr("")),
        report_queue=keys.get("report_queue") or f"{prefix}SmsReport",
        up_queue=keys.get("up_queue") or f"{prefix}SmsUp",
        mns_endpoint=keys.get("mns_endpoint"),
        alicom_mns_endpoint=keys["alicom_mns_endpoint"],
        dysms_endpoint=keys["dysms_endpoint"],
        dybase_endpoint=keys["dybase_endpoint"],
        region=keys["region"],
        report_threads=keys["consumer_report_threads"],
        up_threads=0 if intl else keys["consumer_up_threads"],
        site=keys["site"],
        globe_queue="" if intl else globe,
        globe_threads=keys["consumer_globe_threads"],  # used only with a globe_queue
        query_message_rate=keys["query_message_rate_limit"],
        send_rate=keys["send_rate_limit"],
    )


def _huawei(name: str, flat: Settings, keys: Mapping[str, Any]) -> HuaweiAccount:
    return HuaweiAccount(
        **_common(name, flat, keys),
        secret_access_key=keys.get("secret_access_key", SecretStr("")),
        project_id=keys.get("project_id", ""),
        endpoint=keys["endpoint"],
    )


# --- Checks across settings (Settings' model validator calls check) --------------------------


def check_id(name: object) -> None:
    """Raise ValueError ``accounts.<id>: <reason>`` for an id that may not name an account."""
    if not isinstance(name, str) or not ACCOUNT_ID.fullmatch(name):
        raise ValueError(f"accounts.{name}: an account id is 1 to 32 of a-z 0-9 _")
    if name == DEFAULT_ACCOUNT:
        raise ValueError(
            f"accounts.{name}: reserved: the default accounts are the flat settings "
            "([aliyun] and [huawei], RECEIPTD_ALIYUN_* and RECEIPTD_HUAWEI_*)"
        )
    if name in RESERVED_ACCOUNT_IDS:
        raise ValueError(f"accounts.{name}: reserved (a push path segment)")


def check(flat: Settings) -> None:
    """Raise ValueError ``<key>: <reason>`` for the first named account lacking a required key,
    an unknown id in ``serve_accounts``, or an endpoint subscribed to an unknown account."""
    known = {DEFAULT_ACCOUNT, *flat.accounts}
    if flat.aliyun_site == "intl":  # consumer_up_threads is shared: named accounts inherit it
        flat_names = {f"aliyun_{key}" for key in CN_ONLY if key != "consumer_up_threads"}
        _check_site("", flat_names & flat.model_fields_set)
    for name, given in named_keys(flat):
        keys = inherited(flat, given)
        if keys.get("site") == "intl":
            _check_site(f"accounts.{name}.", set(given.model_fields_set) & set(CN_ONLY))
        lacking = missing(given, keys)
        if lacking:
            raise ValueError(f"accounts.{name}.{lacking}: required")
    unknown = [name for name in split_ids(flat.serve_accounts) if name not in known]
    if unknown:
        raise ValueError(f"serve_accounts: unknown account(s) {unknown}; known: {sorted(known)}")
    for endpoint in flat.webhook_endpoints:
        unknown = [name for name in endpoint.accounts if name not in known]
        if unknown:
            raise ValueError(
                f"webhook_endpoints: endpoint {endpoint.name!r}: unknown account(s) {unknown}"
            )


def _check_site(prefix: str, given: set[str]) -> None:
    """An international-site account given a China-site channel: refused, naming the key."""
    if given:
        raise ValueError(
            f"{prefix}{min(given)}: the international site has no such channel (no reply body and "
            "no GlobeSmsReport queue are documented there; docs/international.md)"
        )


def missing(given: AccountKeys, keys: Mapping[str, Any]) -> str | None:
    """The first key a named account needs and lacks (``keys``: with what it inherits)."""
    if isinstance(given, HuaweiKeys):
        needed = ("access_key_id", "secret_access_key", "project_id")
        return next((key for key in needed if not _given(keys, key)), None)
    for key in ("access_key_id", "access_key_secret"):
        if not _given(keys, key):
            return key
    prefix = _given(keys, "queue_prefix")
    # An international account has no SmsUp queue (CN_ONLY): only its SmsReport one counts.
    kinds = (
        (("report", "up"),) if keys.get("site") == "intl" else (("report", "up"), ("up", "report"))
    )
    for kind, other in kinds:
        if keys[f"consumer_{kind}_threads"] and not (prefix or _given(keys, f"{kind}_queue")):
            # Name the one key that would do: the prefix, unless the other queue is explicit.
            return f"{kind}_queue" if _given(keys, f"{other}_queue") else "queue_prefix"
    return None


def _given(keys: Mapping[str, Any], key: str) -> bool:
    value = keys.get(key)
    return bool(value.get_secret_value() if isinstance(value, SecretStr) else value)


# --- Shown by ``config check`` ----------------------------------------------------------------


def describe(account: Account, *, served: bool) -> dict[str, Any]:
    """An account as ``config check`` shows it: every field, secrets masked."""
    out: dict[str, Any] = {"name": account.name, "provider": account.provider}
    out |= {"configured": account.configured, "served": served}
    for f in dataclasses.fields(account):
        out.setdefault(f.name, _shown(getattr(account, f.name)))
    if isinstance(account, AliyunAccount):
        out["mode"] = "token" if account.token_mode else "direct"
    return out


def masked(keys: AccountKeys) -> dict[str, Any]:
    """A named account's keys as given, secrets masked."""
    return {key: _shown(value) for key, value in keys.model_dump(exclude_none=True).items()}


def _shown(value: object) -> object:
    if isinstance(value, SecretStr):
        return "**********" if value.get_secret_value() else ""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, ZoneInfo):
        return str(value)
    return value
