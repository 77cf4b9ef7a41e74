"""The call planner: coverage, grouping rules and exact-only matching."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiptd import domain, ports
from receiptd.compensation import planning
from receiptd.compensation.planning import Detail, PlannedQuery, QueryKind

DAY = date(2026, 11, 20)
SENT = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)


def send(i: int, phone: str = "13800000000", out_id: str | None = None, day: date = DAY):
    return ports.PendingSend(
        id=i,
        provider=domain.Provider.ALIYUN,
        biz_id=f"{i}^0",
        phone_number=phone,
        sent_at=SENT,
        send_date=day,
        out_id=out_id,
        template_code="SMS_1",
        check_count=0,
    )


def kinds(queries: tuple[PlannedQuery, ...]) -> list[tuple[str, int]]:
    return [(q.kind.value, len(q.sends)) for q in queries]


@pytest.mark.parametrize(
    ("sends", "expected"),
    [
        pytest.param([send(1, out_id="a")], [("biz_id", 1)], id="single-send-by-bizid"),
        pytest.param(
            [send(1, out_id="a"), send(2, out_id="b"), send(3, out_id="c")],
            [("out_id", 3)],
            id="unique-outids-one-group-query",
        ),
        pytest.param(
            [send(1, out_id="a"), send(2, out_id="a")],
            [("biz_id", 1), ("biz_id", 1)],
            id="duplicate-outids-per-bizid",
        ),
        pytest.param(
            [send(1, out_id="a"), send(2)],
            [("biz_id", 1), ("biz_id", 1)],
            id="missing-outid-per-bizid",
        ),
        pytest.param(
            [send(1, out_id="a"), send(2, phone="13900000000", out_id="b")],
            [("biz_id", 1), ("biz_id", 1)],
            id="different-phones-not-grouped",
        ),
        pytest.param(
            [send(1, out_id="a"), send(2, out_id="b", day=date(2026, 11, 21))],
            [("biz_id", 1), ("biz_id", 1)],
            id="different-dates-not-grouped",
        ),
        pytest.param([], [], id="nothing"),
    ],
)
def test_plan_table(sends: list[ports.PendingSend], expected: list[tuple[str, int]]) -> None:
    assert kinds(planning.plan(sends)) == expected


def test_group_query_has_no_bizid_and_keeps_phone_and_date() -> None:
    (query,) = planning.plan([send(1, out_id="a"), send(2, out_id="b")])
    assert query.biz_id is None
    assert (query.phone_number, query.send_date) == ("13800000000", DAY)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (3, domain.SendStatus.DELIVERED),
        (2, domain.SendStatus.FAILED),
        (1, domain.SendStatus.PENDING),
        (0, domain.SendStatus.PENDING),
    ],
)
def test_status_of(status: int, expected: domain.SendStatus) -> None:
    assert planning.status_of(status) is expected


def test_match_by_bizid_keeps_err_code_of_failures() -> None:
    (query,) = planning.plan([send(1)])
    match = planning.match(query, [Detail(2, None, "MK:0001")])
    assert match.settlements == (
        ports.Settlement(1, domain.SendStatus.FAILED, domain.SettledBy.QUERY, "MK:0001"),
    )


def test_match_by_bizid_without_rows_settles_nothing() -> None:
    (query,) = planning.plan([send(1)])
    assert planning.match(query, []) == planning.Match()


def test_match_by_bizid_with_conflicting_rows_settles_nothing() -> None:
    (query,) = planning.plan([send(1)])
    assert (
        planning.match(query, [Detail(3, None, "DELIVERED"), Detail(2, None, "X")]).settlements
        == ()
    )


def test_match_by_outid_only_exact_rows_the_rest_fall_back() -> None:
    (query,) = planning.plan([send(1, out_id="a"), send(2, out_id="b"), send(3, out_id="c")])
    rows = [
        Detail(3, "a", "DELIVERED"),
        Detail(3, "b", "DELIVERED"),
        Detail(2, "b", "UNDELIV"),  # a second send with OutId b (not ours): ambiguous
        Detail(3, "zzz", "DELIVERED"),  # someone else's send
    ]
    match = planning.match(query, rows)
    assert [(s.send_id, s.status) for s in match.settlements] == [(1, domain.SendStatus.DELIVERED)]
    assert [s.id for s in match.fallback] == [2, 3]


def test_pending_row_is_a_pending_settlement() -> None:
    (query,) = planning.plan([send(1, out_id="a"), send(2, out_id="b")])
    match = planning.match(query, [Detail(1, "a"), Detail(3, "b", "DELIVERED")])
    assert [s.status for s in match.settlements] == [
        domain.SendStatus.PENDING,
        domain.SendStatus.DELIVERED,
    ]
    assert match.settlements[0].err_code is None


@pytest.mark.parametrize(("total", "pages"), [(0, 1), (1, 1), (50, 1), (51, 2), (101, 3)])
def test_pages(total: int, pages: int) -> None:
    assert planning.pages(total, 50) == pages


# --- properties -----------------------------------------------------------------------------

phones = st.sampled_from(["13800000000", "13800000001", "13900000002"])
days = st.sampled_from([date(2026, 11, 19), date(2026, 11, 20)])
out_ids = st.one_of(st.none(), st.sampled_from(["a", "b", "c", "d", "e"]))
send_specs = st.lists(st.tuples(phones, days, out_ids), max_size=40)


def build(specs: list[tuple[str, date, str | None]]) -> list[ports.PendingSend]:
    return [send(i, phone, out_id, day) for i, (phone, day, out_id) in enumerate(specs)]


@given(send_specs)
def test_every_send_is_covered_by_exactly_one_query(specs) -> None:
    sends = build(specs)
    queries = planning.plan(sends)
    covered = Counter(s.id for q in queries for s in q.sends)
    assert covered == Counter(s.id for s in sends)
    for query in queries:
        assert {(s.phone_number, s.send_date) for s in query.sends} == {
            (query.phone_number, query.send_date)
        }
        if query.kind is QueryKind.BIZ_ID:
            assert [s.biz_id for s in query.sends] == [query.biz_id]
        else:
            ids = [s.out_id for s in query.sends]
            assert all(ids) and len(set(ids)) == len(ids) and len(ids) > 1


@given(send_specs)
def test_plan_never_costs_more_than_one_query_per_send(specs) -> None:
    sends = build(specs)
    assert len(planning.plan(sends)) <= len(sends)


rows = st.lists(
    st.builds(Detail, st.sampled_from([1, 2, 3]), out_ids, st.sampled_from(["DELIVERED", "X"])),
    max_size=12,
)


@given(send_specs, rows)
def test_no_status_attributed_unless_the_outid_row_is_unique(specs, details) -> None:
    sends = {s.id: s for s in build(specs)}
    for query in planning.plan(sends.values()):
        if query.kind is not QueryKind.OUT_ID:
            continue
        match = planning.match(query, details)
        settled = {s.send_id for s in match.settlements}
        assert settled.isdisjoint(s.id for s in match.fallback)
        assert settled | {s.id for s in match.fallback} == {s.id for s in query.sends}
        for settlement in match.settlements:
            out_id = sends[settlement.send_id].out_id
            (row,) = [d for d in details if d.out_id == out_id]
            assert settlement.status is planning.status_of(row.send_status)
