"""The ops endpoint over a real socket: probes, metrics, the guarded status lookup."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from receiptd import domain, ports
from receiptd.daemon.ops import OpsApp, OpsServer, Probes

TOKEN = "s3cr3t-bearer-token"
ROW = {
    "provider": "aliyun",
    "account": "default",
    "phone_number": "13812345678",
    "status": "delivered",
    "settled_by": "receipt",
    "err_code": "DELIVERED",
    "sent_at": datetime(2026, 11, 25, tzinfo=UTC),
    "settled_at": None,
    "out_id": "o1",
}


@pytest.fixture
def state() -> dict[str, Any]:
    return {"db": True}


ROWS = [ROW, dict(ROW, account="brand_b", status="failed")]
KNOWN = {("aliyun", "default"), ("aliyun", "brand_b"), ("huawei", "default")}
SUMMARY = ports.StatusSummary(
    counts={("aliyun", "default", "pending"): 2, ("aliyun", "brand_b", "delivered"): 1},
    settled={
        ("aliyun", "default", "pending", ""): 2,
        ("aliyun", "brand_b", "delivered", "query"): 1,
    },
    oldest_pending={("aliyun", "default"): datetime(2026, 11, 25, 7, 0, tzinfo=UTC)},
    dead_letters=3,
    inbound=4,
)


def lookup(
    biz_id: str, account: str | None, key: domain.SendKey | None = None
) -> list[dict[str, Any]]:
    """The rows ``SendStore.by_biz_id`` gives: every account's, or ``account``'s alone;
    ``key`` narrows to one kind of id (ROWS are BizId sends)."""
    return [
        r
        for r in ROWS
        if biz_id == "b1^0"
        and account in (None, r["account"])
        and key in (None, domain.SendKey.BIZ_ID)
    ]


@pytest.fixture
def server(state: dict[str, Any]) -> Iterator[OpsServer]:
    def db() -> tuple[bool, str]:
        if not state["db"]:
            raise ConnectionError("connection refused")
        return True, "reachable"

    def register(sends: list[Any]) -> int:
        state.setdefault("registered", []).extend(sends)
        return len(sends)

    app = OpsApp(
        Probes({"loops": lambda: (True, "heartbeating")}, {"database": db}),
        status_token=TOKEN,
        lookup=lookup,
        register=register,
        accounts=KNOWN,
        summary=lambda: SUMMARY,
    )
    srv = OpsServer(app, "127.0.0.1", 0)
    srv.start()
    yield srv
    srv.close()


def call(
    srv: OpsServer,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[int, bytes, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data, resp


def test_liveness_and_readiness(server: OpsServer, state: dict[str, Any]) -> None:
    assert call(server, "GET", "/healthz")[0] == 200
    status, body, _ = call(server, "GET", "/readyz")
    assert status == 200
    assert json.loads(body)["checks"]["database"] == {"ok": True, "detail": "reachable"}
    state["db"] = False
    status, body, _ = call(server, "GET", "/readyz")
    assert status == 503
    assert "connection refused" in json.loads(body)["checks"]["database"]["detail"]
    assert b"receiptd_ready 0.0" in call(server, "GET", "/metrics")[1]


def test_metrics_text_format(server: OpsServer) -> None:
    status, body, resp = call(server, "GET", "/metrics")
    assert status == 200
    assert resp.getheader("Content-Type", "").startswith("text/plain")
    assert b"# TYPE receiptd_messages_total counter" in body
    assert b"receiptd_build_info{version=" in body


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_bad_methods_rejected(server: OpsServer, method: str) -> None:
    status, _, resp = call(server, method, "/healthz", body=b"")
    assert status == 405
    assert resp.getheader("Allow") == "GET, HEAD"


def test_oversized_body_rejected(server: OpsServer) -> None:
    status, _, _ = call(server, "GET", "/healthz", body=b"x" * 4096)
    assert status == 413


def test_unknown_path_404(server: OpsServer) -> None:
    assert call(server, "GET", "/nope")[0] == 404


@pytest.mark.parametrize(
    "auth", [None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer "]
)
def test_status_lookup_refuses_bad_tokens(server: OpsServer, auth: str | None) -> None:
    headers = {"Authorization": auth} if auth else {}
    status, body, _ = call(server, "GET", "/v1/sends/b1^0", headers)
    assert status == 401
    assert b"13812345678" not in body


def test_status_lookup_masks_phone(server: OpsServer) -> None:
    status, body, _ = call(server, "GET", "/v1/sends/b1^0", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    payload = json.loads(body)
    assert payload["recipients"][0]["phone_number"] == "138****5678"
    assert [(r["account"], r["status"]) for r in payload["recipients"]] == [
        ("default", "delivered"),
        ("brand_b", "failed"),
    ]
    assert call(server, "GET", "/v1/sends/unknown", {"Authorization": f"Bearer {TOKEN}"})[0] == 404
    long_id = "b" * 65
    assert (
        call(server, "GET", f"/v1/sends/{long_id}", {"Authorization": f"Bearer {TOKEN}"})[0] == 400
    )


def test_status_lookup_off_without_token() -> None:
    app = OpsApp(Probes({}, {}), status_token=None, lookup=lambda b, a, k: [ROW])
    srv = OpsServer(app, "127.0.0.1", 0)
    srv.start()
    try:
        assert call(srv, "GET", "/v1/sends/b1^0", {"Authorization": "Bearer x"})[0] == 404
    finally:
        srv.close()


def test_malformed_request_line(server: OpsServer) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GARBAGE\r\n\r\n")
        reply = sock.recv(1024)
    assert reply.startswith(b"HTTP/1.") and b" 400 " in reply.split(b"\r\n")[0] + b" "


HUAWEI_SEND = {
    "provider": "huawei",
    "biz_id": "7cc1e1f0-task",
    "phone_number": "13812345678",
    "sent_at": "2026-11-25T10:00:00+08:00",
    "template_code": "600000001",
    "sign_name": "receiptd",
}


def test_registration_requires_the_token(server: OpsServer) -> None:
    body = json.dumps([HUAWEI_SEND]).encode()
    assert call(server, "POST", "/v1/sends", {"Authorization": "Bearer no"}, body)[0] == 401
    assert call(server, "POST", "/v1/sends", {}, body)[0] == 401


def test_registration_of_huawei_sends(server: OpsServer, state: dict[str, Any]) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    status, body, _ = call(server, "POST", "/v1/sends", auth, json.dumps([HUAWEI_SEND]).encode())
    assert status == 200, body
    assert json.loads(body) == {"received": 1, "registered": 1}
    (send,) = state["registered"]
    assert (send.provider.value, send.biz_id, send.sent_at.isoformat()) == (
        "huawei",
        "7cc1e1f0-task",
        "2026-11-25T02:00:00+00:00",
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[]", "non-empty JSON array"),
        (b'{"biz_id": "x"}', "non-empty JSON array"),
        (b"[1]", "item 0: must be an object"),
        (json.dumps([dict(HUAWEI_SEND, sent_at="yesterday")]).encode(), "item 0: sent_at"),
        (json.dumps([dict(HUAWEI_SEND, provider="tencent")]).encode(), "unknown provider"),
    ],
)
def test_registration_rejects_bad_bodies(server: OpsServer, body: bytes, reason: str) -> None:
    status, answer, _ = call(
        server, "POST", "/v1/sends", {"Authorization": f"Bearer {TOKEN}"}, body
    )
    assert status == 400
    assert reason in json.loads(answer)["error"]


def test_registration_body_limit(server: OpsServer) -> None:
    """A declared body over 1 MiB is refused from its headers, before anything is read."""
    import socket

    head = (
        "POST /v1/sends HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Length: {2 * 1024 * 1024}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head.encode())
        reply = sock.recv(1024)
    assert reply.split(b"\r\n")[0].split(b" ")[1] == b"413"


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def test_status_lookup_narrows_to_one_account(server: OpsServer) -> None:
    status, body, _ = call(server, "GET", "/v1/sends/b1^0?account=brand_b", auth())
    assert status == 200
    assert [r["account"] for r in json.loads(body)["recipients"]] == ["brand_b"]
    assert call(server, "GET", "/v1/sends/b1^0?account=nobody", auth())[0] == 404


def test_status_lookup_narrows_to_one_kind_of_id(server: OpsServer) -> None:
    assert call(server, "GET", "/v1/sends/b1^0?matched_by=biz_id", auth())[0] == 200
    assert call(server, "GET", "/v1/sends/b1^0?matched_by=message_id", auth())[0] == 404
    status, body, _ = call(server, "GET", "/v1/sends/b1^0?matched_by=bizid", auth())
    assert status == 400 and "matched_by must be one of" in json.loads(body)["error"]


def test_registration_takes_message_id_records(server: OpsServer, state: dict[str, Any]) -> None:
    record = {"message_id": "10080303003003", "phone_number": "+85212345678"}
    record |= {"sent_at": "2026-11-24T01:30:00Z", "task_id": "T9"}
    status, body, _ = call(server, "POST", "/v1/sends", auth(), json.dumps([record]).encode())
    assert status == 200, body
    (send,) = state["registered"]
    assert (send.matched_by, send.biz_id, send.task_id) == (
        domain.SendKey.MESSAGE_ID,
        "10080303003003",
        "T9",
    )


@pytest.mark.parametrize("query", ["account=", "account=Brand", "account=a&account=b"])
def test_status_lookup_refuses_a_malformed_account(server: OpsServer, query: str) -> None:
    status, body, _ = call(server, "GET", f"/v1/sends/b1^0?{query}", auth())
    assert status == 400
    assert "account must be one account id" in json.loads(body)["error"]


def test_registration_of_a_named_accounts_sends(server: OpsServer, state: dict[str, Any]) -> None:
    records = [dict(HUAWEI_SEND, provider="aliyun", account="brand_b"), HUAWEI_SEND]
    status, body, _ = call(server, "POST", "/v1/sends", auth(), json.dumps(records).encode())
    assert status == 200, body
    assert [(s.provider.value, s.account) for s in state["registered"]] == [
        ("aliyun", "brand_b"),
        ("huawei", "default"),
    ]


@pytest.mark.parametrize(
    ("account", "reason"),
    [
        ("brand_c", "item 1: unknown huawei account 'brand_c'"),
        ("brand_b", "item 1: unknown huawei account 'brand_b'"),  # an Aliyun account's id
        ("Brand-B", "item 1: account 'Brand-B' is not an account id"),
    ],
)
def test_registration_refuses_an_unknown_account_and_registers_nothing(
    server: OpsServer, state: dict[str, Any], account: str, reason: str
) -> None:
    records = [HUAWEI_SEND, dict(HUAWEI_SEND, account=account)]
    status, body, _ = call(server, "POST", "/v1/sends", auth(), json.dumps(records).encode())
    assert status == 400
    assert json.loads(body)["error"].startswith(reason)
    assert "registered" not in state


def test_status_summary_per_account(server: OpsServer) -> None:
    assert call(server, "GET", "/v1/status")[0] == 401
    status, body, _ = call(server, "GET", "/v1/status", auth())
    assert status == 200
    data = json.loads(body)
    assert data["sends"] == {"aliyun": {"delivered": 1, "pending": 2}}
    assert [(a["account"], a["sends"]) for a in data["accounts"]] == [
        ("brand_b", {"delivered": 1}),
        ("default", {"pending": 2}),
    ]
    status, body, _ = call(server, "GET", "/v1/status?account=brand_b", auth())
    assert json.loads(body)["sends"] == {"aliyun": {"delivered": 1}}
    assert call(server, "GET", "/v1/status?account=-", auth())[0] == 400


@pytest.mark.parametrize("path", ["/v1/status", "/v1/stats"])
def test_status_summary_off_without_a_reader_and_503_when_it_fails(path: str) -> None:
    def broken() -> ports.StatusSummary:
        raise ports.StoreUnavailable("database gone")

    for token, summary, code in ((TOKEN, None, 404), (None, broken, 404), (TOKEN, broken, 503)):
        app = OpsApp(Probes({}, {}), status_token=token, summary=summary)
        srv = OpsServer(app, "127.0.0.1", 0)
        srv.start()
        try:
            status, body, _ = call(srv, "GET", path, auth())
            assert status == code
            assert json.loads(body)["error"] in ("not found", "database unavailable")
        finally:
            srv.close()


def test_stats_counts_per_account_status_and_settled_by(server: OpsServer) -> None:
    status, body, _ = call(server, "GET", "/v1/stats", auth())
    assert status == 200
    data = json.loads(body)
    assert data["counts"] == [
        {"provider": "aliyun", "account": "brand_b", "status": "delivered",
         "settled_by": "query", "sends": 1},
        {"provider": "aliyun", "account": "default", "status": "pending",
         "settled_by": None, "sends": 2},
    ]  # fmt: skip
    assert data["oldest_pending"] == [
        {"provider": "aliyun", "account": "default", "sent_at": "2026-11-25T07:00:00+00:00"}
    ]
    assert (data["dead_letters"], data["inbound"]) == (3, 4)
    assert datetime.fromisoformat(data["generated_at"]).utcoffset() == timedelta(0)


def test_stats_narrow_to_one_account(server: OpsServer) -> None:
    status, body, _ = call(server, "GET", "/v1/stats?account=brand_b", auth())
    assert status == 200
    data = json.loads(body)
    assert [c["account"] for c in data["counts"]] == ["brand_b"]
    assert data["oldest_pending"] == []


@pytest.mark.parametrize("query", ["account=", "account=Brand", "account=a&account=b"])
def test_stats_refuse_a_malformed_account(server: OpsServer, query: str) -> None:
    status, body, _ = call(server, "GET", f"/v1/stats?{query}", auth())
    assert status == 400
    assert "account must be one account id" in json.loads(body)["error"]


@pytest.mark.parametrize("auth_header", [None, "Bearer wrong", f"Basic {TOKEN}"])
def test_stats_require_the_token(server: OpsServer, auth_header: str | None) -> None:
    headers = {"Authorization": auth_header} if auth_header else {}
    status, body, resp = call(server, "GET", "/v1/stats", headers)
    assert status == 401
    assert resp.getheader("WWW-Authenticate") == 'Bearer realm="receiptd"'
    assert b"counts" not in body


def test_the_openapi_document_is_served(server: OpsServer) -> None:
    status, body, resp = call(server, "GET", "/openapi.json")
    assert status == 200
    assert resp.getheader("Content-Type") == "application/json"
    assert json.loads(body)["openapi"].startswith("3.1.")
    assert "/v1/stats" in json.loads(body)["paths"]


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/v1/sends", "POST"),
        ("HEAD", "/v1/sends", "POST"),
        ("POST", "/v1/sends/b1^0", "GET, HEAD"),
        ("DELETE", "/v1/stats", "GET, HEAD"),
        ("PUT", "/openapi.json", "GET, HEAD"),
    ],
)
def test_a_method_a_path_does_not_answer_is_405_with_allow(
    server: OpsServer, method: str, path: str, allow: str
) -> None:
    status, _, resp = call(server, method, path, auth(), b"" if method != "GET" else None)
    assert status == 405
    assert resp.getheader("Allow") == allow


def test_an_unknown_path_is_404_for_the_methods_the_app_takes(server: OpsServer) -> None:
    for method in ("GET", "POST"):
        status, body, _ = call(server, method, "/v2/sends", auth(), b"")
        assert (status, json.loads(body)) == (404, {"error": "not found"})
    status, _, resp = call(server, "DELETE", "/v2/sends", auth(), b"")
    assert (status, resp.getheader("Allow")) == (405, "GET, POST, HEAD")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"phone_number": 13812345678}, "item 0: phone_number must be a string"),
        ({"biz_id": ["x"]}, "item 0: biz_id must be a string"),
        ({"biz_id": "b" * 65}, "item 0: biz_id is longer than 64 characters"),
        ({"phone_number": "1" * 33}, "item 0: phone_number is longer than 32 characters"),
        ({"out_id": "o" * 129}, "item 0: out_id is longer than 128 characters"),
        ({"sign_name": "s" * 65}, "item 0: sign_name is longer than 64 characters"),
        ({"sent_at": "9999-12-31T23:59:59-23:59"}, "item 0: "),  # past datetime.max in UTC
        ({"sent_at": "0001-01-01T00:00:00+23:59"}, "item 0: "),  # before datetime.min in UTC
    ],
)
def test_registration_refuses_what_the_sends_table_cannot_keep(
    server: OpsServer, state: dict[str, Any], change: dict[str, Any], reason: str
) -> None:
    """A value the table cannot keep is the client's error (400), never an INSERT failing
    into a 503 or an overflow into a 500."""
    body = json.dumps([dict(HUAWEI_SEND, **change)]).encode()
    status, answer, _ = call(server, "POST", "/v1/sends", auth(), body)
    assert status == 400
    assert json.loads(answer)["error"].startswith(reason)
    assert "registered" not in state


def test_registration_takes_null_as_an_absent_field(
    server: OpsServer, state: dict[str, Any]
) -> None:
    body = json.dumps([dict(HUAWEI_SEND, out_id=None, sign_name=None)]).encode()
    assert call(server, "POST", "/v1/sends", auth(), body)[0] == 200
    (send,) = state["registered"]
    assert (send.out_id, send.sign_name) == (None, None)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/stats?acount=default"),
        ("GET", "/v1/stats?matched_by=biz_id"),
        ("GET", "/v1/status?x=1"),
        ("GET", "/v1/sends/b1^0?page=2"),
        ("POST", "/v1/sends?dry_run=1"),
    ],
)
def test_an_unknown_query_parameter_is_refused_by_name(
    server: OpsServer, method: str, path: str
) -> None:
    body = json.dumps([HUAWEI_SEND]).encode() if method == "POST" else None
    status, answer, _ = call(server, method, path, auth(), body)
    assert status == 400
    assert json.loads(answer)["error"].startswith("unknown query parameter(s) '")
