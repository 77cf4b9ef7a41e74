"""Decoding table for both Alicom message types (field list in README's database contract)."""

from __future__ import annotations

import base64
import contextlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiptd import domain


def b64(obj: Any) -> str:
    return base64.b64encode(json.dumps(obj, ensure_ascii=False).encode()).decode()


FULL_REPORT = {
    "phone_number": "13000000000",
    "success": True,
    "biz_id": "1234^345",
    "out_id": "123456",
    "send_time": "2017-06-01 10:00:00",
    "report_time": "2017-06-01 10:00:05",
    "err_code": "DELIVERED",
    "err_msg": "用户接收成功",
    "sms_size": "2",
}
FULL_UP = {
    "phone_number": "13000000000",
    "content": "退订 🙂",
    "send_time": "20150101120000",
    "dest_code": "123456",
    "sequence_id": "987654",
}


def test_report_every_field() -> None:
    r = domain.parse_report(b64(FULL_REPORT))
    assert r == domain.SmsReport(
        biz_id="1234^345",
        phone_number="13000000000",
        success=True,
        send_time=datetime(2017, 6, 1, 2, 0, 0, tzinfo=UTC),
        out_id="123456",
        report_time=datetime(2017, 6, 1, 2, 0, 5, tzinfo=UTC),
        err_code="DELIVERED",
        err_msg="用户接收成功",
        sms_size=2,
    )
    assert r.status is domain.SendStatus.DELIVERED


def test_up_every_field_unicode() -> None:
    u = domain.parse_up(b64(FULL_UP))
    assert u == domain.SmsUp(
        phone_number="13000000000",
        content="退订 🙂",
        send_time=datetime(2015, 1, 1, 4, 0, 0, tzinfo=UTC),
        dest_code="123456",
        sequence_id="987654",
    )


def test_report_optional_fields_missing() -> None:
    minimal = {k: FULL_REPORT[k] for k in ("success", "biz_id", "send_time")}
    minimal["success"] = False
    r = domain.parse_report(b64(minimal))
    assert (r.phone_number, r.out_id, r.report_time, r.err_code, r.err_msg, r.sms_size) == (
        "",
        None,
        None,
        None,
        None,
        None,
    )
    assert r.status is domain.SendStatus.FAILED


def test_up_without_phone_number() -> None:
    body = dict(FULL_UP)
    del body["phone_number"]
    assert domain.parse_up(b64(body)).phone_number == ""


def test_both_time_formats_accepted_for_either_type() -> None:
    report = dict(FULL_REPORT, send_time="20170601100000")
    up = dict(FULL_UP, send_time="2015-01-01 12:00:00")
    assert domain.parse_report(b64(report)).send_time == datetime(2017, 6, 1, 2, tzinfo=UTC)
    assert domain.parse_up(b64(up)).send_time == datetime(2015, 1, 1, 4, tzinfo=UTC)


@pytest.mark.parametrize("missing", ["success", "biz_id", "send_time"])
def test_report_required_field_missing(missing: str) -> None:
    body = dict(FULL_REPORT)
    del body[missing]
    with pytest.raises(domain.BodyError, match=missing):
        domain.parse_report(b64(body))


@pytest.mark.parametrize("missing", ["content", "send_time", "dest_code", "sequence_id"])
def test_up_required_field_missing(missing: str) -> None:
    body = dict(FULL_UP)
    del body[missing]
    with pytest.raises(domain.BodyError, match=missing):
        domain.parse_up(b64(body))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("not base64!!", "base64"),
        ("eyJ", "base64"),  # truncated padding
        (base64.b64encode(b"{not json").decode(), "not JSON"),
        (base64.b64encode(b"\xff\xfe\x00bad").decode(), "UTF-8"),
        (b64([1, 2, 3]), "list"),
        (b64("text"), "str"),
        ("", "JSON"),
    ],
)
def test_malformed_bodies(raw: str, reason: str) -> None:
    with pytest.raises(domain.BodyError, match=reason):
        domain.parse_report(raw)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("success", "true", "boolean"),
        ("success", 1, "boolean"),
        ("biz_id", {"a": 1}, "string"),
        ("biz_id", True, "string"),
        ("send_time", "2017/06/01", "yyyy-MM-dd"),
        ("report_time", "yesterday", "yyyy-MM-dd"),
        ("sms_size", "two", "whole number"),
        ("sms_size", "-1", "whole number"),
        ("err_msg", "x" * 513, "longer than"),
        ("biz_id", "b" * 65, "longer than"),
    ],
)
def test_report_wrong_types(field: str, value: Any, reason: str) -> None:
    with pytest.raises(domain.BodyError, match=reason):
        domain.parse_report(b64(dict(FULL_REPORT, **{field: value})))


def test_numeric_ids_are_accepted_as_text() -> None:
    r = domain.parse_report(b64(dict(FULL_REPORT, out_id=42, sms_size=3)))
    assert (r.out_id, r.sms_size) == ("42", 3)


def test_bytes_body_is_accepted() -> None:
    assert domain.parse_up(b64(FULL_UP).encode()).content == "退订 🙂"


def test_encode_body_round_trip() -> None:
    assert domain.parse_report(domain.encode_body(FULL_REPORT)) == domain.parse_report(
        b64(FULL_REPORT)
    )


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=256))
def test_any_bytes_parse_or_raise_body_error(raw: bytes) -> None:
    for parse in (domain.parse_report, domain.parse_up):
        with contextlib.suppress(domain.BodyError):
            parse(raw)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(sorted(FULL_REPORT) + sorted(FULL_UP)), json_values))
def test_any_json_object_parses_or_raises_body_error(obj: dict[str, Any]) -> None:
    """Whatever parses is read faithfully: every text field comes back as the body had it."""
    for parse in (domain.parse_report, domain.parse_up):
        try:
            record = parse(b64(obj))
        except domain.BodyError:
            continue
        for name in ("biz_id", "out_id", "err_code", "err_msg", "content", "dest_code"):
            if hasattr(record, name) and obj.get(name) not in (None, ""):
                assert getattr(record, name) == str(obj[name])


# --- round trips: a generated receipt, encoded as Alicom does, decodes to the same fields ------

# Naive bounds, as hypothesis wants them; every generated time gets China's zone attached.
NAIVE_MIN, NAIVE_MAX = datetime(2000, 1, 1), datetime(2099, 12, 31)  # noqa: DTZ001
china_seconds = st.datetimes(NAIVE_MIN, NAIVE_MAX).map(
    lambda d: d.replace(microsecond=0, tzinfo=domain.CHINA_TZ)
)
field_text = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=64
)
phones = st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True)
time_formats = st.sampled_from(["%Y-%m-%d %H:%M:%S", "%Y%m%d%H%M%S"])


def alicom_time(moment: datetime, fmt: str) -> str:
    return moment.astimezone(domain.CHINA_TZ).strftime(fmt)


@given(
    biz_id=field_text,
    phone=phones,
    success=st.booleans(),
    send_time=china_seconds,
    report_time=st.none() | china_seconds,
    out_id=st.none() | field_text,
    err_code=st.none() | field_text,
    err_msg=st.none() | field_text,
    sms_size=st.none() | st.integers(0, 999_999),
    fmt=time_formats,
)
def test_report_round_trip(
    biz_id, phone, success, send_time, report_time, out_id, err_code, err_msg, sms_size, fmt
) -> None:
    body = {
        "biz_id": biz_id,
        "phone_number": phone,
        "success": success,
        "send_time": alicom_time(send_time, fmt),
        "report_time": None if report_time is None else alicom_time(report_time, fmt),
        "out_id": out_id,
        "err_code": err_code,
        "err_msg": err_msg,
        "sms_size": None if sms_size is None else str(sms_size),
    }
    assert domain.parse_report(domain.encode_body(body)) == domain.SmsReport(
        biz_id=biz_id,
        phone_number=phone,
        success=success,
        send_time=send_time.astimezone(UTC),
        out_id=out_id,
        report_time=None if report_time is None else report_time.astimezone(UTC),
        err_code=err_code,
        err_msg=err_msg,
        sms_size=sms_size,
    )


@given(
    phone=phones,
    content=st.text(min_size=1, max_size=300),
    send_time=china_seconds,
    dest_code=field_text,
    sequence_id=st.integers(1, 2**62).map(str) | field_text,
    fmt=time_formats,
)
def test_up_round_trip(phone, content, send_time, dest_code, sequence_id, fmt) -> None:
    body = {
        "phone_number": f"86{phone}",  # SmsUp may carry the country code; the 11 digits stay
        "content": content,
        "send_time": alicom_time(send_time, fmt),
        "dest_code": dest_code,
        "sequence_id": sequence_id,
    }
    assert domain.parse_up(domain.encode_body(body)) == domain.SmsUp(
        phone_number=phone,
        content=content,
        send_time=send_time.astimezone(UTC),
        dest_code=dest_code,
        sequence_id=sequence_id,
    )


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(9998, 12, 31)))  # noqa: DTZ001
def test_fast_time_path_agrees_with_strptime(moment: datetime) -> None:
    text = moment.replace(microsecond=0).strftime("%Y-%m-%d %H:%M:%S")
    slow = datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=domain.CHINA_TZ)
    assert domain.parse_provider_time(text) == slow.astimezone(UTC)


@pytest.mark.parametrize(
    "text", ["2026-11-25 16:00+08", "2026-11-25T16:00:00", "2026-11-25 16:00:0Z"]
)
def test_fast_time_path_refuses_what_strptime_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        domain.parse_provider_time(text)
