"""Receipt bodies of international sends: the two shapes, status mapping, RFC 2822 times,
malformed variants and the fates' arrivals."""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import json
import random

import pytest

from receiptd_emulator import globe_receipts
from receiptd_emulator.globe_numbers import number_detail
from receiptd_emulator.globe_records import GlobeSend
from receiptd_emulator.profiles import Profile

SENT = dt.datetime(2021, 11, 25, 2, 27, tzinfo=dt.UTC)  # 10:27 in China


def globe_send(site: str = "intl", outcome: str = "delivered", **changes: object) -> GlobeSend:
    values: dict[str, object] = {
        "message_id": "1008030300300301",
        "to": "85212345678",
        "sender": "",
        "message": "hi",
        "task_id": "",
        "template_code": "",
        "site": site,
        "send_time": SENT,
        "outcome": outcome,
        "err_code": "success" if outcome == "delivered" else "UNDELIV",
        "err_msg": "success" if outcome == "delivered" else "用户不可达",
        "receive_ts": SENT.timestamp() + 33,
        "fate": "queue",
        "segments": 1,
        "number_detail": number_detail("85212345678"),
    }
    values.update(changes)
    return GlobeSend(**values)  # type: ignore[arg-type]


def test_rfc2822_in_china_time() -> None:
    text = globe_receipts.rfc2822(SENT)
    assert text == "Thu, 25 Nov 2021 10:27:00 +0800"
    assert email.utils.parsedate_to_datetime(text) == SENT


@pytest.mark.parametrize(
    ("outcome", "cn", "intl"),
    [("delivered", "1", "1"), ("failed", "2", "2"), ("expired", "2", "6")],
)
def test_status_mapping(outcome: str, cn: str, intl: str) -> None:
    assert globe_receipts.receipt_status(outcome, "cn") == cn
    assert globe_receipts.receipt_status(outcome, "intl") == intl


def test_a_pending_send_has_no_status_nor_body() -> None:
    with pytest.raises(ValueError, match="no receipt"):
        globe_receipts.receipt_status("pending", "intl")
    with pytest.raises(ValueError, match="no receipt"):
        globe_receipts.intl_fields(globe_send(receive_ts=None))


def test_intl_body_is_pascal_case_with_task_id_only_when_given() -> None:
    fields = globe_receipts.intl_fields(globe_send())
    assert fields == {
        "To": "85212345678",
        "Status": "1",
        "MessageId": "1008030300300301",
        "SmsSize": "1",
        "SendDate": "Thu, 25 Nov 2021 10:27:00 +0800",
        "ReceiveDate": "Thu, 25 Nov 2021 10:27:33 +0800",
        "ErrorCode": "success",
        "ErrorDescription": "success",
    }
    assert globe_receipts.intl_fields(globe_send(task_id="67890"))["TaskId"] == "67890"
    assert globe_receipts.intl_fields(globe_send(outcome="expired"))["Status"] == "6"


def test_cn_body_is_snake_case_with_zoneless_china_times() -> None:
    fields = globe_receipts.fields_for(globe_send(site="cn", outcome="failed", task_id="x"))
    assert fields == {
        "to": "85212345678",
        "status": "2",
        "message_id": "1008030300300301",
        "send_date": "2021-11-25 10:27:00",
        "receive_date": "2021-11-25 10:27:33",
        "error_code": "UNDELIV",
        "error_description": "用户不可达",
    }


@pytest.mark.parametrize(("site", "id_key"), [("intl", "MessageId"), ("cn", "message_id")])
def test_missing_field_malformed_bodies_lack_the_message_id(site: str, id_key: str) -> None:
    body = globe_receipts.malformed_body(site, random.Random(1), "missing_field")
    fields = json.loads(base64.b64decode(body))
    assert id_key not in fields
    assert ("Status" in fields) is (site == "intl")


def test_other_malformed_kinds_are_shared() -> None:
    body = globe_receipts.malformed_body("intl", random.Random(1), "bad_base64")
    with pytest.raises(ValueError):
        base64.b64decode(body, validate=True)


def test_deliveries_follow_the_fate() -> None:
    profile = Profile(late_delay=(30.0, 30.0), receipt_delay=(0.0, 0.0))
    rng = random.Random(0)
    due = SENT.timestamp() + 33
    assert globe_receipts.deliveries(globe_send(fate="lost"), profile, rng) == []
    assert globe_receipts.deliveries(globe_send(receive_ts=None), profile, rng) == []
    ((at, body),) = globe_receipts.deliveries(globe_send(), profile, rng)
    assert at == due
    assert json.loads(base64.b64decode(body))["MessageId"] == "1008030300300301"
    ((late, _),) = globe_receipts.deliveries(globe_send(fate="late"), profile, rng)
    assert late == due + 30
    assert len(globe_receipts.deliveries(globe_send(fate="duplicate"), profile, rng)) == 2
