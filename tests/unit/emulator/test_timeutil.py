"""The Alibaba Cloud time formats (receiptd_emulator.timeutil): China Standard Time, no zone."""

from __future__ import annotations

import datetime as dt

import pytest

from receiptd_emulator import timeutil

LATE_UTC = dt.datetime(2024, 1, 1, 23, 59, 59, tzinfo=dt.UTC)  # already 2 January in China


def test_cst_text_in_every_format() -> None:
    assert timeutil.cst_text(LATE_UTC) == "2024-01-02 07:59:59"
    assert timeutil.cst_text(LATE_UTC, timeutil.COMPACT_FORMAT) == "20240102075959"
    assert timeutil.cst_text(LATE_UTC, timeutil.DATE_FORMAT) == "20240102"


def test_the_fast_path_agrees_with_strftime() -> None:
    for hours in range(0, 48, 5):
        moment = LATE_UTC + dt.timedelta(hours=hours, minutes=7)
        assert timeutil.cst_text(moment) == moment.astimezone(timeutil.CST).strftime(
            timeutil.DATETIME_FORMAT
        )


def test_cst_date_is_the_china_day() -> None:
    assert timeutil.cst_date(LATE_UTC) == "20240102"
    assert timeutil.cst_date(LATE_UTC - dt.timedelta(hours=8)) == "20240101"


def test_require_aware() -> None:
    assert timeutil.require_aware(LATE_UTC) is LATE_UTC
    with pytest.raises(ValueError, match="timezone-aware"):
        timeutil.require_aware(dt.datetime(2024, 1, 1))  # noqa: DTZ001


def test_epochs_and_http_dates() -> None:
    assert timeutil.from_epoch(LATE_UTC.timestamp()) == LATE_UTC
    assert timeutil.http_date(LATE_UTC.timestamp()) == "Mon, 01 Jan 2024 23:59:59 GMT"
    assert timeutil.now_utc().tzinfo is dt.UTC
