"""A Debian root filesystem booted with ``systemd-nspawn -b``, driven with ``nsenter``.

The machine has its own network namespace (``--private-network``: loopback only), so the
daemon's port 9400 and the emulator's never meet the host's. The host's PID 1 is not systemd
here, so the machine is not registered with machined (``--register=no``); commands enter the
namespaces of the machine's PID 1 with ``nsenter -t PID -a``.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

# Units of the minimal image that cannot work without D-Bus, which receiptd does not need.
MASKED = ("systemd-logind.service", "getty.target", "console-getty.service")


class Machine:
    def __init__(self, root: Path, console_log: Path, bind_ro: Sequence[Path] = ()) -> None:
        """Boot ``root``; each of ``bind_ro`` (host directories) appears read-only at the same
        path inside, mounted after nspawn's own ``/run`` tmpfs (so ``/run/...`` works)."""
        for unit in MASKED:
            link = root / "etc/systemd/system" / unit
            link.unlink(missing_ok=True)
            link.symlink_to("/dev/null")
        self.root = root
        self.console_log = console_log
        self._console = console_log.open("wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [
                "systemd-nspawn",
                "--quiet",
                "--boot",
                f"--directory={root}",
                "--register=no",
                "--keep-unit",
                "--private-network",
                f"--machine=receiptd-deploy-{root.parent.name[-8:]}",
                *(f"--bind-ro={path}" for path in bind_ro),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._console,
            stderr=subprocess.STDOUT,
        )
        self.pid1 = self._find_pid1(timeout=30)

    def _find_pid1(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"systemd-nspawn exited:\n{self.console()}")
            for child in (
                Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            ):
                status = Path(f"/proc/{child}/status").read_text()
                nspid = next(x for x in status.splitlines() if x.startswith("NSpid:")).split()
                if (
                    nspid[-1] == "1"
                    and Path(f"/proc/{child}/comm").read_text().strip() == "systemd"
                ):
                    return int(child)
            time.sleep(0.05)
        raise AssertionError(f"no PID 1 in the machine after {timeout} s:\n{self.console()}")

    def run(
        self, *argv: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the machine (all its namespaces, as root)."""
        proc = subprocess.run(
            ["nsenter", "-t", str(self.pid1), "-a", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def systemctl(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        return self.run("systemctl", "--no-pager", *args, check=check, timeout=timeout).stdout

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.systemctl("show", unit, *(f"--property={p}" for p in props))
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_booted(self, timeout: float = 90) -> float:
        """Seconds from start until the boot finished (state `running`, nothing failed)."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            # Empty until PID 1 listens on its private socket (just after exec).
            state = self.run(
                "systemctl", "is-system-running", "--wait", check=False, timeout=timeout
            ).stdout.strip()
            if state:
                break
            time.sleep(0.1)
        if state != "running":
            failed = self.systemctl("--failed", "--no-legend", check=False)
            raise AssertionError(f"machine boot ended {state!r}; failed units:\n{failed}")
        return time.monotonic() - self.started

    def journal(self, unit: str) -> str:
        return self.run("journalctl", "--no-pager", "-o", "cat", "-u", unit).stdout

    def console(self) -> str:
        self._console.flush()
        return self.console_log.read_text(errors="replace")[-4000:]

    def poweroff(self, timeout: float = 30) -> None:
        """Shut down cleanly (SIGTERM makes nspawn ask the machine's systemd to power off)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._console.close()
