"""Events applications are told about, and when a failed delivery is tried again (pure).

An event is built once, in the transaction that settled the send or stored the reply; its
JSON body is stored with it, so every delivery attempt (and every endpoint) POSTs the same
bytes under the same ``webhook-id``. Shape (the Standard Webhooks convention):
``{"id", "type", "timestamp", "data": {...}}``; times are UTC ISO 8601 with ``Z``.
"""

from __future__ import annotations

import enum
import json
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from receiptd import domain


class EventType(enum.StrEnum):
    SEND_DELIVERED = "send.delivered"
    SEND_FAILED = "send.failed"
    SEND_EXPIRED = "send.expired"
    REPLY_RECEIVED = "reply.received"


_SEND_EVENT = {
    domain.SendStatus.DELIVERED: EventType.SEND_DELIVERED,
    domain.SendStatus.FAILED: EventType.SEND_FAILED,
    domain.SendStatus.EXPIRED: EventType.SEND_EXPIRED,
}


# Vocabulary of the outbox port too (``ports.EventOutbox``), so it is declared in ``domain``.
DeliveryStatus = domain.DeliveryStatus


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    type: EventType
    created_at: datetime
    body: str  # the JSON every delivery POSTs
    send_id: int | None = None
    inbound_id: int | None = None
    account: str = domain.DEFAULT_ACCOUNT


def utc_text(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _phone(number: str, show: bool) -> str:
    return number if show else domain.mask_phone(number)


def _event(
    kind: EventType,
    now: datetime,
    data: Mapping[str, Any],
    send_id: int | None = None,
    inbound_id: int | None = None,
) -> Event:
    event_id = str(uuid.uuid4())
    body = {"id": event_id, "type": kind.value, "timestamp": utc_text(now), "data": data}
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return Event(event_id, kind, now, text, send_id, inbound_id, data["account"])


def send_settled(send: Mapping[str, Any], now: datetime, show_phone: bool) -> Event:
    """The event of a send that just reached a final status. ``send`` holds the columns of
    its ``sms_send`` row after the change (status, settled_by, err_code, err_msg)."""
    status = domain.SendStatus(send["status"])
    data = {
        "provider": send["provider"],
        "account": send.get("account", domain.DEFAULT_ACCOUNT),
        "biz_id": send["biz_id"],
        # which id biz_id holds: a BizId, or an international send's MessageId (0006)
        "matched_by": send.get("matched_by", domain.SendKey.BIZ_ID.value),
        "phone_number": _phone(send["phone_number"], show_phone),
        "out_id": send["out_id"],
        "task_id": send.get("task_id"),
        "status": status.value,
        "err_code": send["err_code"],
        "err_msg": send["err_msg"],
        "sent_at": utc_text(send["sent_at"]),
        "settled_at": utc_text(now),
        "settled_by": send["settled_by"],
    }
    return _event(_SEND_EVENT[status], now, data, send_id=send["id"])


def reply_received(reply: Mapping[str, Any], now: datetime, show_phone: bool) -> Event:
    """The event of a reply (SmsUp) just stored; ``reply`` is its ``sms_inbound`` row."""
    data = {
        "provider": reply.get("provider", domain.Provider.ALIYUN.value),
        "account": reply.get("account", domain.DEFAULT_ACCOUNT),
        "phone_number": _phone(reply["phone_number"], show_phone),
        "content": reply["content"],
        "dest_code": reply["dest_code"],
        "sequence_id": reply["sequence_id"],
        "send_time": utc_text(reply["send_time"]),
        "received_at": utc_text(reply["received_at"]),
    }
    return _event(EventType.REPLY_RECEIVED, now, data, inbound_id=reply["id"])


# --- delivery schedule ---------------------------------------------------------------------


def retry_delay(
    attempts: int, initial: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Seconds before the next try after ``attempts`` failed ones: doubling from ``initial``
    up to ``cap``, with "equal jitter" (half fixed, half random) so endpoints coming back are
    not hit by every replica's backlog in the same instant."""
    base = min(cap, initial * 2 ** min(max(attempts - 1, 0), 40))
    return float(base / 2 + base / 2 * rand())


def gives_up(pending_since: datetime, now: datetime, retry_period: float) -> bool:
    """A delivery that still fails ``retry_period`` seconds after it became due is dead."""
    return now - pending_since >= timedelta(seconds=retry_period)


def is_success(status_code: int | None) -> bool:
    return status_code is not None and 200 <= status_code < 300
