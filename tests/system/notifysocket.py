"""A fake systemd NOTIFY_SOCKET: collects the datagrams a service sends."""

from __future__ import annotations

import socket
import threading
from pathlib import Path


class NotifySocket:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.2)
        self.messages: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(4096)
            except (TimeoutError, OSError):
                continue
            self.messages.extend(data.decode().splitlines())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()
