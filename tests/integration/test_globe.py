"""The Dysmsapi 2018-05-01 adapter (receiptd.providers.aliyun.globe) through the unmodified
``alibabacloud_dysmsapi20180501`` client against the emulator, on both sites; the
international site's tokens; one account's keyed lookup (QueryMessage + QuerySendDetails)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from receiptd import config, domain, ports, wiring
from receiptd.providers.aliyun import globe
from receiptd.providers.aliyun.dysms import DysmsError, RetryPolicy
from receiptd.testing import emulated
from receiptd.testing.lookups import CountingLimiter
from receiptd_emulator import Emulator, SeedGlobeSend, SeedSend
from receiptd_emulator.clock import ManualClock

NO_RETRY = RetryPolicy(attempts=1)
HK = "85212345678"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    # The provider's clock is the test's: receipts come due, rate windows pass, on advance.
    with Emulator(profile="default", clock=ManualClock()) as running:
        running.add_account("intl", site="intl")
        yield running


def later(emu: Emulator, seconds: float) -> None:
    assert isinstance(emu.clock, ManualClock)
    emu.clock.advance(seconds)


def settings(emu: Emulator) -> config.Settings:
    return emulated.emulator_settings(
        emu.info, accounts={"intl": emulated.account_keys(emu.info, emu.account("intl"))}
    )


def account(emu: Emulator, name: str) -> config.AliyunAccount:
    found = settings(emu).parts.account(name, "aliyun")
    assert isinstance(found, config.AliyunAccount)
    return found


def pending(send_id: int, message_id: str, number: str = HK) -> ports.PendingSend:
    now = datetime.now(UTC)
    return ports.PendingSend(
        send_id,
        domain.Provider.ALIYUN,
        message_id,
        number,
        now,
        domain.provider_send_date(now),
        None,
        None,
        0,
        "intl",
        domain.SendKey.MESSAGE_ID,
    )


def test_send_to_globe_on_either_site_gives_a_message_id(emu: Emulator) -> None:
    s = settings(emu)
    for name in ("default", "intl"):
        client = wiring.globe_client(s, account(emu, name))
        sent = globe.send_to_globe(client, "+852 1234 5678", "hi", task_id="T1", retry=NO_RETRY)
        assert sent.phone_number == HK and sent.message_id.isdigit()
        (record,) = [r for r in emu.globe_records(name) if r.message_id == sent.message_id]
        assert (record.to, record.task_id) == (HK, "T1")


def test_a_mainland_number_is_refused_with_the_providers_code(emu: Emulator) -> None:
    client = wiring.globe_client(settings(emu), account(emu, "intl"))
    with pytest.raises(DysmsError) as refused:
        globe.send_to_globe(client, "8613812345678", "hi", retry=NO_RETRY)
    assert (refused.value.code, refused.value.kind) == ("MOBILE_NUMBER_ILLEGAL", "error")


def test_the_template_send_reaches_mainland_numbers_from_the_international_site(
    emu: Emulator,
) -> None:
    client = wiring.globe_client(settings(emu), account(emu, "intl"))
    sent = globe.send_with_template(
        client, "8613812345678", emu.info.sign_name, emu.info.template_code, '{"code":"1"}'
    )
    assert sent.phone_number == "8613812345678"


def test_a_batch_is_paired_by_position_only_when_nothing_failed(emu: Emulator) -> None:
    client = wiring.globe_client(settings(emu), account(emu, "intl"))
    numbers = [f"8521234{i:04d}" for i in range(3)]
    paired = globe.batch_send_to_globe(client, numbers, "notice", retry=NO_RETRY)
    assert paired is not None and [p.phone_number for p in paired] == numbers
    by_id = {r.message_id: r.to for r in emu.globe_records("intl")}
    assert [by_id[p.message_id] for p in paired] == numbers
    with pytest.raises(DysmsError) as throttled:  # one batch a second per account
        globe.batch_send_to_globe(client, numbers, "notice", retry=NO_RETRY)
    assert (throttled.value.code, throttled.value.kind) == ("QPS_LIMIT_CONTROL", "throttled")
    later(emu, 1.0)
    mixed = globe.batch_send_to_globe(client, ["85212340001", "8613812345678"], "x")
    assert mixed is None  # a FailedList: the accepted one cannot be told apart


def test_wrong_keys_are_refused_with_the_sdks_own_error(emu: Emulator) -> None:
    s = settings(emu)
    wrong = emulated.account_keys(emu.info, emu.account("intl")) | {"access_key_secret": "no"}
    bad = emulated.emulator_settings(emu.info, accounts={"intl": wrong})
    client = wiring.globe_client(s, bad.parts.account("intl", "aliyun"))  # type: ignore[arg-type]
    with pytest.raises(DysmsError) as refused:
        globe.send_to_globe(client, HK, "hi", retry=NO_RETRY)
    assert refused.value.code.startswith(("SignatureDoesNotMatch", "InvalidAccessKey"))
    # The China-site account's keys do not exist on the international site.
    cn_keys_on_intl = emulated.account_keys(emu.info, emu.account("intl")) | {
        "access_key_id": emu.info.access_key_id,
        "access_key_secret": emu.info.access_key_secret,
    }
    crossed = emulated.emulator_settings(emu.info, accounts={"intl": cn_keys_on_intl})
    intl = crossed.parts.account("intl", "aliyun")
    with pytest.raises(DysmsError) as crossed_out:
        globe.send_to_globe(wiring.globe_client(s, intl), HK, "hi", retry=NO_RETRY)  # type: ignore[arg-type]
    assert crossed_out.value.code.startswith("InvalidAccessKeyId")


def test_query_message_settles_final_sends_and_leaves_the_rest_pending(emu: Emulator) -> None:
    delivered, failed, expired, waiting = emu.seed_globe_sends(
        [
            SeedGlobeSend(HK, outcome="delivered", receipt="lost"),
            SeedGlobeSend(HK, outcome="failed", err_code="UNDELIV", receipt="lost"),
            SeedGlobeSend(HK, outcome="expired", receipt="lost"),
            SeedGlobeSend(HK, outcome="pending"),
        ],
        account="intl",
    )
    later(emu, 60)  # past every receipt delay: the outcomes are known
    lookup = globe.QueryMessageLookup(
        wiring.globe_client(settings(emu), account(emu, "intl")), account="intl"
    )
    sends = [pending(i, m) for i, m in enumerate([delivered, failed, expired, waiting, "404"])]
    result = lookup.lookup(sends, CountingLimiter())
    found = {s.send_id: (s.status.value, s.err_code) for s in result.settlements}
    assert found[0][0] == "delivered"
    assert found[1] == ("failed", "UNDELIV")
    assert found[2][0] == "failed"  # QueryMessage answers an expired send as 2
    assert 3 not in found and 4 not in found  # delivering (3), and DATA_NOT_EXIST
    assert result.calls == {"ok": 5}


def test_one_accounts_lookup_asks_each_send_by_its_key(emu: Emulator) -> None:
    when = datetime.now(UTC) - timedelta(minutes=1)
    (biz_id,) = emu.seed_sends(
        [SeedSend("13800000001", emu.info.sign_name, emu.info.template_code, send_time=when)]
    )
    (message_id,) = emu.seed_globe_sends([SeedGlobeSend(HK, receipt="lost")])
    later(emu, 60)
    lookup = wiring.status_lookups(settings(emu))[0]
    biz = ports.PendingSend(
        1, domain.Provider.ALIYUN, biz_id, "13800000001", when,
        domain.provider_send_date(when), None, None, 0,
    )  # fmt: skip
    emu.reset_calls()
    result = lookup.lookup([biz, pending(2, message_id)], CountingLimiter())
    assert {s.send_id for s in result.settlements} == {1, 2}
    assert sorted(c.api for c in emu.calls()) == ["QueryMessage", "QuerySendDetails"]


def test_the_international_token_lives_expire_minus_create_time(emu: Emulator) -> None:
    intl = account(emu, "intl")
    fetcher = wiring.token_fetcher(settings(emu), intl)
    token = fetcher(domain.MessageType.REPORT, intl.report_queue)
    # The emulator writes the international times in UTC. Read as China time (the China
    # site's rule) the token would have expired 8 hours before it was issued.
    lifetime = token.expires_at - token.fetched_at
    assert abs(lifetime - timedelta(seconds=emu.info.token_lifetime)) <= timedelta(seconds=1)
