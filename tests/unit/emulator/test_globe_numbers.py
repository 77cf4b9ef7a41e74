"""Which numbers SendMessageToGlobe and SendMessageWithTemplate take, where they are, and how
many parts a text is billed as."""

from __future__ import annotations

import pytest

from receiptd_emulator import globe_numbers


@pytest.mark.parametrize(
    ("to", "international", "mainland"),
    [
        ("85212345678", True, False),
        ("6591234567", True, False),
        ("12025550123", True, False),  # NANP, area code 202
        ("8613800138000", True, True),
        ("13800138000", True, True),  # the bare 11 digits are read as mainland
        ("+85212345678", False, False),
        ("0085212345678", False, False),
        ("852 1234 5678", False, False),
        ("123456", False, False),
        ("1" * 16, False, False),
    ],
)
def test_numbers(to: str, international: bool, mainland: bool) -> None:
    assert globe_numbers.is_international(to) is international
    assert globe_numbers.is_mainland(to) is mainland


def test_send_with_template_takes_only_86_numbers() -> None:
    assert globe_numbers.mainland_86("8613800138000")
    assert not globe_numbers.mainland_86("13800138000")
    assert not globe_numbers.mainland_86("8612800138000")


@pytest.mark.parametrize(
    ("to", "country", "region"),
    [
        ("85212345678", "China", "HongKong"),
        ("8613800138000", "China", ""),
        ("6591234567", "Singapore", ""),
        ("12025550123", "United States", ""),
        ("99912345678", "Unknown", ""),
    ],
)
def test_number_detail(to: str, country: str, region: str) -> None:
    detail = globe_numbers.number_detail(to)
    assert (detail.country, detail.region) == (country, region)
    assert set(detail.as_fields()) == {"Country", "Region", "Carrier"}


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("验" * 70, 1),
        ("验" * 71, 2),
    ],
)
def test_segments(text: str, parts: int) -> None:
    assert globe_numbers.segments(text) == parts
