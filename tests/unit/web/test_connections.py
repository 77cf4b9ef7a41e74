"""The pure parts of the connection bounds: source buckets, what a connection waits for and
when it has waited too long, the open-files limit, the push listener's limits from settings."""

from __future__ import annotations

import resource
from dataclasses import dataclass

import pytest
import structlog

from receiptd import config
from receiptd.web import connections
from receiptd.wiring import daemon

LIMITS = connections.Limits(header_timeout=10, body_timeout=30, idle_timeout=60)


@dataclass
class Parser:
    headers_finished: bool


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::9", "2001:db8:1:2::/64"),  # the same /64: one source
        ("2001:db8:1:3::9", "2001:db8:1:3::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),  # IPv4 on a dual-stack socket
        ("not-an-address", "not-an-address"),
    ],
)
def test_source_key_groups_an_ipv6_64(host: str, key: str) -> None:
    assert connections.source_key(host) == key


def stamps(reused: bool = False, last_byte: float = 165.0) -> connections.Stamps:
    """Opened at 100, last answered at 150, the current request's first byte at 160 and the
    end of its headers at 170."""
    return connections.Stamps(100.0, 150.0, last_byte, 160.0, 170.0, reused)


@pytest.mark.parametrize(
    ("serving", "parser", "reused", "wait"),
    [
        (True, Parser(False), False, None),  # a worker serves it: no deadline
        (False, None, False, ("header_timeout", 100.0)),  # new, silent: headers from connect
        (False, Parser(False), False, ("header_timeout", 100.0)),  # new, headers trickling
        (False, None, True, ("idle_timeout", 150.0)),  # kept alive after an answer
        (False, Parser(False), True, ("header_timeout", 160.0)),  # next request's headers
        (False, Parser(True), False, ("body_timeout", 170.0)),  # headers read, body pending
        (False, Parser(True), True, ("body_timeout", 170.0)),
    ],
)
def test_what_a_connection_waits_for(
    serving: bool, parser: Parser | None, reused: bool, wait: tuple[str, float] | None
) -> None:
    assert connections.waiting(serving, parser, stamps(reused)) == wait


@pytest.mark.parametrize(
    ("wait", "last_byte", "now", "reason"),
    [
        (None, 100.0, 10_000.0, None),
        (("header_timeout", 100.0), 109.0, 110.0, None),  # exactly at the deadline: allowed
        (("header_timeout", 100.0), 110.4, 110.5, "header_timeout"),  # however busy
        (("body_timeout", 100.0), 128.0, 129.0, None),
        (("body_timeout", 100.0), 130.0, 130.5, "body_timeout"),
        (("body_timeout", 100.0), 100.0, 129.0, None),  # silent 29 s: not yet idle (60 s)
        (("idle_timeout", 150.0), 100.0, 209.0, None),  # idle from the answer, at 150
        (("idle_timeout", 150.0), 100.0, 210.5, "idle_timeout"),
    ],
)
def test_overdue_after_its_own_timeout(
    wait: tuple[str, float] | None, last_byte: float, now: float, reason: str | None
) -> None:
    assert connections.overdue(wait, stamps(last_byte=last_byte), now, LIMITS) == reason


def test_a_stalled_body_is_idle_before_its_deadline() -> None:
    short_idle = connections.Limits(body_timeout=30, idle_timeout=2)
    wait = ("body_timeout", 170.0)
    assert connections.overdue(wait, stamps(last_byte=171.0), 172.5, short_idle) is None
    assert connections.overdue(wait, stamps(last_byte=171.0), 173.5, short_idle) == "idle_timeout"


def test_open_files_soft_limit_is_raised_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = min(soft, 256)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        raised = connections.raise_open_files_limit()
        assert raised == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert raised == hard or hard == resource.RLIM_INFINITY
        assert raised > lowered or lowered == hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _settings(**values: object) -> config.Settings:
    return config.Settings(push_addr="127.0.0.1:0", push_token="t" * 16, **values)  # type: ignore[arg-type]


def test_push_limits_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connections, "raise_open_files_limit", lambda: 1 << 20)
    limits = daemon.push_limits(
        _settings(
            push_max_connections=2000,
            push_max_connections_per_source=8,
            push_header_timeout=5,
            push_body_timeout=7,
            push_channel_timeout=9,
            push_trusted_proxies="10.0.0.1",
        )
    )
    assert limits == connections.Limits(
        max_connections=2000,
        per_source=8,
        header_timeout=5,
        body_timeout=7,
        idle_timeout=9,
        exempt=config.parse_networks("10.0.0.1"),
    )


def test_push_connections_fit_the_open_files_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connections, "raise_open_files_limit", lambda: 1024)
    with structlog.testing.capture_logs() as logs:
        limits = daemon.push_limits(_settings(push_max_connections=4096))
    # 1024 descriptors less the ops server's 100 and the 256 kept for everything else
    assert limits.max_connections == 1024 - 100 - daemon.FILES_RESERVED
    assert [e for e in logs if e["event"] == "push_connections_lowered"] == [
        {
            "event": "push_connections_lowered",
            "log_level": "warning",
            "max_connections": 668,
            "configured": 4096,
            "open_files_limit": 1024,
        }
    ]


def test_per_source_bound_within_the_connection_limit() -> None:
    with pytest.raises(ValueError, match="push_max_connections_per_source must not exceed"):
        _settings(push_max_connections=100, push_max_connections_per_source=101)
