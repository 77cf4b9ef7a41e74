"""The send API of the ops endpoint (``receiptd.wiring.daemon.ops_app``) over a real database on
every backend: sends registered per account, every account's rows of a BizId, ``?account=``,
and the summary per account."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest

from receiptd import config
from receiptd.daemon.ops import OpsServer, Probes
from receiptd.db.engine import create_db_engine
from receiptd.db.sends import SendStore
from receiptd.db.store import SqlStore
from receiptd.wiring import daemon

TOKEN = "api-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


@pytest.fixture
def server(db_url: str) -> Iterator[OpsServer]:
    settings = config.Settings(
        database_url=db_url,
        status_api_token=TOKEN,
        aliyun_access_key_id="ak",
        aliyun_access_key_secret="secret",
        aliyun_queue_prefix="Alicom-Queue-1-",
        accounts={"brand_b": {"provider": "aliyun", "access_key_id": "ak-b",
                              "access_key_secret": "s", "queue_prefix": "Alicom-Queue-2-"}},
    )  # fmt: skip
    engine = create_db_engine(db_url)
    srv = OpsServer(
        daemon.ops_app(settings, SendStore(SqlStore(engine)), Probes({}, {})), "127.0.0.1", 0
    )
    srv.start()
    yield srv
    srv.close()
    engine.dispose()


def call(srv: OpsServer, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    conn.request(method, path, body=None if body is None else json.dumps(body), headers=AUTH)
    resp = conn.getresponse()
    data = json.loads(resp.read())
    conn.close()
    return resp.status, data


def record(phone: str, account: str | None = None) -> dict[str, str]:
    out = {"biz_id": "700^0", "phone_number": phone, "sent_at": "2026-11-24T09:30:00+08:00"}
    return out if account is None else out | {"account": account}


def test_the_same_send_in_two_accounts_is_two_sends_each_listed_with_its_account(
    server: OpsServer,
) -> None:
    sends = [
        record("13800000001"),
        record("13800000001", "brand_b"),
        record("13800000002", "brand_b"),
    ]
    assert call(server, "POST", "/v1/sends", sends) == (200, {"received": 3, "registered": 3})
    status, body = call(server, "GET", "/v1/sends/700^0")
    assert status == 200
    assert [(r["account"], r["phone_number"], r["status"]) for r in body["recipients"]] == [
        ("brand_b", "138****0001", "pending"),
        ("brand_b", "138****0002", "pending"),
        ("default", "138****0001", "pending"),
    ]
    status, body = call(server, "GET", "/v1/sends/700^0?account=default")
    assert [r["account"] for r in body["recipients"]] == ["default"]
    assert call(server, "GET", "/v1/sends/700^0?account=brand_c")[0] == 404

    status, body = call(server, "GET", "/v1/status")
    assert body["sends"] == {"aliyun": {"pending": 3}}
    assert [(a["account"], a["sends"]) for a in body["accounts"]] == [
        ("brand_b", {"pending": 2}),
        ("default", {"pending": 1}),
    ]
    status, body = call(server, "GET", "/v1/status?account=brand_b")
    assert body["sends"] == {"aliyun": {"pending": 2}}


def test_an_unknown_account_is_a_clear_400_and_registers_nothing(server: OpsServer) -> None:
    status, body = call(server, "POST", "/v1/sends", [record("1"), record("2", "brand_c")])
    assert status == 400
    assert body == {"error": "item 1: unknown aliyun account 'brand_c'"}
    assert call(server, "GET", "/v1/sends/700^0")[0] == 404
