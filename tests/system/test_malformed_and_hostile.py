"""Malformed and hostile input.

1. A running daemon fed good receipts and replies mixed with every kind of broken body: each
   broken body ends in ``dead_letter`` with its exact bytes, every good one is stored, and the
   daemon keeps consuming.
2. Hostile strings (SQL fragments, control characters, 4-byte Unicode, 64 KB content) go
   through the consumer into SQLite, PostgreSQL and MariaDB and come back verbatim.
"""

from __future__ import annotations

import base64
import json
import random
import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from receiptd import domain
from receiptd.daemon.health import Health
from receiptd.db.models import DEAD, INBOUND, REPORT
from receiptd.db.store import SqlStore
from receiptd.ingest.mns.consumer import Consumer
from receiptd.testing.queues import InMemoryQueue
from receiptd_emulator import Emulator
from receiptd_emulator.receipts import MALFORMED_KINDS, malformed_body
from tests.consuming import until_idle
from tests.system.daemon import Daemon, daemon_env, free_port
from tests.system.reliability import Db, queue_total, receipt_fields, receipt_key

pytestmark = pytest.mark.system

GOOD_REPORTS = 2_000
GOOD_REPLIES = 200
MAX_BODY = 65_536  # the queue's MaximumMessageSize
SEED = 77


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _json_b64(obj: Any) -> str:
    return _b64(json.dumps(obj, ensure_ascii=False).encode())


def _report(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = dict(receipt_fields(0, prefix="5"))
    fields.update(changes)
    return {k: v for k, v in fields.items() if v is not ...}


def _padded_to_limit(prefix: bytes) -> str:
    """Base64 of ``prefix`` + filler, exactly MAX_BODY bytes long."""
    raw = prefix + b"A" * (MAX_BODY // 4 * 3 - len(prefix))
    body = _b64(raw)
    assert len(body) == MAX_BODY
    return body


def malformed_report_bodies() -> dict[str, str]:
    """Every way a report body can be broken, by name. All are valid MNS message text."""
    rng = random.Random(SEED)
    big_msg = _json_b64(_report(err_msg="失败" * 16_000))[:MAX_BODY]
    bodies = {
        "bad_base64_star": "eyJwaG9uZV9udW1iZXIiOiIxMzgw*not-base64*",
        "bad_base64_padding": "eyJhIjoxfQ",
        "bad_base64_space": "eyJh Ijox fQ==",
        "plain_json_not_base64": json.dumps(_report()),
        "not_json": _b64(b"<html>502 Bad Gateway</html>"),
        "truncated_json": _b64(b'{"biz_id": "123^0", "success": tr'),
        "not_utf8": _b64(b'\xff\xfe\xfa{"biz_id": "1"}'),
        "latin1_json": _b64('{"biz_id": "1", "err_msg": "café"}'.encode("latin-1")),
        "utf16_json": _b64(json.dumps(_report()).encode("utf-16")),
        "deep_nesting": _b64(b"[" * 10_000 + b"]" * 10_000),
        "json_array": _json_b64([_report()]),
        "json_null": _json_b64(None),
        "json_number": _json_b64(12),
        "json_string": _json_b64("DELIVERED"),
        "empty_object": _json_b64({}),
        "missing_biz_id": _json_b64(_report(biz_id=...)),
        "missing_send_time": _json_b64(_report(send_time=...)),
        "missing_success": _json_b64(_report(success=...)),
        "success_as_text": _json_b64(_report(success="true")),
        "biz_id_list": _json_b64(_report(biz_id=["1"])),
        "biz_id_object": _json_b64(_report(biz_id={"$gt": ""})),
        "biz_id_bool": _json_b64(_report(biz_id=True)),
        "biz_id_too_long": _json_b64(_report(biz_id="9" * 65)),
        "phone_float": _json_b64(_report(phone_number=13800000000.5)),
        "send_time_words": _json_b64(_report(send_time="yesterday")),
        "send_time_number": _json_b64(_report(send_time=20260101)),
        "sms_size_text": _json_b64(_report(sms_size="two")),
        "nan_literal": _b64(
            b'{"biz_id": NaN, "success": true, "send_time": "2026-01-01 00:00:00"}'
        ),
        "huge_number": _b64(b'{"biz_id": 1e999999, "success": true}'),
        "err_msg_64k": big_msg,
        "garbage_64k": "%" * MAX_BODY,
        "binary_64k": _padded_to_limit(bytes([0xFF, 0xFE]) + rng.randbytes(1_000)),
    }
    for kind in MALFORMED_KINDS:  # the emulator's own realistic broken bodies
        bodies[f"emulator_{kind}"] = malformed_body(rng, kind)
    for name, body in bodies.items():
        assert 1 <= len(body.encode()) <= MAX_BODY, name
        with pytest.raises(domain.BodyError):  # the fixture itself must be malformed
            domain.parse_report(body)
    return bodies


def malformed_reply_bodies() -> dict[str, str]:
    reply = {"phone_number": "13800000000", "content": "好", "send_time": "20261125100000"}
    bodies = {
        "missing_dest_code": _json_b64({**reply, "sequence_id": "1"}),
        "content_list": _json_b64(
            {**reply, "content": ["x"], "dest_code": "1", "sequence_id": "1"}
        ),
        "not_utf8": _b64(b"\xc3\x28"),
        "bad_base64": "%%%",
    }
    for body in bodies.values():
        with pytest.raises(domain.BodyError):
            domain.parse_up(body)
    return bodies


def _reply_fields(i: int) -> dict[str, str]:
    return {
        "phone_number": f"136{i:08d}",
        "content": f"回复 {i} 👍",
        "send_time": "20261125100000",
        "dest_code": "1234",
        "sequence_id": str(100_000 + i),
    }


@pytest.fixture
def db(pg_url: str) -> Iterator[Db]:
    handle = Db(pg_url)
    yield handle
    handle.close()


@pytest.mark.timeout(300)
def test_daemon_dead_letters_every_malformed_body_and_keeps_consuming(
    pg_url: str, db: Db, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    reports, replies = malformed_report_bodies(), malformed_reply_bodies()
    stream: list[tuple[str, Any]] = [("good", i) for i in range(GOOD_REPORTS)]
    stream += [("bad", name) for name in reports for _ in range(2)]
    rng.shuffle(stream)
    sent: dict[str, tuple[str, bytes]] = {}  # message id -> (queue, exact bytes)
    with Emulator(profile="default") as emu:
        report_queue, up_queue = emu.info.report_queue, emu.info.up_queue
        daemon = Daemon(daemon_env(emu, pg_url, free_port()), tmp_path / "receiptd.log")
        try:
            daemon.wait_until(daemon.ready, timeout=60)
            for kind, item in stream:
                if kind == "good":
                    emu.enqueue_report(receipt_fields(item))
                else:
                    sent[emu.enqueue("report", reports[item])] = (
                        report_queue,
                        reports[item].encode(),
                    )
            for i in range(GOOD_REPLIES):
                emu.enqueue_up(_reply_fields(i))
                if i % 50 == 0:
                    for body in replies.values():
                        sent[emu.enqueue("up", body)] = (up_queue, body.encode())
            daemon.wait_until(
                lambda: (
                    db.report_rows() >= GOOD_REPORTS
                    and db.count(INBOUND) >= GOOD_REPLIES
                    and db.count(DEAD) >= len(sent)
                    and queue_total(emu, "report") + queue_total(emu, "up") == 0
                ),
                timeout=180,
            )
            healthy = daemon.get("/healthz")[0] == 200 and daemon.ready()
            code, _ = daemon.terminate(signal.SIGTERM)
        finally:
            daemon.kill()

    dead = {row["mns_message_id"]: row for row in db.dead_letters()}
    mangled = [
        mid
        for mid, (queue, raw) in sent.items()
        if mid not in dead or bytes(dead[mid]["raw_body"]) != raw or dead[mid]["queue"] != queue
    ]
    keys = db.report_keys()
    print(
        f"\nmalformed input: {len(sent)} broken bodies ({len(reports)} report kinds x2, "
        f"{len(replies)} reply kinds x{len(range(0, GOOD_REPLIES, 50))}) among {GOOD_REPORTS} "
        f"receipts and {GOOD_REPLIES} replies; {len(dead)} dead letters, {len(mangled)} missing "
        f"or altered; {len(keys)} receipts stored"
    )
    assert code == 0 and healthy
    assert mangled == []  # every broken body kept byte for byte
    assert len(dead) == len(sent)  # and nothing else dead-lettered
    assert all(row["error"] and row["seen_count"] >= 1 for row in dead.values())
    assert len(keys) == len(set(keys)) == GOOD_REPORTS
    assert set(keys) == {receipt_key(i) for i in range(GOOD_REPORTS)}
    assert db.count(INBOUND) == GOOD_REPLIES


# --- hostile strings on every backend ---------------------------------------------------------

SQL = [
    "'; DROP TABLE sms_report; --",
    '" OR "1"="1',
    "Robert'); DELETE FROM sms_send WHERE ('1'='1",
    "%s %(x)s ? :name $1 \\",
    "\\'; SELECT pg_sleep(5); --",
    "`id`; SHOW TABLES; /* */ UNION SELECT NULL --",
]
CONTROL = [
    "\x01\x02\x03\x07\x08\t\n\x0b\x0c\r\x1b[31m\x7f",
    "\x85\u2028\u2029 line\r\nbreaks",
    "\u200b\u200d\ufeff\u202e reversed",
]
ASTRAL = ["😀👍🏽🇨🇳", "𝕳𝖊𝖑𝖑𝖔", "𠜎𠜱𠝹𠱓", "\U0010fffd\U0001f4a9"]
HOSTILE = SQL + CONTROL + ASTRAL
BIG_CONTENT = ("'; DROP TABLE sms_inbound; --😀\x01\n" * 3000)[:65_536]  # 65,536 characters
NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)


def _hostile_reports() -> list[dict[str, Any]]:
    out = []
    for i, text in enumerate(HOSTILE):
        out.append(
            {
                "biz_id": f"{i}:{text}"[:64],
                "phone_number": f"{i}{text}"[:32],
                "success": i % 2 == 0,
                "send_time": "2026-11-25 10:00:00",
                "report_time": "2026-11-25 10:00:04",
                "out_id": (text * 20)[:128],
                "err_code": text[:64],
                "err_msg": (text * 100)[:512],
                "sms_size": "1",
            }
        )
    return out


def _hostile_replies() -> list[dict[str, str]]:
    replies = [
        {
            "phone_number": f"{i}{text}"[:32],
            "content": text,
            "send_time": "20261125100000",
            "dest_code": text[:64],
            "sequence_id": f"{i}{text}"[:64],
        }
        for i, text in enumerate(HOSTILE)
    ]
    replies.append({**replies[0], "sequence_id": "big", "content": BIG_CONTENT})
    return replies


def _consume(store: SqlStore, kind: domain.MessageType, bodies: list[str]) -> None:
    queue = InMemoryQueue("hostile-" + kind.value)
    for body in bodies:
        queue.send(body)
    consumer = Consumer(
        kind, lambda: queue, store, Health(), threads=1, batch_size=16, wait_seconds=0
    )
    until_idle(consumer)
    assert consumer.failed is None
    assert queue.depth() == 0


def test_hostile_strings_are_stored_verbatim(db_url: str, engine: sa.Engine) -> None:
    store = SqlStore(engine)
    reports, replies = _hostile_reports(), _hostile_replies()
    broken = "'; DROP TABLE dead_letter; --\x01😀 not base64"
    _consume(store, domain.MessageType.REPORT, [_json_b64(r) for r in reports] + [broken])
    _consume(store, domain.MessageType.UP, [_json_b64(r) for r in replies])

    with engine.connect() as conn:
        stored = {(r.biz_id, r.phone_number): r for r in conn.execute(sa.select(REPORT))}
        inbound = {r.sequence_id: r for r in conn.execute(sa.select(INBOUND))}
        dead = [bytes(r.raw_body) for r in conn.execute(sa.select(DEAD))]
    for sent in reports:
        row = stored[(sent["biz_id"], sent["phone_number"])]
        assert (row.out_id, row.err_code, row.err_msg) == (
            sent["out_id"],
            sent["err_code"],
            sent["err_msg"],
        )
    for sent in replies:
        row = inbound[sent["sequence_id"]]
        assert (row.phone_number, row.content, row.dest_code) == (
            sent["phone_number"],
            sent["content"],
            sent["dest_code"],
        )
    assert len(stored) == len(reports)
    assert len(inbound) == len(replies)
    assert len(inbound["big"].content) == 65_536
    assert dead == [broken.encode()]


def test_nul_characters_are_never_lost(db_url: str, engine: sa.Engine) -> None:
    """NUL is valid JSON text but PostgreSQL cannot store it in a text column: there the
    receipt is refused alone and dead-lettered with its exact bytes (never dropped); the other
    backends store it verbatim."""
    store = SqlStore(engine)
    report = {**_hostile_reports()[0], "biz_id": "nul^0", "err_msg": "before\x00after"}
    body = _json_b64(report)
    _consume(store, domain.MessageType.REPORT, [body])
    with engine.connect() as conn:
        rows = conn.execute(sa.select(REPORT.c.err_msg)).scalars().all()
        dead = conn.execute(sa.select(DEAD.c.raw_body, DEAD.c.error)).all()
    if make_url(db_url).get_backend_name() == "postgresql":
        assert rows == []
        assert [bytes(d.raw_body) for d in dead] == [body.encode()]
        assert dead[0].error.startswith("store refused")
    else:
        assert rows == ["before\x00after"]
        assert dead == []


def test_keys_differing_only_by_trailing_space_are_distinct(db_url: str, engine: sa.Engine) -> None:
    """Identifiers compare exactly on every backend: on MariaDB a PAD SPACE collation would
    make 'X' and 'X ' collide in the unique keys, and the second receipt would be taken for a
    duplicate and deleted without being stored (the migration uses a NO PAD one)."""
    store = SqlStore(engine)
    base = _hostile_reports()[0]
    bodies = [_json_b64({**base, "biz_id": biz}) for biz in ("pad^0", "pad^0 ", "pad^0  ")]
    _consume(store, domain.MessageType.REPORT, bodies)
    with engine.connect() as conn:
        stored = sorted(conn.execute(sa.select(REPORT.c.biz_id)).scalars().all())
    assert stored == ["pad^0", "pad^0 ", "pad^0  "]
