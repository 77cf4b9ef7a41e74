"""Alicom message bodies and when they arrive.

Bodies are base64 of UTF-8 JSON, as docs/providers/aliyun-mns.md ("Bodies") describes them.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
from collections.abc import Callable, Mapping
from typing import Any

from receiptd_emulator import timeutil
from receiptd_emulator.profiles import Profile
from receiptd_emulator.sms_records import Send

MALFORMED_KINDS = ("bad_base64", "not_json", "missing_field", "not_object")


def encode(fields: Mapping[str, Any]) -> str:
    """What Alicom puts in MessageBody: base64 of the UTF-8 JSON text."""
    text = json.dumps(dict(fields), ensure_ascii=False, separators=(",", ":"))
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def report_fields(send: Send) -> dict[str, Any]:
    """The SmsReport fields, exactly as documented (times in China time, sms_size a string)."""
    receive_time = send.receive_time()
    if receive_time is None:
        raise ValueError("a pending send has no receipt")
    return {
        "phone_number": send.phone,
        "success": send.outcome == "delivered",
        "biz_id": send.biz_id,
        "out_id": send.out_id,
        "send_time": timeutil.cst_text(send.send_time),
        "report_time": timeutil.cst_text(receive_time),
        "err_code": send.err_code,
        "err_msg": send.err_msg,
        "sms_size": str(send.sms_size),
    }


def up_fields(
    phone: str, content: str, sent: dt.datetime, dest_code: str, sequence_id: str
) -> dict[str, Any]:
    """The SmsUp fields; note send_time is `yyyyMMddHHmmss` here, unlike SmsReport."""
    return {
        "phone_number": phone,
        "content": content,
        "send_time": timeutil.cst_text(sent, timeutil.COMPACT_FORMAT),
        "dest_code": dest_code,
        "sequence_id": sequence_id,
    }


def malformed_body(rng: random.Random, kind: str | None = None) -> str:
    """A body a consumer must dead-letter: bad base64, non-JSON, JSON without biz_id, or a list."""
    kind = kind or rng.choice(MALFORMED_KINDS)
    if kind == "bad_base64":
        return "eyJwaG9uZV9udW1iZXIiOiIxMzgw*not-base64*"
    if kind == "not_json":
        return base64.b64encode(b"<html>502 Bad Gateway</html>").decode()
    if kind == "missing_field":
        fields = {
            "phone_number": "13800000000",
            "success": True,
            "send_time": "2024-01-01 00:00:00",
        }
        return encode(fields)
    if kind == "not_object":
        return base64.b64encode(b'["DELIVERED"]').decode()
    raise ValueError(f"unknown malformed kind {kind!r}; expected one of {MALFORMED_KINDS}")


def deliveries(send: Send, profile: Profile, rng: random.Random) -> list[tuple[float, str]]:
    """(arrival time, body) of every SmsReport message this send will produce."""
    if send.receive_ts is None or send.fate in ("lost", "none"):
        return []
    return scheduled(
        send.receive_ts, send.fate, encode(report_fields(send)), malformed_body, profile, rng
    )


def scheduled(
    arrival: float,
    fate: str,
    body: str,
    malformed: Callable[[random.Random], str],
    profile: Profile,
    rng: random.Random,
) -> list[tuple[float, str]]:
    """(arrival time, body) of the messages one receipt becomes under its fate (one of
    `profiles.FATES`, or "none"/"lost": no message); `malformed` builds the broken body."""
    if fate in ("lost", "none"):
        return []
    if fate == "malformed":
        return [(arrival, malformed(rng))]
    if fate == "late":
        return [(arrival + rng.uniform(*profile.late_delay), body)]
    if fate == "duplicate":
        again = arrival + rng.uniform(0.0, max(1.0, profile.receipt_delay[1]))
        return [(arrival, body), (again, body)]
    return [(arrival, body)]
