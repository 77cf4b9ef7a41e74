"""Emulator push mode: what counts as accepted, the retry schedules, giving up, and receivers
that misbehave (on a clock the test moves: the documented schedule at full length)."""

from __future__ import annotations

import json
import logging

import pytest

from receiptd_emulator import Emulator, ManualClock, Profile
from receiptd_emulator.push import SCHEDULES, PushSpec, accepted, koomessage_body, queue_element
from tests.peers import MISBEHAVIOURS, Act, Answer, MisbehavingServer
from tests.system.daemon import free_port


@pytest.mark.parametrize(
    ("status", "body", "ok"),
    [
        (200, b'{"code":0,"msg":"ok"}', True),
        (200, b'{"code":0}', True),
        (200, b'{"code":"0"}', False),
        (200, b'{"code":false}', False),
        (200, b'{"code":1}', False),
        (200, b"[]", False),
        (200, b"OK", False),
        (500, b'{"code":0}', False),
        (201, b'{"code":0}', False),
    ],
)
def test_only_200_with_code_0_is_success(status: int, body: bytes, ok: bool) -> None:
    assert accepted(status, body) is ok


@pytest.mark.parametrize(
    ("schedule", "attempts"), [("short", 4), ("short3", 3), ("long", 10), ("none", 1)]
)
def test_gives_up_after_the_last_attempt(schedule: str, attempts: int) -> None:
    url = f"http://127.0.0.1:{free_port()}/nobody-listens"
    with Emulator() as emu:
        emu.set_push("SmsReport", PushSpec(url=url, schedule=schedule, time_scale=0.0001))
        emu.push_elements("SmsReport", [{"biz_id": "1"}, {"biz_id": "2"}])
        assert emu.wait_push_idle("SmsReport", 20)
        stats = emu.push_stats()["SmsReport"]
    assert stats["requests"] == attempts == len(SCHEDULES[schedule]) + 1
    assert (stats["given_up"], stats["delivered"]) == (2, 0)


def test_profile_push_section_and_envelope() -> None:
    profile = Profile.from_toml(
        '[push.SmsReport]\nurl = "http://127.0.0.1:9/x"\nbatch = 7\nschedule = "short"\n'
    )
    assert profile.push["SmsReport"].batch == 7
    with pytest.raises(ValueError, match="schedule"):
        PushSpec(url="http://x", schedule="weekly")
    envelope = json.loads(koomessage_body([{"a": 1}], attempt=1))
    assert json.loads(envelope["body"]) == {"a": 1} and envelope["retry"] is True
    assert queue_element("not base64!") == "not base64!"


def test_control_api_turns_push_on_and_off() -> None:
    import urllib.request

    def control(method: str, path: str, body: object = None) -> object:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{base}/{path}", data=data, method=method)  # noqa: S310
        with urllib.request.urlopen(req, timeout=5) as answer:  # noqa: S310 - local emulator
            return json.loads(answer.read())

    url = f"http://127.0.0.1:{free_port()}/nobody"
    with Emulator() as emu:
        base = emu.info.control_endpoint
        spec = {"type": "SmsUp", "url": url, "schedule": "none", "time_scale": 0}
        control("POST", "push", spec)
        control("POST", "push_elements", {"type": "SmsUp", "elements": [{"x": 1}]})
        assert emu.wait_push_idle("SmsUp", 10)
        stats = control("GET", "push_stats")
        assert stats == {"SmsUp": {**emu.push_stats()["SmsUp"]}}
        assert emu.push_stats()["SmsUp"]["given_up"] == 1
        control("POST", "push", {"type": "SmsUp", "url": None})
        assert emu.push_stats() == {}


RECEIPTS = [{"biz_id": f"{900000 + i}^0", "phone_number": f"138{i:08d}"} for i in range(25)]


def push_through(
    peer: MisbehavingServer, attempts: int, schedule: str, caplog: pytest.LogCaptureFixture
) -> dict[str, object]:
    """Push RECEIPTS to ``peer`` on a ManualClock; advance it by exactly each documented delay
    once the retry is set (asserting it is due then); the stats once nothing is pending.

    No error may be logged: a misbehaving receiver is a failed attempt, not an emulator defect
    (which the sender's catch-all would log)."""
    caplog.set_level(logging.WARNING, logger="receiptd_emulator")
    clock = ManualClock(1_800_000_000.0)
    spec = PushSpec(url=f"{peer.url}/push", schedule=schedule, senders=1, timeout=0.5)
    with Emulator(clock=clock) as emu:
        emu.set_push("SmsReport", spec)
        emu.push_elements("SmsReport", RECEIPTS)
        for attempt, delay in enumerate(SCHEDULES[schedule][: attempts - 1], start=1):
            peer.wait_connections(attempt)
            assert emu.scheduler.wait_pending() == clock() + delay  # the documented delay
            clock.advance(delay)
        assert emu.wait_push_idle("SmsReport")
        stats = emu.push_stats()["SmsReport"]
        assert emu.scheduler.failures == 0
    assert len(peer.seen) == attempts
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    for request in peer.requests():  # every attempt carries every receipt
        assert json.loads(request.partition(b"\r\n\r\n")[2]) == RECEIPTS
    return stats


def test_receiver_closing_resetting_and_garbling_then_answering_gets_every_receipt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The short schedule (1, 5, 10 min: four attempts): three misbehaving answers, then a
    normal one on the last attempt; nothing is given up."""
    script = [Act.CLOSE_MID_ANSWER, Act.RESET, Act.GARBAGE]
    with MisbehavingServer(script, then=Answer()) as peer:
        stats = push_through(peer, attempts=4, schedule="short", caplog=caplog)
    assert (stats["delivered"], stats["given_up"], stats["pending"]) == (25, 0, 0)
    assert (stats["requests"], stats["failed"], stats["accepted"]) == (4, 3, 1)
    answers = dict(stats["answers"])  # type: ignore[call-overload]
    assert answers.pop("200") == 1
    assert answers.pop("IncompleteRead") == 1  # the head promised 34 bytes, 1 came
    assert answers.pop("BadStatusLine") == 1  # not HTTP
    assert set(answers) <= {"ConnectionResetError", "RemoteDisconnected"}  # the reset


@pytest.mark.parametrize("act", MISBEHAVIOURS, ids=lambda a: a.value)
def test_each_misbehaviour_is_one_failed_attempt_retried_on_schedule(
    act: Act, caplog: pytest.LogCaptureFixture
) -> None:
    with MisbehavingServer([act, act], then=Answer()) as peer:
        stats = push_through(peer, attempts=3, schedule="long", caplog=caplog)
    assert (stats["delivered"], stats["given_up"]) == (25, 0)
    assert (stats["requests"], stats["failed"]) == (3, 2)


def test_receiver_that_never_behaves_gets_the_receipts_given_up_after_the_last_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with MisbehavingServer([Act.GARBAGE] * 4, then=Answer(500)) as peer:
        stats = push_through(peer, attempts=4, schedule="short", caplog=caplog)
    assert (stats["delivered"], stats["given_up"], stats["failed"]) == (0, 25, 4)


def test_an_element_that_does_not_encode_fails_its_attempts_and_the_sender_goes_on() -> None:
    """The sender's catch-all: an emulator defect fails the attempt (logged, retried, given
    up) instead of killing the thread; the next receipts are pushed as usual."""
    with MisbehavingServer([], then=Answer()) as peer, Emulator() as emu:
        emu.set_push("SmsReport", PushSpec(url=peer.url, schedule="none", senders=1))
        emu.push_elements("SmsReport", [{"not json": {1, 2}}])
        assert emu.wait_push_idle("SmsReport")
        emu.push_elements("SmsReport", RECEIPTS)
        assert emu.wait_push_idle("SmsReport")
        stats = emu.push_stats()["SmsReport"]
    assert (stats["given_up"], stats["delivered"], stats["answers"]) == (
        1,
        25,
        {"TypeError": 1, "200": 1},
    )


def test_the_sites_default_schedules() -> None:
    spec = PushSpec(url="http://x")
    assert spec.for_site("intl").schedule == "short3"
    assert spec.for_site("intl").delays == (60.0, 300.0)
    assert spec.for_site("cn").schedule == "long" and spec.delays == spec.for_site("cn").delays
    assert PushSpec(url="http://x", schedule="none").for_site("intl").schedule == "none"
