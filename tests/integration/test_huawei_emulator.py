"""KooMessage send-details through the real Huawei SDK against the emulator, over sockets."""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkkoomessage.v1 import ListAimSendDetailsRequest

from receiptd import api, config, domain, ports, wiring
from receiptd.compensation.cycle import Compensator
from receiptd.db.sends import SendStore
from receiptd.db.store import SqlStore
from receiptd.providers.huawei import koomessage, windows
from receiptd.testing.lookups import CountingLimiter
from receiptd_emulator import Emulator, FaultSpec, SeedSend
from receiptd_emulator.emulator import (
    HUAWEI_ACCESS_KEY_ID,
    HUAWEI_AUTH_TOKEN,
    HUAWEI_SECRET_ACCESS_KEY,
)
from receiptd_emulator.koomessage import KooMessageApi, KooMessageAuth
from receiptd_emulator.koomessage_store import SendDetail, generate

AK, SK, TOKEN = HUAWEI_ACCESS_KEY_ID, HUAWEI_SECRET_ACCESS_KEY, HUAWEI_AUTH_TOKEN
NOW = datetime.now(UTC).replace(microsecond=0)
DAY = NOW - timedelta(days=3)  # one whole day of traffic, three days ago
STATUS = {"success": "delivered", "fail": "failed", "sending": "pending"}


def start(api: KooMessageApi) -> Emulator:
    """An emulator whose KooMessage is ``api`` (e.g. with a skewed clock)."""
    emu = Emulator().start()
    emu.add_route(api.route(), replace="koomessage")
    return emu


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:  # KooMessage is wired in: route, keys, seed/inspect methods
        yield emulator


@pytest.fixture
def koo(emu: Emulator) -> KooMessageApi:
    return emu.koomessage


def huawei_settings(emu: Emulator, secret: str = SK, **extra: Any) -> config.Settings:
    return config.Settings(
        huawei_access_key_id=emu.info.huawei_access_key_id,
        huawei_secret_access_key=secret,
        huawei_endpoint=emu.info.koomessage_endpoint,
        aliyun_request_timeout=5.0,
        **extra,
    )


def lookup_for(emu: Emulator, secret: str = SK) -> koomessage.HuaweiLookup:
    lookup = wiring.providers.huawei_lookup(huawei_settings(emu, secret))
    assert isinstance(lookup, koomessage.HuaweiLookup)
    return lookup


def register(store: SendStore, details: list[SendDetail]) -> None:
    store.register(
        [
            ports.NewSend(
                domain.Provider.HUAWEI,
                d.task_id,
                d.cust_flag,
                d.send_time,
                None,
                d.tpl_id,
                d.sms_sign,
            )
            for d in details
        ],
        NOW,
    )


def settle_all(
    store: SendStore, lookup: koomessage.HuaweiLookup, limiter: CountingLimiter
) -> dict[str, int]:
    claimed = store.claim_due(domain.Provider.HUAWEI, NOW, timedelta(0), 10_000)
    result = lookup.lookup(claimed, limiter)
    store.settle(result.settlements, claimed, NOW, 600.0, 3600.0)
    return result.calls


def statuses(engine: sa.Engine) -> dict[tuple[str, str], tuple[str, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT biz_id, phone_number, status, err_code FROM sms_send"))
        return {(r.biz_id, r.phone_number): (r.status, r.err_code) for r in rows}


def api_calls(emu: Emulator) -> list[dict[str, Any]]:
    return [dict(c.params) for c in emu.calls("koomessage")]


# --- settling through window splitting -----------------------------------------------------


@pytest.mark.parametrize("tasks", [1, 400], ids=["one-task", "many-tasks"])
def test_more_than_10000_details_in_one_day_settle_by_splitting_windows(
    emu: Emulator, koo: KooMessageApi, engine: sa.Engine, tasks: int
) -> None:
    task_ids = tuple(f"task-{n:04d}" for n in range(tasks))
    details = generate(
        12_500, DAY, DAY + timedelta(hours=23), task_ids=task_ids, seed=3, sending_rate=0.05
    )
    assert emu.seed_koomessage(details) == len(details)
    claimed = details[::41]  # ~300 sends registered in receiptd, spread over the whole day
    store = SendStore(SqlStore(engine))
    register(store, claimed)
    limiter = CountingLimiter()

    calls = settle_all(store, lookup_for(emu), limiter)

    got = statuses(engine)
    for d in claimed:
        expected_code = d.result_code if d.send_status == "fail" else None
        assert got[(d.task_id, d.cust_flag)] == (STATUS[d.send_status], expected_code)
    params = api_calls(emu)
    assert calls == {"ok": len(params)} and limiter.acquired == len(params)
    assert all(int(p["offset"]) + int(p["limit"]) <= 10_000 for p in params)
    assert all(int(p["limit"]) <= 100 for p in params)
    spans = {(p["begin_time"], p["end_time"]) for p in params}
    assert len(spans) > 1  # the day did not fit under the cap: it was split


def test_a_sending_detail_stays_pending_and_settles_once_final(
    emu: Emulator, koo: KooMessageApi, engine: sa.Engine
) -> None:
    detail = SendDetail("m-1", "task-x", "13800000001", DAY)
    koo.store.add([detail])
    store = SendStore(SqlStore(engine))
    register(store, [detail])
    lookup = lookup_for(emu)
    settle_all(store, lookup, CountingLimiter())
    assert statuses(engine)[("task-x", "13800000001")] == ("pending", None)
    koo.store.update("m-1", send_status="fail", result_code="E:BLACKLIST")
    with engine.begin() as conn:  # due again now
        conn.execute(sa.text("UPDATE sms_send SET next_check_at = NULL"))
    settle_all(store, lookup, CountingLimiter())
    assert statuses(engine)[("task-x", "13800000001")] == ("failed", "E:BLACKLIST")
    assert [d.send_status for d in emu.koomessage_details()] == ["fail"]


# --- errors --------------------------------------------------------------------------------


def one_send(sent: datetime = DAY) -> list[ports.PendingSend]:
    return [
        ports.PendingSend(1, domain.Provider.HUAWEI, "t", "p", sent, sent.date(), None, None, 0)
    ]


def test_a_400_is_lookup_failed_with_the_error_code_and_message() -> None:
    # The emulator's clock is two years ahead: receiptd's window is "older than a year" there.
    ahead = KooMessageApi(
        auth=KooMessageAuth({AK: SK}), clock=lambda: time.time() + 2 * 365 * 86_400
    )
    emu = start(ahead)
    try:
        with pytest.raises(
            ports.LookupFailed,
            match=r"HTTP 400 KOO\.00000400: begin_time must be within the last 1 year",
        ):
            lookup_for(emu).lookup(one_send(), CountingLimiter())
    finally:
        emu.stop()


def test_a_500_is_lookup_unavailable(emu: Emulator) -> None:
    emu.set_faults("koomessage", FaultSpec(error_rate=1.0))
    with pytest.raises(ports.LookupUnavailable, match=r"HTTP 500 KOO\.00000500"):
        lookup_for(emu).lookup(one_send(), CountingLimiter())


def test_a_429_is_lookup_throttled(emu: Emulator) -> None:
    emu.set_faults("koomessage", FaultSpec(throttle_rate=1.0))
    with pytest.raises(ports.LookupThrottled):
        lookup_for(emu).lookup(one_send(), CountingLimiter())


def test_a_refused_connection_is_lookup_unavailable(emu: Emulator) -> None:
    settings = huawei_settings(emu).model_copy(update={"huawei_endpoint": "http://127.0.0.1:9"})
    lookup = wiring.providers.huawei_lookup(settings)
    with pytest.raises(ports.LookupUnavailable, match="unreachable"):
        lookup.lookup(one_send(), CountingLimiter())


def test_an_error_after_progress_returns_what_was_read(emu: Emulator, koo: KooMessageApi) -> None:
    early, late = DAY, DAY + timedelta(hours=12)  # two windows, two calls
    koo.store.add(
        [SendDetail("m1", "t", "p", early, "success"), SendDetail("m2", "t", "q", late, "success")]
    )
    sends = [
        *one_send(early),
        ports.PendingSend(2, domain.Provider.HUAWEI, "t", "q", late, late.date(), None, None, 0),
    ]

    class FailSecond(CountingLimiter):
        def acquire(self) -> None:
            super().acquire()
            if self.acquired == 2:
                emu.set_faults("koomessage", FaultSpec(error_rate=1.0))

    result = lookup_for(emu).lookup(sends, FailSecond())
    assert [s.send_id for s in result.settlements] == [1]
    assert result.calls == {"ok": 1, "unavailable": 1}


# --- authentication ------------------------------------------------------------------------


def test_a_wrong_secret_is_refused(emu: Emulator) -> None:
    with pytest.raises(ports.LookupFailed, match=r"HTTP 401 APIGW\.0301.*signature"):
        lookup_for(emu, secret="not-the-secret").lookup(one_send(), CountingLimiter())


def raw_get(emu: Emulator, headers: dict[str, str], query: str = "limit=1") -> tuple[int, bytes]:
    """A hand-made request (no SDK): for forged signatures and IAM tokens."""
    info = emu.info
    conn = http.client.HTTPConnection(info.host, info.port, timeout=5)
    try:
        conn.request("GET", f"/v1/aim/send-details?{query}", headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_a_tampered_request_is_refused(emu: Emulator) -> None:
    date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    forged = f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders=host;x-sdk-date, Signature={'0' * 64}"
    status, body = raw_get(emu, {"Authorization": forged, "X-Sdk-Date": date})
    assert status == 401 and b"APIGW.0301" in body
    status, _ = raw_get(emu, {})
    assert status == 401


def test_a_stale_sdk_date_is_refused() -> None:
    # The server's clock is an hour ahead of the client's X-Sdk-Date.
    emu = start(KooMessageApi(auth=KooMessageAuth({AK: SK}, clock=lambda: time.time() + 3600)))
    try:
        with pytest.raises(ports.LookupFailed, match="15 minutes"):
            lookup_for(emu).lookup(one_send(), CountingLimiter())
    finally:
        emu.stop()


def test_an_iam_token_is_accepted_and_a_wrong_one_refused(emu: Emulator) -> None:
    status, body = raw_get(emu, {"X-Auth-Token": emu.info.huawei_auth_token})
    assert status == 200 and b'"page_info"' in body
    status, body = raw_get(emu, {"X-Auth-Token": "MIIwrong"})
    assert status == 401 and b"APIGW.0301" in body


# --- the API's limits, through the SDK -----------------------------------------------------


def sdk_client(emu: Emulator) -> Any:
    sdk = koomessage._import_sdk()
    return koomessage.build_client(
        wiring.providers.koomessage_access(huawei_settings(emu).parts.huawei), sdk
    )


RECENT = windows.format_time(NOW - timedelta(days=1))
LATER = windows.format_time(NOW)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"offset": -1}, "offset"),
        ({"offset": 1_000_001}, "offset"),
        ({"begin_time": RECENT}, "together"),
        ({"end_time": LATER}, "together"),
        ({"begin_time": RECENT.replace("Z", "+00:00"), "end_time": LATER}, "2019-10-12T07:20:50Z"),
        ({"begin_time": "2025-01-01 00:00:00", "end_time": LATER}, "2019-10-12T07:20:50Z"),
        ({"begin_time": RECENT[:5] + RECENT[6:], "end_time": LATER}, "2019-10-12T07:20:50Z"),
        ({"begin_time": LATER, "end_time": RECENT}, "after"),
        (
            {"begin_time": windows.format_time(NOW - timedelta(days=367)), "end_time": LATER},
            "1 year",
        ),
        ({"task_id": "t" * 37}, "task_id"),
        ({"tpl_id": "1" * 10}, "tpl_id"),
        ({"sms_sign": "s" * 19}, "sms_sign"),
        ({"cust_flag": "1" * 65}, "cust_flag"),
        ({"begin_time": "x" * 31, "end_time": LATER}, "begin_time"),
    ],
)
def test_limits_are_enforced(emu: Emulator, params: dict[str, Any], message: str) -> None:
    with pytest.raises(ClientRequestException) as caught:
        sdk_client(emu).list_aim_send_details(ListAimSendDetailsRequest(**params))
    assert caught.value.status_code == 400
    assert caught.value.error_code == "KOO.00000400"
    assert message in caught.value.error_msg


def test_limits_at_their_bounds_are_accepted(emu: Emulator, koo: KooMessageApi) -> None:
    koo.store.add(generate(150, DAY, DAY + timedelta(minutes=10), seed=1))
    client = sdk_client(emu)
    full = client.list_aim_send_details(ListAimSendDetailsRequest(offset=0, limit=100))
    assert len(full.send_details) == 100 and full.page_info.total == 150
    rest = client.list_aim_send_details(ListAimSendDetailsRequest(offset=100, limit=100))
    assert len(rest.send_details) == 50
    filters = {"task_id": "t" * 36, "tpl_id": "1" * 9, "sms_sign": "s" * 18, "cust_flag": "1" * 64}
    assert client.list_aim_send_details(ListAimSendDetailsRequest(**filters)).page_info.total == 0


def test_paging_past_10000_answers_an_empty_list(emu: Emulator, koo: KooMessageApi) -> None:
    koo.store.add(generate(10_050, DAY, DAY + timedelta(hours=1), seed=2))
    client = sdk_client(emu)
    last = client.list_aim_send_details(ListAimSendDetailsRequest(offset=9_900, limit=100))
    assert len(last.send_details) == 100 and last.page_info.total == 10_050
    past = client.list_aim_send_details(ListAimSendDetailsRequest(offset=9_901, limit=100))
    assert past.send_details == [] and past.page_info.total == 10_050
    far = client.list_aim_send_details(ListAimSendDetailsRequest(offset=1_000_000, limit=1))
    assert far.send_details == []


def test_a_window_and_filters_narrow_the_answer(emu: Emulator, koo: KooMessageApi) -> None:
    koo.store.add(generate(100, DAY, DAY + timedelta(seconds=99), task_ids=("a", "b"), seed=4))
    client = sdk_client(emu)
    begin, end = (
        windows.format_time(DAY + timedelta(seconds=10)),
        windows.format_time(DAY + timedelta(seconds=19)),
    )
    page = client.list_aim_send_details(
        ListAimSendDetailsRequest(task_id="a", begin_time=begin, end_time=end, limit=100)
    )
    assert page.page_info.total == 5  # inclusive ends, every other second is task "a"
    assert {d.task_id for d in page.send_details} == {"a"}
    assert all(begin <= d.send_time <= end for d in page.send_details)


# --- both providers in one compensation cycle ----------------------------------------------


def test_one_compensation_cycle_settles_aliyun_and_huawei_sends(
    emu: Emulator, koo: KooMessageApi, engine: sa.Engine, db_url: str
) -> None:
    info = emu.info
    settings = huawei_settings(
        emu,
        database_url=db_url,
        aliyun_access_key_id=info.access_key_id,
        aliyun_access_key_secret=info.access_key_secret,
        aliyun_dysms_endpoint=info.dysms_endpoint,
    )
    store = SendStore(SqlStore(engine))
    sent = NOW - timedelta(hours=3)
    seeds = [
        SeedSend(
            f"1390000{i:04d}",
            info.sign_name,
            info.template_code,
            send_time=sent,
            outcome="failed" if i % 3 == 0 else "delivered",
            receipt="lost",
        )
        for i in range(6)
    ]
    for biz_id, seed in zip(emu.seed_sends(seeds), seeds, strict=True):
        api.register_send(store, biz_id=biz_id, phone_numbers=seed.phone, sent_at=sent)
    details = generate(40, sent, sent + timedelta(minutes=5), task_ids=("hw-1", "hw-2"), seed=9)
    koo.store.add(details)
    register(store, details)

    lookups = wiring.status_lookups(settings)
    assert [lk.provider for lk in lookups] == [domain.Provider.ALIYUN, domain.Provider.HUAWEI]
    summary = Compensator(
        store,
        lookups,
        CountingLimiter(),
        grace=timedelta(0),
        batch_size=500,
        base_backoff=600.0,
        max_backoff=3600.0,
        replica="r1",
    ).run_once()

    got = statuses(engine)
    truth = {(r.biz_id, r.phone_number): r for r in emu.records()}
    for key, record in truth.items():
        assert got[key] == ({2: "failed", 3: "delivered"}[record.status], record.err_code), key
    for d in details:
        code = d.result_code if d.send_status == "fail" else None
        assert got[(d.task_id, d.cust_flag)] == (STATUS[d.send_status], code)
    cycles = {c.provider: c for c in summary.providers}
    assert cycles["aliyun"].error is None and cycles["huawei"].error is None
    assert cycles["huawei"].settled["query"] == len(details)
