"""Issue 21: one poison body among good ones, against a real `receiptd run`, on SQLite,
PostgreSQL and MariaDB.

Before the fix a receipt body that is valid JSON but holds an integer of more than 4,300
digits made ``json.loads`` raise a plain ValueError; the consumer loop died, `receiptd run`
exited 1, its supervisor restarted it and the redelivered message killed it again (five
deaths in 150 s, 11 of 12 good receipts never stored); pushed, the same body was a 500.

Here the issue's body and the other extremes the grammar fuzzer covers (a lone surrogate,
year 1, NUL, deep nesting, float overflow) are queued among good receipts and replies: the
daemon stays up (same process, healthy), each poison body is a dead letter byte for byte with
its reason, and every good receipt is stored. Pushed, each poison body is answered 4xx, or
200 with its element dead-lettered, never 5xx. `receiptd consume --until-idle` exits 0.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from receiptd.db.models import DEAD, INBOUND, REPORT, SEND
from receiptd.testing import emulated
from receiptd_emulator import Emulator
from tests.conftest import _ensure_database, drop_server_database
from tests.system.daemon import Daemon, daemon_env, free_port
from tests.system.reliability import Db, queue_total, raw_request, receipt_fields, receipt_key

pytestmark = pytest.mark.system

TOKEN = "poison-token-0123456789abcdef"
HUGE = "1" + "0" * 5000
GOOD = 12


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _report_text(i: int, **changes: Any) -> str:
    return json.dumps({**receipt_fields(i, prefix="9"), **changes})


# name -> (JSON text of a report; the reason its dead letter must give, "" = no dead letter on
# this backend). The issue's body comes first.
def poison_reports(backend: str) -> dict[str, tuple[str, str]]:
    pg = backend == "postgresql"
    return {
        "integer of 5,001 digits (the issue)": (
            '{"phone_number":' + HUGE + ',"biz_id":"1^0","success":true,'
            '"send_time":"2026-11-25 10:00:00"}',
            "is not readable JSON: Exceeds the limit (4300 digits)",
        ),
        "lone surrogate": (_report_text(100, err_msg="\ud800"), "lone surrogate"),
        "year 1": (_report_text(101, send_time="00010101000000"), "out of range in UTC"),
        "nesting 20,000 deep": (
            _report_text(102)[:-1] + ',"x":' + "[" * 20_000 + "]" * 20_000 + "}",
            "nested too deeply",
        ),
        "float overflow": (_report_text(103, biz_id=1e400), "must be a string"),
        # PostgreSQL text cannot hold NUL: refused by the database alone, elsewhere stored.
        "NUL": (_report_text(104, err_msg="a\x00b"), "store refused" if pg else ""),
    }


POISON_REPLY = (
    '{"phone_number":"13900000000","content":"\\udfff","send_time":"20261125100000",'
    '"dest_code":' + HUGE + ',"sequence_id":"1"}'
)


@pytest.fixture(scope="module", params=["sqlite", "postgresql", "mariadb"])
def db_url_of(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    urls: dict[str, str] = {}
    url = _ensure_database(request.param, urls, Path(tmp_path_factory.mktemp("db")))
    yield request.param, url
    if request.param != "sqlite":
        drop_server_database(request.param, url)


@pytest.fixture
def db(db_url_of: tuple[str, str]) -> Iterator[Db]:
    handle = Db(db_url_of[1])
    with handle.engine.begin() as conn:
        for table in (REPORT, INBOUND, DEAD, SEND):
            conn.execute(table.delete())
    yield handle
    handle.close()


def _post(port: int, route: str, body: bytes) -> int:
    head = (
        f"POST /push/{TOKEN}/{route} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return raw_request(port, head.encode() + body)[0]


@pytest.mark.timeout(240)
def test_a_poison_body_among_good_ones_neither_stops_the_daemon_nor_loses_a_receipt(
    db_url_of: tuple[str, str], db: Db, tmp_path: Path
) -> None:
    backend, url = db_url_of
    poison = poison_reports(backend)
    push_port = free_port()
    with Emulator() as emu:
        env = daemon_env(
            emu,
            url,
            free_port(),
            RECEIPTD_PUSH_ADDR=f"127.0.0.1:{push_port}",
            RECEIPTD_PUSH_TOKEN=TOKEN,
            RECEIPTD_COMPENSATOR_ENABLED="false",
        )
        daemon = Daemon(env, tmp_path / "receiptd.log")
        try:
            daemon.wait_until(daemon.ready, timeout=60)
            pid = daemon.proc.pid
            sent: dict[str, tuple[str, str]] = {}  # message id -> (exact body, reason)
            for i in range(GOOD):
                emu.enqueue_report(receipt_fields(i, prefix="9"))
                if i % 2 == 0:
                    name = list(poison)[i // 2]
                    body = _b64(poison[name][0])
                    sent[emu.enqueue("report", body)] = (body, poison[name][1])
            reply = _b64(POISON_REPLY)
            sent[emu.enqueue("up", reply)] = (reply, "not readable JSON")
            expect_dead = sum(1 for _, reason in sent.values() if reason)
            daemon.wait_until(
                lambda: (
                    db.report_rows() >= GOOD
                    and db.count(DEAD) >= expect_dead
                    and queue_total(emu, "report") + queue_total(emu, "up") == 0
                ),
                timeout=90,
            )
            # The same bodies pushed: 400 (the whole body unreadable) or 200 with the element
            # dead-lettered; never 5xx.
            answers = {
                name: _post(push_port, "aliyun/SmsReport", f"[{text}]".encode())
                for name, (text, _) in poison.items()
            }
            answers["reply"] = _post(push_port, "aliyun/SmsUp", f"[{POISON_REPLY}]".encode())
            healthy = daemon.get("/healthz")[0] == 200 and daemon.ready()
            still = daemon.proc.poll() is None and daemon.proc.pid == pid
            code, _ = daemon.terminate(signal.SIGTERM)
        finally:
            daemon.kill()
    letters = {d["mns_message_id"]: d for d in db.dead_letters()}
    keys = db.report_keys()
    events = [e.get("event") for e in daemon.events()]
    print(f"\n{backend}: pushed answers {answers}; {len(letters)} dead letters")
    assert still and healthy and code == 0
    assert "consumer_loop_died" not in events and "loop_died" not in events
    assert "body_crashed" not in events  # every extreme is a BodyError, not a caught defect
    for message_id, (body, reason) in sent.items():
        if not reason:  # NUL outside PostgreSQL: stored verbatim
            assert message_id not in letters
            continue
        letter = letters[message_id]
        assert bytes(letter["raw_body"]) == body.encode()
        assert reason in letter["error"], letter["error"]
    good = {receipt_key(i, prefix="9") for i in range(GOOD)}
    assert good <= set(keys) and len(keys) == len(set(keys))
    assert set(answers.values()) <= {200, 400}, answers
    assert answers["integer of 5,001 digits (the issue)"] == 400
    pushed = [d for d in letters.values() if d["queue"].startswith("push:")]
    # One dead letter per pushed body, but for the NUL receipt outside PostgreSQL (stored).
    assert len(pushed) == len(answers) - (backend != "postgresql")
    assert db.count(INBOUND) == 0


def test_consume_until_idle_exits_0_past_the_issue_body(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'consume.db'}"
    with Emulator() as emu:
        emu.enqueue_report(receipt_fields(1))
        poison = _b64(poison_reports("sqlite")["integer of 5,001 digits (the issue)"][0])
        emu.enqueue("report", poison)
        emu.enqueue_report(receipt_fields(2))
        env = emulated.environ(emu.info, url, {"RECEIPTD_CONSUMER_WAIT_SECONDS": "1"})
        for args in (["db", "upgrade"], ["consume", "--queue", "report", "--until-idle"]):
            proc = subprocess.run(
                [sys.executable, "-m", "receiptd", *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert proc.returncode == 0, proc.stdout + proc.stderr
        assert queue_total(emu) == 0
    db = Db(url)
    try:
        assert sorted(db.report_keys()) == sorted([receipt_key(1), receipt_key(2)])
        (letter,) = db.dead_letters()
        assert bytes(letter["raw_body"]) == poison.encode()
    finally:
        db.close()
