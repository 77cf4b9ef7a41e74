"""The three receipt bodies (receiptd.receipt_shapes): recognised, decoded, or refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiptd import domain, receipt_shapes
from receiptd.domain import BodyError, ReportShape, SendKey

INTL = {
    "To": "8521234****".replace("*", "5"),
    "Status": "1",
    "MessageId": "1234567890123",
    "SmsSize": "1",
    "TaskId": "67890",
    "SendDate": "Thu, 25 Nov 2021 10:27:00 +0800",
    "ReceiveDate": "Thu, 25 Nov 2021 10:27:33 +0800",
    "ErrorCode": "success",
    "ErrorDescription": "success",
}
GLOBE = {
    "to": "85212345678",
    "status": "2",
    "message_id": "12441353",
    "send_date": "2017-06-01 10:00:00",
    "receive_date": "2017-06-01 10:00:05",
    "error_code": "SP_UNKNOW_ERROR",
    "error_description": "运营商未知错误",
}
CN = {
    "phone_number": "13812345678",
    "success": True,
    "biz_id": "9006197469364984^0",
    "send_time": "2017-06-01 10:00:00",
}


def test_the_international_site_body_is_read_with_its_offset() -> None:
    r = receipt_shapes.receipt_from_fields(INTL)
    assert (r.shape, r.matched_by) == (ReportShape.INTL_SMS_REPORT, SendKey.MESSAGE_ID)
    assert (r.biz_id, r.message_id, r.task_id, r.sms_size) == (
        "1234567890123",
        "1234567890123",
        "67890",
        1,
    )
    assert r.send_time == datetime(2021, 11, 25, 2, 27, tzinfo=UTC)
    assert r.report_time == datetime(2021, 11, 25, 2, 27, 33, tzinfo=UTC)
    assert r.status is domain.SendStatus.DELIVERED and r.err_code == "success"


def test_another_offset_is_honoured_not_replaced_by_china_time() -> None:
    r = receipt_shapes.receipt_from_fields({**INTL, "SendDate": "Thu, 25 Nov 2021 10:27:00 -0500"})
    assert r.send_time == datetime(2021, 11, 25, 15, 27, tzinfo=UTC)


def test_globe_times_have_no_zone_and_are_read_in_the_providers() -> None:
    r = receipt_shapes.receipt_from_fields(GLOBE)
    assert (r.shape, r.matched_by) == (ReportShape.GLOBE_SMS_REPORT, SendKey.MESSAGE_ID)
    assert r.send_time == datetime(2017, 6, 1, 2, 0, tzinfo=UTC)
    assert r.status is domain.SendStatus.FAILED
    assert (r.err_code, r.err_msg) == ("SP_UNKNOW_ERROR", "运营商未知错误")
    assert r.phone_number == "85212345678" and r.biz_id == "12441353"


def test_the_china_sms_report_is_unchanged() -> None:
    r = receipt_shapes.receipt_from_fields(CN)
    assert r == domain.report_from_fields(CN)
    assert (r.shape, r.matched_by) == (ReportShape.SMS_REPORT, SendKey.BIZ_ID)


@pytest.mark.parametrize(
    ("status", "delivered", "code"),
    [("1", True, "success"), (1, True, "success"), ("2", False, "X"), (6, False, "X")],
)
def test_status_as_a_string_or_a_number(status: Any, delivered: bool, code: str) -> None:
    given_code = "success" if delivered else "X"
    r = receipt_shapes.receipt_from_fields({**INTL, "Status": status, "ErrorCode": given_code})
    assert (r.success, r.err_code) == (delivered, code)


def test_expired_settles_as_failed_keeping_its_code_or_naming_it() -> None:
    kept = receipt_shapes.receipt_from_fields({**INTL, "Status": "6", "ErrorCode": "EXPIRED_X"})
    named = receipt_shapes.receipt_from_fields({**INTL, "Status": "6", "ErrorCode": ""})
    assert (kept.status, kept.err_code) == (domain.SendStatus.FAILED, "EXPIRED_X")
    assert (named.status, named.err_code) == (domain.SendStatus.FAILED, "EXPIRED")


def test_numbers_are_stored_in_the_providers_international_form() -> None:
    for given_number in ("+85212345678", "0085212345678", "852 1234-5678"):
        r = receipt_shapes.receipt_from_fields({**INTL, "To": given_number})
        assert r.phone_number == "85212345678"


def test_optional_fields_may_be_absent() -> None:
    minimal = {k: INTL[k] for k in ("To", "Status", "MessageId", "SendDate")}
    r = receipt_shapes.receipt_from_fields(minimal)
    assert (r.task_id, r.sms_size, r.report_time, r.err_code) == (None, None, None, None)


def test_an_older_pages_china_format_date_is_read_in_china_time() -> None:
    r = receipt_shapes.receipt_from_fields({**INTL, "SendDate": "2021-11-25 10:27:00"})
    assert r.send_time == datetime(2021, 11, 25, 2, 27, tzinfo=UTC)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({**INTL, "Status": "3"}, "'Status' must be 1, 2 or 6"),
        ({**INTL, "Status": None}, "'Status' is missing"),
        ({**INTL, "MessageId": ""}, "'MessageId' is missing"),
        ({**INTL, "SendDate": "someday"}, "neither an RFC 2822 date"),
        ({**INTL, "SendDate": None}, "'SendDate' is missing"),
        ({**INTL, "SendDate": "Fri, 31 Dec 9999 23:59:59 -1200"}, "out of range"),
        ({**INTL, "To": ["852"]}, "'To' must be a string"),
        ({**INTL, "TaskId": "t" * 256}, "longer than 255"),
        ({**GLOBE, "status": "0"}, "'status' must be 1, 2 or 6"),
        ({**GLOBE, "to": None}, "'to' is missing"),
        ({**GLOBE, "send_date": "Thu, 25 Nov 2021"}, "'send_date'"),
        ({"unknown": 1}, "'send_time' is missing"),
    ],
)
def test_malformed_bodies_name_what_is_wrong(body: dict[str, Any], reason: str) -> None:
    with pytest.raises(BodyError, match=reason.replace("(", r"\(")):
        receipt_shapes.receipt_from_fields(body)


def test_a_queue_body_is_base64_json_in_any_shape() -> None:
    for body in (INTL, GLOBE, CN):
        raw = domain.encode_body(body)
        assert receipt_shapes.parse_receipt(raw) == receipt_shapes.receipt_from_fields(body)


_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=40), st.lists(st.integers())
)


@given(
    st.dictionaries(st.sampled_from(sorted({*INTL, *GLOBE, *CN})), _VALUES, max_size=12).map(
        lambda d: {**INTL, **d} if d.get("Status") == "keep" else d
    )
)
def test_any_object_decodes_or_raises_body_error_only(body: dict[str, Any]) -> None:
    try:
        r = receipt_shapes.receipt_from_fields(body)
    except BodyError:
        return
    json.dumps([r.biz_id, r.phone_number])  # a decoded receipt holds text
    assert r.send_time.tzinfo is UTC
