"""Status transitions, provider dates and the query window."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiptd import domain
from receiptd.domain import SendStatus


@given(st.sampled_from(SendStatus), st.sampled_from(SendStatus))
def test_final_status_never_regresses(current: SendStatus, observed: SendStatus) -> None:
    result = domain.next_status(current, observed)
    if current.is_conclusive:
        assert result is current
    elif current is SendStatus.EXPIRED:  # receiptd's verdict gives way to the provider's
        assert result is (observed if observed.is_conclusive else current)
    else:
        assert result is observed


@pytest.mark.parametrize(
    ("utc", "china_date"),
    [
        (datetime(2026, 11, 24, 15, 59, 59, tzinfo=UTC), date(2026, 11, 24)),
        (datetime(2026, 11, 24, 16, 0, 0, tzinfo=UTC), date(2026, 11, 25)),
        (datetime(2026, 11, 24, 16, 30, 0, tzinfo=UTC), date(2026, 11, 25)),
        (datetime(2026, 11, 24, 23, 59, 0, tzinfo=UTC), date(2026, 11, 25)),
    ],
)
def test_provider_send_date(utc: datetime, china_date: date) -> None:
    assert domain.provider_send_date(utc) == china_date


def test_naive_send_time_rejected() -> None:
    with pytest.raises(ValueError, match="aware"):
        domain.provider_send_date(datetime(2026, 1, 1))  # noqa: DTZ001


@pytest.mark.parametrize(("days_ago", "inside"), [(0, True), (29, True), (30, True), (31, False)])
def test_query_window_edges(days_ago: int, inside: bool) -> None:
    now = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)  # 10:00 in China
    send_date = date.fromordinal(date(2026, 11, 25).toordinal() - days_ago)
    assert domain.in_query_window(send_date, now) is inside


def test_backoff_doubles_and_caps() -> None:
    delays = [domain.backoff_delay(n, base=60, cap=600) for n in range(6)]
    assert delays == [60, 120, 240, 480, 600, 600]


@pytest.mark.parametrize(
    ("number", "masked"),
    [("13812345678", "138****5678"), ("8613812345678", "861******5678"), ("12345", "*****")],
)
def test_mask_phone(number: str, masked: str) -> None:
    assert domain.mask_phone(number) == masked


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        ("+8613812345678", "13812345678"),
        ("008613812345678", "13812345678"),
        ("8613812345678", "13812345678"),
        (" 13812345678 ", " 13812345678 "),  # kept verbatim
        ("+85291234567", "+85291234567"),  # Hong Kong: not a mainland number, kept
        ("861381234567", "861381234567"),  # 12 digits: not a prefixed mainland number
    ],
)
def test_normalize_phone(given: str, normal: str) -> None:
    assert domain.normalize_phone(given) == normal
