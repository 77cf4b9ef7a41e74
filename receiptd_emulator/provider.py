"""The SMS provider's behaviour: decides each recipient's fate, records it, and delivers the
receipts (SmsReport) and replies (SmsUp) to the Alicom queues when they are due.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from receiptd_emulator import receipts, timeutil
from receiptd_emulator.delivery import Courier
from receiptd_emulator.mns import MnsService
from receiptd_emulator.profiles import FATES, OUTCOMES, Profile
from receiptd_emulator.scheduler import Scheduler
from receiptd_emulator.sms_records import DELIVERED_CODE, DELIVERED_MESSAGE, Send, SmsRecords

_VARIABLE = re.compile(r"\$\{(\w+)\}")


class MissingTemplateVariable(ValueError):
    pass


def render(profile: Profile, sign_name: str, template_code: str, params: Mapping[str, str]) -> str:
    """The SMS text: `【sign】` + the profile's template with `${var}` filled in."""
    template = profile.templates[template_code]
    missing = sorted(set(_VARIABLE.findall(template)) - set(params))
    if missing:
        raise MissingTemplateVariable(", ".join(missing))
    text = _VARIABLE.sub(lambda m: str(params[m.group(1)]), template)
    return f"【{sign_name}】{text}"


@dataclass(frozen=True, slots=True)
class SeedSend:
    """A send to pre-load (e.g. as if sent before the daemon started).

    outcome: "delivered" | "failed" | "pending"; receipt: one of `profiles.FATES` (ignored for
    pending sends, which never get one). err_code defaults to DELIVERED or a profile failure;
    receipt_delay (seconds after send_time) to the profile's range; biz_id groups recipients.
    """

    phone: str
    sign_name: str
    template_code: str
    out_id: str = ""
    send_time: dt.datetime | None = None
    outcome: str = "delivered"
    err_code: str | None = None
    receipt: str = "queue"
    content: str | None = None
    receipt_delay: float | None = None
    biz_id: str | None = None


class SmsProvider:
    def __init__(
        self,
        profile: Profile,
        records: SmsRecords,
        mns: MnsService,
        scheduler: Scheduler,
        clock: Callable[[], float] = time.time,
        *,
        queues: tuple[str, str] | None = None,
        seed: int | None = None,
        courier: Courier | None = None,
    ) -> None:
        """`queues`: the account's (SmsReport, SmsUp) queues, the profile's by default;
        `seed`: the draws' seed, the profile's by default; `courier`: how receipts travel
        (the account's, with its push mode), one on `mns` by default."""
        self.profile = profile
        self.records = records
        self._clock = clock
        self.courier = courier or Courier(mns, scheduler, clock)
        self.report_queue, self.up_queue = queues or (profile.report_queue, profile.up_queue)
        self._rng = random.Random(profile.seed if seed is None else seed)
        self._lock = threading.Lock()

    def render(self, sign_name: str, template_code: str, params: Mapping[str, str]) -> str:
        return render(self.profile, sign_name, template_code, params)

    def send(
        self,
        phones: Sequence[str],
        sign_name: str,
        template_code: str,
        content: str,
        out_id: str = "",
        extend_code: str = "",
    ) -> str:
        """Record a validated SendSms call; returns its BizId."""
        now = self._clock()
        sent_at = timeutil.from_epoch(now)
        with self._lock:
            biz_id = self.records.new_biz_id()
            sends = [
                self._decide(biz_id, phone, out_id, template_code, sign_name, content, sent_at, now)
                for phone in phones
            ]
            replies = [self._reply(phone, now, extend_code) for phone in phones]
        self.records.add(sends)
        self._deliver(sends, [r for r in replies if r is not None])
        return biz_id

    def _decide(
        self,
        biz_id: str,
        phone: str,
        out_id: str,
        template_code: str,
        sign_name: str,
        content: str,
        sent_at: dt.datetime,
        now: float,
    ) -> Send:
        outcome = self.profile.pick_outcome(self._rng)
        code, message = self._error_for(outcome, None)
        pending = outcome == "pending"
        return Send(
            biz_id=biz_id,
            phone=phone,
            out_id=out_id,
            template_code=template_code,
            sign_name=sign_name,
            content=content,
            send_time=sent_at,
            outcome=outcome,
            err_code=code,
            err_msg=message,
            receive_ts=None if pending else now + self._rng.uniform(*self.profile.receipt_delay),
            fate="none" if pending else self.profile.pick_fate(self._rng),
        )

    def _error_for(self, outcome: str, err_code: str | None) -> tuple[str, str]:
        if outcome == "delivered":
            return err_code or DELIVERED_CODE, DELIVERED_MESSAGE
        if outcome == "pending":
            return "", ""
        if err_code is None:
            failure = self.profile.pick_failure(self._rng)
            return failure.code, failure.message
        known = {f.code: f.message for f in self.profile.failures}
        return err_code, known.get(err_code, "发送失败")

    def _reply(self, phone: str, now: float, extend_code: str) -> tuple[float, str] | None:
        if self._rng.random() >= self.profile.reply_rate:
            return None
        due = now + self._rng.uniform(*self.profile.reply_delay)
        fields = receipts.up_fields(
            phone,
            self._rng.choice(self.profile.replies),
            timeutil.from_epoch(due),
            extend_code or f"{self._rng.randrange(10**6):06d}",
            str(self._rng.randrange(10**8, 10**9)),
        )
        return due, receipts.encode(fields)

    # -- seeding -------------------------------------------------------------------------
    def seed(self, seeds: Iterable[SeedSend]) -> list[str]:
        """Record pre-made sends (fast: 100,000 in well under a second or two)."""
        with self._lock:
            sends = [self._seeded(seed) for seed in seeds]
        self.records.add(sends)
        self._deliver(sends, [])
        return [send.biz_id for send in sends]

    def _seeded(self, seed: SeedSend) -> Send:
        if seed.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, not {seed.outcome!r}")
        if seed.receipt not in FATES:
            raise ValueError(f"receipt must be one of {FATES}, not {seed.receipt!r}")
        sent_at = timeutil.require_aware(seed.send_time or timeutil.now_utc())
        pending = seed.outcome == "pending"
        delay = seed.receipt_delay
        if delay is None:
            delay = self._rng.uniform(*self.profile.receipt_delay)
        code, message = self._error_for(seed.outcome, seed.err_code)
        template = self.profile.templates.get(seed.template_code, "")
        return Send(
            biz_id=seed.biz_id or self.records.new_biz_id(),
            phone=seed.phone,
            out_id=seed.out_id,
            template_code=seed.template_code,
            sign_name=seed.sign_name,
            content=seed.content or f"【{seed.sign_name}】{template}",
            send_time=sent_at,
            outcome=seed.outcome,
            err_code=code,
            err_msg=message,
            receive_ts=None if pending else sent_at.timestamp() + delay,
            fate="none" if pending else seed.receipt,
        )

    # -- delivery ------------------------------------------------------------------------
    def _deliver(self, sends: list[Send], replies: list[tuple[float, str]]) -> None:
        with self._lock:
            reports = [
                d for send in sends for d in receipts.deliveries(send, self.profile, self._rng)
            ]
        self.courier.route(self.report_queue, reports)
        self.courier.route(self.up_queue, replies)
