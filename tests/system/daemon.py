"""Run `receiptd run` as a real subprocess against the emulator, and talk to it."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from receiptd.testing import emulated
from receiptd_emulator import Emulator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def daemon_env(emu: Emulator, db_url: str, http_port: int, **extra: str) -> dict[str, str]:
    """The environment of a token-mode daemon pointed at the emulator."""
    env = emulated.environ(
        emu.info,
        db_url,
        {
            "RECEIPTD_HTTP_ADDR": f"127.0.0.1:{http_port}",
            "RECEIPTD_CONSUMER_WAIT_SECONDS": "1",
            "RECEIPTD_CONSUMER_SOCKET_TIMEOUT": "10",
            "RECEIPTD_LOG_FORMAT": "json",
            "RECEIPTD_COMPENSATOR_INTERVAL": "3600",
        },
    )
    env.pop("NOTIFY_SOCKET", None)
    env.update(extra)
    return env


class Daemon:
    """A `receiptd run` subprocess with its log captured to a file."""

    def __init__(self, env: Mapping[str, str], log_path: Path, *args: str) -> None:
        self.port = int(env["RECEIPTD_HTTP_ADDR"].rsplit(":", 1)[1])
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("ab")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "receiptd", "run", *args],
            env=dict(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            return 0, b""

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> float:
        """Seconds until ``predicate()`` held; raises if the process died or time ran out."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if predicate():
                return time.monotonic() - start
            if self.proc.poll() is not None:
                raise AssertionError(f"receiptd exited {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.05)
        raise AssertionError(f"condition not met within {timeout} s:\n{self.log()[-4000:]}")

    def ready(self) -> bool:
        return self.get("/readyz")[0] == 200

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 30) -> tuple[int, float]:
        start = time.monotonic()
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self._log.close()
        return code, time.monotonic() - start

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()

    def log(self) -> str:
        if not self._log.closed:  # still readable after terminate()/kill()
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return out
