"""SendSms input checks of the emulated Dysmsapi (receiptd_emulator.dysms)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiptd_emulator.dysms import normalize_phone, template_params


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("13800138000", "13800138000"),
        ("+8613800138000", "13800138000"),
        ("008613800138000", "13800138000"),
        (" 19912345678 ", "19912345678"),
        ("12800138000", None),
        ("1380013800", None),
        ("138001380000", None),
        ("", None),
    ],
)
def test_normalize_phone(text: str, expected: str | None) -> None:
    assert normalize_phone(text) == expected


@given(st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=4))
def testtemplate_params_accept_string_objects(values: dict[str, str]) -> None:
    assert template_params(json.dumps(values)) == values


@pytest.mark.parametrize("text", ["[]", '{"a": 1}', "nope", '"s"'])
def testtemplate_params_reject_others(text: str) -> None:
    assert template_params(text) is None
