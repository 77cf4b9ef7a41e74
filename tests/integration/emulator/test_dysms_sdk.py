"""SendSms and QuerySendDetails through alibabacloud-dysmsapi20170525 4.x, both signatures."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Iterator

import pytest
from alibabacloud_dysmsapi20170525 import models as sms_models
from alibabacloud_dysmsapi20170525.client import Client as DysmsClient
from Tea.exceptions import TeaException

from receiptd_emulator import Emulator, EmulatorInfo, FaultSpec, ManualClock, SeedSend

from .conftest import CST, china_day, pop_config, today_cst

PHONE = "13800138000"


def send(
    client: DysmsClient, info: EmulatorInfo, **overrides: str
) -> sms_models.SendSmsResponseBody:
    values = {
        "phone_numbers": PHONE,
        "sign_name": info.sign_name,
        "template_code": info.template_code,
        "template_param": json.dumps({"code": "123456"}),
        "out_id": "order-1",
    }
    values.update(overrides)
    return client.send_sms(sms_models.SendSmsRequest(**values)).body


def query(
    client: DysmsClient, phone: str = PHONE, **overrides: object
) -> sms_models.QuerySendDetailsResponseBody:
    values: dict[str, object] = {
        "phone_number": phone,
        "send_date": today_cst(),
        "page_size": 10,
        "current_page": 1,
    }
    values.update(overrides)
    return client.query_send_details(sms_models.QuerySendDetailsRequest(**values)).body


@pytest.mark.parametrize("client_name", ["sms", "sms_v2"])
def test_send_and_query_with_both_signatures(
    client_name: str, request: pytest.FixtureRequest, info: EmulatorInfo
) -> None:
    client: DysmsClient = request.getfixturevalue(client_name)
    body = send(client, info)
    assert (body.code, body.message) == ("OK", "OK")
    assert re.fullmatch(r"\d{15,}\^0", body.biz_id)
    assert body.request_id
    details = query(client, biz_id=body.biz_id)
    assert details.code == "OK"
    assert details.total_count == 1
    (row,) = details.sms_send_detail_dtos.sms_send_detail_dto
    assert row.phone_num == PHONE
    assert row.send_status in (1, 2, 3)
    assert row.template_code == info.template_code
    assert row.content == f"【{info.sign_name}】您的验证码为：123456，请勿泄露于他人！"
    assert row.out_id == "order-1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row.send_date)


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"phone_numbers": ",".join(["13800138000"] * 1001)}, "isv.MOBILE_COUNT_OVER_LIMIT"),
        ({"phone_numbers": "12345"}, "isv.MOBILE_NUMBER_ILLEGAL"),
        ({"phone_numbers": "13800138000,1380013800x"}, "isv.MOBILE_NUMBER_ILLEGAL"),
        ({"sign_name": "不存在的签名"}, "isv.SMS_SIGNATURE_ILLEGAL"),
        ({"template_code": "SMS_000"}, "isv.SMS_TEMPLATE_ILLEGAL"),
        ({"template_param": "not json"}, "isv.INVALID_JSON_PARAM"),
        ({"template_param": '["a"]'}, "isv.INVALID_JSON_PARAM"),
        ({"template_param": '{"code": 1}'}, "isv.INVALID_JSON_PARAM"),
        ({"template_param": "{}"}, "isv.TEMPLATE_MISSING_PARAMETERS"),
    ],
)
def test_send_sms_business_errors_are_http_200(
    sms: DysmsClient, info: EmulatorInfo, overrides: dict[str, str], code: str
) -> None:
    body = send(sms, info, **overrides)
    assert body.code == code
    assert body.biz_id is None


def test_send_sms_accepts_1000_numbers_and_country_prefix(
    sms: DysmsClient, info: EmulatorInfo, emu: Emulator
) -> None:
    phones = [f"1390000{i:04d}" for i in range(999)] + ["+8613800138000"]
    body = send(sms, info, phone_numbers=",".join(phones))
    assert body.code == "OK"
    records = [r for r in emu.records() if r.biz_id == body.biz_id]
    assert len(records) == 1000
    assert "13800138000" in {r.phone_number for r in records}


def test_missing_required_parameter_raises(sms: DysmsClient, info: EmulatorInfo) -> None:
    with pytest.raises(TeaException) as error:
        sms.send_sms(sms_models.SendSmsRequest(sign_name=info.sign_name))
    assert (error.value.code, error.value.status_code) == ("MissingPhoneNumbers", 400)


@pytest.fixture
def frozen() -> Iterator[tuple[DysmsClient, ManualClock]]:
    """A client on an emulator whose clock stands still: dates relative to it cannot cross
    China's midnight between the test computing them and the emulator judging them (dates
    computed when the module was collected, minutes earlier, did: a CI failure at 00:05 CST)."""
    clock = ManualClock(time.time())
    with Emulator(profile="default", clock=clock) as emulator:
        yield DysmsClient(pop_config(emulator.info)), clock


@pytest.mark.parametrize(
    "overrides",
    [
        {"page_size": 51},
        {"page_size": 0},
        {"current_page": 0},
        {"send_date": "2024-01-01"},
        {"send_date": "20240231"},
        {"send_date": -30},  # days from the emulator's today
        {"send_date": 1},
    ],
)
def test_query_parameter_limits(
    frozen: tuple[DysmsClient, ManualClock], overrides: dict[str, object]
) -> None:
    sms, clock = frozen
    values = {"send_date": china_day(clock), **overrides}
    if isinstance(values["send_date"], int):
        values["send_date"] = china_day(clock, values["send_date"])
    assert query(sms, send_date=china_day(clock)).code == "OK"  # the rest of it is valid
    assert query(sms, **values).code == "isv.INVALID_PARAMETERS"


def test_query_window_includes_29_days_ago(sms: DysmsClient) -> None:
    day = (dt.datetime.now(CST) - dt.timedelta(days=29)).strftime("%Y%m%d")
    assert query(sms, send_date=day).code == "OK"


def test_query_bad_phone(sms: DysmsClient) -> None:
    assert query(sms, phone="123").code == "isv.MOBILE_NUMBER_ILLEGAL"


def on_one_china_date(now: dt.datetime, span: dt.timedelta) -> dt.datetime:
    """``now``, or the last second of the previous China date when ``now`` is less than
    ``span`` past China's midnight: sends made up to ``span`` before it share one SendDate
    (they once straddled 00:00 CST = 16:00 UTC, and the query of today found 7 of 9)."""
    local = now.astimezone(CST)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if local - midnight < span:
        return (midnight - dt.timedelta(seconds=1)).astimezone(dt.UTC)
    return now


def test_sends_of_minutes_before_china_midnight_stay_on_their_date() -> None:
    just_after = dt.datetime(2026, 12, 2, 16, 7, tzinfo=dt.UTC)  # 00:07 CST on 3 December
    moved = on_one_china_date(just_after, dt.timedelta(minutes=10))
    assert moved == dt.datetime(2026, 12, 2, 15, 59, 59, tzinfo=dt.UTC)
    later = dt.datetime(2026, 12, 2, 17, 0, tzinfo=dt.UTC)
    assert on_one_china_date(later, dt.timedelta(minutes=10)) == later


def test_status_follows_receipt_time_and_pages(sms: DysmsClient, emu: Emulator) -> None:
    now = on_one_china_date(dt.datetime.now(dt.UTC), dt.timedelta(minutes=10))
    day = now.astimezone(CST).strftime("%Y%m%d")
    seeds = [
        SeedSend(
            PHONE,
            "阿里云短信测试",
            "SMS_154950909",
            f"o{i}",
            now - dt.timedelta(minutes=i),
            outcome="delivered" if i % 2 else "failed",
            err_code=None if i % 2 else "UNDELIV",
            receipt="lost",
            receipt_delay=5,
        )
        for i in range(1, 8)
    ]
    seeds.append(
        SeedSend(PHONE, "阿里云短信测试", "SMS_154950909", "future", now, receipt_delay=3600)
    )
    seeds.append(
        SeedSend(PHONE, "阿里云短信测试", "SMS_154950909", "never", now, outcome="pending")
    )
    emu.seed_sends(seeds)
    first = query(sms, page_size=5, current_page=1, send_date=day)
    second = query(sms, page_size=5, current_page=2, send_date=day)
    assert first.total_count == second.total_count == 9
    rows = (
        first.sms_send_detail_dtos.sms_send_detail_dto
        + second.sms_send_detail_dtos.sms_send_detail_dto
    )
    by_out_id = {r.out_id: r for r in rows}
    assert len(by_out_id) == 9
    assert (by_out_id["o1"].send_status, by_out_id["o1"].err_code) == (3, "DELIVERED")
    assert (by_out_id["o2"].send_status, by_out_id["o2"].err_code) == (2, "UNDELIV")
    assert by_out_id["o1"].receive_date
    for waiting in ("future", "never"):
        assert (by_out_id[waiting].send_status, by_out_id[waiting].receive_date) == (1, "")
    third = query(sms, page_size=5, current_page=3, send_date=day)
    assert third.sms_send_detail_dtos.sms_send_detail_dto == []


def test_send_date_is_the_china_date(sms: DysmsClient, emu: Emulator) -> None:
    """A send at 23:30 UTC belongs to the next China day."""
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    late = yesterday.replace(hour=23, minute=30)
    emu.seed_sends([SeedSend(PHONE, "阿里云短信测试", "SMS_154950909", "late", late)])
    china_day = late.astimezone(CST).strftime("%Y%m%d")
    utc_day = late.strftime("%Y%m%d")
    assert query(sms, send_date=china_day).total_count == 1
    assert query(sms, send_date=utc_day).total_count == 0


@pytest.mark.parametrize("algorithm", [None, "v2"])
def test_wrong_secret_raises_signature_does_not_match(
    info: EmulatorInfo, algorithm: str | None
) -> None:
    client = DysmsClient(pop_config(info, access_key_secret="wrong", signature_algorithm=algorithm))
    with pytest.raises(TeaException) as error:
        query(client)
    assert error.value.code == "SignatureDoesNotMatch"
    assert error.value.status_code == 400


@pytest.mark.parametrize("algorithm", [None, "v2"])
def test_unknown_key_raises(info: EmulatorInfo, algorithm: str | None) -> None:
    client = DysmsClient(
        pop_config(info, access_key_id="LTAI5tNoSuchKey000000000", signature_algorithm=algorithm)
    )
    with pytest.raises(TeaException) as error:
        query(client)
    assert error.value.code == "InvalidAccessKeyId.NotFound"


def test_qps_limit_throttles(sms: DysmsClient, emu: Emulator) -> None:
    emu.set_qps_limit("QuerySendDetails", 2)
    codes = []
    for _ in range(6):
        try:
            codes.append(query(sms).code)
        except TeaException as error:  # gateway throttling is HTTP 400: the SDK raises
            codes.append(f"{error.code}/{error.status_code}")
    assert codes[0] == "OK"
    assert "Throttling.User/400" in codes
    assert [c.outcome for c in emu.calls("QuerySendDetails")].count("Throttling.User") >= 1
    emu.set_qps_limit("QuerySendDetails", None)
    assert query(sms).code == "OK"


def test_faults_error_and_reset(sms: DysmsClient, emu: Emulator) -> None:
    emu.set_faults("dysms", FaultSpec(error_rate=1.0))
    with pytest.raises(TeaException) as error:
        query(sms)
    assert (error.value.code, error.value.status_code) == ("ServiceUnavailable", 503)
    emu.set_faults("dysms", FaultSpec(throttle_rate=1.0))
    with pytest.raises(TeaException) as throttled:
        query(sms)
    assert throttled.value.code == "Throttling.User"
    emu.set_faults("dysms", FaultSpec(reset_rate=1.0, seed=1))
    with pytest.raises(Exception):  # noqa: B017 - the SDK wraps the connection reset itself
        query(sms)
    assert emu.calls("QuerySendDetails")[-1].outcome == "reset"
    emu.set_faults("dysms", FaultSpec())
    assert query(sms).code == "OK"


def test_calls_are_recorded_with_params(
    sms: DysmsClient, info: EmulatorInfo, emu: Emulator
) -> None:
    send(sms, info)
    (call,) = emu.calls("SendSms")
    assert call.params["PhoneNumbers"] == PHONE
    assert "Signature" not in call.params
    assert (call.status, call.outcome, call.access_key_id) == (200, "OK", info.access_key_id)
    assert call.wall.tzinfo is not None
    emu.reset_calls()
    assert emu.calls() == []
