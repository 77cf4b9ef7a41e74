"""The sends import/registration format (receiptd.ingest.registration): CSV, JSON lines, errors."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from receiptd import domain, ports
from receiptd.ingest import registration

SENT = datetime(2026, 11, 24, 1, 30, tzinfo=UTC)


def test_csv_with_a_header_gives_one_send_per_row_in_utc() -> None:
    text = (
        "provider,biz_id,phone_number,sent_at,out_id\n"
        "aliyun,B1,13800000001,2026-11-24T09:30:00+08:00,o1\n"
        "huawei,T2,13800000002,2026-11-24T01:30:00+00:00,\n"
    )
    first, second = registration.parse_sends(text)
    assert first == ports.NewSend(domain.Provider.ALIYUN, "B1", "13800000001", SENT, "o1")
    assert (second.provider, second.out_id, second.sent_at) == (domain.Provider.HUAWEI, None, SENT)
    assert first.sent_at.tzinfo is UTC


def test_json_lines_skip_blank_lines_and_default_to_aliyun() -> None:
    text = '{"biz_id": "B1", "phone_number": 13800000001, "sent_at": "2026-11-24T01:30:00Z"}\n\n'
    (send,) = registration.parse_sends(text)
    assert (send.provider, send.phone_number, send.sent_at) == (
        domain.Provider.ALIYUN,
        "13800000001",
        SENT,
    )


GOOD = '{"biz_id": "B1", "phone_number": "1", "sent_at": "2026-11-24T01:30:00Z"}\n'
HEADER = "biz_id,phone_number,sent_at\n"
ROW = "B1,1,2026-11-24T01:30:00Z\n"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('{"biz_id": "B1"}\n', "1: phone_number is required"),
        (GOOD + "{x", "2: not valid JSON"),
        (GOOD + "[1]", "2: each line must be a JSON object"),
        ("biz_id,phone_number,sent_at,colour\n", "1: unknown column(s) colour"),
        (HEADER + ROW.replace("Z", "Z,extra"), "2: more fields than the header has"),
        (HEADER + ROW + "B2,1,yesterday\n", "3: sent_at 'yesterday' is not ISO 8601"),
        (HEADER + "B1,1,2026-11-24T09:30:00\n", "2: sent_at needs a zone"),
        ("provider," + HEADER + "tencent," + ROW, "2: unknown provider 'tencent'"),
    ],
)
def test_the_first_bad_line_is_named(text: str, error: str) -> None:
    with pytest.raises(registration.ImportLineError) as raised:
        registration.parse_sends(text)
    assert str(raised.value).startswith(error)


def test_a_record_with_unknown_fields_or_blank_required_ones_is_refused() -> None:
    base = {"biz_id": "B1", "phone_number": "1", "sent_at": "2026-11-24T01:30:00Z"}
    with pytest.raises(ValueError, match=r"unknown field\(s\) a, b"):
        registration.new_send({**base, "b": 1, "a": 2})
    with pytest.raises(ValueError, match="biz_id is required"):
        registration.new_send({**base, "biz_id": "  "})
    with pytest.raises(ValueError, match="phone_number is required"):
        registration.new_send({**base, "phone_number": None})


def test_optional_fields_are_stripped_and_blank_means_absent() -> None:
    send = registration.new_send(
        {"biz_id": " B1 ", "phone_number": "1", "sent_at": "2026-11-24T01:30:00Z",
         "template_code": " SMS_1 ", "sign_name": ""}
    )  # fmt: skip
    assert (send.biz_id, send.template_code, send.sign_name) == ("B1", "SMS_1", None)


BASE = {"biz_id": "B1", "phone_number": "1", "sent_at": "2026-11-24T01:30:00Z"}
KNOWN = registration.known(
    [
        SimpleNamespace(provider="aliyun", name="default"),
        SimpleNamespace(provider="aliyun", name="brand_b"),
        SimpleNamespace(provider="huawei", name="default"),
    ]
)


def test_a_record_names_its_account_default_when_it_does_not() -> None:
    assert registration.new_send(BASE).account == domain.DEFAULT_ACCOUNT
    assert registration.new_send({**BASE, "account": ""}).account == domain.DEFAULT_ACCOUNT
    assert registration.new_send({**BASE, "account": " brand_b "}, KNOWN).account == "brand_b"


@pytest.mark.parametrize(
    ("record", "error"),
    [
        ({**BASE, "account": "Brand_B"}, "account 'Brand_B' is not an account id"),
        ({**BASE, "account": "b" * 33}, "is not an account id"),
        ({**BASE, "account": "brand_c"}, "unknown aliyun account 'brand_c'"),
        ({**BASE, "account": "brand_b", "provider": "huawei"}, "unknown huawei account 'brand_b'"),
    ],
)
def test_an_account_is_checked_for_form_and_against_the_known_ones(
    record: dict[str, str], error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        registration.new_send(record, KNOWN)


def test_the_import_names_the_line_of_an_unknown_account() -> None:
    text = "biz_id,phone_number,sent_at,account\n" + ROW.strip() + ",brand_b\n"
    text += ROW.strip() + ",brand_c\n"
    with pytest.raises(registration.ImportLineError) as raised:
        registration.parse_sends(text, KNOWN)
    assert str(raised.value) == "3: unknown aliyun account 'brand_c'"
    (first,) = registration.parse_sends(
        text.splitlines(keepends=True)[0] + ROW.strip() + ",brand_b\n", KNOWN
    )
    assert first.account == "brand_b"
    assert len(registration.parse_sends(text)) == 2  # no known accounts given: form only


def test_a_record_may_name_its_send_by_message_id_with_a_task_id() -> None:
    record = {"message_id": "10080303003003", "phone_number": "+852 1234 5678"}
    send = registration.new_send({**record, "sent_at": "2026-11-24T01:30:00Z", "task_id": "T1"})
    assert (send.matched_by, send.biz_id, send.task_id) == (
        domain.SendKey.MESSAGE_ID,
        "10080303003003",
        "T1",
    )


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"biz_id": "B1"}, "not both"),
        ({"provider": "huawei"}, "names an Alibaba send"),
        ({"task_id": "t" * 256}, "task_id is longer than 255"),
    ],
)
def test_a_message_id_record_is_checked(extra: dict[str, str], reason: str) -> None:
    base = {"message_id": "1", "phone_number": "85212345678", "sent_at": "2026-11-24T01:30:00Z"}
    with pytest.raises(ValueError, match=reason):
        registration.new_send({**base, **extra})


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"biz_id": "b" * 65}, "biz_id is longer than 64"),
        ({"phone_number": "1" * 33}, "phone_number is longer than 32"),
        ({"out_id": "o" * 129}, "out_id is longer than 128"),
        ({"sent_at": "0001-01-01T00:00:00+08:00"}, "out of range in UTC"),
    ],
)
def test_sends_import_refuses_what_the_sends_table_cannot_keep(
    extra: dict[str, str], reason: str
) -> None:
    base = {"biz_id": "B1", "phone_number": "13800000001", "sent_at": "2026-11-24T01:30:00Z"}
    with pytest.raises(ValueError, match=reason):
        registration.new_send({**base, **extra})
