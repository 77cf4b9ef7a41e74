"""systemd/receiptd.service, unmodified, booted by systemd in a Debian bookworm machine.

The machine (``systemd-nspawn -b``, own network namespace) gets receiptd from a wheel of this
checkout (installed with ``pip --no-index``: no network needed), the unit at
``/etc/systemd/system/``, a ``receiptd.toml`` pointing at the provider emulator (a transient
unit started with ``systemd-run``) and the secrets in ``/etc/credstore/receiptd.*``, as
systemd/README.md tells a user to. Every sandboxing line of the unit is thereby in force.

Last, the split roles of systemd/README.md "Split roles": ``receiptd@consumer`` and
``receiptd@worker`` under ``receiptd.target``, unmodified too, on a fresh database of the host's
PostgreSQL (split roles refuse SQLite). The machine's network namespace cannot reach the host's
``127.0.0.1:5432``, so the host's socket directory is bound read-only into it.
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
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.conftest import create_server_database, drop_server_database, unavailable
from tests.deploy import artifacts
from tests.deploy.conftest import require
from tests.deploy.machine import Machine

UNIT = artifacts.REPO / "systemd" / "receiptd.service"
TEMPLATE = artifacts.REPO / "systemd" / "receiptd@.service"
TARGET = artifacts.REPO / "systemd" / "receiptd.target"
# Where the host's PostgreSQL listens (Debian's default); the same path inside the machine.
PG_SOCKETS = Path("/run/postgresql")
# systemd/README.md "Split roles": each instance's own ops port, and the roles its group runs.
SPLIT = {"consumer": (9401, ["consumer"]), "worker": (9404, ["compensator", "prune"])}
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
    machine = Machine(root, work / "console.log", [PG_SOCKETS] if PG_SOCKETS.is_dir() else [])
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


def http(
    machine: Machine, path: str, token: str | None = None, port: int = 9400
) -> tuple[int, str]:
    """GET on a daemon's ops port, from inside the machine's network namespace."""
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
    out = machine.run("python3", "-c", script, f"http://127.0.0.1:{port}{path}", *headers).stdout
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
        # database_url: present only while the split roles run on PostgreSQL (else skipped).
        for name in ("aliyun_access_key_id", "aliyun_access_key_secret", "database_url")
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


def host_database() -> str:
    """A fresh database on the host's PostgreSQL, as the machine reaches it: over the bound
    socket directory (``trust`` for local connections, so no password)."""
    if not PG_SOCKETS.is_dir():
        unavailable("postgresql", FileNotFoundError(f"no socket directory {PG_SOCKETS}"))
    try:
        url = make_url(create_server_database("postgresql"))
    except sa.exc.OperationalError as exc:
        unavailable("postgresql", exc)
    return f"postgresql+psycopg://{url.username}@/{url.database}?host={PG_SOCKETS}"


def install_split_roles(machine: Machine, database_url: str) -> None:
    """systemd/README.md "Split roles", with the shared database_url credential (step 3),
    which wins over the TOML's SQLite URL for every instance; migrated once (step 4)."""
    for unit in (TEMPLATE, TARGET):
        shutil.copyfile(unit, machine.root / "etc/systemd/system" / unit.name)
    roles_dir = machine.root / "etc/receiptd/roles"
    roles_dir.mkdir(mode=0o755, exist_ok=True)
    for group, (port, _) in SPLIT.items():
        (roles_dir / f"{group}.env").write_text(f"RECEIPTD_HTTP_ADDR=127.0.0.1:{port}\n")
    credential = machine.root / "etc/credstore/receiptd.database_url"
    credential.write_text(database_url)
    credential.chmod(0o600)
    machine.systemctl("daemon-reload")
    as_service_user(machine, "--config", "/etc/receiptd/receiptd.toml", "db", "upgrade")
    machine.systemctl("enable", *(f"receiptd@{group}" for group in SPLIT))


@pytest.fixture
def split_roles(machine: Machine) -> Iterator[None]:
    """The split instances enabled on a fresh host database; afterwards disabled and the
    credential removed, so that receiptd.service is back on its SQLite file."""
    database_url = host_database()
    try:
        install_split_roles(machine, database_url)
        yield
    finally:
        machine.systemctl("stop", "receiptd.target", check=False)
        machine.systemctl("disable", *(f"receiptd@{group}" for group in SPLIT), check=False)
        (machine.root / "etc/credstore/receiptd.database_url").unlink(missing_ok=True)
        drop_server_database("postgresql", database_url)


def ready_roles(machine: Machine, port: int) -> list[str]:
    """The roles /readyz names (it answers 200)."""
    code, body = http(machine, "/readyz", port=port)
    assert code == 200, body
    return sorted(json.loads(body)["roles"])


def metric_roles(machine: Machine, port: int) -> list[str]:
    """The roles receiptd_role_info on /metrics sets to 1."""
    code, body = http(machine, "/metrics", port=port)
    assert code == 200, body
    return sorted(re.findall(r'^receiptd_role_info\{role="(\w+)"\} 1\.0$', body, re.MULTILINE))


def consumer_state(machine: Machine) -> str:
    return machine.show("receiptd@consumer", "ActiveState")["ActiveState"]


def test_split_roles_run_as_instances_of_the_target_and_stop_one_by_one(
    machine: Machine, split_roles: None
) -> None:
    socket = f"{PG_SOCKETS}/.s.PGSQL.5432"
    assert machine.run("test", "-S", socket, check=False).returncode == 0, f"no {socket} inside"
    # The single-process unit, running, gives way to the target (Conflicts=).
    machine.systemctl("start", "receiptd")
    start = time.monotonic()
    started = machine.run("systemctl", "start", "receiptd.target", check=False, timeout=120)
    journals = "\n".join(machine.journal(f"receiptd@{group}") for group in SPLIT)
    assert started.returncode == 0, f"{started.stderr}\n{journals}"
    print(f"systemctl start receiptd.target returned after {time.monotonic() - start:.2f} s")
    assert machine.show("receiptd", "ActiveState")["ActiveState"] == "inactive"

    pids: dict[str, str] = {}
    for group, (port, roles) in SPLIT.items():
        unit = f"receiptd@{group}"
        state = machine.show(unit, "ActiveState", "SubState", "NRestarts")
        # Running already when `systemctl start` returned: the target waits for READY=1.
        assert state == {"ActiveState": "active", "SubState": "running", "NRestarts": "0"}, state
        assert ready_roles(machine, port) == roles
        assert metric_roles(machine, port) == roles
        pids[group] = machine.show(unit, "MainPID")["MainPID"]

    machine.systemctl("stop", "receiptd@worker")
    stopped = machine.show("receiptd@worker", "ActiveState", "Result", "ExecMainStatus")
    assert stopped == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}
    consumer = machine.show("receiptd@consumer", "ActiveState", "MainPID")
    assert consumer == {"ActiveState": "active", "MainPID": pids["consumer"]}
    assert ready_roles(machine, SPLIT["consumer"][0]) == ["consumer"]

    start = time.monotonic()
    machine.systemctl("stop", "receiptd.target")
    returned = time.monotonic() - start
    # PartOf= reaches the consumer, but systemctl waits for the target's own stop job only,
    # which runs first: ordered after its instances on the way up, before them on the way down.
    seconds = wait_for(lambda: consumer_state(machine) == "inactive", DRAIN_BOUND)
    print(f"systemctl stop receiptd.target returned after {returned:.2f} s, "
          f"the consumer stopped {seconds:.2f} s later")  # fmt: skip
    stopped = machine.show("receiptd@consumer", "ActiveState", "Result", "ExecMainStatus")
    assert stopped == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}
    for group in SPLIT:
        journal = machine.journal(f"receiptd@{group}")
        problems = [line for line in journal.splitlines() if SANDBOX_ERRORS.search(line)]
        assert problems == [], "\n".join(problems)
