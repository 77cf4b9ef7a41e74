"""Pure pieces: raw query parsing, profiles, faults, receipts, phone numbers, MNS XML."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiptd_emulator import mns_xml, receipts
from receiptd_emulator.dysms import _template_params, normalize_phone
from receiptd_emulator.faults import FaultKind, Faults, FaultSpec, QpsLimiter
from receiptd_emulator.http_types import Request, split_raw_query, strip_absolute_uri
from receiptd_emulator.mns_queue import MnsError
from receiptd_emulator.profiles import FATES, Profile
from receiptd_emulator.sms_records import Send, sms_parts


# -- http ------------------------------------------------------------------------------
def test_raw_query_keeps_plus_slash_and_equals() -> None:
    handle = "1-MbZj6wDWli+QEauMZc8ZRv37sIW2iJKq3M9Mx/KSbkJ0=="
    pairs = split_raw_query(f"ReceiptHandle={handle}&VisibilityTimeout=30")
    assert pairs == [("ReceiptHandle", handle), ("VisibilityTimeout", "30")]
    assert Request("DELETE", f"/queues/q/messages?ReceiptHandle={handle}", {}).raw_params() == {
        "ReceiptHandle": handle
    }


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("http://127.0.0.1:1/queues/q/messages?a=1", "/queues/q/messages?a=1"),
        ("https://h/queues", "/queues"),
        ("http://h", "/"),
        ("/queues/q", "/queues/q"),
    ],
)
def test_absolute_uri_is_stripped(target: str, expected: str) -> None:
    assert strip_absolute_uri(target) == expected


# -- profiles --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["default", "lossy", "chaos", "demo"])
def test_shipped_profiles_load(name: str) -> None:
    profile = Profile.load(name)
    assert profile.name == name
    assert profile.report_queue == f"Alicom-Queue-{profile.account_uid}-SmsReport"


def test_profile_sections_and_files(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(
        "seed = 3\n[receipts]\ndelay = [1.0, 2.0]\nlost = 0.5\n[replies]\nrate = 0.25\n"
        'samples = ["ok"]\n[faults.mns]\nerror_rate = 0.1\n[qps]\nSendSms = 5\n'
        '[[failures]]\ncode = "X"\nmessage = "y"\n',
        encoding="utf-8",
    )
    profile = Profile.load(path)
    assert (profile.name, profile.seed, profile.receipt_delay, profile.lost) == (
        "mine",
        3,
        (1.0, 2.0),
        0.5,
    )
    assert (profile.reply_rate, profile.replies) == (0.25, ("ok",))
    assert profile.faults["mns"] == FaultSpec(error_rate=0.1)
    assert profile.qps == {"SendSms": 5}
    assert [f.code for f in profile.failures] == ["X"]


@pytest.mark.parametrize(
    "data",
    [
        {"bogus": 1},
        {"receipts": {"lost": 0.8, "duplicate": 0.5}},
        {"outcomes": {"delivered": 0, "failed": 0, "pending": 0}},
        {"receipts": {"delay": [3.0, 1.0]}},
        {"faults": {"nope": {}}},
    ],
)
def test_invalid_profiles_are_rejected(data: dict[str, object]) -> None:
    with pytest.raises((ValueError, TypeError)):
        Profile.from_mapping(data)


def test_unknown_profile_name() -> None:
    with pytest.raises(ValueError, match="unknown profile"):
        Profile.load("no-such-profile")


def test_fate_draws_follow_weights() -> None:
    profile = Profile(lost=0.3)
    rng = random.Random(1)
    fates = [profile.pick_fate(rng) for _ in range(10_000)]
    assert set(fates) <= set(FATES)
    assert 2700 < fates.count("lost") < 3300


# -- faults ----------------------------------------------------------------------------
def test_fault_spec_validation() -> None:
    with pytest.raises(ValueError):
        FaultSpec(error_rate=1.5)
    with pytest.raises(ValueError):
        FaultSpec(error_rate=0.6, reset_rate=0.6)


def test_fault_decisions_are_reproducible_with_a_seed() -> None:
    def draws() -> list[FaultKind]:
        faults = Faults()
        faults.set("all", FaultSpec(error_rate=0.2, throttle_rate=0.2, reset_rate=0.2, seed=5))
        return [faults.decide("mns").kind for _ in range(200)]

    first = draws()
    assert first == draws()
    assert {FaultKind.ERROR, FaultKind.THROTTLE, FaultKind.NONE} <= set(first)
    assert Faults().decide("mns").kind is FaultKind.NONE
    with pytest.raises(ValueError):
        Faults().set("nope", FaultSpec())


def test_qps_limiter_refills() -> None:
    now = [0.0]
    limiter = QpsLimiter(clock=lambda: now[0])
    limiter.set_limit("A", 2)
    assert [limiter.allow("A") for _ in range(3)] == [True, True, False]
    now[0] += 0.5
    assert limiter.allow("A") and not limiter.allow("A")
    assert limiter.allow("B")
    limiter.set_limit("A", None)
    assert all(limiter.allow("A") for _ in range(10))


# -- receipts --------------------------------------------------------------------------
def make_send(**overrides: object) -> Send:
    values: dict[str, object] = {
        "biz_id": "123^0",
        "phone": "13800138000",
        "out_id": "o",
        "template_code": "T",
        "sign_name": "S",
        "content": "【S】hello",
        "send_time": dt.datetime(2024, 1, 1, 23, 59, 59, tzinfo=dt.UTC),
        "outcome": "delivered",
        "err_code": "DELIVERED",
        "err_msg": "用户接收成功",
        "receive_ts": dt.datetime(2024, 1, 2, 0, 0, 3, tzinfo=dt.UTC).timestamp(),
        "fate": "queue",
    }
    values.update(overrides)
    return Send(**values)  # type: ignore[arg-type]


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


def test_status_and_send_date() -> None:
    send = make_send()
    assert send.send_date == "20240102"  # China date
    assert send.status_at(send.receive_ts - 1) == 1
    assert send.status_at(send.receive_ts) == 3
    assert make_send(outcome="failed").status_at(send.receive_ts) == 2
    assert make_send(outcome="pending", receive_ts=None).status_at(1e12) == 1


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


def test_sms_parts() -> None:
    assert [sms_parts("x" * n) for n in (1, 70, 71, 134, 135)] == [1, 1, 2, 2, 3]


# -- dysms -----------------------------------------------------------------------------
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
def test_template_params_accept_string_objects(values: dict[str, str]) -> None:
    assert _template_params(json.dumps(values)) == values


@pytest.mark.parametrize("text", ["[]", '{"a": 1}', "nope", '"s"'])
def test_template_params_reject_others(text: str) -> None:
    assert _template_params(text) is None


# -- MNS XML ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [b"", b"<Message>", b'<!DOCTYPE x [<!ENTITY a "b">]><Message/>', b"<Other/>"],
)
def test_bad_xml_is_malformed(body: bytes) -> None:
    with pytest.raises(MnsError) as error:
        mns_xml.parse_messages(body)
    assert error.value.code == "MalformedXML"


def test_parses_the_sdk_batch_delete_body() -> None:
    body = (
        b'<?xml version="1.0" encoding="utf-8"?><ReceiptHandles xmlns="http://mns.aliyuncs.com/doc/v1/">'
        b"<ReceiptHandle>a</ReceiptHandle><ReceiptHandle>b+/=</ReceiptHandle></ReceiptHandles>"
    )
    assert mns_xml.parse_receipt_handles(body) == ["a", "b+/="]
