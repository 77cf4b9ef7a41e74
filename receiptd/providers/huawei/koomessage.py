"""Huawei Cloud KooMessage: delivery status by polling ``GET /v1/aim/send-details``.

KooMessage has no receipt queue, so every Huawei send is settled here, by the compensator. The
calls are planned in :mod:`receiptd.providers.huawei.windows` (time windows that never page
past ``offset + limit = 10,000``) and matched in :mod:`receiptd.providers.huawei.matching`
(exact or nothing). This module is the only one that touches the Huawei SDK, an optional extra
(``pip install 'receiptd[huawei]'``) imported lazily; no SDK exception type leaves it.

Authentication is AK/SK (``SDK-HMAC-SHA256``) through ``BasicCredentials``. The SDK has no
credential type for an IAM token (``X-Auth-Token``), and token mode would mean fetching and
refreshing IAM tokens and building requests by hand: receiptd does not offer it.
"""

from __future__ import annotations

import logging
import types
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from typing import Any, Protocol

from receiptd import domain, errors, metrics, ports
from receiptd.clock import utc_now
from receiptd.logs import get_logger
from receiptd.providers.huawei import matching, windows

log = get_logger(__name__)
PROVIDER = domain.Provider.HUAWEI
#: Window margins around a send's registered time: clock differences / provider queueing.
DEFAULT_BEFORE = timedelta(minutes=10)
DEFAULT_AFTER = timedelta(hours=2)
SDK_MISSING = (
    "huawei_access_key_id is set but the Huawei SDK is missing: pip install 'receiptd[huawei]'"
)


class HuaweiSdkMissing(ImportError):
    """Huawei is configured but ``huaweicloudsdkkoomessage`` is not installed (the wiring
    turns this into a configuration error: exit code 2)."""


@dataclass(frozen=True, slots=True)
class KooMessageAccess:
    """Where KooMessage is and the AK/SK to sign with; ``project_id`` is optional."""

    endpoint: str
    access_key_id: str
    secret_access_key: str = field(repr=False)
    project_id: str = ""
    timeout_seconds: float = 10.0


class SendDetailsApi(Protocol):
    """One page of send details; raises only ``ports.Lookup*`` exceptions."""

    def fetch(self, query: windows.Query) -> windows.Page: ...


class SdkSendDetails:
    """:class:`SendDetailsApi` over ``KooMessageClient.list_aim_send_details``."""

    def __init__(self, client: Any, sdk: Any) -> None:
        self._client = client
        self._sdk = sdk  # the lazily imported modules, see _import_sdk()

    def fetch(self, query: windows.Query) -> windows.Page:
        begin, end = query.window.params()
        request = self._sdk.ListAimSendDetailsRequest(
            task_id=query.task_id,
            begin_time=begin,
            end_time=end,
            offset=query.offset,
            limit=query.limit,
        )
        try:
            response = self._client.list_aim_send_details(request)
        except self._sdk.ClientRequestException as exc:
            raise _client_error(exc) from None
        except self._sdk.ServerResponseException as exc:
            raise ports.LookupUnavailable(errors.describe(exc, form=_ANSWERED)) from None
        except self._sdk.SdkException as exc:  # connection, timeout, retry outage
            raise ports.LookupUnavailable(f"KooMessage unreachable: {exc}") from None
        except OSError as exc:  # an answer cut short: requests' errors are OSErrors
            raise ports.LookupUnavailable(f"KooMessage answer broken: {exc}") from None
        if response.page_info is None and response.send_details is None:
            # Not the API's answer (every page carries page_info): a garbled body the SDK
            # read as an empty object. Read as "nothing sent", it would hide real sends.
            raise ports.LookupUnavailable("KooMessage answered without page_info")
        return _page_of(response)


# An SDK error answered by the API: its fields (``errors.describe``'s ``e``) say what failed.
_ANSWERED = (
    "KooMessage send-details answered HTTP {e.status_code} {e.error_code}: {e.error_msg}"
    " (request id {e.request_id})"
)


def _client_error(exc: Any) -> Exception:
    if exc.status_code == 429:
        return ports.LookupThrottled(errors.describe(exc, form=_ANSWERED))
    return ports.LookupFailed(errors.describe(exc, form=_ANSWERED))


def _page_of(response: Any) -> windows.Page:
    details = tuple(
        matching.Detail(
            msg_id=d.msg_id or "",
            task_id=d.task_id or "",
            cust_flag=d.cust_flag or "",
            send_account=d.send_account or "",
            send_status=d.send_status or "",
            result_code=d.result_code,
        )
        for d in response.send_details or ()
    )
    page_info = response.page_info
    total = page_info.total if page_info is not None and page_info.total is not None else 0
    return windows.Page(details, max(int(total), len(details)))


class HuaweiLookup:
    """``ports.StatusLookup`` for KooMessage sends (``provider = huawei``)."""

    def __init__(
        self,
        api: SendDetailsApi,
        *,
        before: timedelta = DEFAULT_BEFORE,
        after: timedelta = DEFAULT_AFTER,
        tz: tzinfo = domain.CHINA_TZ,
        clock: Callable[[], datetime] = utc_now,
        account: str = domain.DEFAULT_ACCOUNT,
    ) -> None:
        self.api = api
        self.account = account
        self.clock = clock
        self.before = before
        self.after = after
        self.tz = tz  # the zone sms_send.send_date is computed in (oldest_send_date)

    @property
    def provider(self) -> domain.Provider:
        return PROVIDER

    def in_window(self, send: ports.PendingSend, now: datetime) -> bool:
        """Sends older than a year (less a margin) expire without a call."""
        return windows.queryable(send.sent_at, now)

    def oldest_send_date(self, now: datetime) -> date:
        """Sends registered on an earlier provider date are all outside the window."""
        return (windows.utc(now) - windows.RETENTION + windows.EDGE).astimezone(self.tz).date()

    def lookup(
        self, sends: Sequence[ports.PendingSend], limiter: ports.RateLimiter
    ) -> ports.LookupResult:
        """Read the details of every window the sends fall in, then match them exactly.

        An error stops the lookup: when no call succeeded it is raised; otherwise what was read
        is matched and returned, the error counted in ``calls``.
        """
        calls: Counter[str] = Counter()
        details: list[matching.Detail] = []

        def fetch(query: windows.Query) -> windows.Page:
            limiter.acquire()
            try:
                page = self.api.fetch(query)
            except (ports.LookupThrottled, ports.LookupUnavailable, ports.LookupFailed) as exc:
                _count(calls, _RESULTS[type(exc)], self.account)
                raise
            _count(calls, "ok", self.account)
            return page

        now = self.clock()
        scopes = windows.cover(sends, now, self.before, self.after)
        try:
            for scope in scopes:
                for detail in windows.collect(scope, fetch):
                    details.append(detail)  # kept one by one: an error keeps what was read
        except (ports.LookupThrottled, ports.LookupUnavailable, ports.LookupFailed) as exc:
            if not calls["ok"]:
                raise  # nothing looked up: the compensator logs it and backs the sends off
            log.warning("huawei_lookup_partial", error=str(exc), calls=dict(calls))
        settlements = matching.match(sends, details)
        return ports.LookupResult(settlements, dict(calls))


_RESULTS: dict[type[Exception], str] = {
    ports.LookupThrottled: "throttled",
    ports.LookupUnavailable: "unavailable",
    ports.LookupFailed: "error",
}


def _count(calls: Counter[str], result: str, account: str) -> None:
    calls[result] += 1
    metrics.COMPENSATOR_CALLS.labels(PROVIDER.value, account, result).inc()


def _import_sdk() -> Any:
    """The SDK names receiptd uses, in one namespace; HuaweiSdkMissing without the extra."""
    try:
        from huaweicloudsdkcore.auth import credentials
        from huaweicloudsdkcore.exceptions import exceptions
        from huaweicloudsdkcore.http import http_config
        from huaweicloudsdkkoomessage import v1
    except ImportError:
        raise HuaweiSdkMissing(SDK_MISSING) from None
    return types.SimpleNamespace(
        BasicCredentials=credentials.BasicCredentials,
        HttpConfig=http_config.HttpConfig,
        KooMessageClient=v1.KooMessageClient,
        ListAimSendDetailsRequest=v1.ListAimSendDetailsRequest,
        ClientRequestException=exceptions.ClientRequestException,
        ServerResponseException=exceptions.ServerResponseException,
        SdkException=exceptions.SdkException,
    )


def build_client(access: KooMessageAccess, sdk: Any) -> Any:
    """A KooMessageClient for the endpoint, AK/SK and bounded timeouts.

    ``with_endpoints`` (not ``with_region``) keeps the SDK from asking IAM for a project id;
    ``X-Project-Id`` is sent only when a project id is set. The SDK's own retries are off
    (``retry_times=0``): the compensator backs off a failed lookup itself.
    """
    timeout = access.timeout_seconds
    # The SDK logs transport errors on its own non-propagating logger, which would reach
    # stderr through logging's last-resort handler; receiptd reports them as events instead.
    sdk_log = logging.getLogger("HuaweiCloud-SDK-KooMessageClient")
    if not sdk_log.handlers:
        sdk_log.addHandler(logging.NullHandler())
    credentials = sdk.BasicCredentials(
        access.access_key_id, access.secret_access_key, access.project_id or None
    )
    http = sdk.HttpConfig(timeout=(min(5.0, timeout), timeout), retry_times=0)
    return (
        sdk.KooMessageClient.new_builder()
        .with_credentials(credentials)
        .with_endpoints([access.endpoint])
        .with_http_config(http)
        .build()
    )


def connect_lookup(
    access: KooMessageAccess, tz: tzinfo = domain.CHINA_TZ, account: str = domain.DEFAULT_ACCOUNT
) -> HuaweiLookup:
    """The Huawei lookup of one account over a new SDK client; HuaweiSdkMissing without the
    extra."""
    sdk = _import_sdk()
    return HuaweiLookup(SdkSendDetails(build_client(access, sdk), sdk), tz=tz, account=account)
