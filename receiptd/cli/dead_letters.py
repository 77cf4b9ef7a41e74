"""`receiptd dead-letters`: list, show and replay messages the consumer could not store.

Each dead letter belongs to the account whose queue or push path it came by; ``--account``
narrows every subcommand to one account, and a replay writes its records under the dead
letter's own account.
"""

from __future__ import annotations

from datetime import datetime

import click

from receiptd import config, domain, ports, receipt_shapes
from receiptd.cli import common
from receiptd.clock import utc_now
from receiptd.config import Settings
from receiptd.db.store import DeadLetterView, SqlStore
from receiptd.ingest.push import listener as push


def kind_of(
    queue: str, settings: Settings, account: str = domain.DEFAULT_ACCOUNT
) -> domain.MessageType:
    """The message type of a dead letter's queue (its name, as the consumer recorded it):
    one of ``account``'s queues, or a name ending in the type (an account since removed)."""
    queues = _aliyun(settings, account)
    if (queues and queue == queues.globe_queue) or queue.endswith(
        domain.MessageType.GLOBE_REPORT.value
    ):
        return domain.MessageType.GLOBE_REPORT
    if (queues and queue == queues.up_queue) or queue.endswith(domain.MessageType.UP.value):
        return domain.MessageType.UP
    if (queues and queue == queues.report_queue) or queue.endswith(domain.MessageType.REPORT.value):
        return domain.MessageType.REPORT
    raise ValueError(f"cannot tell the message type of queue {queue!r}")


def _aliyun(settings: Settings, account: str) -> config.AliyunAccount | None:
    try:
        found = settings.parts.account(account, "aliyun")
    except config.ConfigError:  # no longer configured: its letters still replay
        return None
    return found if isinstance(found, config.AliyunAccount) else None


def replay_one(
    store: SqlStore, letter: DeadLetterView, settings: Settings, now: datetime
) -> str | None:
    """Re-parse and store one dead letter under its own account; None on success, else the
    (new) error text."""
    tz = settings.parts.aliyun.timezone  # every account's today: one provider_timezone
    account, message_id = letter.account, letter.mns_message_id
    try:
        if letter.queue.startswith("push:"):  # HTTP push (docs/push.md)
            batch = push.replay_batch(letter.queue, letter.raw_body, tz, account)
        elif kind_of(letter.queue, settings, account).is_receipt:
            report = receipt_shapes.parse_receipt(letter.raw_body, tz)
            record = ports.ReportRecord(message_id, report, domain.Channel.MNS, account)
            batch = ports.Batch(reports=[record])
        else:
            reply = domain.parse_up(letter.raw_body, tz)
            inbound = ports.InboundRecord(message_id, reply, domain.Channel.MNS, account)
            batch = ports.Batch(inbound=[inbound])
    except ValueError as exc:  # BodyError, or an unknown queue
        return str(exc)
    try:
        store.write_batch(batch, now)  # idempotent: a replay interrupted here can be re-run
    except ports.StoreWriteError as exc:
        return f"store refused: {exc}"
    store.mark_replayed(letter.id, now)
    return None


def _line(d: DeadLetterView) -> str:
    replayed = f" replayed={d.replayed_at.isoformat()}" if d.replayed_at else ""
    return (
        f"{d.id}\t{d.account}\t{d.queue}\t{d.mns_message_id}\tseen={d.seen_count}\t"
        f"last={d.last_seen.isoformat()}\t{d.error}{replayed}"
    )


@click.group("dead-letters")
def dead_letters() -> None:
    """Messages whose body could not be stored (raw body + reason)."""


@dead_letters.command("list")
@click.option("--all", "include_replayed", is_flag=True, help="Include replayed letters.")
@click.option("--limit", default=100, show_default=True)
@common.account_option("Only this account's dead letters.")
@click.pass_context
def list_cmd(ctx: click.Context, include_replayed: bool, limit: int, account: str | None) -> None:
    """One line per dead letter: id, account, queue, message id, times seen, last seen,
    error."""
    with common.store_session(common.settings(ctx)) as store:
        letters = common.guarded(lambda: store.dead_letters(limit, include_replayed, account))
    for letter in letters:
        click.echo(_line(letter))
    if not letters:
        click.echo("no dead letters")


@dead_letters.command("show")
@click.argument("dead_id", type=int)
@common.account_option("Only this account's dead letters.")
@click.pass_context
def show_cmd(ctx: click.Context, dead_id: int, account: str | None) -> None:
    """Everything about one dead letter, with its raw body."""
    with common.store_session(common.settings(ctx)) as store:
        letter = common.guarded(lambda: store.dead_letter(dead_id))
    if letter is None or account not in (None, letter.account):
        common.fail(f"no dead letter {dead_id}" + (f" of account {account}" if account else ""))
    click.echo(_line(letter))
    click.echo(f"first_seen\t{letter.first_seen.isoformat()}")
    click.echo("raw_body\t" + letter.raw_body.decode("utf-8", errors="backslashreplace"))


@dead_letters.command("replay")
@click.argument("ids", type=int, nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="Replay every unreplayed letter.")
@common.account_option("Only this account's letters (an ID of another account is refused).")
@click.pass_context
def replay_cmd(
    ctx: click.Context, ids: tuple[int, ...], replay_all: bool, account: str | None
) -> None:
    """Parse stored bodies again (after a parser fix) and store the ones that now parse,
    each under its dead letter's account."""
    if bool(ids) == replay_all:
        common.fail("give dead-letter IDs or --all (not both)", common.EXIT_CONFIG)
    settings = common.settings(ctx)
    now = utc_now()
    failed = 0
    with common.store_session(settings) as store:
        letters = common.guarded(lambda: _selected(store, ids, replay_all, account))
        for letter in letters:
            error = _replay_guarded(store, letter, settings, now)
            failed += error is not None
            click.echo(f"{letter.id}\t" + ("replayed" if error is None else f"still bad: {error}"))
    click.echo(f"replayed={len(letters) - failed} still_bad={failed}")
    if failed:
        raise SystemExit(common.EXIT_FAILURE)


def _selected(
    store: SqlStore, ids: tuple[int, ...], replay_all: bool, account: str | None
) -> list[DeadLetterView]:
    if replay_all:
        return store.dead_letters(limit=1_000_000, account=account)
    letters = []
    for dead_id in ids:
        letter = store.dead_letter(dead_id)
        if letter is None:
            common.fail(f"no dead letter {dead_id}")
        if account not in (None, letter.account):
            common.fail(f"dead letter {dead_id} is of account {letter.account}, not {account}")
        letters.append(letter)
    return letters


def _replay_guarded(
    store: SqlStore, letter: DeadLetterView, settings: Settings, now: datetime
) -> str | None:
    return common.guarded(lambda: replay_one(store, letter, settings, now))
