"""What the emulator knows of one sent SMS (receiptd_emulator.sms_records): its status over
time, its China send date, its parts."""

from __future__ import annotations

import datetime as dt

from receiptd_emulator.sms_records import Send, sms_parts


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


def test_status_and_send_date() -> None:
    send = make_send()
    assert send.send_date == "20240102"  # China date
    assert send.status_at(send.receive_ts - 1) == 1
    assert send.status_at(send.receive_ts) == 3
    assert make_send(outcome="failed").status_at(send.receive_ts) == 2
    assert make_send(outcome="pending", receive_ts=None).status_at(1e12) == 1


def test_sms_parts() -> None:
    assert [sms_parts("x" * n) for n in (1, 70, 71, 134, 135)] == [1, 1, 2, 2, 3]
