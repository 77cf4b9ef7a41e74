"""Temporary MNS credentials for the Alicom-owned queues (Dybaseapi ``QueryTokenForMnsQueue``).

Pitfalls this module exists for (docs/consumer.md, token mode): ``ExpireTime`` is a zone-less
``yyyy-MM-dd HH:mm:ss`` in **Asia/Shanghai** time; the official demo compares naive local times
and never refreshes an expired token on a UTC host. Here every time is zone-aware UTC, a token
is refreshed ahead of expiry and at once after an auth error, and an adapter never gets a token
already known to be expired.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from receiptd import domain, metrics, ports
from receiptd.clock import Clock, utc_now
from receiptd.logs import get_logger
from receiptd.providers.aliyun.credentials import MnsCredentials, OpenApiAccess
from receiptd.providers.aliyun.openapi import tea_config

log = get_logger(__name__)
DEFAULT_REFRESH_AHEAD = timedelta(minutes=2)  # what every official demo uses


class TokenError(ports.QueueError):
    """No usable token: Dybaseapi refused (Code != OK), was unreachable, or answered nonsense.

    A QueueError, so a consumer loop backs off and retries as for any queue outage.
    """


@dataclass(frozen=True, slots=True)
class QueueToken:
    credentials: MnsCredentials
    expires_at: datetime  # aware, UTC
    fetched_at: datetime  # aware, UTC


def parse_expire_time(value: str) -> datetime:
    """``ExpireTime`` (Asia/Shanghai wall time, no zone) as an aware UTC datetime."""
    try:
        return domain.parse_provider_time(value, domain.CHINA_TZ)
    except (ValueError, AttributeError):
        raise TokenError(f"QueryTokenForMnsQueue: unreadable ExpireTime {value!r}") from None


Fetch = Callable[[domain.MessageType, str], QueueToken]


class DybaseTokenFetcher:
    """Calls QueryTokenForMnsQueue through the real ``alibabacloud_dybaseapi20170525`` client."""

    def __init__(self, client: Any, clock: Clock = utc_now, *, lifetime_only: bool = False) -> None:
        self._client = client
        self._clock = clock
        self._lock = threading.Lock()  # the Tea client is not documented as thread-safe
        # The international site documents no zone for ExpireTime: read only the lifetime
        # (ExpireTime - CreateTime, one clock whatever its zone) from its answers.
        self._lifetime_only = lifetime_only

    @classmethod
    def connect(cls, access: OpenApiAccess, *, lifetime_only: bool = False) -> DybaseTokenFetcher:
        """A fetcher over a new Dybaseapi client for these keys."""
        from alibabacloud_dybaseapi20170525.client import Client

        return cls(Client(tea_config(access)), lifetime_only=lifetime_only)

    def __call__(self, message_type: domain.MessageType, queue_name: str) -> QueueToken:
        from alibabacloud_dybaseapi20170525 import models

        request = models.QueryTokenForMnsQueueRequest(
            message_type=message_type.value, queue_name=queue_name
        )
        try:
            with self._lock:
                response = self._client.query_token_for_mns_queue(request)
        except Exception as exc:  # Tea/Darabonba/network errors share no useful base class
            code = getattr(exc, "code", None) or type(exc).__name__
            raise TokenError(f"QueryTokenForMnsQueue {message_type}: {code}: {exc}") from exc
        return _token_of(response.body, message_type, self._clock(), self._lifetime_only)


def _token_of(
    body: Any, message_type: domain.MessageType, now: datetime, lifetime_only: bool = False
) -> QueueToken:
    if body is None or body.code != "OK":
        code = getattr(body, "code", None)
        message = getattr(body, "message", None)
        raise TokenError(f"QueryTokenForMnsQueue {message_type}: {code}: {message}")
    dto = body.message_token_dto
    if dto is None or not dto.access_key_id or not dto.expire_time:
        raise TokenError(f"QueryTokenForMnsQueue {message_type}: answer has no MessageTokenDTO")
    credentials = MnsCredentials(dto.access_key_id, dto.access_key_secret, dto.security_token)
    if lifetime_only:
        return QueueToken(credentials, now + token_lifetime(dto, now), now)
    return QueueToken(credentials, parse_expire_time(dto.expire_time), now)


def token_lifetime(dto: Any, now: datetime) -> timedelta:
    """How long a token lives, ``ExpireTime - CreateTime``: both wall times of one clock, so
    their zone cancels out (counted from when receiptd received it: a little early, never
    late). Without a readable CreateTime the token is taken to live until ExpireTime read in
    China time, as on the China site."""
    expire = parse_expire_time(dto.expire_time)
    try:
        created = parse_expire_time(dto.create_time or "")
    except TokenError:
        log.warning("token_create_time_unreadable", create_time=str(dto.create_time))
        return max(expire - now, timedelta(0))
    return max(expire - created, timedelta(0))


class TokenCache:
    """The current token of one message type, shared by the threads of that queue.

    ``current()`` refreshes when less than ``refresh_ahead`` is left (or a quarter of the
    token's lifetime, for short-lived tokens, so a 10 s token is not refreshed on every call).
    If a refresh fails while the old token is still valid, the old one is used and the next
    call tries again; once it is expired, the failure raises TokenError.
    """

    def __init__(
        self,
        fetch: Fetch,
        message_type: domain.MessageType,
        queue_name: str,
        refresh_ahead: timedelta = DEFAULT_REFRESH_AHEAD,
        clock: Clock = utc_now,
        account: str = domain.DEFAULT_ACCOUNT,
    ) -> None:
        self._fetch = fetch  # with the account's keys: its own queues' tokens only
        self._account = account
        self._type = message_type
        self._queue_name = queue_name
        self._ahead = refresh_ahead
        self._clock = clock
        self._lock = threading.Lock()
        self._token: QueueToken | None = None

    def current(self) -> MnsCredentials:
        with self._lock:
            now = self._clock()
            token = self._token
            if token is None or now >= token.expires_at - self._margin(token):
                token = self._refresh(token, now)
            return token.credentials

    def invalidate(self, credentials: MnsCredentials) -> None:
        """An auth error with these credentials: the next ``current()`` fetches a new token.

        A late report about an older token leaves a newer one alone.
        """
        with self._lock:
            if self._token is not None and self._token.credentials == credentials:
                self._token = None

    @property
    def expires_at(self) -> datetime | None:
        token = self._token
        return None if token is None else token.expires_at

    def _margin(self, token: QueueToken) -> timedelta:
        return min(self._ahead, (token.expires_at - token.fetched_at) / 4)

    def _refresh(self, old: QueueToken | None, now: datetime) -> QueueToken:
        try:
            new = self._fetch(self._type, self._queue_name)
        except TokenError as exc:
            metrics.TOKEN_REFRESHES.labels(self._account, self._type.value, "error").inc()
            log.warning(
                "token_refresh_failed",
                account=self._account,
                message_type=self._type.value,
                error=str(exc),
            )
            if old is not None and now < old.expires_at:
                return old  # still valid: use it, retry the refresh on the next call
            raise
        if new.expires_at <= now:
            metrics.TOKEN_REFRESHES.labels(self._account, self._type.value, "expired").inc()
            raise TokenError(f"QueryTokenForMnsQueue {self._type}: token already expired")
        metrics.TOKEN_REFRESHES.labels(self._account, self._type.value, "ok").inc()
        log.info(
            "token_refreshed",
            account=self._account,
            message_type=self._type.value,
            expires_at=new.expires_at.isoformat(),
        )
        self._token = new
        return new
