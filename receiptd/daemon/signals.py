"""SIGTERM/SIGINT → one stop callback. A second signal during the drain is logged, not fatal:
the drain bound (shutdown_timeout) already limits how long stopping can take."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from receiptd.logs import get_logger

log = get_logger(__name__)


@contextmanager
def on_stop_signals(stop: Callable[[], None]) -> Iterator[None]:
    """Install handlers for the duration of the block (main thread only), then restore."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handler(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if received:
            log.warning("signal_during_drain", signal=name)
        else:
            log.info("stop_signal", signal=name)
        received.append(signum)
        stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
