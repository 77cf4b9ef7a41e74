"""Receipt error codes reduced to bounded families (receiptd.error_families)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiptd import error_families


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        # Carrier codes: the part before ':' (and the colon-less spelling of the same code).
        ("MK:0001", "MK"),
        ("MN:0001", "MN"),
        ("MI:0024", "MI"),
        ("DB:0141", "DB"),
        ("IA:0051", "IA"),
        ("SW:0011", "SW"),
        ("IC:0015", "IC"),
        ("mk:0001", "MK"),
        (" MK:0001 ", "MK"),
        ("MK00001", "MK"),
        ("DB00141", "DB"),
        ("MI:NNNN", "MI"),
        # Plain codes, each its own family.
        ("UNDELIV", "UNDELIV"),
        ("EXPIRED", "EXPIRED"),
        ("UNKNOWN", "UNKNOWN"),
        ("REJECTD", "REJECTD"),
        ("USER_REJECT", "USER_REJECT"),
        ("CONTENT_ERROR", "CONTENT_ERROR"),
        ("NO_ROUTE", "NO_ROUTE"),
        ("SP_UNKNOW_ERROR", "SP_UNKNOW_ERROR"),
        ("undeliv", "UNDELIV"),
        # Huawei: E:<plain code> is the plain code; platform codes are E.
        ("E:UNDELIV", "UNDELIV"),
        ("E:EXPIRED", "EXPIRED"),
        ("E200024", "E"),
        # Nothing: none. Anything else: other.
        (None, "none"),
        ("", "none"),
        ("   ", "none"),
        ("ZZ:0001", "other"),  # a two-letter class no carrier uses
        ("E:ODDL", "other"),
        ("MK:", "other"),
        ("MK:0001:extra", "other"),
        ("MK001", "other"),  # too few digits to be a colon-less carrier code
        ("isv.BUSINESS_LIMIT_CONTROL", "other"),
        ("success", "other"),
        ("404", "other"),
    ],
)
def test_the_families_table(code: str | None, expected: str) -> None:
    assert error_families.family(code) == expected
    assert expected in error_families.FAMILIES


def test_every_listed_family_is_reachable() -> None:
    """No dead entries: each family of FAMILIES is what some code maps to."""
    samples = [
        *(f"{prefix}:0001" for prefix in error_families.CARRIER_PREFIXES),
        *error_families.PLAIN,
        "E200024",
        None,
        "nonsense",
    ]
    assert {error_families.family(code) for code in samples} == error_families.FAMILIES


@given(st.one_of(st.none(), st.text(), st.from_regex(r"\A[A-Za-z]{1,3}:?[0-9A-Za-z_]{0,8}\Z")))
def test_no_input_yields_a_value_outside_the_bounded_set(code: str | None) -> None:
    assert error_families.family(code) in error_families.FAMILIES
