"""Webhook events (receiptd.events): their JSON bodies and the retry schedule, pure."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from receiptd import events

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
SEND = {
    "id": 7, "provider": "aliyun", "biz_id": "B1", "phone_number": "13812345678", "out_id": None,
    "status": "failed", "err_code": "E1", "err_msg": "rejected", "settled_by": "receipt",
    "sent_at": datetime(2026, 11, 25, 15, 0, tzinfo=timezone(timedelta(hours=8))),
}  # fmt: skip


def test_a_settled_send_event_has_the_standard_webhooks_shape_in_utc() -> None:
    event = events.send_settled(SEND, NOW, show_phone=False)
    assert (event.type, event.send_id, event.inbound_id, event.created_at) == (
        events.EventType.SEND_FAILED,
        7,
        None,
        NOW,
    )
    body = json.loads(event.body)
    assert (body["id"], body["type"], body["timestamp"]) == (
        event.id,
        "send.failed",
        "2026-11-25T08:00:00Z",
    )
    data = body["data"]
    assert data["phone_number"] == "138****5678"
    assert (data["sent_at"], data["settled_at"]) == ("2026-11-25T07:00:00Z", "2026-11-25T08:00:00Z")
    assert (data["status"], data["err_code"], data["settled_by"]) == ("failed", "E1", "receipt")


@pytest.mark.parametrize(
    ("status", "kind"),
    [("delivered", "send.delivered"), ("expired", "send.expired")],
)
def test_each_final_status_has_its_event_type(status: str, kind: str) -> None:
    assert events.send_settled({**SEND, "status": status}, NOW, True).type.value == kind


def test_a_pending_send_has_no_event() -> None:
    with pytest.raises(KeyError):
        events.send_settled({**SEND, "status": "pending"}, NOW, True)


def test_every_event_has_its_own_id_and_full_numbers_only_when_asked() -> None:
    one, two = (events.send_settled(SEND, NOW, show_phone=True) for _ in range(2))
    assert one.id != two.id
    assert json.loads(one.body)["data"]["phone_number"] == "13812345678"


def test_a_reply_event_carries_the_reply_and_its_row_id() -> None:
    reply = {"id": 3, "phone_number": "13812345678", "content": "退订", "dest_code": "12",
             "sequence_id": "9", "send_time": NOW, "received_at": NOW}  # fmt: skip
    event = events.reply_received(reply, NOW, show_phone=False)
    assert (event.type, event.inbound_id, event.send_id) == (
        events.EventType.REPLY_RECEIVED,
        3,
        None,
    )
    assert '"退订"' in event.body  # UTF-8 as is, not escaped
    data = json.loads(event.body)["data"]
    assert (data["provider"], data["phone_number"], data["received_at"]) == (
        "aliyun",
        "138****5678",
        "2026-11-25T08:00:00Z",
    )


def test_utc_text() -> None:
    assert events.utc_text(None) is None
    assert (
        events.utc_text(datetime(2026, 1, 1, 8, tzinfo=timezone(timedelta(hours=8))))
        == "2026-01-01T00:00:00Z"
    )


def test_retry_delay_doubles_from_initial_to_cap_with_half_of_it_random() -> None:
    assert [events.retry_delay(n, 10, 600, lambda: 1.0) for n in (0, 1, 2, 3)] == [10, 10, 20, 40]
    assert events.retry_delay(2, 10, 600, lambda: 0.0) == 10
    assert events.retry_delay(10**6, 10, 600, lambda: 0.5) == 450


def test_a_delivery_gives_up_once_its_retry_period_has_passed() -> None:
    since = NOW - timedelta(hours=1)
    assert not events.gives_up(since, NOW - timedelta(seconds=1), 3600)
    assert events.gives_up(since, NOW, 3600)


@pytest.mark.parametrize(
    ("code", "ok"), [(None, False), (199, False), (200, True), (299, True), (300, False)]
)
def test_only_2xx_is_success(code: int | None, ok: bool) -> None:
    assert events.is_success(code) is ok
