"""KooMessage send details to claimed sends (receiptd.providers.huawei.matching): exact or
nothing."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from receiptd import domain, ports
from receiptd.providers.huawei import matching
from receiptd.providers.huawei.matching import Detail

SENT = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def send(send_id: int, task: str, flag: str, msg_id: str | None = None) -> ports.PendingSend:
    return ports.PendingSend(
        send_id, domain.Provider.HUAWEI, task, flag, SENT, date(2026, 11, 25), msg_id, None, 0
    )


@pytest.mark.parametrize(
    ("status", "expected"),
    [("success", "delivered"), ("fail", "failed"), ("sending", "pending"), ("new", "pending")],
)
def test_status_of(status: str, expected: str) -> None:
    assert matching.status_of(status).value == expected


def test_a_detail_answers_for_the_send_with_its_task_and_cust_flag() -> None:
    details = [
        Detail("m1", "T1", "c1", send_status="success"),
        Detail("m2", "T1", "c2", send_status="fail", result_code="E" * 80),
        Detail("m3", "T2", "c1", send_status="success"),  # another task
    ]
    delivered, failed = matching.match([send(1, "T1", "c1"), send(2, "T1", "c2")], details)
    assert (delivered.send_id, delivered.status, delivered.err_code) == (
        1,
        domain.SendStatus.DELIVERED,
        None,
    )
    assert (failed.status, failed.err_code) == (domain.SendStatus.FAILED, "E" * 64)
    assert delivered.settled_by is domain.SettledBy.QUERY


def test_without_a_cust_flag_the_send_account_is_the_recipient() -> None:
    (settled,) = matching.match(
        [send(1, "T1", "13800000001")], [Detail("m1", "T1", "", "13800000001", "success")]
    )
    assert settled.status is domain.SendStatus.DELIVERED


def test_details_that_disagree_settle_nothing_and_repeats_count_once() -> None:
    disagree = [Detail("m1", "T1", "c1", send_status="success"), Detail("m2", "T1", "c1")]
    assert matching.match([send(1, "T1", "c1")], disagree) == []
    same = [Detail("m1", "T1", "c1", send_status="fail", result_code="E1")] * 2
    (settled,) = matching.match([send(1, "T1", "c1")], same)
    assert settled.err_code == "E1"


def test_a_send_that_knows_its_msg_id_takes_only_that_detail() -> None:
    details = [Detail("m1", "T1", "c1", send_status="success"), Detail("m2", "T1", "c1")]
    (settled,) = matching.match([send(1, "T1", "c1", msg_id="m1")], details)
    assert settled.status is domain.SendStatus.DELIVERED
    assert matching.match([send(1, "T1", "c1", msg_id="m9")], details) == []


def test_a_sending_detail_is_a_pending_settlement() -> None:
    (settled,) = matching.match([send(1, "T1", "c1")], [Detail("m1", "T1", "c1")])
    assert settled.status is domain.SendStatus.PENDING and settled.err_code is None
