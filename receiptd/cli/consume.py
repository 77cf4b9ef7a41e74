"""`receiptd consume`: run the receipt consumer in the foreground (or until the queues are idle):
the queues of every Aliyun account this replica serves, or of one (``--account``)."""

from __future__ import annotations

import signal
from types import FrameType

import click

from receiptd import config, domain, wiring
from receiptd.cli import common
from receiptd.daemon.health import Health
from receiptd.ingest.mns.consumer import Consumer, ConsumeStats

KINDS = {kind.label: kind for kind in domain.MessageType}  # report, up, globe


@click.command("consume")
@click.option(
    "--queue",
    "queue",
    type=click.Choice([*KINDS, "all"]),
    default="all",
    show_default=True,
    help="Which Alicom queue to consume (all: every queue each account has).",
)
@click.option(
    "--until-idle",
    is_flag=True,
    help="Drain what is visible, then exit: each thread stops at its first empty receive, the "
    "command once all have (messages another consumer holds are left for the next run).",
)
@common.account_option(
    "Only this configured Aliyun account's queues (default: every Aliyun account this "
    "replica serves)."
)
@click.pass_context
def consume(ctx: click.Context, queue: str, until_idle: bool, account: str | None) -> None:
    """Consume SmsReport/SmsUp messages into the database (Ctrl-C stops after the batch)."""
    settings = common.settings(ctx)
    accounts = _accounts(settings, account)
    store, _ = common.stores(settings)
    try:
        common.check_database(store)
        health = Health()
        consumers = [
            c
            for a in accounts
            for c in wiring.consumers(settings, store, health, _kinds(a, queue, account), a)
        ]
        if not consumers:
            common.fail(f"no account served here has a {queue} queue (docs/international.md)", 2)
        stats = _run(consumers, until_idle, settings.parts.daemon.shutdown_timeout)
    finally:
        store.engine.dispose()
    click.echo(_summary(stats))
    if any(c.failed is not None for c in consumers):
        common.fail("a consumer loop failed: " + "; ".join(_failures(consumers)))


def _kinds(
    account: config.AliyunAccount, queue: str, named: str | None
) -> list[domain.MessageType]:
    """The queue kinds to consume of one account: those it has. An account named with
    ``--account`` that lacks the queue asked for exits 2; without ``--account`` the accounts
    that have it are consumed (when none has it, the command exits 2)."""
    has = wiring.queue_kinds(account)
    if queue == "all":
        return has
    if KINDS[queue] not in has:
        if named is not None:
            common.fail(f"account {account.name!r} has no {queue} queue (docs/international.md)", 2)
        return []
    return [KINDS[queue]]


def _accounts(settings: config.Settings, name: str | None) -> list[config.AliyunAccount]:
    """The Aliyun accounts to consume: ``name``'s, or every served one; none exits 2."""
    if name is not None:
        chosen = common.configured_accounts(settings, name, "aliyun")
    else:
        chosen = settings.parts.served_accounts
    found = [a for a in chosen if isinstance(a, config.AliyunAccount)]
    if not found:
        common.fail("no Aliyun account is configured (set aliyun_access_key_id)", 2)
    return found


def _run(consumers: list[Consumer], until_idle: bool, grace: float) -> ConsumeStats:
    def stop(_signum: int, _frame: FrameType | None) -> None:
        for c in consumers:
            c.stop()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for c in consumers:
            c.start(until_idle=until_idle)
        # Wake up regularly so signals are handled promptly; stop when every loop exited.
        while any(c.alive for c in consumers):
            for c in consumers:
                c.join(0.2)
        for c in consumers:
            c.stop()
            c.join(grace)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    total = ConsumeStats()
    for c in consumers:
        total.add(c.stats)
    return total


def _summary(stats: ConsumeStats) -> str:
    return (
        f"received={stats.received} stored={stats.stored} duplicates={stats.duplicates} "
        f"dead_letters={stats.dead_letters} deleted={stats.deleted} "
        f"delete_failures={stats.delete_failures} errors={stats.errors}"
    )


def _failures(consumers: list[Consumer]) -> list[str]:
    return [f"{c.label}: {exc!r}" for c in consumers for exc in c.failures]
