"""Fault injection on MNS and receipt fates (lost, duplicate, late, malformed, pending)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json

import pytest
from alibabacloud_dysmsapi20170525 import models as sms_models
from alibabacloud_dysmsapi20170525.client import Client as DysmsClient
from mns.account import Account
from mns.mns_exception import MNSClientNetworkException, MNSServerException
from mns.queue import Queue

from receiptd_emulator import Emulator, FaultSpec, Profile, SeedSend

from .conftest import pop_config

NOW = dt.datetime.now(dt.UTC)


def test_mns_error_throttle_reset_and_latency(emu: Emulator, report_queue: Queue) -> None:
    emu.set_faults("mns", FaultSpec(error_rate=1.0))
    with pytest.raises(MNSServerException) as error:
        report_queue.receive_message(wait_seconds=0)
    assert (error.value.type, error.value.req_id != "") == ("InternalError", True)
    emu.set_faults("mns", FaultSpec(throttle_rate=1.0))
    with pytest.raises(MNSServerException) as throttled:
        report_queue.receive_message(wait_seconds=0)
    assert throttled.value.type == "QpsLimitExceeded"
    emu.set_faults("all", FaultSpec(reset_rate=1.0))
    with pytest.raises(MNSClientNetworkException):
        report_queue.receive_message(wait_seconds=0)
    emu.set_faults("all", FaultSpec(latency=0.05, latency_rate=1.0))
    with pytest.raises(MNSServerException):
        report_queue.receive_message(wait_seconds=0)
    assert emu.calls("MNS.ReceiveMessage")[-1].duration >= 0.05
    faults = [c.fault for c in emu.calls("MNS.ReceiveMessage")]
    assert faults[:2] == ["error", "throttle"]
    assert faults[2].startswith("reset")


def test_reset_after_effect_deletes_anyway(emu: Emulator, report_queue: Queue) -> None:
    """Half the resets hit after the request took effect: the client cannot tell."""
    emu.enqueue_report({"biz_id": "1^0"})
    got = report_queue.receive_message(wait_seconds=1)
    emu.set_faults("mns", FaultSpec(reset_rate=1.0, seed=3))
    outcomes = []
    for _ in range(8):
        try:
            report_queue.delete_message(got.receipt_handle)
            outcomes.append("ok")
        except MNSClientNetworkException:
            outcomes.append("reset")
    assert emu.queue_depth("report") == {"visible": 0, "inflight": 0, "delayed": 0}
    faults = [c.fault for c in emu.calls("MNS.DeleteMessage")]
    assert "reset_after" in faults


def test_mns_qps_limit(emu: Emulator, report_queue: Queue) -> None:
    emu.set_qps_limit("MNS.ReceiveMessage", 1)
    codes = []
    for _ in range(4):
        with pytest.raises(MNSServerException) as error:
            report_queue.receive_message(wait_seconds=0)
        codes.append(error.value.type)
    assert codes[0] == "MessageNotExist"
    assert "QpsLimitExceeded" in codes


def bodies(queue: Queue) -> list[str]:
    out: list[str] = []
    while True:
        try:
            messages = queue.batch_receive_message(16, 0)
        except MNSServerException:
            return out
        out += [m.message_body for m in messages]
        queue.batch_delete_message([m.receipt_handle for m in messages])


def seed(fate: str, outcome: str = "delivered", out_id: str = "") -> SeedSend:
    return SeedSend(
        "13800138000",
        "阿里云短信测试",
        "SMS_154950909",
        out_id or fate,
        NOW - dt.timedelta(minutes=5),
        outcome=outcome,
        receipt=fate,
        receipt_delay=1,
    )


def test_receipt_fates(emu: Emulator, report_queue: Queue) -> None:
    ids = emu.seed_sends(
        [
            seed("queue"),
            seed("lost"),
            seed("duplicate"),
            seed("malformed"),
            seed("queue", "pending", "pend"),
        ]
    )
    raw = bodies(report_queue)
    decoded = []
    broken = 0
    for body in raw:
        try:
            value = json.loads(base64.b64decode(body, validate=True))
        except (binascii.Error, ValueError):
            broken += 1
            continue
        if isinstance(value, dict) and "biz_id" in value:
            decoded.append(value["biz_id"])
        else:
            broken += 1
    queue_id, lost_id, dup_id, _, pending_id = ids
    assert sorted(decoded) == sorted([queue_id, dup_id, dup_id])
    assert broken == 1
    records = {r.biz_id: r for r in emu.records()}
    assert records[lost_id].status == 3 and records[lost_id].receipt_fate == "lost"
    assert records[pending_id].status == 1 and records[pending_id].receive_time is None


def test_late_receipt_arrives_after_later_sends() -> None:
    profile = Profile(late_delay=(1.0, 1.0), receipt_delay=(0.0, 0.0))
    now = dt.datetime.now(dt.UTC)  # the late receipt is due 1 s after this
    with Emulator(profile) as emu:
        emu.seed_sends(
            [
                SeedSend(
                    "13800138000",
                    "阿里云短信测试",
                    "SMS_154950909",
                    "late",
                    now,
                    receipt="late",
                    receipt_delay=0,
                )
            ]
        )
        emu.seed_sends(
            [
                SeedSend(
                    "13800138001", "阿里云短信测试", "SMS_154950909", "prompt", now, receipt_delay=0
                )
            ]
        )
        token = emu.issue_token()
        account = Account(
            emu.info.mns_endpoint,
            token.access_key_id,
            token.access_key_secret,
            token.security_token,
        )
        queue = account.get_queue(emu.info.report_queue)
        first = queue.receive_message(wait_seconds=5)
        second = queue.receive_message(wait_seconds=5)
        account.mns_client.close_connection()
    order = [json.loads(m.message_body)["out_id"] for m in (first, second)]
    assert order == ["prompt", "late"]


def test_lossy_profile_loses_about_30_percent() -> None:
    profile = Profile.load("lossy").with_overrides(seed=7)
    with Emulator(profile) as lossy:
        client = DysmsClient(pop_config(lossy.info))
        request = sms_models.SendSmsRequest(
            phone_numbers=",".join(f"1380000{i:04d}" for i in range(1000)),
            sign_name=lossy.info.sign_name,
            template_code=lossy.info.template_code,
            template_param='{"code":"1"}',
        )
        assert client.send_sms(request).body.code == "OK"
        fates = [r.receipt_fate for r in lossy.records()]
    assert 200 < fates.count("lost") < 400


def test_inject_malformed(emu: Emulator, report_queue: Queue) -> None:
    body = emu.inject_malformed()
    assert bodies(report_queue) == [body]
    emu.inject_malformed("up", "custom!")
    assert emu.queue_depth("up")["visible"] == 1


def test_replies_reach_the_up_queue() -> None:
    profile = Profile(reply_rate=1.0, reply_delay=(0.0, 0.0))
    with Emulator(profile) as emu:
        emu.provider.send(
            ["13800138000"], "阿里云短信测试", "SMS_154950909", "hi", extend_code="1234"
        )
        token = emu.issue_token("SmsUp")
        account = Account(
            emu.info.mns_endpoint,
            token.access_key_id,
            token.access_key_secret,
            token.security_token,
        )
        message = account.get_queue(emu.info.up_queue).receive_message(wait_seconds=5)
        account.mns_client.close_connection()
    reply = json.loads(message.message_body)
    assert set(reply) == {"phone_number", "content", "send_time", "dest_code", "sequence_id"}
    assert (reply["phone_number"], reply["dest_code"]) == ("13800138000", "1234")
    assert len(reply["send_time"]) == 14 and reply["send_time"].isdigit()
    assert reply["content"] in profile.replies
