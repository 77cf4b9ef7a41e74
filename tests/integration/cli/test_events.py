"""`receiptd events list|show|replay` against a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from receiptd import ports
from receiptd.cli import main
from receiptd.cli.events import parse_since
from receiptd.db.models import DELIVERY
from receiptd.db.sends import SendStore
from receiptd.testing.receiver import Receiver
from tests.integration.test_store import NOW, report, send
from tests.integration.test_webhooks import SECRET, Clock, delivery_rows, settled_world, worker


def run(engine: sa.Engine, url: str, *args: str) -> tuple[int, str]:
    env = {
        "RECEIPTD_DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "RECEIPTD_WEBHOOK_ENDPOINTS": json.dumps([{"name": "app", "url": url, "secret": SECRET}]),
    }
    result = CliRunner().invoke(main, ["events", *args], env=env)
    return result.exit_code, result.output


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_list_show_replay(engine: sa.Engine) -> None:
    store = settled_world(engine)
    with Receiver(SECRET) as receiver:
        assert worker(store, receiver.url, Clock()).run_once() == 3
        code, out = run(engine, receiver.url, "list", "--endpoint", receiver.url)
        assert code == 0, out
        lines = out.splitlines()
        assert len(lines) == 3 and all("\tapp\tdelivered\tattempts=1" in line for line in lines)
        event_id = lines[0].split("\t")[0]
        code, out = run(engine, receiver.url, "show", event_id)
        assert code == 0 and f'"id": "{event_id}"' in out
        assert run(engine, receiver.url, "show", "nope")[0] == 1
        assert run(engine, receiver.url, "list", "--status", "pending")[1] == "no events\n"
        assert run(engine, receiver.url, "replay")[0] == 2  # IDs or --since required
        code, out = run(engine, receiver.url, "replay", event_id)
        assert (code, out) == (0, "scheduled=1 endpoints=app\n")
        assert [r.status for r in delivery_rows(engine)].count("pending") == 1
        # --since before the events (a fixed time: the events are dated at the test's NOW, not
        # the wall clock's): everything again; the receiver sees the same webhook-ids.
        since = "2026-11-24T00:00:00Z"
        assert run(engine, receiver.url, "replay", "--since", since)[1].startswith("scheduled=3")
        later = Clock()
        later.now = datetime.now(UTC) + timedelta(seconds=1)  # replays are due from now on
        assert worker(store, receiver.url, later).run_once() == 3
        assert receiver.unique() == 3 and receiver.duplicates() == 3
        assert run(engine, receiver.url, "replay", "--endpoint", "other", event_id)[0] == 2
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(DELIVERY)).scalar() == 3


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_list_of_one_account_shows_the_account_column(engine: sa.Engine) -> None:
    store = settled_world(engine)  # the default account's: two sends settled, one reply
    theirs = replace(send("b9", "13800000001"), account="brand_b")
    SendStore(store).register([theirs], NOW)
    receipt = replace(report("b9", "13800000001"), message_id="m-b9", account="brand_b")
    assert store.write_batch(ports.Batch(reports=[receipt]), NOW).sends_settled == 1
    code, out = run(engine, "http://127.0.0.1:9/", "list")
    assert code == 0, out
    accounts = sorted(line.split("\t")[2] for line in out.splitlines())
    assert accounts == ["brand_b", "default", "default", "default"]
    code, out = run(engine, "http://127.0.0.1:9/", "list", "--account", "brand_b")
    (line,) = out.splitlines()
    assert line.split("\t")[1:3] == ["send.delivered", "brand_b"]
    assert run(engine, "http://127.0.0.1:9/", "list", "--account", "nobody")[1] == "no events\n"


def test_parse_since() -> None:
    now = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    assert parse_since("90m", now) == now - timedelta(minutes=90)
    assert parse_since("2026-11-30T07:00:00", now) == now - timedelta(hours=1)
    assert parse_since("2026-11-30T07:00:00Z", now) == now - timedelta(hours=1)
