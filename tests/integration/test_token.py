"""QueryTokenForMnsQueue through the real Dybaseapi client, and the token cache's rules."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from receiptd import domain, wiring
from receiptd.providers.aliyun.credentials import MnsCredentials
from receiptd.providers.aliyun.token import (
    QueueToken,
    TokenCache,
    TokenError,
    parse_expire_time,
)
from receiptd.testing.emulated import emulator_settings
from receiptd_emulator.emulator import Emulator
from receiptd_emulator.faults import FaultSpec

T0 = datetime(2026, 11, 25, 0, 0, tzinfo=UTC)
REPORT = domain.MessageType.REPORT


def test_expire_time_is_shanghai_wall_time() -> None:
    assert parse_expire_time("2026-11-25 08:00:00") == T0
    with pytest.raises(TokenError):
        parse_expire_time("25/11/2026")


class FakeFetch:
    def __init__(self, lifetime: timedelta, clock: list[datetime]) -> None:
        self.lifetime, self.clock, self.calls = lifetime, clock, 0

    def __call__(self, message_type: domain.MessageType, queue: str) -> QueueToken:
        self.calls += 1
        creds = MnsCredentials(f"STS.{self.calls}", "secret", "token")
        return QueueToken(creds, self.clock[0] + self.lifetime, self.clock[0])


def cache(lifetime: timedelta) -> tuple[TokenCache, FakeFetch, list[datetime]]:
    now = [T0]
    fetch = FakeFetch(lifetime, now)
    return TokenCache(fetch, REPORT, "q", clock=lambda: now[0]), fetch, now


def test_refreshes_two_minutes_ahead_of_expiry() -> None:
    tokens, fetch, now = cache(timedelta(hours=1))
    first = tokens.current()
    now[0] = T0 + timedelta(minutes=57, seconds=59)
    assert tokens.current() == first
    now[0] = T0 + timedelta(minutes=58)
    assert tokens.current() != first
    assert fetch.calls == 2


def test_short_lived_tokens_are_not_refreshed_on_every_call() -> None:
    tokens, fetch, now = cache(timedelta(seconds=8))
    tokens.current()
    now[0] = T0 + timedelta(seconds=5)
    tokens.current()
    assert fetch.calls == 1
    now[0] = T0 + timedelta(seconds=6)
    tokens.current()
    assert fetch.calls == 2


def test_invalidate_refreshes_at_once_but_ignores_older_tokens() -> None:
    tokens, fetch, _ = cache(timedelta(hours=1))
    old = tokens.current()
    tokens.invalidate(old)
    new = tokens.current()
    tokens.invalidate(old)  # a late report about the old token
    assert tokens.current() == new
    assert fetch.calls == 2


def test_failed_refresh_keeps_a_valid_token_and_never_returns_an_expired_one() -> None:
    now = [T0]
    calls = []

    def fetch(message_type: domain.MessageType, queue: str) -> QueueToken:
        calls.append(now[0])
        if len(calls) > 1:
            raise TokenError("Dybaseapi down")
        return QueueToken(MnsCredentials("STS.1", "s", "t"), T0 + timedelta(hours=1), T0)

    tokens = TokenCache(fetch, REPORT, "q", clock=lambda: now[0])
    first = tokens.current()
    now[0] = T0 + timedelta(minutes=59)
    assert tokens.current() == first  # still valid for a minute
    now[0] = T0 + timedelta(hours=1)
    with pytest.raises(TokenError):
        tokens.current()


def test_threads_share_one_fetch() -> None:
    tokens, fetch, _ = cache(timedelta(hours=1))
    threads = [threading.Thread(target=tokens.current) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fetch.calls == 1


def test_real_client_against_emulator() -> None:
    with Emulator(profile="default", token_lifetime=600.0) as emu:
        fetcher = wiring.token_fetcher(emulator_settings(emu.info))
        token = fetcher(domain.MessageType.UP, emu.info.up_queue)
        issued = emu.credentials.get(token.credentials.access_key_id)
        assert issued is not None and issued.queue == emu.info.up_queue
        assert token.expires_at.timestamp() == issued.expires_at
        assert token.credentials.security_token == issued.security_token
        [call] = emu.calls("QueryTokenForMnsQueue")
        assert call.params["MessageType"] == "SmsUp"


def test_provider_errors_raise_token_error() -> None:
    with Emulator(profile="default") as emu:
        emu.set_faults("dybase", FaultSpec(error_rate=1.0))
        fetcher = wiring.token_fetcher(emulator_settings(emu.info))
        with pytest.raises(TokenError, match="QueryTokenForMnsQueue"):
            fetcher(REPORT, emu.info.report_queue)


def test_wrong_key_raises_token_error() -> None:
    with Emulator(profile="default") as emu:
        settings = emulator_settings(emu.info, aliyun_access_key_secret="wrong-secret")
        with pytest.raises(TokenError):
            wiring.token_fetcher(settings)(REPORT, emu.info.report_queue)
