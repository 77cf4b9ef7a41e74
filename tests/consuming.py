"""Driving a consumer the way ``receiptd consume --until-idle`` does, for the tests of every
tier: start its workers in until-idle mode, wait until each has stopped, then stop it."""

from __future__ import annotations

from receiptd.ingest.mns.consumer import Consumer, ConsumeStats


def until_idle(consumer: Consumer) -> ConsumeStats:
    """Consume until each worker's receive came back empty; the consumer's stats."""
    consumer.start(until_idle=True)
    consumer.join()
    consumer.stop()
    return consumer.stats
