"""systemd service notifications (Type=notify) and the watchdog, via the sdnotify library.

``NOTIFY_SOCKET`` and ``WATCHDOG_USEC`` are protocol variables the service manager sets, not
settings, so they are read here. Outside systemd every call is a no-op.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping

import sdnotify

from receiptd.logs import get_logger

log = get_logger(__name__)


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.enabled = bool(env.get("NOTIFY_SOCKET"))
        self._notifier = sdnotify.SystemdNotifier() if self.enabled else None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog_interval = int(usec) / 1e6 if usec.isdigit() and mine else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def notify(self, message: str) -> None:
        if self._notifier is not None:
            self._notifier.notify(message)

    def ready(self, status: str) -> None:
        self.notify(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        self.notify(f"STATUS={status}")

    def stopping(self) -> None:
        self.notify("STOPPING=1\nSTATUS=draining")

    def start_watchdog(self, healthy: Callable[[], bool]) -> None:
        """Ping WATCHDOG=1 at half the interval, but only while ``healthy()`` holds: a stuck
        loop then lets systemd restart the service."""
        if self.watchdog_interval is None or self._notifier is None:
            return
        interval = self.watchdog_interval / 2

        def run() -> None:
            while not self._stop.wait(interval):
                if healthy():
                    self.notify("WATCHDOG=1")
                else:
                    log.warning("watchdog_withheld", reason="a loop stopped heartbeating")

        self._thread = threading.Thread(target=run, name="watchdog", daemon=True)
        self._thread.start()

    def stop_watchdog(self) -> None:
        self._stop.set()
