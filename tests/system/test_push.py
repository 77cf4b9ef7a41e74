"""Receipts pushed over HTTP into a real `receiptd run`, on PostgreSQL and MariaDB.

The emulator pushes (merged arrays, a documented retry schedule scaled 50-100x down):
* a database outage answers 503, the emulator retries, nothing is lost once the database
  returns within the strictest reading of Alibaba's schedule;
* kill -9 during pushes: nothing lost, nothing duplicated after a restart;
* the same receipt by push and by MNS is one row; a Huawei callback settles a Huawei send;
* hostile bodies get a clear 4xx or a dead letter, never a 5xx; wrong token → 404; over the
  body limit → 413; a slow client holds no worker;
* pushes per account: each account's path and token, into that account's rows, whichever
  accounts the replica serves.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from receiptd import domain, ports
from receiptd.db.models import DEAD, INBOUND, REPORT, SEND
from receiptd.db.sends import SendStore
from receiptd.db.store import SqlStore
from receiptd_emulator import Emulator, ManualClock
from receiptd_emulator.koomessage_store import SendDetail
from receiptd_emulator.push import PushSpec
from tests.conftest import _ensure_database, drop_server_database
from tests.system.daemon import Daemon, daemon_env, free_port
from tests.system.reliability import (
    CutProxy,
    Db,
    queue_total,
    raw_request,
    receipt_fields,
    receipt_key,
    wait_for,
)
from tests.unit.ingest.push.test_formats import SMS

pytestmark = pytest.mark.system

TOKEN = "push-token-0123456789abcdef"
TOKEN_A = "brand-a-push-token-0123456789"
TOKEN_HW = "hw-push-token-0123456789ab"
SCALE = 0.01  # the long schedule's 1, 5, 10, 30 min become 0.6, 3, 6, 18 s


@pytest.fixture(scope="module", params=["postgresql", "mariadb"])
def server_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    urls: dict[str, str] = {}
    url = _ensure_database(request.param, urls, Path(tmp_path_factory.mktemp("db")))
    yield url
    drop_server_database(request.param, url)


@pytest.fixture
def db(server_url: str) -> Iterator[Db]:
    handle = Db(server_url)
    with handle.engine.begin() as conn:
        for table in (REPORT, INBOUND, DEAD, SEND):
            conn.execute(table.delete())
    yield handle
    handle.close()


def start_daemon(emu: Emulator, url: str, tmp_path: Path, push_port: int, **extra: str) -> Daemon:
    env = daemon_env(
        emu,
        url,
        free_port(),
        RECEIPTD_PUSH_ADDR=f"127.0.0.1:{push_port}",
        RECEIPTD_PUSH_TOKEN=TOKEN,
        RECEIPTD_COMPENSATOR_ENABLED="false",
        **extra,
    )
    daemon = Daemon(env, tmp_path / "receiptd.log")
    daemon.wait_until(lambda: _listening(push_port), timeout=30)
    return daemon


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def push_to(emu: Emulator, port: int, kind: str = "SmsReport", **spec: Any) -> None:
    route = "v1/aim/send-status" if kind == "koomessage" else f"aliyun/{kind}"
    url = f"http://127.0.0.1:{port}/push/{TOKEN}/{route}"
    emu.set_push(kind, PushSpec(url=url, **{"time_scale": SCALE, "batch": 10, **spec}))


def drained(emu: Emulator, kind: str = "SmsReport") -> bool:
    return bool(emu.push_stats()[kind]["pending"] == 0)


def test_database_outage_answers_503_and_loses_nothing(
    server_url: str, db: Db, tmp_path: Path
) -> None:
    """The strictest reading of the schedule (doc 101867, "3 attempts in all": retries 1 and
    5 minutes after the first failure), at full length on a clock the test moves: the first
    retry meets the outage too, the last one the database back. No real-time race."""
    url = make_url(server_url)
    proxy = CutProxy(url.host or "127.0.0.1", url.port or 5432).start()
    proxied = url.set(port=proxy.port).render_as_string(hide_password=False)
    port = free_port()
    clock = ManualClock()
    with Emulator(clock=clock) as emu:
        daemon = start_daemon(emu, proxied, tmp_path, port)
        try:
            push_to(emu, port, schedule="short3", time_scale=1.0)
            emu.push_elements("SmsReport", [receipt_fields(i) for i in range(200)])
            assert emu.wait_push_idle("SmsReport", 30), "first receipts pushed"
            proxy.cut()
            emu.push_elements("SmsReport", [receipt_fields(i) for i in range(200, 400)])
            for attempt, delay in enumerate((60.0, 300.0), start=1):
                # All 20 requests failed (503) this round and wait for their timers: the
                # clock moves to them only then.
                def round_failed(s: dict[str, Any], n: int = attempt) -> bool:
                    return bool(s["failed"] == 20 * n and s["retrying"] == 200)

                assert emu.wait_push("SmsReport", round_failed, 60), f"attempt {attempt}"
                if attempt == 2:
                    proxy.restore()
                clock.advance(delay)
            assert emu.wait_push_idle("SmsReport", 60), "every push accepted"
            stats = emu.push_stats()["SmsReport"]
            code, _ = daemon.terminate(signal.SIGTERM)
        finally:
            daemon.kill()
            proxy.close()
    keys = db.report_keys()
    assert code == 0
    assert stats["given_up"] == 0 and stats["delivered"] == 400
    assert stats["answers"] == {"200": 20 + 20, "503": 20 + 20}  # 20 requests of 10
    assert len(keys) == len(set(keys)) == 400
    assert set(keys) == {receipt_key(i) for i in range(400)}


def test_kill_9_during_pushes_loses_and_duplicates_nothing(
    server_url: str, db: Db, tmp_path: Path
) -> None:
    port = free_port()
    total = 600
    with Emulator() as emu:
        daemon = start_daemon(emu, server_url, tmp_path, port)
        push_to(emu, port, senders=8)
        try:
            for start in range(0, total, 50):
                emu.push_elements(
                    "SmsReport", [receipt_fields(i) for i in range(start, start + 50)]
                )
                time.sleep(0.02)
                if start == 300:
                    daemon.proc.send_signal(signal.SIGKILL)
            daemon.kill()  # reaps it and closes its log
            daemon = start_daemon(emu, server_url, tmp_path, port)
            wait_for(lambda: drained(emu), 60, "every push accepted", alive=_alive(daemon))
            stats = emu.push_stats()["SmsReport"]
        finally:
            daemon.kill()
    keys = db.report_keys()
    assert stats["given_up"] == 0
    assert stats["failed"] > 0  # the kill did interrupt pushes: they were retried
    assert len(keys) == len(set(keys)) == total
    assert set(keys) == {receipt_key(i) for i in range(total)}


def test_same_receipt_by_push_and_mns_and_huawei_callbacks(
    server_url: str, db: Db, tmp_path: Path
) -> None:
    port = free_port()
    sends = SendStore(SqlStore(db.engine), domain.CHINA_TZ)
    now = datetime.now(UTC)
    fields = receipt_fields(1)
    sends.register(
        [
            ports.NewSend(domain.Provider.ALIYUN, str(fields["biz_id"]), "13900000001", now),
            ports.NewSend(domain.Provider.HUAWEI, "task-1", "13100000000", now),
            ports.NewSend(domain.Provider.HUAWEI, "task-2", "13100000001", now),
        ],
        now,
    )
    with Emulator() as emu:
        daemon = start_daemon(emu, server_url, tmp_path, port)
        try:
            push_to(emu, port)
            push_to(emu, port, "SmsUp")
            push_to(emu, port, "koomessage")
            emu.enqueue_report(fields)
            emu.push_elements("SmsReport", [fields, fields])
            reply = {"phone_number": "13900000001", "content": "退订", "dest_code": "12"}
            reply |= {"send_time": "20261125100000", "sequence_id": 77}
            emu.push_elements("SmsUp", [reply])
            emu.seed_koomessage([_detail("task-1", "13100000000", "success")])
            _shortchain(port, "task-2", "13100000001")
            wait_for(lambda: db.report_rows() >= 2, 30, "receipts stored", alive=_alive(daemon))
            wait_for(lambda: db.count(INBOUND) == 1 and drained(emu, "koomessage"), 30, "all")
            wait_for(lambda: queue_total(emu) == 0, 30, "the MNS copy consumed")
            by_key = {(s["provider"], s["biz_id"]): s for s in db.sends()}
        finally:
            daemon.kill()
    keys = db.report_keys()
    assert sorted(keys) == sorted([receipt_key(1), ("task-1", "13100000000")])
    assert by_key["aliyun", fields["biz_id"]]["settled_by"] == "receipt"
    assert by_key["huawei", "task-1"]["status"] == "delivered"
    assert by_key["huawei", "task-2"]["status"] == "pending"  # a link click settles nothing
    with db.engine.connect() as conn:
        huawei = conn.execute(sa.select(REPORT).where(REPORT.c.provider == "huawei")).one()
    assert (huawei.channel, huawei.message_id) == ("push", "msg-task-1")


def _detail(task: str, cust_flag: str, status: str) -> SendDetail:
    sent = datetime.now(UTC)
    return SendDetail(f"msg-{task}", task, cust_flag, sent, status, receive_time=sent)


def _shortchain(port: int, task: str, cust_flag: str) -> None:
    click = {"task_id": task, "cust_flag": cust_flag, "aim_url": "https://x", "send_status": "x"}
    env = {"callback_type": "shortchain", "body": json.dumps(click), "retry": False}
    status, _ = _post(port, f"/push/{TOKEN}/v1/aim/send-status", json.dumps(env).encode())
    assert status == 200


def _post(
    port: int, path: str, body: bytes, content_type: str = "application/json"
) -> tuple[int, bytes]:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return raw_request(port, head.encode() + body)


def test_hostile_requests_get_4xx_or_dead_letters_never_5xx(
    server_url: str, db: Db, tmp_path: Path
) -> None:
    port = free_port()
    good = receipt_fields(5)
    report = f"/push/{TOKEN}/aliyun/SmsReport"
    with Emulator() as emu:
        extra = {"RECEIPTD_PUSH_MAX_BODY": "65536", "RECEIPTD_PUSH_MAX_ELEMENTS": "1000"}
        daemon = start_daemon(
            emu, server_url, tmp_path, port, RECEIPTD_PUSH_CHANNEL_TIMEOUT="2", **extra
        )
        try:
            slow = socket.create_connection(("127.0.0.1", port))
            slow.sendall(f"POST {report} HTTP/1.1\r\nContent-Length: 100\r\n\r\n[".encode())
            cases = {
                "wrong token": (
                    _post(port, "/push/not-the-token-0000000/aliyun/SmsReport", b"[]"),
                    404,
                ),
                "no token": (_post(port, "/push/aliyun/SmsReport", b"[]"), 404),
                "over the body limit": (_post(port, report, b"[" + b" " * 70_000 + b"]"), 413),
                "huge array": (_post(port, report, json.dumps([{}] * 1001).encode()), 413),
                "deep nesting": (_post(port, report, b"[" * 30_000 + b"]" * 30_000), 400),
                "invalid UTF-8": (_post(port, report, b'[{"phone_number": "\xff"}]'), 400),
                "not an array": (_post(port, report, b'"DELIVERED"'), 400),
                "wrong content type": (_post(port, report, b"a=b", "text/plain"), 415),
                "wrong types": (
                    _post(port, report, json.dumps([good, 1, {"success": []}]).encode()),
                    200,
                ),
                "envelope not JSON": (_post(port, f"/push/{TOKEN}/v1/aim/send-status", b"{"), 400),
            }
            slow.settimeout(10)
            closed_after = _closed_within(slow, 10)
            dead = db.dead_letters()
        finally:
            daemon.kill()
    answers = {name: status for name, ((status, _), _) in cases.items()}
    assert answers == {name: want for name, (_, want) in cases.items()}
    for (_, answer), _ in cases.values():
        assert TOKEN.encode() not in answer and b"Traceback" not in answer
    assert db.report_keys() == [receipt_key(5)]
    # Whole bodies refused for their shape are kept (huge array, nesting, UTF-8, not an
    # array, envelope) plus the two bad elements; the over-limit body was never read.
    assert len(dead) == 7, [(d["error"], d["raw_body"][:40]) for d in dead]
    assert {d["queue"] for d in dead} == {"push:aliyun/SmsReport", "push:huawei/send-status"}
    assert closed_after is not None and closed_after < 8  # an idle slow client is dropped
    assert TOKEN not in daemon.log()  # the path token is a secret: never logged


def test_pushes_per_account_settle_that_accounts_sends(
    server_url: str, db: Db, tmp_path: Path
) -> None:
    """brand_a and hw are configured but not served here (``serve_accounts = default``): their
    pushes are still taken. The same receipt for brand_a settles brand_a's send only."""
    port = free_port()
    fields = receipt_fields(7)
    biz, phone = str(fields["biz_id"]), str(fields["phone_number"])
    now = datetime.now(UTC)
    aliyun = domain.Provider.ALIYUN
    SendStore(SqlStore(db.engine), domain.CHINA_TZ).register(
        [
            ports.NewSend(aliyun, biz, phone, now, account="brand_a"),
            ports.NewSend(aliyun, biz, phone, now),
            ports.NewSend(domain.Provider.HUAWEI, "task-7", "13100000007", now, account="hw"),
        ],
        now,
    )
    accounts = {
        "RECEIPTD_SERVE_ACCOUNTS": "default",
        **_account_env("brand_a", provider="aliyun", access_key_secret="s", push_token=TOKEN_A),
        **_account_env("brand_a", queue_prefix="Alicom-Queue-2-"),
        **_account_env("hw", provider="huawei", secret_access_key="s", project_id="p"),
        **_account_env("hw", push_token=TOKEN_HW),
    }
    with Emulator() as emu:
        daemon = start_daemon(emu, server_url, tmp_path, port, **accounts)
        try:
            url = f"http://127.0.0.1:{port}/push/{TOKEN_A}/brand_a/aliyun/SmsReport"
            emu.set_push("SmsReport", PushSpec(url=url, time_scale=SCALE, batch=10))
            emu.push_elements("SmsReport", [fields])
            callback = {"callback_type": "sms", "body": json.dumps([_hw_status()])}
            huawei = _post(port, f"/push/{TOKEN_HW}/hw/v1/aim/send-status", js(callback))
            refused = [
                _post(port, path, js([fields]))[0]
                for path in (
                    f"/push/{TOKEN}/brand_a/aliyun/SmsReport",  # another account's token
                    f"/push/{TOKEN_A}/aliyun/SmsReport",  # brand_a's token, default path
                    f"/push/{TOKEN_HW}/hw/aliyun/SmsReport",  # the other provider's path
                    f"/push/{TOKEN_A}/brand_z/aliyun/SmsReport",  # no such account
                )
            ]
            wait_for(lambda: drained(emu), 30, "the push accepted", alive=_alive(daemon))
            sends = {(s["account"], s["biz_id"]): s["status"] for s in db.sends()}
        finally:
            daemon.kill()
    assert huawei[0] == 200 and refused == [404] * 4
    assert sends == {
        ("brand_a", biz): "delivered",
        ("default", biz): "pending",
        ("hw", "task-7"): "delivered",
    }
    with db.engine.connect() as conn:
        rows = conn.execute(sa.select(REPORT.c.account, REPORT.c.biz_id)).all()
    assert sorted(tuple(r) for r in rows) == [("brand_a", biz), ("hw", "task-7")]
    assert TOKEN_A not in daemon.log() and TOKEN_HW not in daemon.log()


def _account_env(name: str, **keys: str) -> dict[str, str]:
    """``RECEIPTD_ACCOUNT_<ID>_<KEY>`` (docs/configuration.md); an access key id by default."""
    keys.setdefault("access_key_id", f"{name}-key")
    return {f"RECEIPTD_ACCOUNT_{name.upper()}_{k.upper()}": v for k, v in keys.items()}


def _hw_status() -> dict[str, Any]:
    return {**SMS, "task_id": "task-7", "cust_flag": "13100000007", "msg_id": "msg-7"}


def js(value: Any) -> bytes:
    return json.dumps(value).encode()


def _closed_within(sock: socket.socket, timeout: float) -> float | None:
    start = time.monotonic()
    try:
        while time.monotonic() - start < timeout:
            if sock.recv(1024) == b"":
                return time.monotonic() - start
    except OSError:
        return time.monotonic() - start
    finally:
        sock.close()
    return None


def _alive(daemon: Daemon) -> Any:
    def check() -> None:
        if daemon.proc.poll() is not None:
            raise AssertionError(f"receiptd exited {daemon.proc.returncode}:\n{daemon.log()}")

    return check
