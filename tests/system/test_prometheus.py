"""A real Prometheus scraping a real `receiptd run` under demo load (issue 25).

One scenario (the module fixture, about 25 s) feeds the checks:

1. load as ``receiptd demo`` makes it (its profile: delivered, failed, lost, duplicate and late
   receipts, replies), sends registered through ``POST /v1/sends``; the first batch's receipts
   come by MNS, the second's by HTTP push (replies by push throughout), a malformed body on
   each path, the compensator querying what lost its receipt, webhooks to a receiver and to an
   endpoint that is down (its deliveries go dead after a 2 s retry period);
2. a planted fault: the database cut by a proxy (never by stopping the shared server) while
   the emulator pushes receipts, which the push listener answers 503, and queues a few, which
   a consumer fails to store; nothing asks /readyz (as under systemd): each scrape sets
   receiptd_ready;
   the alerts of :data:`FAULT_ALERTS` must go pending (or firing);
3. then every recording rule of ``deploy/prometheus/`` and every expression of every panel of
   the dashboard, its variables substituted, is evaluated over the scenario's time range, and
   must return data (a value that is not NaN) — or be named in :data:`NO_DATA` with the reason.

Prometheus scrapes and evaluates every second, so alerts go pending as soon as their
expression holds (``for:`` is the rule files' own; pending is reported before it elapses).
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from receiptd.db.models import SEND
from receiptd.demo import DEMO_PROFILE
from receiptd.testing.receiver import Receiver
from receiptd_emulator import Emulator
from receiptd_emulator.push import PushSpec
from tests.conftest import IN_CI
from tests.system import prometheus, rules_and_panels
from tests.system.daemon import Daemon, daemon_env, free_port
from tests.system.demo_load import Sender
from tests.system.prometheus import Prometheus
from tests.system.reliability import CutProxy, Db, receipt_fields, wait_for

pytestmark = [pytest.mark.system, pytest.mark.timeout(170)]

STATUS_TOKEN = "status-token-0123456789abcdef"
PUSH_TOKEN = "push-token-0123456789abcdef"
SECRET = "whsec_" + base64.b64encode(b"prometheus-e2e-webhook-secret-32").decode()
JOB = "receiptd"
ACCOUNT = "default"
SENDS_PER_BATCH = 12  # SendSms calls of 10 numbers: one batch by MNS, one by push
STEP = 2.0  # seconds between the points of a range query (Grafana's $__interval)
SCRAPE = float(prometheus.INTERVAL.removesuffix("s"))

# Rules (by record name) and panels (by "title [refId]") that cannot have data under this
# load, each with the reason. Asserted both ways: a listed one that returns data, or that no
# longer exists, fails the test as surely as an unlisted one without data.
NO_DATA: dict[str, str] = {
    "Alert: ReceiptdDeliveryRateDropped [B]": "compares with the same hour a day earlier "
    "(offset 1d): a Prometheus that has run for a minute holds no sample from a day ago",
}

# The alerts each planted fault must make pending (or firing), from the rule file.
FAULT_ALERTS: dict[str, str] = {
    "ReceiptdNotReady": "the database cut: /readyz fails, receiptd_ready 0",
    "ReceiptdPushUnavailable": "the database cut while receipts are pushed: the push path "
    "answers 503 (result unavailable)",
}


@dataclass
class Scenario:
    prom: Prometheus
    template: dict[str, str]  # the dashboard's variables: job, instance, account
    start: float  # Unix time the load began
    end: float
    alerts_seen: dict[str, str]  # alert → "<state> after <s> s" (into the cut, first seen)
    cut_seconds: float
    push_answers: dict[str, int]  # the emulator's pushes, by HTTP status


def _require_prometheus() -> None:
    if prometheus.binary() is None:
        message = "prometheus is not on PATH (Debian's prometheus package; .ci/run installs it)"
        if IN_CI:
            pytest.fail(message + " (CI requires it)")
        pytest.skip(message)


def _env(emu: Emulator, url: str, push_port: int, receiver: Receiver) -> dict[str, str]:
    hooks = [
        {"name": "app", "url": receiver.url, "secret": SECRET},
        # Nothing listens there: attempts fail, and after 2 s each delivery is dead.
        {"name": "down", "url": f"http://127.0.0.1:{free_port()}/", "secret": SECRET,
         "retry_period": 2},
    ]  # fmt: skip
    return daemon_env(
        emu,
        url,
        free_port(),
        RECEIPTD_STATUS_API_TOKEN=STATUS_TOKEN,
        RECEIPTD_PUSH_ADDR=f"127.0.0.1:{push_port}",
        RECEIPTD_PUSH_TOKEN=PUSH_TOKEN,
        RECEIPTD_COMPENSATOR_INTERVAL="1",
        RECEIPTD_COMPENSATOR_GRACE="2",
        RECEIPTD_WEBHOOK_ENDPOINTS=json.dumps(hooks),
        RECEIPTD_WEBHOOK_BACKOFF_INITIAL="0.2",
        RECEIPTD_WEBHOOK_BACKOFF_MAX="0.5",
        RECEIPTD_WEBHOOK_POLL_INTERVAL="0.1",
    )


def _push(emu: Emulator, port: int, kind: str, batch: int = 50) -> None:
    """The emulator pushes ``kind`` to the daemon, its retry schedule 100 times faster."""
    url = f"http://127.0.0.1:{port}/push/{PUSH_TOKEN}/aliyun/{kind}"
    emu.set_push(kind, PushSpec(url=url, batch=batch, time_scale=0.01))


def _pending(db: Db) -> int:
    query = sa.select(sa.func.count()).select_from(SEND).where(SEND.c.status == "pending")
    return int(db.scalar(query))


def _until(prom: Prometheus, expr: str, what: str, daemon: Daemon) -> None:
    """Wait until Prometheus answers ``expr`` with a sample: what the checks read was scraped.
    On a timeout, the daemon's warnings say why."""

    def alive() -> None:
        if daemon.proc.poll() is not None:
            raise AssertionError(f"receiptd exited {daemon.proc.returncode}:\n{daemon.log()}")

    try:
        wait_for(lambda: bool(prom.query(expr)), 40, f"{what}: {expr}", 0.5, alive)
    except AssertionError as exc:
        warnings = [e for e in daemon.events() if e.get("level") in ("warning", "error")]
        raise AssertionError(f"{exc}\nreceiptd's last warnings: {warnings[-5:]}") from None


def _load(prom: Prometheus, emu: Emulator, daemon: Daemon, push_port: int, db: Db) -> None:
    """Two batches (receipts by MNS, then by push) until every send is settled, each step
    waiting until Prometheus has scraped what it made."""
    job = f'job="{JOB}"'
    # Prometheus' scrape manager applies new targets every 5 s: the first scrape comes late.
    _until(prom, f"up{{{job}}} == 1", "scraped", daemon)
    sender = Sender(emu, daemon, STATUS_TOKEN)
    _push(emu, push_port, "SmsUp")
    sender.batch(0, SENDS_PER_BATCH)
    emu.inject_malformed("report")
    mns = f'receiptd_receipts_total{{{job}, channel="mns", type="report", outcome="stored"}}'
    _until(prom, f"{mns} >= {SENDS_PER_BATCH * 10 // 2}", "receipts by MNS", daemon)
    _push(emu, push_port, "SmsReport")
    sender.batch(SENDS_PER_BATCH, SENDS_PER_BATCH)
    emu.push_elements("SmsReport", [{"biz_id": "broken", "success": "maybe"}])
    wait_for(lambda: _pending(db) == 0, 40, "every send settled in the database", 0.5)
    assert sender.registered == 2 * SENDS_PER_BATCH * 10
    settled = f"receiptd_oldest_pending_seconds{{{job}}} == 0"
    _until(prom, settled, "every send settled", daemon)
    _until(prom, f'receiptd_events_total{{{job}, result="dead"}} > 0', "dead deliveries", daemon)
    assert emu.wait_push_idle("SmsReport", 30) and emu.wait_push_idle("SmsUp", 30)


def _cut(
    prom: Prometheus, emu: Emulator, proxy: CutProxy, daemon: Daemon, push_port: int
) -> tuple[dict[str, str], float]:
    """Cut the database while receipts are pushed and queued; the alerts seen (state, and
    seconds into the cut when first seen) until every expected one was pending or firing and
    the consumers' database errors were scraped (or 40 s passed), and how long the cut
    lasted."""
    seen: dict[str, str] = {}
    errors = f'receiptd_loop_errors_total{{job="{JOB}", kind="database"}} > 0'

    def all_seen() -> bool:
        for alert in prom.alerts():
            name, state = alert["labels"]["alertname"], alert["state"]
            if not seen.get(name, "").startswith(state):
                seen[name] = f"{state} after {time.monotonic() - started:.1f} s"
        return set(FAULT_ALERTS) <= seen.keys() and bool(prom.query(errors))

    # Small pushes, so that 503s are a share of the push requests of the last 5 minutes that
    # the alert's 5 % threshold sees (the load's pushes are idle: nothing retrying is lost).
    _push(emu, push_port, "SmsReport", batch=5)
    started = time.monotonic()
    proxy.cut()
    emu.push_elements("SmsReport", [receipt_fields(i, prefix="8") for i in range(40)])
    for i in range(5):  # a consumer's batch meets the cut too (receiptd_loop_errors)
        emu.enqueue_report(receipt_fields(i, prefix="9"))
    with contextlib.suppress(AssertionError):  # the tests below say what never came
        wait_for(all_seen, 40, "every expected alert pending", 0.5)
    cut_seconds = time.monotonic() - started
    proxy.restore()
    daemon.wait_until(daemon.ready, 30)
    up = f'receiptd_ready{{job="{JOB}"}} == 1'
    wait_for(lambda: bool(prom.query(up)), 30, "Prometheus saw the daemon ready again")
    return seen, cut_seconds


@pytest.fixture(scope="module")
def scenario(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    _require_prometheus()
    tmp = tmp_path_factory.mktemp("prometheus")
    url = make_url(pg_url)
    with contextlib.ExitStack() as stack:
        proxy = CutProxy(url.host or "127.0.0.1", url.port or 5432).start()
        stack.callback(proxy.close)
        proxied = url.set(port=proxy.port).render_as_string(hide_password=False)
        db = Db(pg_url)
        stack.callback(db.close)
        emu = stack.enter_context(Emulator(profile=DEMO_PROFILE))
        receiver = stack.enter_context(Receiver(SECRET))
        push_port = free_port()
        daemon = Daemon(_env(emu, proxied, push_port, receiver), tmp / "receiptd.log")
        stack.callback(daemon.kill)
        instance = f"127.0.0.1:{daemon.port}"
        prom = Prometheus(tmp, {JOB: instance}, rules_and_panels.rule_files()).start()
        stack.callback(prom.stop)
        daemon.wait_until(daemon.ready, timeout=30)
        start = time.time()
        _load(prom, emu, daemon, push_port, db)
        seen, cut_seconds = _cut(prom, emu, proxy, daemon, push_port)
        answers = dict(emu.push_stats()["SmsReport"]["answers"])  # the cut's pusher
        yield Scenario(
            prom=prom,
            template={"job": JOB, "instance": instance, "account": ACCOUNT},
            start=start,
            end=time.time(),
            alerts_seen=seen,
            cut_seconds=cut_seconds,
            push_answers=answers,
        )


def _has_data(series: list[dict[str, Any]]) -> bool:
    """True when any point of any series is a number (NaN is what Grafana leaves blank)."""
    return any(not math.isnan(float(v)) for s in series for _, v in s.get("values", []))


def _verdicts(scenario: Scenario, queries: dict[str, str]) -> dict[str, bool]:
    s = scenario
    out = {}
    for name, expr in queries.items():
        series = s.prom.query_range(expr, s.start, s.end, STEP)
        out[name] = _has_data(series)
        print(f"  {'data' if out[name] else 'NO DATA'}: {name}: {len(series)} series  {expr}")
    return out


def _check(verdicts: dict[str, bool], what: str) -> None:
    missing = sorted(n for n, ok in verdicts.items() if not ok and n not in NO_DATA)
    listed_with_data = sorted(n for n, ok in verdicts.items() if ok and n in NO_DATA)
    assert not missing, f"{what} without data under demo load: {missing}"
    assert not listed_with_data, f"listed in NO_DATA but returned data: {listed_with_data}"


def test_every_rule_loads_and_evaluates_without_error(scenario: Scenario) -> None:
    rules = [r for g in scenario.prom.rule_groups() for r in g["rules"]]
    print(f"\n{len(rules)} rules loaded from {[p.name for p in rules_and_panels.rule_files()]}")
    assert rules, "no rule in deploy/prometheus/*.yml"
    broken = {r["name"]: r.get("lastError") for r in rules if r.get("health") != "ok"}
    assert not broken, broken


def test_every_recording_rule_returns_data(scenario: Scenario) -> None:
    groups = scenario.prom.rule_groups()
    records = {r["name"]: r["name"] for g in groups for r in g["rules"] if r["type"] == "recording"}
    print(f"\nrecording rules evaluated over {scenario.end - scenario.start:.0f} s:")
    assert records, "no recording rule in deploy/prometheus/*.yml"
    _check(_verdicts(scenario, records), "recording rules")


def test_every_dashboard_panel_returns_data(scenario: Scenario) -> None:
    s = scenario
    variables = rules_and_panels.grafana_variables(s.end - s.start, STEP, SCRAPE, **s.template)
    targets = rules_and_panels.dashboard_targets()
    print(f"\n{len(targets)} dashboard expressions evaluated ({variables}):")
    queries = {t.label: rules_and_panels.substitute(t.expr, variables) for t in targets}
    assert len(queries) == len(targets), "two queries of one panel share a refId"
    _check(_verdicts(s, queries), "dashboard panels")


def test_planted_faults_make_their_alerts_pending(scenario: Scenario) -> None:
    s = scenario
    alerts = {
        r["name"] for g in s.prom.rule_groups() for r in g["rules"] if r["type"] == "alerting"
    }
    print(f"\ndatabase cut for {s.cut_seconds:.1f} s; alerts pending or firing: {s.alerts_seen}")
    print(f"emulator's SmsReport pushes by answer: {s.push_answers}")
    assert set(FAULT_ALERTS) <= alerts, f"not in the rule files: {set(FAULT_ALERTS) - alerts}"
    assert s.push_answers.get("503", 0) > 0, "the push path never answered 503"
    missing = {a: why for a, why in FAULT_ALERTS.items() if a not in s.alerts_seen}
    assert not missing, f"never pending or firing: {missing}"


def test_no_data_names_existing_rules_or_panels(scenario: Scenario) -> None:
    records = {r["name"] for g in scenario.prom.rule_groups() for r in g["rules"]}
    panels = {t.label for t in rules_and_panels.dashboard_targets()}
    assert set(NO_DATA) <= records | panels, set(NO_DATA) - records - panels


def test_pending_sends_gauge_falls_to_zero_once_every_send_settled(scenario: Scenario) -> None:
    pending = scenario.prom.query(f'receiptd_sends{{job="{JOB}", status="pending"}}')
    print(f"\nreceiptd_sends pending at the end: {[s['value'][1] for s in pending]}")
    assert pending, "no pending series"
    assert all(float(s["value"][1]) == 0 for s in pending), "every send is settled"
