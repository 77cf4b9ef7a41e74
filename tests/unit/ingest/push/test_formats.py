"""Pushed receipt bodies: every field variant of both providers.

The variants are those of docs/providers/aliyun-push.md and docs/providers/huawei-koomessage.md.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from receiptd import domain
from receiptd.ingest.push import formats as push_formats

REPORT_OLD = {  # doc 101867
    "phone_number": "13900000001",
    "send_time": "2026-11-25 10:00:00",
    "report_time": "2026-11-25 10:00:04",
    "success": True,
    "err_code": "DELIVERED",
    "err_msg": "用户接收成功",
    "sms_size": "1",
    "biz_id": "900000000000001^0",
    "out_id": "order-1",
}
REPORT_NEW = {  # doc 414224 adds these
    **REPORT_OLD,
    "message_id": "m-1",
    "request_id": "r-1",
    "sign_name": "阿里云短信测试",
    "template_code": "SMS_200000001",
}
UP = {
    "phone_number": "13900000001",
    "content": "退订 🙂",
    "send_time": "2026-11-25 10:00:00",
    "dest_code": "1234",
    "sequence_id": "123456789",
}


def body(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def test_report_old_and_new_field_sets() -> None:
    parsed = push_formats.parse_aliyun(body([REPORT_OLD, REPORT_NEW]), domain.MessageType.REPORT)
    old, new = parsed.reports
    assert old.biz_id == new.biz_id == "900000000000001^0"
    assert old.send_time == datetime(2026, 11, 25, 2, 0, tzinfo=UTC)  # China time → UTC
    assert old.sms_size == 1 and old.success and old.message_id is None
    assert (new.message_id, new.sign_name, new.template_code) == (
        "m-1",
        "阿里云短信测试",
        "SMS_200000001",
    )
    assert new.provider is domain.Provider.ALIYUN
    assert not parsed.rejected


@pytest.mark.parametrize("send_time", ["2026-11-25 10:00:00", "20261125100000"])
@pytest.mark.parametrize("sequence_id", ["123456789", 123456789])
def test_up_time_formats_and_sequence_id_types(send_time: str, sequence_id: object) -> None:
    element = {**UP, "send_time": send_time, "sequence_id": sequence_id, "sign_name": "签名"}
    (reply,) = push_formats.parse_aliyun(body([element]), domain.MessageType.UP).inbound
    assert reply.send_time == datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
    assert reply.sequence_id == "123456789"
    assert reply.sign_name == "签名"


def test_a_bare_object_is_one_element() -> None:
    parsed = push_formats.parse_aliyun(body(REPORT_OLD), domain.MessageType.REPORT)
    assert len(parsed.reports) == 1


@pytest.mark.parametrize(
    ("element", "reason"),
    [
        ({**REPORT_OLD, "success": "true"}, "boolean"),
        ({**REPORT_OLD, "biz_id": None}, "biz_id"),
        ({**REPORT_OLD, "send_time": "yesterday"}, "send_time"),
        ({**REPORT_OLD, "sms_size": [1]}, "sms_size"),
        ({**REPORT_OLD, "phone_number": {"a": 1}}, "phone_number"),
        ({**REPORT_OLD, "biz_id": "x" * 65}, "longer"),
        ("DELIVERED", "not an object"),
        ([[[1]]], "not an object"),
    ],
)
def test_a_malformed_element_is_rejected_alone(element: Any, reason: str) -> None:
    parsed = push_formats.parse_aliyun(body([REPORT_OLD, element]), domain.MessageType.REPORT)
    assert len(parsed.reports) == 1
    (rejected,) = parsed.rejected
    assert reason in rejected.error
    assert json.loads(rejected.raw) == element  # kept as its JSON text


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe[]", "not UTF-8"),
        (b"<html>", "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
        (b'"text"', "not an array"),
        (b"42", "not an array"),
        (b"", "not JSON"),
    ],
)
def test_an_unreadable_body_raises(raw: bytes, reason: str) -> None:
    with pytest.raises(domain.BodyError, match=reason):
        push_formats.parse_aliyun(raw, domain.MessageType.REPORT)


def test_too_many_elements() -> None:
    with pytest.raises(push_formats.TooManyElements):
        push_formats.parse_aliyun(
            body([REPORT_OLD] * 11), domain.MessageType.REPORT, max_elements=10
        )


# --- KooMessage ----------------------------------------------------------------------------

SMS = {
    "task_id": "7cc1b7a0-0000-4000-8000-00000000cccc",
    "cust_flag": "13100000000",
    "msg_id": "7e52-cccc_595223901",
    "tpl_id": "600000001",
    "sms_sign": "receiptd",
    "aim_code": "abc",
    "aim_url": "https://example.test/abc",
    "send_time": "2022-06-01T09:00:40",
    "receive_time": "2022-06-01T09:00:49",
    "send_status": "Deliverd",
    "send_status_desc": "delivered",
}


def envelope(payload: Any, callback_type: str = "sms", as_string: bool = True) -> bytes:
    inner = json.dumps(payload) if as_string else payload
    return body(
        {
            "request_id": "req",
            "domain_id": "dom",
            "callback_type": callback_type,
            "body": inner,
            "retry": False,
        }
    )


@pytest.mark.parametrize("as_string", [True, False])
@pytest.mark.parametrize("batch", [True, False])
def test_koomessage_body_string_or_value_one_or_array(as_string: bool, batch: bool) -> None:
    payload = [SMS, {**SMS, "cust_flag": "13100000001"}] if batch else SMS
    parsed = push_formats.parse_koomessage(envelope(payload, as_string=as_string))
    assert len(parsed.reports) == (2 if batch else 1)
    report = parsed.reports[0]
    assert (report.biz_id, report.phone_number, report.message_id) == (
        SMS["task_id"],
        "13100000000",
        SMS["msg_id"],
    )
    assert report.provider is domain.Provider.HUAWEI and report.success
    assert report.report_time == datetime(2022, 6, 1, 9, 0, 49, tzinfo=UTC)
    assert report.template_code == "600000001" and report.sign_name == "receiptd"


@pytest.mark.parametrize(
    ("status", "success"),
    [
        ("Deliverd", True),
        ("success", True),
        ("DELIVERED", True),
        ("fail", False),
        ("Failed", False),
    ],
)
def test_koomessage_status_vocabularies(status: str, success: bool) -> None:
    (report,) = push_formats.parse_koomessage(envelope({**SMS, "send_status": status})).reports
    assert report.success is success
    assert report.err_code == (None if success else status)


def test_koomessage_sending_and_shortchain_settle_nothing() -> None:
    sending = push_formats.parse_koomessage(envelope({**SMS, "send_status": "sending"}))
    assert (sending.reports, sending.ignored) == ([], 1)
    click = push_formats.parse_koomessage(envelope([SMS, SMS], callback_type="shortchain"))
    assert (click.reports, click.ignored) == ([], 2)


def test_koomessage_zone_aware_times_and_unknown_status() -> None:
    (report,) = push_formats.parse_koomessage(
        envelope({**SMS, "send_time": "2022-06-01T17:00:40+08:00"})
    ).reports
    assert report.send_time == datetime(2022, 6, 1, 9, 0, 40, tzinfo=UTC)
    parsed = push_formats.parse_koomessage(envelope({**SMS, "send_status": "Weird"}))
    assert "unknown value" in parsed.rejected[0].error


@pytest.mark.parametrize(
    "raw",
    [
        b"[]",
        body({"callback_type": "email", "body": "[]"}),
        body({"callback_type": "sms", "body": "{not json"}),
        body({"callback_type": "sms", "body": 7}),
    ],
)
def test_koomessage_unreadable_envelopes(raw: bytes) -> None:
    with pytest.raises(domain.BodyError):
        push_formats.parse_koomessage(raw)
