"""Receipt bodies and deliveries (receiptd_emulator.receipts), over sms_records.Send."""

from __future__ import annotations

import base64
import binascii
import json
import random

import pytest

from receiptd_emulator import receipts
from receiptd_emulator.profiles import Profile
from tests.unit.emulator.test_sms_records import make_send


def test_report_fields_are_exactly_the_documented_ones() -> None:
    fields = receipts.report_fields(make_send())
    assert fields == {
        "phone_number": "13800138000",
        "success": True,
        "biz_id": "123^0",
        "out_id": "o",
        "send_time": "2024-01-02 07:59:59",
        "report_time": "2024-01-02 08:00:03",
        "err_code": "DELIVERED",
        "err_msg": "用户接收成功",
        "sms_size": "1",
    }
    decoded = json.loads(base64.b64decode(receipts.encode(fields)).decode("utf-8"))
    assert decoded == fields


@pytest.mark.parametrize("kind", receipts.MALFORMED_KINDS)
def test_malformed_bodies_do_not_decode_to_a_report(kind: str) -> None:
    body = receipts.malformed_body(random.Random(0), kind)
    try:
        value = json.loads(base64.b64decode(body, validate=True))
    except (binascii.Error, ValueError):
        return
    assert not (isinstance(value, dict) and "biz_id" in value)


def test_duplicate_and_lost_deliveries() -> None:
    profile, rng = Profile(), random.Random(0)
    assert len(receipts.deliveries(make_send(fate="duplicate"), profile, rng)) == 2
    assert receipts.deliveries(make_send(fate="lost"), profile, rng) == []
    late = receipts.deliveries(make_send(fate="late"), profile, rng)[0][0]
    assert late >= make_send().receive_ts + profile.late_delay[0]
