"""SendSms -> SmsReport messages in the Alicom queue -> QuerySendDetails, all through real SDKs."""

from __future__ import annotations

import base64
import json

from alibabacloud_dysmsapi20170525 import models as sms_models
from alibabacloud_dysmsapi20170525.client import Client as DysmsClient
from mns.queue import Queue

from receiptd_emulator import Emulator, EmulatorInfo

from .conftest import today_cst

REPORT_FIELDS = {
    "phone_number",
    "success",
    "biz_id",
    "out_id",
    "send_time",
    "report_time",
    "err_code",
    "err_msg",
    "sms_size",
}
PHONES = ["13800000001", "13900000002", "15000000003"]


def drain(queue: Queue, count: int) -> list[dict[str, object]]:
    bodies: list[dict[str, object]] = []
    while len(bodies) < count:
        messages = queue.batch_receive_message(16, 10)
        bodies += [json.loads(base64.b64decode(m.message_body)) for m in messages]
        queue.batch_delete_message([m.receipt_handle for m in messages])
    return bodies


def test_send_three_receive_three_reports_query_three(
    sms: DysmsClient, report_queue: Queue, info: EmulatorInfo, emu: Emulator
) -> None:
    sent = sms.send_sms(
        sms_models.SendSmsRequest(
            phone_numbers=",".join(PHONES),
            sign_name=info.sign_name,
            template_code=info.template_code,
            template_param='{"code":"8888"}',
            out_id="rt-1",
        )
    ).body
    assert sent.code == "OK"

    reports = drain(report_queue, 3)
    assert sorted(r["phone_number"] for r in reports) == PHONES
    for report in reports:
        assert set(report) == REPORT_FIELDS
        assert report["biz_id"] == sent.biz_id
        assert report["out_id"] == "rt-1"
        assert isinstance(report["success"], bool)
        assert report["sms_size"] == "1"
        assert report["err_code"] == ("DELIVERED" if report["success"] else report["err_code"])
        assert len(str(report["send_time"])) == len("2024-01-01 00:00:00")

    for report in reports:
        details = sms.query_send_details(
            sms_models.QuerySendDetailsRequest(
                phone_number=str(report["phone_number"]),
                biz_id=sent.biz_id,
                send_date=today_cst(),
                page_size=10,
                current_page=1,
            )
        ).body
        (row,) = details.sms_send_detail_dtos.sms_send_detail_dto
        assert row.send_status == (3 if report["success"] else 2)
        assert row.err_code == report["err_code"]
        assert row.receive_date == report["report_time"]
        assert row.send_date == report["send_time"]
    truth = {r.phone_number: r for r in emu.records() if r.biz_id == sent.biz_id}
    assert set(truth) == set(PHONES)
