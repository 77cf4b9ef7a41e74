"""SIGTERM/SIGINT → one stop callback (receiptd.daemon.signals)."""

from __future__ import annotations

import os
import signal
import threading

import structlog

from receiptd.daemon import signals


def test_a_signal_calls_stop_and_a_second_one_is_logged_as_during_drain() -> None:
    stops: list[int] = []
    with (
        structlog.testing.capture_logs() as logged,
        signals.on_stop_signals(lambda: stops.append(1)),
    ):
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
    assert stops == [1, 1]
    events = [(e["event"], e["signal"]) for e in logged]
    assert events == [("stop_signal", "SIGTERM"), ("signal_during_drain", "SIGINT")]


def test_the_previous_handlers_are_restored_after_the_block() -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    with signals.on_stop_signals(lambda: None):
        assert signal.getsignal(signal.SIGTERM) is not before[signal.SIGTERM]
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_outside_the_main_thread_nothing_is_installed() -> None:
    seen: list[object] = []

    def run() -> None:
        with signals.on_stop_signals(lambda: None):
            seen.append(signal.getsignal(signal.SIGTERM))

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == [before]
