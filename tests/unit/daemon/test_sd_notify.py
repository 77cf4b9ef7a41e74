"""systemd notifications and the watchdog (receiptd.daemon.sd_notify), over a recording
notifier instead of the socket (tests/system covers a real NOTIFY_SOCKET)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from receiptd.daemon import sd_notify


class Recorder:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def notify(self, message: str) -> None:
        self.messages.append(message)


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(sd_notify.sdnotify, "SystemdNotifier", lambda: recorder)
    return recorder


def test_outside_systemd_every_call_is_a_no_op(recorder: Recorder) -> None:
    notifier = sd_notify.Notifier({"WATCHDOG_USEC": "1000"})
    assert not notifier.enabled and notifier.watchdog_interval == 0.001
    notifier.ready("up")
    notifier.start_watchdog(lambda: True)
    time.sleep(0.01)
    assert recorder.messages == []


def test_ready_status_and_stopping_send_the_protocol_lines(recorder: Recorder) -> None:
    notifier = sd_notify.Notifier({"NOTIFY_SOCKET": "/run/notify"})
    notifier.ready("consuming")
    notifier.status("2 loops")
    notifier.stopping()
    assert recorder.messages == [
        "READY=1\nSTATUS=consuming",
        "STATUS=2 loops",
        "STOPPING=1\nSTATUS=draining",
    ]


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_the_watchdog_interval_comes_from_the_environment(
    env: dict[str, str], interval: float | None
) -> None:
    assert sd_notify.Notifier(env).watchdog_interval == interval


def test_the_watchdog_pings_only_while_healthy(recorder: Recorder) -> None:
    notifier = sd_notify.Notifier({"NOTIFY_SOCKET": "/run/notify", "WATCHDOG_USEC": "20000"})
    healthy = threading.Event()
    healthy.set()
    notifier.start_watchdog(healthy.is_set)
    try:
        deadline = time.monotonic() + 5
        while "WATCHDOG=1" not in recorder.messages and time.monotonic() < deadline:
            time.sleep(0.005)
        assert "WATCHDOG=1" in recorder.messages
        healthy.clear()
        time.sleep(0.03)  # a ping under way when health changed may still land
        count = len(recorder.messages)
        time.sleep(0.05)  # five intervals
        assert len(recorder.messages) == count
    finally:
        notifier.stop_watchdog()
