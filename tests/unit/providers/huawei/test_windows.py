"""KooMessage call planning and matching (pure): windows, splitting, paging, exact matching,
and the lookup's error and counting rules over a fake page source."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receiptd import domain, metrics, ports
from receiptd.providers.huawei import koomessage, matching, windows
from receiptd.testing.lookups import CountingLimiter
from receiptd.wiring.providers import huawei_lookup

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
T0 = datetime(2025, 6, 1, 0, 0, 0, tzinfo=UTC)
S = timedelta(seconds=1)


def send(
    id: int, task: str = "t1", phone: str = "13000000001", at: datetime = T0, msg: str | None = None
) -> ports.PendingSend:
    return ports.PendingSend(id, domain.Provider.HUAWEI, task, phone, at, at.date(), msg, None, 0)


def detail(
    msg: str,
    task: str = "t1",
    phone: str = "13000000001",
    status: str = "success",
    code: str | None = None,
) -> matching.Detail:
    return matching.Detail(msg, task, phone, phone, status, code)


# --- windows -------------------------------------------------------------------------------


def test_window_rejects_fractions_naive_and_reversed() -> None:
    with pytest.raises(ValueError):
        windows.Window(T0 + timedelta(microseconds=1), T0 + S)
    with pytest.raises(ValueError):
        windows.Window(T0.replace(tzinfo=None), T0.replace(tzinfo=None))
    with pytest.raises(ValueError):
        windows.Window(T0 + S, T0)


def test_time_format_round_trips_in_utc() -> None:
    cst = datetime(2025, 6, 1, 8, 0, 0, tzinfo=domain.CHINA_TZ)
    assert windows.format_time(cst) == "2025-06-01T00:00:00Z"
    assert windows.parse_time("2025-06-01T00:00:00Z") == T0


@pytest.mark.parametrize(
    ("seconds", "halves"),
    [
        (1, None),
        (2, ((0, 0), (1, 1))),
        (3, ((0, 1), (2, 2))),
        (86_400, ((0, 43_199), (43_200, 86_399))),
    ],
)
def test_split_table(seconds: int, halves: tuple[tuple[int, int], ...] | None) -> None:
    window = windows.Window(T0, T0 + (seconds - 1) * S)
    got = windows.split(window)
    if halves is None:
        assert got is None
    else:
        assert got == tuple(windows.Window(T0 + a * S, T0 + b * S) for a, b in halves)


@given(st.integers(0, 10**7), st.integers(0, 10**7))
def test_split_halves_are_disjoint_and_cover_the_window(start: int, length: int) -> None:
    window = windows.Window(T0 + start * S, T0 + (start + length) * S)
    halves = windows.split(window)
    if length == 0:
        assert halves is None
        return
    assert halves is not None
    left, right = halves
    assert left.begin == window.begin and right.end == window.end
    assert right.begin == left.end + S
    assert left.seconds + right.seconds == window.seconds
    assert 0 <= left.seconds - right.seconds <= 1


@pytest.mark.parametrize(
    ("total", "limit", "expected"),
    [
        (0, 100, ((0, 100),)),
        (100, 100, ((0, 100),)),
        (250, 100, ((0, 100), (100, 100), (200, 100))),
        (9_950, 100, tuple((o, 100) for o in range(0, 10_000, 100))),
        (15_000, 100, tuple((o, 100) for o in range(0, 10_000, 100))),
    ],
)
def test_pages_table(total: int, limit: int, expected: tuple[tuple[int, int], ...]) -> None:
    assert windows.pages(total, limit) == expected


@given(st.integers(0, 50_000), st.integers(1, 100))
def test_pages_never_pass_the_cap_and_reach_every_reachable_row(total: int, limit: int) -> None:
    got = windows.pages(total, limit)
    assert all(offset >= 0 and 1 <= n <= limit and offset + n <= 10_000 for offset, n in got)
    covered = sum(n for _, n in got)
    assert covered >= min(total, 10_000)
    assert [o for o, _ in got] == sorted({o for o, _ in got})


def test_pages_rejects_a_limit_the_api_refuses() -> None:
    with pytest.raises(ValueError):
        windows.pages(10, 101)
    with pytest.raises(ValueError):
        windows.pages(10, 0)


def test_cover_merges_overlapping_sends_and_keeps_far_ones_apart() -> None:
    sends = [send(1, "a", at=T0), send(2, "b", at=T0 + 10 * S), send(3, "c", at=T0 + 3600 * S)]
    scopes = windows.cover(sends, NOW, timedelta(seconds=5), timedelta(seconds=60))
    assert scopes == (
        windows.Scope(windows.Window(T0 - 5 * S, T0 + 70 * S), ("a", "b")),
        windows.Scope(windows.Window(T0 + 3595 * S, T0 + 3660 * S), ("c",)),
    )


def test_cover_clamps_to_now_and_to_the_last_year() -> None:
    recent = send(1, at=NOW - S)
    old = send(2, at=NOW - timedelta(days=365) + 2 * windows.EDGE)
    ancient = send(3, at=NOW - timedelta(days=400))
    scopes = windows.cover([recent, old, ancient], NOW, timedelta(hours=2), timedelta(hours=2))
    assert [s.window for s in scopes] == [
        windows.Window(windows.oldest_queryable(NOW), old.sent_at + timedelta(hours=2)),
        windows.Window(NOW - timedelta(hours=2) - S, NOW),
    ]
    assert windows.oldest_queryable(NOW) >= NOW - timedelta(days=365)


def test_cover_rounds_outwards_to_whole_seconds() -> None:
    at = T0 + timedelta(milliseconds=1500)
    (scope,) = windows.cover([send(1, at=at)], NOW, timedelta(0), timedelta(0))
    assert scope.window == windows.Window(T0 + S, T0 + 2 * S)


@pytest.mark.parametrize(
    ("age", "queryable"),
    [
        (timedelta(0), True),
        (timedelta(days=364), True),
        (timedelta(days=365) - windows.EDGE, True),
        (timedelta(days=365) - windows.EDGE + S, False),
        (timedelta(days=400), False),
    ],
)
def test_queryable_table(age: timedelta, queryable: bool) -> None:
    assert windows.queryable(NOW - age, NOW) is queryable


# --- walking the windows against a fake API --------------------------------------------------


class FakeApi:
    """The API's paging rules over a list of (send_time, detail); records every query."""

    def __init__(
        self, rows: list[tuple[datetime, matching.Detail]], paging: windows.Paging
    ) -> None:
        self.rows = rows
        self.paging = paging
        self.queries: list[windows.Query] = []

    def fetch(self, query: windows.Query) -> windows.Page:
        assert 1 <= query.limit <= self.paging.limit
        assert query.offset + query.limit <= self.paging.cap, "paged past the cap"
        self.queries.append(query)
        found = [
            d
            for at, d in self.rows
            if query.window.begin <= at <= query.window.end
            and (query.task_id is None or d.task_id == query.task_id)
        ]
        return windows.Page(tuple(found[query.offset : query.offset + query.limit]), len(found))


def _rows(offsets: list[int], tasks: int = 1) -> list[tuple[datetime, matching.Detail]]:
    return [
        (T0 + o * S, detail(f"m{i}", f"t{i % tasks}", f"p{i}"))
        for i, o in enumerate(sorted(offsets))
    ]


@settings(max_examples=150, deadline=None)
@given(
    offsets=st.lists(st.integers(0, 600), max_size=120),
    cap=st.integers(4, 30),
    limit=st.integers(1, 4),
)
def test_walk_reads_every_detail_once_without_passing_the_cap(
    offsets: list[int], cap: int, limit: int
) -> None:
    paging = windows.Paging(limit=limit, cap=cap)
    rows = _rows(offsets)
    api = FakeApi(rows, paging)
    window = windows.Window(T0, T0 + 600 * S)
    got = [d.msg_id for d in windows.walk(window, None, api.fetch, paging=paging)]
    per_second: dict[datetime, int] = {}
    for at, _ in rows:
        per_second[at] = per_second.get(at, 0) + 1
    if max(per_second.values(), default=0) <= cap:  # else one second alone passes the cap
        assert sorted(got) == sorted(d.msg_id for _, d in rows)
    assert len(got) == len(set(got))


def test_walk_splits_a_window_over_the_cap_in_halves() -> None:
    paging = windows.Paging(limit=5, cap=10)
    api = FakeApi(_rows(list(range(30))), paging)
    window = windows.Window(T0, T0 + 29 * S)
    got = list(windows.walk(window, None, api.fetch, paging=paging))
    assert len(got) == 30
    firsts = [q.window for q in api.queries if q.offset == 0]
    assert firsts[0] == window and len(firsts) > 1
    assert all(q.offset + q.limit <= 10 for q in api.queries)


def test_walk_keeps_what_the_cap_lets_through_in_a_crowded_second() -> None:
    paging = windows.Paging(limit=5, cap=10)
    api = FakeApi(_rows([0] * 25), paging)
    got = list(windows.walk(windows.Window(T0, T0), None, api.fetch, paging=paging))
    assert len(got) == 10


def test_collect_narrows_by_task_when_tasks_are_few() -> None:
    paging = windows.Paging(limit=5, cap=1000)
    api = FakeApi(_rows(list(range(200)), tasks=20), paging)
    scope = windows.Scope(windows.Window(T0, T0 + 199 * S), ("t3",))
    got = {d.msg_id for d in windows.collect(scope, api.fetch, paging)}
    assert {f"m{i}" for i in range(3, 200, 20)} <= got
    assert [q.task_id for q in api.queries] == [None, "t3", "t3"]


def test_collect_reads_the_whole_window_when_tasks_are_many() -> None:
    paging = windows.Paging(limit=5, cap=1000)
    api = FakeApi(_rows(list(range(20)), tasks=20), paging)
    scope = windows.Scope(windows.Window(T0, T0 + 19 * S), tuple(f"t{i}" for i in range(20)))
    assert len(list(windows.collect(scope, api.fetch, paging))) == 20
    assert {q.task_id for q in api.queries} == {None}
    assert len(api.queries) == 4


def test_collect_never_filters_by_a_task_id_the_api_would_refuse() -> None:
    paging = windows.Paging(limit=5, cap=1000)
    api = FakeApi(_rows(list(range(100))), paging)
    scope = windows.Scope(windows.Window(T0, T0 + 99 * S), ("x" * 37,))
    list(windows.collect(scope, api.fetch, paging))
    assert {q.task_id for q in api.queries} == {None}


# --- matching ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("success", domain.SendStatus.DELIVERED),
        ("fail", domain.SendStatus.FAILED),
        ("sending", domain.SendStatus.PENDING),
        ("something-new", domain.SendStatus.PENDING),
    ],
)
def test_status_table(status: str, expected: domain.SendStatus) -> None:
    assert matching.status_of(status) is expected


def test_match_is_exact_on_task_and_cust_flag() -> None:
    sends = [send(1, "t1", "A"), send(2, "t2", "A"), send(3, "t1", "B"), send(4, "t9", "A")]
    details = [
        detail("m1", "t1", "A", "success"),
        detail("m2", "t2", "A", "fail", "E:UNDELIV"),
        detail("m3", "t1", "B", "sending"),
    ]
    got = {s.send_id: s for s in matching.match(sends, details)}
    assert got[1].status is domain.SendStatus.DELIVERED and got[1].err_code is None
    assert got[2].status is domain.SendStatus.FAILED and got[2].err_code == "E:UNDELIV"
    assert got[3].status is domain.SendStatus.PENDING
    assert 4 not in got
    assert all(s.settled_by is domain.SettledBy.QUERY for s in got.values())


def test_match_uses_send_account_only_without_cust_flag() -> None:
    by_account = matching.Detail("m1", "t1", "", "A", "success")
    other_flag = matching.Detail("m2", "t1", "FLAG", "B", "success")
    got = matching.match([send(1, "t1", "A"), send(2, "t1", "B")], [by_account, other_flag])
    assert [s.send_id for s in got] == [1]


def test_match_disagreeing_details_settle_nothing_unless_msg_id_picks_one() -> None:
    details = [detail("m1", status="success"), detail("m2", status="sending")]
    assert matching.match([send(1)], details) == []
    (picked,) = matching.match([send(1, msg="m2")], details)
    assert picked.status is domain.SendStatus.PENDING
    assert matching.match([send(1, msg="m3")], details) == []


def test_match_counts_a_detail_seen_twice_once() -> None:
    (got,) = matching.match([send(1)], [detail("m1"), detail("m1")])
    assert got.status is domain.SendStatus.DELIVERED


@given(
    st.lists(
        st.tuples(
            st.sampled_from("abc"),
            st.sampled_from("xyz"),
            st.sampled_from(["success", "fail", "sending"]),
        ),
        max_size=30,
    )
)
def test_match_never_attributes_a_detail_of_another_send(rows: list[tuple[str, str, str]]) -> None:
    details = [detail(f"m{i}", t, p, s) for i, (t, p, s) in enumerate(rows)]
    sends = [send(i, t, p) for i, (t, p) in enumerate((t, p) for t in "abc" for p in "xyz")]
    for settlement in matching.match(sends, details):
        owner = sends[settlement.send_id]
        statuses = {
            matching.status_of(d.send_status)
            for d in details
            if (d.task_id, d.cust_flag) == (owner.biz_id, owner.phone_number)
        }
        assert statuses == {settlement.status}


# --- the lookup over a fake API --------------------------------------------------------------


class ScriptedApi:
    """Answers from a FakeApi, raising the scripted exception at call number ``fail_at``."""

    def __init__(
        self, api: FakeApi, fail_at: int | None = None, error: Exception | None = None
    ) -> None:
        self.api, self.fail_at, self.error, self.calls = api, fail_at, error, 0

    def fetch(self, query: windows.Query) -> windows.Page:
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at and self.error is not None:
            raise self.error
        return self.api.fetch(query)


def _lookup(api: ScriptedApi) -> koomessage.HuaweiLookup:
    return koomessage.HuaweiLookup(api, clock=lambda: NOW)


def _calls(result: str) -> float:
    value: float = (
        metrics.REGISTRY.get_sample_value(
            "receiptd_compensator_calls_total",
            {"provider": "huawei", "account": "default", "result": result},
        )
        or 0.0
    )
    return value


def test_lookup_settles_counts_calls_and_takes_one_token_per_call() -> None:
    rows = [
        (T0 + i * S, detail(f"m{i}", "t1", f"p{i}", "fail" if i % 2 else "success", "E1"))
        for i in range(250)
    ]
    api = ScriptedApi(FakeApi(rows, windows.API_PAGING))
    limiter = CountingLimiter()
    before = _calls("ok")
    result = _lookup(api).lookup(
        [send(1, "t1", "p0", T0), send(2, "t1", "p249", T0 + 249 * S)], limiter
    )
    assert {s.send_id: s.status for s in result.settlements} == {
        1: domain.SendStatus.DELIVERED,
        2: domain.SendStatus.FAILED,
    }
    assert result.calls == {"ok": api.calls} and limiter.acquired == api.calls
    assert _calls("ok") - before == api.calls


@pytest.mark.parametrize(
    ("error", "result"),
    [
        (ports.LookupUnavailable("500"), "unavailable"),
        (ports.LookupFailed("400"), "error"),
        (ports.LookupThrottled("429"), "throttled"),
    ],
)
def test_lookup_raises_when_no_call_succeeded(error: Exception, result: str) -> None:
    api = ScriptedApi(FakeApi([], windows.API_PAGING), fail_at=1, error=error)
    before = _calls(result)
    with pytest.raises(type(error)):
        _lookup(api).lookup([send(1)], CountingLimiter())
    assert _calls(result) - before == 1


def test_lookup_returns_partial_progress_with_the_error_counted() -> None:
    rows = [(T0, detail("m1", "t1", "A")), (T0 + timedelta(hours=6), detail("m2", "t2", "B"))]
    api = ScriptedApi(
        FakeApi(rows, windows.API_PAGING), fail_at=2, error=ports.LookupUnavailable("x")
    )
    sends = [send(1, "t1", "A", T0), send(2, "t2", "B", T0 + timedelta(hours=6))]
    result = _lookup(api).lookup(sends, CountingLimiter())
    assert [s.send_id for s in result.settlements] == [1]
    assert result.calls == {"ok": 1, "unavailable": 1}


def test_in_window_and_oldest_send_date_agree() -> None:
    lookup = _lookup(ScriptedApi(FakeApi([], windows.API_PAGING)))
    assert lookup.provider is domain.Provider.HUAWEI
    assert lookup.in_window(send(1, at=NOW - timedelta(days=300)), NOW)
    assert not lookup.in_window(send(1, at=NOW - timedelta(days=366)), NOW)
    oldest = lookup.oldest_send_date(NOW)
    assert isinstance(oldest, date)
    assert oldest == (NOW - timedelta(days=365) + windows.EDGE).astimezone(domain.CHINA_TZ).date()


def test_no_lookup_is_built_unless_configured() -> None:
    from receiptd.config import Settings
    from receiptd.wiring import status_lookups

    assert [lookup.provider for lookup in status_lookups(Settings())] == []


def test_build_without_a_secret_is_a_config_error() -> None:
    from receiptd.config import ConfigError, Settings

    with pytest.raises(ConfigError, match="huawei_secret_access_key"):
        huawei_lookup(Settings(huawei_access_key_id="AK"))


def test_build_without_the_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from receiptd.config import ConfigError, Settings

    real_import: Callable[..., object] = builtins.__import__

    def no_huawei(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("huaweicloudsdk"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_huawei)
    settings_ = Settings(huawei_access_key_id="AK", huawei_secret_access_key="SK")
    with pytest.raises(ConfigError, match=r"pip install 'receiptd\[huawei\]'"):
        huawei_lookup(settings_)
