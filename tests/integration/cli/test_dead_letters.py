"""`receiptd dead-letters list|show|replay` on every backend."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from click.testing import CliRunner

from receiptd import domain, ports
from receiptd.cli import main
from receiptd.db.models import DEAD, INBOUND, REPORT
from receiptd.db.store import SqlStore

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
GOOD_REPORT = domain.encode_body(
    {"biz_id": "9^0", "phone_number": "13800000009", "success": True,
     "send_time": "2026-11-25 16:00:00"}
)  # fmt: skip
GOOD_UP = domain.encode_body(
    {"phone_number": "13800000009", "content": "好", "send_time": "20261125160000",
     "dest_code": "1", "sequence_id": "2"}
)  # fmt: skip


def seed(engine: sa.Engine) -> dict[str, int]:
    """Three letters: two that parse now (a parser fix, say) and one still broken."""
    dead = [
        ports.DeadRecord("Alicom-Queue-1-SmsReport", "m1", GOOD_REPORT.encode(), "old error"),
        ports.DeadRecord("Alicom-Queue-1-SmsUp", "m2", GOOD_UP.encode(), "old error"),
        ports.DeadRecord("Alicom-Queue-1-SmsReport", "m3", b"%%%", "not base64"),
    ]
    SqlStore(engine).write_batch(ports.Batch(dead=dead), NOW)
    with engine.connect() as conn:
        return {r.mns_message_id: r.id for r in conn.execute(sa.select(DEAD))}


def run(engine: sa.Engine, *args: str) -> tuple[int, str]:
    env = {"RECEIPTD_DATABASE_URL": engine.url.render_as_string(hide_password=False)}
    result = CliRunner().invoke(main, ["dead-letters", *args], env=env)
    return result.exit_code, result.output


def test_list_and_show(engine: sa.Engine) -> None:
    ids = seed(engine)
    code, out = run(engine, "list")
    assert code == 0 and out.count("\n") == 3 and "not base64" in out
    code, out = run(engine, "show", str(ids["m3"]))
    assert code == 0 and "raw_body\t%%%" in out
    code, _ = run(engine, "show", "999999")
    assert code == 1


def test_replay_stores_what_parses_and_keeps_the_rest(engine: sa.Engine) -> None:
    ids = seed(engine)
    code, out = run(engine, "replay", "--all")
    assert code == 1  # one letter is still bad
    assert f"{ids['m3']}\tstill bad: body is not valid base64" in out
    assert "replayed=2 still_bad=1" in out
    with engine.connect() as conn:
        assert conn.execute(sa.select(REPORT.c.biz_id)).scalars().all() == ["9^0"]
        assert conn.execute(sa.select(INBOUND.c.content)).scalars().all() == ["好"]
        replayed = dict(conn.execute(sa.select(DEAD.c.mns_message_id, DEAD.c.replayed_at)).all())
    assert replayed["m1"] is not None and replayed["m2"] is not None
    assert replayed["m3"] is None
    code, out = run(engine, "list")
    assert out.count("\n") == 1  # replayed letters are hidden by default
    code, out = run(engine, "replay", str(ids["m1"]))
    assert code == 0  # replaying again is harmless (idempotent write)


def test_replay_needs_ids_or_all(engine: sa.Engine) -> None:
    code, _ = run(engine, "replay")
    assert code == 2


def test_account_filters_list_show_and_replay_and_replay_keeps_the_account(
    engine: sa.Engine,
) -> None:
    ids = seed(engine)  # the default account's
    theirs = [
        ports.DeadRecord("Alicom-Queue-2-SmsReport", "b1", GOOD_REPORT.encode(), "old", "brand_b"),
        ports.DeadRecord("Alicom-Queue-2-SmsUp", "b2", GOOD_UP.encode(), "old", "brand_b"),
    ]
    SqlStore(engine).write_batch(ports.Batch(dead=theirs), NOW)
    with engine.connect() as conn:
        ids |= {r.mns_message_id: r.id for r in conn.execute(sa.select(DEAD))}

    code, out = run(engine, "list", "--account", "brand_b")
    assert code == 0 and out.count("\n") == 2
    assert all(line.split("\t")[1] == "brand_b" for line in out.splitlines())
    code, out = run(engine, "list")
    assert (
        sorted(line.split("\t")[1] for line in out.splitlines())
        == ["brand_b"] * 2 + ["default"] * 3
    )
    assert run(engine, "show", str(ids["b1"]), "--account", "brand_b")[0] == 0
    code, out = run(engine, "show", str(ids["m1"]), "--account", "brand_b")
    assert code == 1 and "of account brand_b" in out
    code, out = run(engine, "replay", str(ids["m1"]), "--account", "brand_b")
    assert code == 1 and "is of account default, not brand_b" in out

    code, out = run(engine, "replay", "--all", "--account", "brand_b")
    assert code == 0 and "replayed=2 still_bad=0" in out, out
    with engine.connect() as conn:
        assert conn.execute(sa.select(REPORT.c.biz_id, REPORT.c.account)).all() == [
            ("9^0", "brand_b")
        ]
        assert conn.execute(sa.select(INBOUND.c.account)).scalars().all() == ["brand_b"]
        left = conn.execute(sa.select(DEAD.c.account).where(DEAD.c.replayed_at.is_(None)))
        assert sorted(left.scalars()) == ["default"] * 3  # the other account's: untouched
    assert run(engine, "list", "--account", "Brand")[0] == 2
