"""International sends' outcomes: expired among failures (seeded), the validity period, seeds
with chosen outcomes, and receipts into the account's queue."""

from __future__ import annotations

import base64
import json

import pytest

from receiptd_emulator.clock import ManualClock
from receiptd_emulator.credentials import CredentialStore
from receiptd_emulator.delivery import Courier
from receiptd_emulator.globe_provider import GlobeProvider, Outgoing, SeedGlobeSend
from receiptd_emulator.mns import MnsService
from receiptd_emulator.profiles import Profile
from receiptd_emulator.scheduler import Scheduler

QUEUE = "Alicom-Queue-1-SmsReport"


def provider(profile: Profile, site: str = "intl", seed: int | None = 9) -> GlobeProvider:
    clock = ManualClock(1_700_000_000.0)
    mns = MnsService(CredentialStore())
    mns.create_queue(QUEUE)
    courier = Courier(mns, Scheduler(clock), clock)
    return GlobeProvider(profile, site, courier, QUEUE, clock, seed=seed)


def outcomes(profile: Profile, seed: int) -> list[str]:
    sends = provider(profile, seed=seed).send([Outgoing("85212345678", "hi")] * 200)
    return [s.outcome for s in sends]


def test_a_share_of_failures_expires_the_same_under_a_seed() -> None:
    profile = Profile(delivered=0.0, failed=1.0, expired_share=0.25)
    drawn = outcomes(profile, seed=1)
    assert drawn == outcomes(profile, seed=1)
    assert set(drawn) == {"failed", "expired"}
    assert 20 < drawn.count("expired") < 80
    assert set(outcomes(Profile(delivered=0.0, failed=1.0, expired_share=0.0), 1)) == {"failed"}


def test_a_send_not_delivered_within_its_validity_period_expires() -> None:
    slow = Profile(delivered=1.0, failed=0.0, receipt_delay=(100.0, 100.0))
    (send,) = provider(slow).send([Outgoing("85212345678", "hi", validity=30)])
    assert (send.outcome, send.err_code) == ("expired", "EXPIRED")
    assert send.receive_ts == send.send_time.timestamp() + 30
    (quick,) = provider(slow).send([Outgoing("85212345678", "hi", validity=300)])
    assert (quick.outcome, quick.err_code) == ("delivered", "success")
    never = Profile(delivered=0.0, failed=0.0, pending=1.0)
    (pending,) = provider(never).send([Outgoing("85212345678", "hi", validity=60)])
    assert pending.outcome == "expired"


def test_success_codes_per_site() -> None:
    sure = Profile(delivered=1.0, failed=0.0)
    assert provider(sure, "cn").send([Outgoing("85212345678", "hi")])[0].err_code == "DELIVERED"
    assert provider(sure, "intl").send([Outgoing("85212345678", "hi")])[0].err_code == "success"


def test_seeds_choose_outcomes_and_reach_the_queue() -> None:
    target = provider(Profile())
    ids = target.seed(
        [
            SeedGlobeSend("85212345678", outcome="failed", err_code="MK:0001", receipt_delay=0),
            SeedGlobeSend("6591234567", outcome="pending", message_id="12345678901234"),
        ]
    )
    assert ids[1] == "12345678901234"
    failed = target.records.get(ids[0])
    assert failed is not None and (failed.err_code, failed.err_msg) == ("MK:0001", "号码状态异常")
    (message,) = target._courier.mns.queue(QUEUE).receive(16, 0)
    assert json.loads(base64.b64decode(message.body))["MessageId"] == ids[0]


@pytest.mark.parametrize(
    ("seed", "match"),
    [(SeedGlobeSend("1", outcome="lost"), "outcome"), (SeedGlobeSend("1", receipt="x"), "receipt")],
)
def test_bad_seeds_are_refused(seed: SeedGlobeSend, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        provider(Profile()).seed([seed])
