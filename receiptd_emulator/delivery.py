"""Receipts on their way: bodies reach an MNS queue when due, or go to push mode instead.

One `Courier` per account, on its site's MNS: the China-site SmsReport/SmsUp and
GlobeSmsReport bodies and the international site's SmsReport bodies all travel this way, so
lost, duplicate, late and malformed receipts and push mode work alike for every queue.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from receiptd_emulator.clock import Clock
from receiptd_emulator.mns import MnsService
from receiptd_emulator.mns_queue import MnsError
from receiptd_emulator.scheduler import Scheduler

log = logging.getLogger(__name__)

#: (arrival time of the provider's clock, MNS body).
Delivery = tuple[float, str]


class Courier:
    """Puts bodies into `mns`'s queues at their arrival times (now, or by the scheduler)."""

    def __init__(self, mns: MnsService, scheduler: Scheduler, clock: Clock) -> None:
        self.mns = mns
        self._scheduler = scheduler
        self._clock = clock
        # Push mode: takes a queue's bodies instead of MNS when that type is pushed.
        self.divert: Callable[[str, list[str]], bool] | None = None

    def route(self, queue: str, items: list[Delivery]) -> None:
        """Bodies already due go at once, in one push; the others each at their time."""
        now = self._clock()
        due_now = [body for due, body in items if due <= now]
        if due_now:
            self.enqueue(queue, due_now)
        for due, body in items:
            if due > now:
                self._scheduler.at(due, functools.partial(self.enqueue, queue, [body]))

    def enqueue(self, queue: str, bodies: list[str]) -> None:
        if self.divert is not None and self.divert(queue, bodies):
            return
        try:
            self.mns.queue(queue).push(bodies)
        except MnsError:  # queue deleted: Alicom would drop the receipts too
            log.warning(
                "emulator receipt queue %s missing; dropped %d messages", queue, len(bodies)
            )
