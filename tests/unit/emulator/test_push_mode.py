"""Emulator push mode: what counts as accepted, the retry schedules, giving up."""

from __future__ import annotations

import json
import time

import pytest

from receiptd.emulator import Emulator, Profile
from receiptd.emulator.push import SCHEDULES, PushSpec, accepted, koomessage_body, queue_element
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
        deadline = time.monotonic() + 20
        while emu.push_stats()["SmsReport"]["pending"] and time.monotonic() < deadline:
            time.sleep(0.02)
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
        deadline = time.monotonic() + 10
        while emu.push_stats()["SmsUp"]["pending"] and time.monotonic() < deadline:
            time.sleep(0.02)
        stats = control("GET", "push_stats")
        assert stats == {"SmsUp": {**emu.push_stats()["SmsUp"]}}
        assert emu.push_stats()["SmsUp"]["given_up"] == 1
        control("POST", "push", {"type": "SmsUp", "url": None})
        assert emu.push_stats() == {}
