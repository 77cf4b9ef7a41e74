"""systemd/receiptd.service, unmodified, booted by systemd in a Debian bookworm machine.

The machine (``systemd-nspawn -b``, own network namespace) gets receiptd from a wheel of this
checkout (installed with ``pip --no-index``: no network needed), the unit at
``/etc/systemd/system/``, a ``receiptd.toml`` pointing at the provider emulator (a transient
unit started with ``systemd-run``) and the secrets in ``/etc/credstore/receiptd.*``, as
systemd/README.md tells a user to. Every sandboxing line of the unit is thereby in force.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy import artifacts
from tests.deploy.conftest import require
from tests.deploy.machine import Machine

UNIT = artifacts.REPO / "systemd" / "receiptd.service"
EMULATOR_PORT = 18080
STATUS_TOKEN = "deploy-tier-status-token"
DRAIN_BOUND = 10.0  # the unit's RECEIPTD_SHUTDOWN_TIMEOUT
# Dynamic users come from this range (systemd's DYNAMIC_UID_MIN/MAX).
DYNAMIC_UIDS = range(61184, 65520)
# What a sandboxing line that breaks the daemon leaves in its log.
SANDBOX_ERRORS = re.compile(
    r"EPERM|Operation not permitted|PermissionError|seccomp|SIGSYS|Bad system call|"
    r"MemoryDenyWriteExecute|cannot allocate memory|Read-only file system|Traceback",
    re.IGNORECASE,
)


def install_receiptd(root: Path, deps: Path, own: Path) -> None:
    """pip install from the wheels only, run inside the (not yet booted) machine's tree."""
    artifacts.run(
        [
            "systemd-nspawn", "--quiet", f"--directory={root}", "--register=no", "--keep-unit",
            "--private-network", f"--bind-ro={deps}:/wheels/deps", f"--bind-ro={own}:/wheels/own",
            "python3", "-m", "pip", "install", "--quiet", "--no-index", "--no-cache-dir",
            "--find-links=/wheels/deps", "--find-links=/wheels/own", "receiptd[huawei]",
        ],
        timeout=300,
    )  # fmt: skip


def write_config(root: Path) -> None:
    """The documented layout: non-secret TOML (0644), secrets in /etc/credstore (0600)."""
    emulator = f"http://127.0.0.1:{EMULATOR_PORT}"
    etc = root / "etc/receiptd"
    etc.mkdir(mode=0o755)
    (etc / "receiptd.toml").write_text(
        'database_url = "sqlite:////var/lib/receiptd/receiptd.db"\n'
        'http_addr = "127.0.0.1:9400"\n'
        'log_format = "json"\n'
        "consumer_wait_seconds = 1\n"
        "compensator_interval = 3600\n"
        "[aliyun]\n"
        'queue_prefix = "Alicom-Queue-1234567890-"\n'
        f'dysms_endpoint = "{emulator}"\n'
        f'dybase_endpoint = "{emulator}"\n'
        f'alicom_mns_endpoint = "{emulator}"\n'
    )
    (etc / "receiptd.toml").chmod(0o644)
    store = root / "etc/credstore"
    store.mkdir(mode=0o700)
    secrets = {
        # The emulator's fixed keys (receiptd_emulator.emulator).
        "aliyun_access_key_id": "LTAI5tReceiptdEmulator01",
        "aliyun_access_key_secret": "EmulatorSecretForReceiptd00001",
        "status_api_token": STATUS_TOKEN,
    }
    for name, value in secrets.items():
        path = store / f"receiptd.{name}"
        path.write_text(value)
        path.chmod(0o600)


@pytest.fixture(scope="module")
def machine(
    rootfs: Path, wheels: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Machine]:
    require("systemd-nspawn", "nsenter")
    work = tmp_path_factory.mktemp("machine")
    root = work / "root"
    subprocess.run(["cp", "-a", "--reflink=auto", str(rootfs), str(root)], check=True)
    start = time.monotonic()
    install_receiptd(root, *wheels)
    print(f"receiptd installed into the machine in {time.monotonic() - start:.1f} s")
    shutil.copyfile(UNIT, root / "etc/systemd/system/receiptd.service")
    write_config(root)
    machine = Machine(root, work / "console.log")
    try:
        print(f"machine booted in {machine.wait_booted():.1f} s")
        print(machine.run("systemd-analyze", "time").stdout.strip())
        machine.run(
            "systemd-run", "--unit=receiptd-emulator", "--property=DynamicUser=yes",
            "/usr/local/bin/receiptd", "emulator", "--port", str(EMULATOR_PORT),
        )  # fmt: skip
        wait_for(lambda: '"mns_endpoint"' in machine.journal("receiptd-emulator"), 30)
        # systemd/README.md step 4: migrate once before the first start.
        as_service_user(machine, "--config", "/etc/receiptd/receiptd.toml", "db", "upgrade")
        yield machine
    finally:
        machine.poweroff()
        shutil.rmtree(work, ignore_errors=True)


def wait_for(predicate: object, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():  # type: ignore[operator]
            return time.monotonic() - start
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s")


def http(machine: Machine, path: str, token: str | None = None) -> tuple[int, str]:
    """GET on the daemon's port, from inside the machine's network namespace."""
    script = """
import sys, urllib.error, urllib.request
url, *header = sys.argv[1:]
request = urllib.request.Request(url, headers=dict([header]) if header else {})
try:
    with urllib.request.urlopen(request, timeout=5) as r:
        print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode())
except OSError as e:
    print(0); print(e)
"""
    headers = ["Authorization", f"Bearer {token}"] if token else []
    out = machine.run("python3", "-c", script, f"http://127.0.0.1:9400{path}", *headers).stdout
    code, _, body = out.partition("\n")
    return int(code), body


def as_service_user(machine: Machine, *args: str) -> str:
    """Run `receiptd ARGS` as the service's own dynamic user (the same User= name), with its
    state directory and credentials, and return its output: systemd/README.md, "Other
    commands". A oneshot unit, because `systemd-run --wait` needs D-Bus, which the machine
    does not run; systemd-run itself waits for a oneshot's start job to finish.
    """
    unit = f"receiptd-cli-{time.monotonic_ns()}"
    credentials = [
        f"--property=LoadCredential={name}:receiptd.{name}"
        for name in ("aliyun_access_key_id", "aliyun_access_key_secret")
    ]
    done = machine.run(
        "systemd-run", f"--unit={unit}", "--service-type=oneshot", "--property=DynamicUser=yes",
        "--property=User=receiptd", "--property=StateDirectory=receiptd",
        "--property=WorkingDirectory=/var/lib/receiptd", *credentials,
        "/usr/local/bin/receiptd", *args, check=False,
    )  # fmt: skip
    output = machine.run("journalctl", "--no-pager", "-o", "cat", f"--unit={unit}").stdout
    assert done.returncode == 0, f"receiptd {' '.join(args)} failed:\n{done.stderr}\n{output}"
    return output


def main_pid(machine: Machine) -> int:
    return int(machine.show("receiptd", "MainPID")["MainPID"])


@pytest.fixture
def running(machine: Machine) -> int:
    """The daemon's main PID, after `systemctl start` returned (i.e. after READY=1)."""
    if machine.show("receiptd", "ActiveState")["ActiveState"] != "active":
        start = time.monotonic()
        started = machine.run("systemctl", "start", "receiptd", check=False, timeout=120)
        assert started.returncode == 0, f"{started.stderr}\n{machine.journal('receiptd')}"
        print(f"systemctl start receiptd returned (READY=1) after {time.monotonic() - start:.2f} s")
    return main_pid(machine)


def test_unit_starts_through_notify_and_serves_readyz(machine: Machine, running: int) -> None:
    state = machine.show(
        "receiptd", "Type", "ActiveState", "SubState", "StatusText", "NRestarts", "DropInPaths"
    )
    assert state["DropInPaths"] == "", "the unit must run as shipped, without drop-ins"
    assert machine.systemctl("cat", "receiptd").split("\n", 1)[1] == UNIT.read_text()
    assert state["Type"] == "notify"
    assert (state["ActiveState"], state["SubState"]) == ("active", "running"), state
    assert state["StatusText"], "receiptd sent no STATUS= line"
    assert state["NRestarts"] == "0", machine.journal("receiptd")
    assert http(machine, "/readyz")[0] == 200


def test_daemon_runs_as_dynamic_user_without_capabilities_under_seccomp(
    machine: Machine, running: int
) -> None:
    status = dict(
        line.split(":", 1)
        for line in machine.run("cat", f"/proc/{running}/status").stdout.splitlines()
    )
    uid = int(status["Uid"].split()[0])
    assert uid in DYNAMIC_UIDS, status["Uid"]
    assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0
    assert int(status["CapPrm"], 16) == 0 and int(status["CapAmb"], 16) == 0
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"  # a filter (SystemCallFilter=) is installed
    assert machine.run("stat", "-c", "%u %a", "/var/lib/private/receiptd").stdout.split() == [
        str(uid),
        "700",
    ]


def test_send_settles_through_the_running_daemon(machine: Machine, running: int) -> None:
    sent = as_service_user(
        machine, "send", "--config", "/etc/receiptd/receiptd.toml", "--phone", "13800138000",
        "--sign", "阿里云短信测试", "--template", "SMS_154950909", "--param", '{"code": "1234"}',
    )  # fmt: skip
    match = re.search(r"sent BizId (\S+) to 1 recipient\(s\); registered 1", sent)
    assert match, sent
    biz_id = match.group(1)

    recipients: list[dict[str, str]] = []

    def settled() -> bool:
        code, body = http(machine, f"/v1/sends/{biz_id}", STATUS_TOKEN)
        assert code == 200, body
        recipients[:] = json.loads(body)["recipients"]
        return all(r["status"] != "pending" for r in recipients)

    seconds = wait_for(settled, 60)
    print(f"send settled through the daemon in {seconds:.1f} s")
    # By the receipt the daemon consumed from the queue (the compensator waits an hour).
    assert [r["settled_by"] for r in recipients] == ["receipt"], recipients


def test_watchdog_restarts_a_stopped_daemon(machine: Machine, running: int) -> None:
    machine.systemctl("kill", "--kill-whom=main", "--signal=SIGSTOP", "receiptd")
    # WatchdogSec=30s, then SIGABRT, then Restart=on-failure after RestartSec=5s.
    seconds = wait_for(lambda: main_pid(machine) not in (0, running), 60)
    machine.systemctl("start", "receiptd")  # waits for the new instance's READY=1
    state = machine.show("receiptd", "ActiveState", "NRestarts")
    assert state == {"ActiveState": "active", "NRestarts": "1"}, state
    assert "Watchdog timeout" in machine.journal("receiptd")
    print(f"watchdog restarted the SIGSTOPped daemon after {seconds:.1f} s")
    assert http(machine, "/readyz")[0] == 200


def test_stop_drains_with_success_and_the_journal_has_no_sandbox_errors(
    machine: Machine, running: int
) -> None:
    start = time.monotonic()
    machine.systemctl("stop", "receiptd")
    seconds = time.monotonic() - start
    state = machine.show("receiptd", "ActiveState", "Result", "ExecMainStatus")
    assert state == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}
    assert seconds < DRAIN_BOUND, f"stop took {seconds:.1f} s"
    print(f"systemctl stop receiptd: {seconds:.2f} s")
    journal = machine.journal("receiptd")
    assert "Started receiptd.service" in journal
    # The watchdog test's deliberate SIGABRT aside, nothing the sandbox refused.
    problems = [line for line in journal.splitlines() if SANDBOX_ERRORS.search(line)]
    assert problems == [], "\n".join(problems)
