"""International sends' behaviour: each recipient's fate is decided at the send, recorded,
and its receipt delivered to the account's receipt queue (the China site's GlobeSmsReport, or
the international site's SmsReport) when due."""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from receiptd_emulator import globe_numbers, globe_receipts, timeutil
from receiptd_emulator.delivery import Courier
from receiptd_emulator.globe_records import GLOBE_OUTCOMES, GlobeRecords, GlobeSend
from receiptd_emulator.profiles import FATES, Profile


@dataclass(frozen=True, slots=True)
class SeedGlobeSend:
    """An international send to pre-load, with a chosen outcome.

    outcome: one of `globe_records.GLOBE_OUTCOMES`; receipt: one of `profiles.FATES` (ignored
    for pending sends); err_code: the failure's code (default a profile failure, or EXPIRED);
    receipt_delay: seconds after send_time (default the profile's range); message_id: given or
    new; template_code: set for a SendMessageWithTemplate-like send.
    """

    to: str
    message: str = "Your verification code is 123456"
    sender: str = ""
    task_id: str = ""
    send_time: dt.datetime | None = None
    outcome: str = "delivered"
    err_code: str | None = None
    receipt: str = "queue"
    receipt_delay: float | None = None
    message_id: str | None = None
    template_code: str = ""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One recipient of a validated send call."""

    to: str
    message: str
    sender: str = ""
    task_id: str = ""
    validity: int | None = None  # ValidityPeriod, seconds
    template_code: str = ""


class GlobeProvider:
    """One account's international sends on its site (`site` "cn" or "intl")."""

    def __init__(
        self,
        profile: Profile,
        site: str,
        courier: Courier,
        queue: str,
        clock: Callable[[], float],
        seed: int | None = None,
    ) -> None:
        self.profile = profile
        self.site = site
        self.queue = queue
        self.records = GlobeRecords(clock, seed=seed)
        self._courier = courier
        self._clock = clock
        self._rng = random.Random(None if seed is None else seed + 1)
        self._lock = threading.Lock()

    def send(self, outgoing: list[Outgoing]) -> list[GlobeSend]:
        """Record validated recipients (one MessageId each) and schedule their receipts."""
        now = self._clock()
        with self._lock:
            sends = [self._decide(item, now) for item in outgoing]
        self._record(sends)
        return sends

    def _decide(self, item: Outgoing, now: float) -> GlobeSend:
        outcome = self.profile.pick_outcome(self._rng)
        if outcome == "failed" and self._rng.random() < self.profile.expired_share:
            outcome = "expired"
        delay = self._rng.uniform(*self.profile.receipt_delay)
        # Undelivered when its validity period ends: the carrier reports it expired.
        if item.validity is not None and (
            outcome == "pending" or (outcome == "delivered" and delay > item.validity)
        ):
            outcome, delay = "expired", float(item.validity)
        code, message = self._error_for(outcome, None)
        pending = outcome == "pending"
        return self._make(
            item,
            self.records.new_message_id(),
            timeutil.from_epoch(now),
            outcome,
            (code, message),
            None if pending else now + delay,
            "none" if pending else self.profile.pick_fate(self._rng),
        )

    def _make(
        self,
        item: Outgoing,
        message_id: str,
        sent_at: dt.datetime,
        outcome: str,
        error: tuple[str, str],
        receive_ts: float | None,
        fate: str,
    ) -> GlobeSend:
        return GlobeSend(
            message_id=message_id,
            to=item.to,
            sender=item.sender,
            message=item.message,
            task_id=item.task_id,
            template_code=item.template_code,
            site=self.site,
            send_time=sent_at,
            outcome=outcome,
            err_code=error[0],
            err_msg=error[1],
            receive_ts=receive_ts,
            fate=fate,
            segments=globe_numbers.segments(item.message),
            number_detail=globe_numbers.number_detail(item.to),
        )

    def _error_for(self, outcome: str, err_code: str | None) -> tuple[str, str]:
        if outcome == "delivered":
            success = (
                globe_receipts.INTL_SUCCESS if self.site == "intl" else (globe_receipts.CN_SUCCESS)
            )
            return (err_code or success[0]), success[1]
        if outcome == "pending":
            return "", ""
        if outcome == "expired" and err_code is None:
            return globe_receipts.EXPIRED
        if err_code is None:
            failure = self.profile.pick_failure(self._rng)
            return failure.code, failure.message
        known = {f.code: f.message for f in self.profile.failures}
        return err_code, known.get(err_code, "failed")

    # -- seeding -------------------------------------------------------------------------
    def seed(self, seeds: Iterable[SeedGlobeSend]) -> list[str]:
        """Record pre-made sends with chosen outcomes; returns their MessageIds."""
        with self._lock:
            sends = [self._seeded(seed) for seed in seeds]
        self._record(sends)
        return [send.message_id for send in sends]

    def _seeded(self, seed: SeedGlobeSend) -> GlobeSend:
        if seed.outcome not in GLOBE_OUTCOMES:
            raise ValueError(f"outcome must be one of {GLOBE_OUTCOMES}, not {seed.outcome!r}")
        if seed.receipt not in FATES:
            raise ValueError(f"receipt must be one of {FATES}, not {seed.receipt!r}")
        now = self._clock()
        sent_at = timeutil.require_aware(seed.send_time or timeutil.from_epoch(now))
        base = now if seed.send_time is None else sent_at.timestamp()  # exact, not rounded
        delay = seed.receipt_delay
        if delay is None:
            delay = self._rng.uniform(*self.profile.receipt_delay)
        pending = seed.outcome == "pending"
        item = Outgoing(seed.to, seed.message, seed.sender, seed.task_id, None, seed.template_code)
        return self._make(
            item,
            seed.message_id or self.records.new_message_id(),
            sent_at,
            seed.outcome,
            self._error_for(seed.outcome, seed.err_code),
            None if pending else base + delay,
            "none" if pending else seed.receipt,
        )

    # -- delivery ------------------------------------------------------------------------
    def _record(self, sends: list[GlobeSend]) -> None:
        self.records.add(sends)
        with self._lock:
            items = [
                d for s in sends for d in globe_receipts.deliveries(s, self.profile, self._rng)
            ]
        self._courier.route(self.queue, items)
