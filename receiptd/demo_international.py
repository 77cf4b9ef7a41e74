"""`receiptd demo --international`: mainland, China-site international and international-site
sends settled together, by receipt and by query, printed per shape.

The emulator serves both of Alibaba's sites (docs/emulator.md, "The international site"):
receiptd's ``default`` account is on the China site and consumes its SmsReport, SmsUp and
GlobeSmsReport queues; the ``intl`` account is on the international site (its own Dysmsapi,
Dybaseapi and MNS). The sends go out through the real SDKs (SendSms; SendMessageToGlobe on
both sites), a share of their receipts is lost, and the compensator asks QuerySendDetails or
QueryMessage for those, each send by the id it is matched by.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select

from receiptd import api, config, wiring
from receiptd.daemon.health import Health
from receiptd.db import migrate
from receiptd.db.models import SEND
from receiptd.db.sends import SendStore
from receiptd.demo import DEADLINE, DEMO_PROFILE, Echo, demo_settings
from receiptd.testing import emulated
from receiptd_emulator import Emulator

INTL = "intl"
# (label, account, matched_by): how the summary names each kind of send
SHAPES = (
    ("mainland (SendSms, SmsReport)", config.DEFAULT_ACCOUNT, "biz_id"),
    (
        "China site abroad (SendMessageToGlobe, GlobeSmsReport)",
        config.DEFAULT_ACCOUNT,
        "message_id",
    ),
    ("international site (SendMessageToGlobe, PascalCase SmsReport)", INTL, "message_id"),
)
MAINLAND_SENDS, PER_SEND = 7, 10  # 70 mainland recipients
CN_GLOBE, INTL_SENDS = 20, 10  # one MessageId per number


@dataclass
class InternationalResult:
    # (account, matched_by) → status → sends; (account, matched_by) → settled_by → sends
    counts: dict[tuple[str, str], Counter[str]] = field(default_factory=dict)
    settled_by: dict[tuple[str, str], Counter[str]] = field(default_factory=dict)
    api_calls: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def all_settled(self) -> bool:
        total = sum(sum(c.values()) for c in self.counts.values())
        pending = sum(c.get("pending", 0) for c in self.counts.values())
        return total > 0 and pending == 0


def run_international(db_path: Path, echo: Echo) -> InternationalResult:
    for leftover in db_path.parent.glob(db_path.name + "*"):
        leftover.unlink()
    started = time.monotonic()
    with Emulator(profile=DEMO_PROFILE) as emu:
        emu.add_account(INTL, site="intl")
        settings = demo_settings(
            emu,
            db_path,
            aliyun_globe_queue=emu.account().globe_queue,
            accounts={INTL: emulated.account_keys(emu.info, emu.account(INTL))},
        )
        store, sends = wiring.stores(settings)
        migrate.upgrade(store.engine)
        echo(
            f"China site on {emu.info.mns_endpoint}, international site on {emu.info.intl_endpoint}"
        )
        _send_all(settings, sends, emu, echo)
        consumers = wiring.daemon_consumers(settings, store, Health())
        for consumer in consumers:
            consumer.start()
        try:
            _settle(settings, sends, emu, echo, started)
        finally:
            for consumer in consumers:
                consumer.stop()
            for consumer in consumers:
                consumer.join(5)
        result = _result(sends)
        result.api_calls = Counter(call.api for call in emu.calls())
        store.engine.dispose()
    result.seconds = time.monotonic() - started
    return result


def _send_all(settings: config.Settings, sends: SendStore, emu: Emulator, echo: Echo) -> None:
    client = wiring.dysms_client(settings)
    for i in range(MAINLAND_SENDS):
        numbers = [f"13{i:03d}{j:06d}" for j in range(PER_SEND)]
        param = {"name": "张三", "order": f"DEMO{i:04d}"}
        api.send_and_register(
            client, sends, numbers, emu.info.sign_name, "SMS_200000001", param, f"demo-{i}"
        )
    for name, numbers in (
        (config.DEFAULT_ACCOUNT, [f"852{6000_0000 + i}" for i in range(CN_GLOBE)]),
        (INTL, [f"65{8000_0000 + i}" for i in range(INTL_SENDS)]),
    ):
        account = api.aliyun_account(settings, name)
        api.globe_send_and_register(
            wiring.globe_client(settings, account),
            sends,
            numbers,
            api.GlobeMessage("Your receiptd demo code is 2468", task_id=f"demo-{name}"),
            wiring.rate_limiter(account.send_rate),
            account=name,
        )
    echo(
        f"sent {MAINLAND_SENDS * PER_SEND} mainland SMS in {MAINLAND_SENDS} SendSms calls, "
        f"{CN_GLOBE} by SendMessageToGlobe on the China site, {INTL_SENDS} on the "
        "international site"
    )


def _settle(
    settings: config.Settings, sends: SendStore, emu: Emulator, echo: Echo, started: float
) -> None:
    """Let receipts arrive; every second run a compensation cycle for what is still due."""
    comp = wiring.compensator(settings, sends, grace=2.0)
    if comp is None:  # pragma: no cover - the demo always configures both accounts
        raise RuntimeError("demo settings configure no provider")
    while time.monotonic() - started < DEADLINE:
        time.sleep(1.0)
        summary = comp.run_once()
        pending = sum(
            n for (_, _, status), n in sends.summary().counts.items() if status == "pending"
        )
        queued = sum(sum(emu.queue_depth(q).values()) for q in ("report", "up", "globe"))
        queued += sum(emu.queue_depth("report", INTL).values()) + emu.scheduler.pending()
        echo(
            f"[{time.monotonic() - started:4.1f}s] pending {pending:3d}  queued {queued:3d}  "
            f"queries this cycle {sum(summary.calls.values())}"
        )
        if pending == 0 and queued == 0:
            return


def _result(sends: SendStore) -> InternationalResult:
    columns = (SEND.c.account, SEND.c.matched_by, SEND.c.status, SEND.c.settled_by)
    query = select(*columns, func.count()).group_by(*columns)
    rows = sends.store.run(lambda conn: conn.execute(query).all())
    result = InternationalResult()
    for account, matched_by, status, settled_by, n in rows:
        key = (str(account), str(matched_by))
        result.counts.setdefault(key, Counter())[str(status)] += int(n)
        if settled_by:
            result.settled_by.setdefault(key, Counter())[str(settled_by)] += int(n)
    return result


def render(result: InternationalResult) -> list[str]:
    total = sum(sum(c.values()) for c in result.counts.values())
    lines = ["", f"receiptd demo --international: {total} SMS settled in {result.seconds:.1f} s"]
    for label, account, matched_by in SHAPES:
        counts = result.counts.get((account, matched_by), Counter())
        by = result.settled_by.get((account, matched_by), Counter())
        lines.append(f"  {label}:")
        lines.append(
            f"    {sum(counts.values())} sends: delivered {counts['delivered']}, failed "
            f"{counts['failed']}, pending {counts['pending']}; by receipt {by['receipt']}, "
            f"by query {by['query']}"
        )
    calls = result.api_calls
    lines.append(
        "  API calls: "
        + ", ".join(
            f"{name} {calls.get(name, 0)}"
            for name in (
                "SendSms",
                "SendMessageToGlobe",
                "QuerySendDetails",
                "QueryMessage",
                "QueryTokenForMnsQueue",
            )
        )
    )
    return lines
