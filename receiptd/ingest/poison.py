"""Poison: bodies that cannot be stored as records, and how none of them stops a loop.

Shared by the MNS consumer (``receiptd.ingest.mns.batch``) and the push listener
(``receiptd.ingest.push.listener``):

* ``write_isolating``: one transaction per batch; when the database refused it while reachable,
  or the store raised anything else, ``write_each``: one record per transaction, a record
  refused alone becoming a dead letter.
* ``report_crash``: receiptd's own code raised on one body (a defect): logged as
  ``body_crashed`` with the body's id and counted; the caller dead-letters the body.
* ``quarantine``: a message MNS delivered more than ``consumer_max_dequeue`` times without
  receiptd storing or dead-lettering it (each of those deliveries ended in a crash or a kill)
  becomes a dead letter before anything reads it.

docs/consumer.md ("Poison") has the long form.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from receiptd import domain, metrics, ports
from receiptd.logs import get_logger

log = get_logger(__name__)


def dead_message(
    queue: str,
    message: ports.QueueMessage,
    reason: str,
    account: str = domain.DEFAULT_ACCOUNT,
) -> ports.DeadRecord:
    """A queue message of one account as a dead letter: its body's exact bytes and the
    reason."""
    raw = message.body.encode("utf-8", "surrogatepass")  # never raises, whatever the text
    return ports.DeadRecord(queue, message.message_id, raw, reason, account)


def quarantine(
    message: ports.QueueMessage,
    queue: str,
    label: str,
    max_dequeue: int,
    account: str = domain.DEFAULT_ACCOUNT,
) -> ports.DeadRecord:
    """A message delivered too often to be read again: its exact bytes, unread, as a dead
    letter (``receiptd dead-letters replay`` reads it once the cause is fixed)."""
    log.warning(
        "message_quarantined",
        account=account,
        queue=queue,
        message_id=message.message_id,
        dequeue_count=message.dequeue_count,
    )
    metrics.QUARANTINED.labels(account, label).inc()
    reason = (
        f"quarantined unread: delivered {message.dequeue_count} times (consumer_max_dequeue"
        f" = {max_dequeue}) without being stored or dead-lettered"
    )
    return dead_message(queue, message, reason, account)


def report_crash(
    stage: str, channel: domain.Channel, where: str, message_id: str, exc: BaseException
) -> None:
    """One body made receiptd's own code raise: a defect to fix, logged with the body's id and
    counted (``receiptd_bodies_crashed_total``); the caller dead-letters the body."""
    log.error(
        "body_crashed",
        stage=stage,
        channel=channel.value,
        queue=where,
        message_id=message_id,
        error=domain.printable(repr(exc), 500),
        exc_info=exc,
    )
    metrics.BODIES_CRASHED.labels(channel.value, stage).inc()


DeadLetterFor = Callable[[ports.Batch, str], ports.DeadRecord]


@dataclass(frozen=True)
class Writes:
    """Where one loop's records go (the MNS consumer's batch, a push request) and what
    becomes of them: ``dead_letter(single, reason)`` turns a record refused alone into its
    dead letter, ``committed(written, result)`` is called after each commit; ``where`` (the
    loop or push queue) and ``channel`` name them in logs and metrics."""

    sink: ports.ReceiptSink
    clock: Callable[[], datetime]
    dead_letter: DeadLetterFor
    committed: Callable[[ports.Batch, ports.BatchResult], None]
    where: str
    channel: domain.Channel


def write_isolating(to: Writes, batch: ports.Batch, isolating: Callable[[str], None]) -> set[str]:
    """Write a batch in one transaction; when the sink refuses it while reachable
    (``StoreWriteError``) or raises anything else (a defect), tell ``isolating`` why (the
    caller logs its own event) and write it one record per transaction (``write_each``).

    Returns the message ids committed. ``StoreUnavailable`` propagates, also when found by
    the ``ping`` after a refusal: an outage is retried whole (MNS) or answered 503 (push),
    never dead-lettered.
    """
    try:
        result = to.sink.write_batch(batch, to.clock())
    except ports.StoreUnavailable:
        raise
    except Exception as exc:  # StoreWriteError, or a defect surfaced per record by write_each
        to.sink.ping()  # unreachable after all: StoreUnavailable, nothing is isolated
        isolating(repr(exc)[:300])
        return write_each(to, batch)
    to.committed(batch, result)
    return ids(batch)


def write_each(to: Writes, batch: ports.Batch) -> set[str]:
    """Isolation (the MNS consumer's and the push listener's): the sink refused a batch while
    reachable, or crashed on it; write it one record per transaction.

    A record refused alone (``StoreWriteError``) or crashed on (any other exception, reported
    as ``body_crashed``) becomes ``to.dead_letter(single, reason)``; a record whose dead
    letter is refused too is logged ``message_unstorable`` and left out. Returns the message
    ids committed (as rows or dead letters); ``StoreUnavailable`` propagates (the caller
    retries, or answers 503).
    """
    written: set[str] = set()
    for single in singles(batch):
        message_id = next(iter(ids(single)))
        reason = _write_one(to, single)
        if reason and not single.dead:
            to.sink.ping()  # down rather than refusing: StoreUnavailable, not a dead letter
            reason = _write_one(to, ports.Batch(dead=[to.dead_letter(single, reason)]))
        if reason:
            log.error("message_unstorable", loop=to.where, message_id=message_id, error=reason)
            continue
        written.add(message_id)
    return written


def _write_one(to: Writes, single: ports.Batch) -> str:
    """Write one record; "" when committed, else why not. StoreUnavailable propagates."""
    try:
        result = to.sink.write_batch(single, to.clock())
    except ports.StoreUnavailable:
        raise
    except ports.StoreWriteError as exc:
        return f"store refused: {exc}"
    except Exception as exc:  # a defect of the store (or a driver error it let through)
        report_crash("store", to.channel, to.where, next(iter(ids(single))), exc)
        return f"store crashed: {exc!r}"
    to.committed(single, result)
    return ""


def ids(batch: ports.Batch) -> set[str]:
    """The message ids a batch holds (rows and dead letters)."""
    rows = {r.message_id for r in batch.reports} | {r.message_id for r in batch.inbound}
    return rows | {d.message_id for d in batch.dead}


def singles(batch: ports.Batch) -> list[ports.Batch]:
    """One batch per record, for one transaction each."""
    return [
        *(ports.Batch(reports=[r]) for r in batch.reports),
        *(ports.Batch(inbound=[r]) for r in batch.inbound),
        *(ports.Batch(dead=[d]) for d in batch.dead),
    ]
