"""`receiptd demo`: the whole product on embedded defaults, in well under 30 seconds.

It starts the provider emulator in-process, uses a fresh SQLite file, sends a few hundred SMS
through the real Dysmsapi SDK with a realistic mix (delivered, failed, lost receipts,
duplicates, late receipts, replies, one malformed message), runs the consumers and the
compensator until every send is settled, and prints a summary.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import func, select

from receiptd import api, config, wiring
from receiptd.daemon.health import Health
from receiptd.db import migrate
from receiptd.db.models import SEND
from receiptd.db.sends import SendStore
from receiptd.db.store import SqlStore
from receiptd.ingest.mns.consumer import Consumer
from receiptd.ingest.push.listener import PushListener
from receiptd.testing import emulated
from receiptd.testing.receiver import Receiver
from receiptd.wiring import daemon
from receiptd_emulator import Emulator, Profile
from receiptd_emulator.push import PushSpec

Echo = Callable[[str], None]
RECIPIENTS_PER_SEND = 10
SENDS = 30  # 300 recipients
DEADLINE = 25.0  # seconds: the demo promises to finish in under 30

# Fast receipts, so the whole story fits in seconds; every outcome still occurs.
DEMO_PROFILE = Profile.load("demo").with_overrides(
    seed=7,
    delivered=0.85,
    failed=0.15,
    pending=0.0,
    receipt_delay=(0.2, 2.0),
    lost=0.15,
    duplicate=0.05,
    late=0.05,
    late_delay=(2.0, 5.0),
    malformed=0.0,
    reply_rate=0.1,
    reply_delay=(0.5, 3.0),
)


@dataclass
class DemoResult:
    recipients: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    settled_by: Counter[str] = field(default_factory=Counter)
    inbound: int = 0
    dead_letters: int = 0
    api_calls: Counter[str] = field(default_factory=Counter)
    messages: int = 0
    pushed: int = 0  # receipts and replies accepted by the push listener
    push_requests: int = 0
    seconds: float = 0.0
    webhook_events: Counter[str] | None = None  # what the local receiver got (--webhook)

    @property
    def all_settled(self) -> bool:
        return self.recipients > 0 and self.counts.get("pending", 0) == 0

    @property
    def expected_events(self) -> Counter[str]:
        """One event per send settled and per reply stored."""
        expected = Counter({f"send.{k}": v for k, v in self.counts.items() if k != "pending"})
        expected["reply.received"] = self.inbound
        return +expected

    @property
    def events_match(self) -> bool:
        return self.webhook_events is None or +self.webhook_events == self.expected_events


def demo_settings(
    emu: Emulator,
    db_path: Path,
    webhook: config.WebhookEndpoint | None = None,
    **overrides: Any,
) -> config.Settings:
    return emulated.settings(
        emu.info,
        f"sqlite:///{db_path}",
        consumer_wait_seconds=1,
        consumer_socket_timeout=10,
        compensator_grace=0,
        compensator_interval=1,
        compensator_rate_limit=200,
        webhook_endpoints=(webhook,) if webhook else (),
        webhook_poll_interval=0.1,
        **overrides,
    )


def run_demo(db_path: Path, echo: Echo, push: bool = False, webhook: bool = False) -> DemoResult:
    """The demo; with ``push`` the emulator delivers SmsReport and SmsUp by HTTP push to
    receiptd's push listener instead of the MNS queues; with ``webhook`` every event goes to a
    local receiver that verifies its signature, and the summary counts what it got."""
    for leftover in db_path.parent.glob(db_path.name + "*"):
        leftover.unlink()
    with contextlib.ExitStack() as stack:
        receiver = stack.enter_context(_receiver()) if webhook else None
        return _run(db_path, echo, receiver, push)
    raise AssertionError("unreachable")  # pragma: no cover


def _run(db_path: Path, echo: Echo, receiver: Receiver | None, push: bool) -> DemoResult:
    started = time.monotonic()
    with Emulator(profile=DEMO_PROFILE) as emu:
        settings = demo_settings(emu, db_path, _endpoint(receiver) if receiver else None)
        store, sends = wiring.stores(settings)
        migrate.upgrade(store.engine)
        echo(f"emulator on {emu.info.mns_endpoint}; database {db_path}")
        if receiver is not None:
            echo(f"webhook receiver on {receiver.url} (verifies every signature)")
        listener = _start_push(emu, store, echo) if push else None
        recipients = _send_batch(settings, sends, emu, echo)
        if listener is None:
            emu.inject_malformed("report")
        else:
            emu.push_elements("SmsReport", [{"biz_id": "broken", "success": "maybe"}])
        consumers = [] if listener else _start_consumers(settings, store)
        dispatchers, _ = daemon.webhook_parts(settings, store, Health())
        for dispatcher in dispatchers:
            dispatcher.start()
        loops: list[Consumer | PushListener] = [*consumers]
        loops += [listener] if listener else []
        try:
            _settle(settings, sends, emu, echo, started)
        finally:
            for loop in loops:
                loop.stop()
            for loop in loops:
                loop.join(5)
        result = _result(sends, emu, recipients, consumers)
        if receiver is not None:
            receiver.wait_for(sum(result.expected_events.values()), timeout=10)
            result.webhook_events = Counter(receiver.by_type())
        for dispatcher in dispatchers:
            dispatcher.stop()
            dispatcher.join(5)
        store.engine.dispose()
    result.seconds = time.monotonic() - started
    return result


def _start_push(emu: Emulator, store: SqlStore, echo: Echo) -> PushListener:
    """receiptd's push listener on a free port, and the emulator pushing to it."""
    token = secrets.token_urlsafe(24)
    settings = config.Settings(push_addr="127.0.0.1:0", push_token=token)
    (listener,) = daemon.push_listener(settings, store)
    listener.start()
    base = f"http://127.0.0.1:{listener.port}/push/{token}/aliyun"
    for kind in ("SmsReport", "SmsUp"):
        emu.set_push(kind, PushSpec(url=f"{base}/{kind}", batch=50, time_scale=0.01))
    echo(f"receipts arrive by HTTP push at http://127.0.0.1:{listener.port}/push/<token>/aliyun")
    return listener


def _receiver() -> Receiver:
    return Receiver("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())


def _endpoint(receiver: Receiver) -> config.WebhookEndpoint:
    return config.WebhookEndpoint(
        name="demo", url=receiver.url, secret=SecretStr(receiver.secret), timeout=5
    )


def _send_batch(settings: config.Settings, sends: SendStore, emu: Emulator, echo: Echo) -> int:
    client = wiring.dysms_client(settings)
    template = "SMS_200000001"
    total = 0
    for i in range(SENDS):
        numbers = [f"13{i:03d}{j:06d}" for j in range(RECIPIENTS_PER_SEND)]
        param = {"name": "张三", "order": f"DEMO{i:04d}"}
        api.send_and_register(
            client, sends, numbers, emu.info.sign_name, template, param, f"demo-{i}"
        )
        total += len(numbers)
    echo(f"sent {total} SMS in {SENDS} SendSms calls")
    return total


def _start_consumers(settings: config.Settings, store: SqlStore) -> list[Consumer]:
    consumers = wiring.consumers(settings, store, Health())
    for consumer in consumers:
        consumer.start()
    return consumers


def _settle(
    settings: config.Settings, sends: SendStore, emu: Emulator, echo: Echo, started: float
) -> None:
    """Let receipts arrive; every second run a compensation cycle for what is still due."""
    comp = wiring.compensator(settings, sends, grace=2.0)
    if comp is None:  # pragma: no cover - the demo always configures Aliyun
        raise RuntimeError("demo settings configure no provider")
    while time.monotonic() - started < DEADLINE:
        time.sleep(1.0)
        summary = comp.run_once()
        counts = _counts(sends)
        # Queued or still to be emitted (receipts and replies the provider has not sent yet).
        queued = sum(sum(emu.queue_depth(q).values()) for q in ("report", "up"))
        queued += emu.scheduler.pending()
        queued += sum(stats["pending"] for stats in emu.push_stats().values())
        echo(
            f"[{time.monotonic() - started:4.1f}s] pending {counts.get('pending', 0):3d}  "
            f"delivered {counts.get('delivered', 0):3d}  failed {counts.get('failed', 0):3d}  "
            f"queued {queued:3d}  queries this cycle {sum(summary.calls.values())}"
        )
        if counts.get("pending", 0) == 0 and queued == 0:
            return


def _counts(sends: SendStore) -> Counter[str]:
    counts: Counter[str] = Counter()
    for (_provider, status), n in sends.summary().by_provider().items():
        counts[status] += n
    return counts


def _result(
    sends: SendStore, emu: Emulator, recipients: int, consumers: list[Consumer]
) -> DemoResult:
    summary = sends.summary()
    by: dict[str | None, int] = sends.store.run(
        lambda conn: dict(
            conn.execute(select(SEND.c.settled_by, func.count()).group_by(SEND.c.settled_by)).all()
        )
    )
    return DemoResult(
        recipients=recipients,
        counts=_counts(sends),
        settled_by=Counter({str(k): int(v) for k, v in by.items() if k}),
        inbound=summary.inbound,
        dead_letters=summary.dead_letters,
        api_calls=Counter(call.api for call in emu.calls()),
        messages=sum(c.stats.received for c in consumers),
        pushed=sum(stats["delivered"] for stats in emu.push_stats().values()),
        push_requests=sum(stats["requests"] for stats in emu.push_stats().values()),
    )


def render(result: DemoResult) -> list[str]:
    calls = result.api_calls
    mns_calls = sum(n for api_name, n in calls.items() if api_name.startswith("MNS."))
    return [
        "",
        f"receiptd demo: {result.recipients} SMS settled in {result.seconds:.1f} s",
        "  by status:   " + _fmt(result.counts, ("delivered", "failed", "expired", "pending")),
        "  settled by:  " + _fmt(result.settled_by, ("receipt", "query", "window")),
        f"  replies stored (sms_inbound): {result.inbound}",
        f"  dead letters (malformed bodies kept verbatim): {result.dead_letters}",
        f"  API calls: SendSms {calls.get('SendSms', 0)}, QuerySendDetails "
        f"{calls.get('QuerySendDetails', 0)}, QueryTokenForMnsQueue "
        f"{calls.get('QueryTokenForMnsQueue', 0)}, MNS {mns_calls}",
        _delivery_line(result),
        *_render_webhooks(result),
        "",
        "Next: `receiptd run` runs this as a daemon against your account; see the README's",
        "configuration reference (RECEIPTD_* settings) and `receiptd config check`.",
    ]


def _delivery_line(result: DemoResult) -> str:
    if result.push_requests:
        how = f"receipts pushed: {result.pushed} in {result.push_requests} HTTP requests"
    else:
        how = f"queue messages consumed: {result.messages}"
    return (
        f"  {how} in {result.seconds:.1f} s (the pace is the emulator's receipt delays of "
        "0.2–5 s, not receiptd's; see bench/ for throughput)"
    )


def _fmt(counter: Counter[str], order: tuple[str, ...]) -> str:
    return ", ".join(f"{key} {counter.get(key, 0)}" for key in order)


def _render_webhooks(result: DemoResult) -> list[str]:
    if result.webhook_events is None:
        return []
    order = ("send.delivered", "send.failed", "send.expired", "reply.received")
    verdict = "equal to" if result.events_match else "NOT equal to"
    return [
        "  webhooks received (signatures verified): " + _fmt(result.webhook_events, order),
        f"    {verdict} sends settled and replies stored: " + _fmt(result.expected_events, order),
    ]
