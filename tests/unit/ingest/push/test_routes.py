"""Push per account (docs/push.md): each account's paths and token, the one bare 404 for a
wrong token, an unknown account or the other provider's path, records, dead letters, logs and
metrics carrying the account, and the accounts the daemon's wiring lets push."""

from __future__ import annotations

import pytest
import structlog

from receiptd import config, metrics
from receiptd.ingest.push import routes
from receiptd.testing.queues import InMemorySink
from receiptd.wiring import daemon
from tests.unit.ingest.push.test_formats import REPORT_OLD, SMS, UP, envelope
from tests.unit.ingest.push.test_listener import TOKEN, call, js, make

TOKEN_A = "brand-a-token-0123456789"
TOKEN_B = "brand-b-token-0123456789"
TOKEN_HW = "hw-token-0123456789abcd"
NAMED = (
    routes.PushAccount("brand_a", "aliyun", TOKEN_A),
    routes.PushAccount("brand_b", "aliyun", TOKEN_B),
    routes.PushAccount("hw", "huawei", TOKEN_HW),
)
REPORT_QUEUE, HUAWEI_QUEUE = "push:aliyun/SmsReport", "push:huawei/send-status"
NOT_FOUND = (404, {"code": 404, "msg": "not found"})


def requests(provider: str, account: str, kind: str, result: str) -> float:
    labels = {"provider": provider, "account": account, "type": kind, "result": result}
    return metrics.REGISTRY.get_sample_value("receiptd_push_requests_total", labels) or 0.0


# --- the router, pure ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "account", "queue"),
    [
        (f"/push/{TOKEN}/aliyun/SmsReport", ("default", "aliyun"), REPORT_QUEUE),
        (f"/push/{TOKEN}/aliyun/SmsUp", ("default", "aliyun"), "push:aliyun/SmsUp"),
        (f"/push/{TOKEN}/v1/aim/send-status", ("default", "huawei"), HUAWEI_QUEUE),
        (f"/push/{TOKEN_A}/brand_a/aliyun/SmsReport", ("brand_a", "aliyun"), REPORT_QUEUE),
        (f"/push/{TOKEN_B}/brand_b/aliyun/SmsUp", ("brand_b", "aliyun"), "push:aliyun/SmsUp"),
        (f"/push/{TOKEN_HW}/hw/v1/aim/send-status", ("hw", "huawei"), HUAWEI_QUEUE),
    ],
)  # fmt: skip
def test_each_accounts_paths_route_to_it(path: str, account: tuple[str, str], queue: str) -> None:
    router = routes.Router((*routes.default_accounts(TOKEN), *NAMED))
    route = router.route(path)
    assert route is not None
    assert ((route.account.name, route.account.provider), route.channel.queue) == (account, queue)


@pytest.mark.parametrize(
    "path",
    [
        f"/push/{TOKEN_B}/brand_a/aliyun/SmsReport",  # another account's token
        f"/push/{TOKEN}/brand_a/aliyun/SmsReport",  # the default accounts' token
        f"/push/{TOKEN_A}/aliyun/SmsReport",  # a named account's token on a default path
        f"/push/{TOKEN_A}/brand_c/aliyun/SmsReport",  # no such account
        f"/push/{TOKEN_HW}/hw/aliyun/SmsReport",  # an Alibaba path of a Huawei account
        f"/push/{TOKEN_A}/brand_a/v1/aim/send-status",  # a Huawei path of an Alibaba account
        f"/push/{TOKEN}/default/aliyun/SmsReport",  # the default accounts have today's paths
        f"/push/{TOKEN_A}/brand_a/aliyun/Other",
        f"/push/{TOKEN_A}/brand_a",
        f"/push/{TOKEN_A}/brand_a/",
        "/push//brand_a/aliyun/SmsReport",
        f"/x/{TOKEN_A}/brand_a/aliyun/SmsReport",
    ],
)
def test_anything_but_an_accounts_own_token_and_path_is_not_routed(path: str) -> None:
    assert routes.Router((*routes.default_accounts(TOKEN), *NAMED)).route(path) is None


def test_accounts_without_a_token_have_no_paths_and_an_account_is_given_once() -> None:
    router = routes.Router([routes.PushAccount("brand_a", "aliyun", "")])
    assert router.route("/push//brand_a/aliyun/SmsReport") is None
    assert router.routes() == []
    both = routes.Router(routes.default_accounts(TOKEN)).routes()
    assert sorted((r.account.provider, r.channel.type) for r in both) == [
        ("aliyun", "report"), ("aliyun", "up"), ("huawei", "send_status"),
    ]  # fmt: skip
    with pytest.raises(ValueError, match="twice"):
        routes.Router([NAMED[0], routes.PushAccount("brand_a", "aliyun", TOKEN_B)])


# --- the app ----------------------------------------------------------------------------------


def test_records_and_dead_letters_carry_the_paths_account() -> None:
    """(The in-memory sink keys rows without the account: each account pushes its own
    receipts here; tests/integration/test_push_store.py pushes the same one to two.)"""
    app, sink = make(accounts=NAMED)

    def report(biz_id: str) -> dict[str, object]:
        return {**REPORT_OLD, "biz_id": biz_id}

    def bad(biz_id: str) -> dict[str, object]:
        return {**report(biz_id), "success": "yes"}

    a, b = js([report("a"), bad("a")]), js([report("b"), bad("b")])
    assert call(app, f"/push/{TOKEN_A}/brand_a/aliyun/SmsReport", a)[0] == 200
    assert call(app, f"/push/{TOKEN_B}/brand_b/aliyun/SmsReport", b)[0] == 200
    assert call(app, f"/push/{TOKEN}/aliyun/SmsReport", js([REPORT_OLD]))[0] == 200
    assert call(app, f"/push/{TOKEN_B}/brand_b/aliyun/SmsUp", js([UP]))[0] == 200
    assert call(app, f"/push/{TOKEN_HW}/hw/v1/aim/send-status", envelope([SMS]))[0] == 200
    assert {(r.report.biz_id, r.account) for r in sink.reports.values()} == {
        ("a", "brand_a"), ("b", "brand_b"), (REPORT_OLD["biz_id"], "default"),
        (SMS["task_id"], "hw"),
    }  # fmt: skip
    assert [r.account for r in sink.inbound.values()] == ["brand_b"]
    # Dead letters keep the channel's queue name; the account tells them apart.
    assert sorted((d.queue, d.account) for d in sink.dead.values()) == [
        ("push:aliyun/SmsReport", "brand_a"), ("push:aliyun/SmsReport", "brand_b"),
    ]  # fmt: skip


def test_a_whole_body_refused_is_the_accounts_dead_letter() -> None:
    app, sink = make(accounts=NAMED)
    assert call(app, f"/push/{TOKEN_HW}/hw/v1/aim/send-status", b"\xff")[0] == 400
    (dead,) = sink.dead.values()
    assert (dead.queue, dead.account, dead.raw_body) == ("push:huawei/send-status", "hw", b"\xff")


def test_wrong_token_unknown_account_and_other_provider_are_one_bare_404_counted_unknown() -> None:
    app, sink = make(accounts=NAMED)
    before = requests("unknown", "unknown", "unknown", "not_found")
    stored = requests("aliyun", "brand_a", "report", "stored")
    paths = [
        f"/push/{TOKEN_B}/brand_a/aliyun/SmsReport",
        f"/push/{TOKEN_A}/brand_zz/aliyun/SmsReport",
        f"/push/{TOKEN_HW}/hw/aliyun/SmsReport",
        f"/push/{TOKEN_A}/aliyun/SmsReport",
    ]
    for path in paths:
        assert call(app, path, js([REPORT_OLD])) == NOT_FOUND
    assert sink.writes == 0
    assert requests("unknown", "unknown", "unknown", "not_found") == before + len(paths)
    assert requests("unknown", "brand_zz", "report", "not_found") == 0  # no series per guess
    assert call(app, f"/push/{TOKEN_A}/brand_a/aliyun/SmsReport", js([REPORT_OLD]))[0] == 200
    assert requests("aliyun", "brand_a", "report", "stored") == stored + 1


def test_receipts_and_logs_name_the_account() -> None:
    app, _ = make(accounts=NAMED)
    labels = {"account": "hw", "channel": "push", "type": "report", "outcome": "stored"}
    before = metrics.REGISTRY.get_sample_value("receiptd_receipts_total", labels) or 0.0
    with structlog.testing.capture_logs() as logs:
        assert call(app, f"/push/{TOKEN_HW}/hw/v1/aim/send-status", envelope([SMS]))[0] == 200
        assert call(app, f"/push/{TOKEN_A}/brand_a/aliyun/SmsUp", b"[")[0] == 400
    assert metrics.REGISTRY.get_sample_value("receiptd_receipts_total", labels) == before + 1
    (stored,) = [e for e in logs if e["event"] == "push_stored"]
    (rejected,) = [e for e in logs if e["event"] == "push_rejected"]
    assert (stored["account"], stored["queue"]) == ("hw", "push:huawei/send-status")
    assert (rejected["account"], rejected["queue"]) == ("brand_a", "push:aliyun/SmsUp")


# --- the wiring: who may push ------------------------------------------------------------------


@pytest.mark.usefixtures("clean_env")
def test_every_configured_account_may_push_whatever_this_replica_serves() -> None:
    aliyun = {"provider": "aliyun", "access_key_id": "k", "access_key_secret": "s"}
    settings = config.Settings(
        push_addr="127.0.0.1:0",
        push_token=TOKEN,
        accounts={
            "brand_a": {**aliyun, "queue_prefix": "Q-a-", "push_token": TOKEN_A},
            "brand_b": {**aliyun, "queue_prefix": "Q-b-"},  # inherits push_token
            "hw": {
                "provider": "huawei",
                "access_key_id": "k",
                "secret_access_key": "s",
                "project_id": "p",
                "push_token": TOKEN_HW,
            },
        },
        serve_accounts="brand_b",
    )
    pushable = daemon.push_accounts(settings)
    assert sorted((a.name, a.provider, a.token) for a in pushable) == [
        ("brand_a", "aliyun", TOKEN_A),
        ("brand_b", "aliyun", TOKEN),
        ("default", "aliyun", TOKEN),  # not configured: pushable as before accounts
        ("default", "huawei", TOKEN),
        ("hw", "huawei", TOKEN_HW),
    ]
    app = daemon.push_app(settings, sink := InMemorySink())
    assert app is not None
    assert call(app, f"/push/{TOKEN_A}/brand_a/aliyun/SmsReport", js([REPORT_OLD]))[0] == 200
    assert call(app, f"/push/{TOKEN}/brand_a/aliyun/SmsReport", js([REPORT_OLD])) == NOT_FOUND
    assert [r.account for r in sink.reports.values()] == ["brand_a"]
