"""The truth of international sends: QueryMessage's status over time, unique ids, snapshots."""

from __future__ import annotations

import pytest

from receiptd_emulator.globe_records import GlobeRecords

from .test_globe_receipts import SENT, globe_send


@pytest.mark.parametrize(
    ("outcome", "settled"), [("delivered", "1"), ("failed", "2"), ("expired", "2")]
)
def test_query_status_is_3_until_the_receipt_time(outcome: str, settled: str) -> None:
    send = globe_send(outcome=outcome)
    due = SENT.timestamp() + 33
    assert send.query_status(due - 0.001) == "3"
    assert send.query_status(due) == settled
    assert globe_send(outcome="pending", receive_ts=None).query_status(due + 1e9) == "3"


def test_snapshot_hides_errors_until_settled() -> None:
    now = [SENT.timestamp()]
    records = GlobeRecords(lambda: now[0], seed=1)
    records.add([globe_send(outcome="failed")])
    (early,) = records.snapshot()
    assert (early.status, early.err_code, early.receive_time) == ("3", "", None)
    now[0] += 60
    (late,) = records.snapshot()
    assert (late.status, late.err_code) == ("2", "UNDELIV")
    assert late.receive_time is not None


def test_ids_are_unique_digits_and_seeded() -> None:
    ids = [GlobeRecords(lambda: 0.0, seed=4).new_message_id() for _ in range(2)]
    assert ids[0] == ids[1] and len(ids[0]) == 16 and ids[0].isdigit()
    records = GlobeRecords(lambda: 0.0)
    assert len({records.new_message_id() for _ in range(1000)}) == 1000


def test_add_is_all_or_nothing() -> None:
    records = GlobeRecords(lambda: 0.0)
    records.add([globe_send(message_id="1")])
    with pytest.raises(ValueError, match="unique"):
        records.add([globe_send(message_id="2"), globe_send(message_id="1")])
    with pytest.raises(ValueError, match="unique"):
        records.add([globe_send(message_id="3"), globe_send(message_id="3")])
    assert len(records) == 1 and records.get("2") is None
